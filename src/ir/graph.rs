//! The graph IR: a petgraph `StableGraph` of typed nodes behind typed ids. petgraph stays in this file.

use std::fmt;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::op::Op;
use super::shape::{infer, ShapeError};
use super::train::TrainConfig;
use super::types::TensorType;
use crate::diag::Span;

/// A node's id; displays as in dumps (`%12`). Ids survive node removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex);

impl NodeId {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0.index())
    }
}

/// One operation with its output type, where it came from, and its layer path (`layer1.0.conv1`, or for a
/// parameter its full name `layer1.0.conv1.weight`).
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub ty: TensorType,
    pub span: Span,
    pub path: String,
}

/// A model as a dataflow graph. Edge weights are input slots.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    g: StableDiGraph<Node, usize>,
    pub inputs: Vec<(String, NodeId)>,
    pub outputs: Vec<(String, NodeId)>,
    pub train: Option<TrainConfig>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds a node after inferring its type from its inputs' types: a node is typed when it is added.
    pub fn add(
        &mut self,
        op: Op,
        inputs: &[NodeId],
        span: Span,
        path: String,
    ) -> Result<NodeId, ShapeError> {
        let tys: Vec<&TensorType> = inputs.iter().map(|&i| &self.g[i.0].ty).collect();
        let ty = infer(&op, &tys)?;
        Ok(self.add_typed(op, ty, inputs, span, path))
    }

    /// Adds a node whose type is given (inputs and parameters, whose types are declared).
    pub fn add_typed(
        &mut self,
        op: Op,
        ty: TensorType,
        inputs: &[NodeId],
        span: Span,
        path: String,
    ) -> NodeId {
        let id = NodeId(self.g.add_node(Node { op, ty, span, path }));
        for (slot, &src) in inputs.iter().enumerate() {
            self.g.add_edge(src.0, id.0, slot);
        }
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id.0]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id.0]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id.0)
    }

    /// The node's inputs in slot order.
    pub fn inputs(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| (*e.weight(), NodeId(e.source())))
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, n)| n).collect()
    }

    /// The input slots of a node as `(slot, source)`, unsorted and possibly with gaps: for the verifier.
    pub fn input_slots(&self, id: NodeId) -> Vec<(usize, NodeId)> {
        self.g
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| (*e.weight(), NodeId(e.source())))
            .collect()
    }

    /// Nodes that use this node's value.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut users: Vec<NodeId> = self
            .g
            .neighbors_directed(id.0, Direction::Outgoing)
            .map(NodeId)
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// All node ids in ascending order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.g.node_indices().map(NodeId).collect();
        ids.sort();
        ids
    }

    /// A topological order, deterministic: among ready nodes the smallest id goes first, so for a graph
    /// built by the lowering (which creates nodes after their inputs) this is ascending id order.
    /// Returns `None` if the graph has a cycle.
    pub fn topo_order(&self) -> Option<Vec<NodeId>> {
        use std::cmp::Reverse;
        use std::collections::{BinaryHeap, HashMap};
        let mut pending: HashMap<NodeIndex, usize> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for n in self.g.node_indices() {
            let deg = self.g.edges_directed(n, Direction::Incoming).count();
            if deg == 0 {
                ready.push(Reverse(n));
            } else {
                pending.insert(n, deg);
            }
        }
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(NodeId(n));
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let deg = pending
                    .get_mut(&e.target())
                    .expect("every target with an edge has a count");
                *deg -= 1;
                if *deg == 0 {
                    ready.push(Reverse(e.target()));
                }
            }
        }
        (order.len() == self.g.node_count()).then_some(order)
    }

    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// Points every use of `old` (edges, in their slots, and model outputs) at `new`.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let uses: Vec<(NodeIndex, usize)> = self
            .g
            .edges_directed(old.0, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        for (user, slot) in uses {
            while let Some(e) = self.g.find_edge(old.0, user) {
                self.g.remove_edge(e);
            }
            self.g.add_edge(new.0, user, slot);
        }
        for (_, id) in self.outputs.iter_mut() {
            if *id == old {
                *id = new;
            }
        }
    }

    /// Adds `src` as the node's input in the slot after its last.
    pub fn push_input(&mut self, id: NodeId, src: NodeId) {
        let slot = self.input_slots(id).len();
        self.g.add_edge(src.0, id.0, slot);
    }

    /// Adds `src` as the node's input in `slot`, moving the inputs from `slot` on one slot later.
    pub fn insert_input(&mut self, id: NodeId, slot: usize, src: NodeId) {
        let later: Vec<_> = self
            .g
            .edges_directed(id.0, Direction::Incoming)
            .filter(|e| *e.weight() >= slot)
            .map(|e| e.id())
            .collect();
        for e in later {
            if let Some(w) = self.g.edge_weight_mut(e) {
                *w += 1;
            }
        }
        self.g.add_edge(src.0, id.0, slot);
    }

    /// Makes `inputs` the node's inputs, in slots `0..`.
    pub fn set_inputs(&mut self, id: NodeId, inputs: &[NodeId]) {
        let old: Vec<_> = self
            .g
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        for (slot, src) in inputs.iter().enumerate() {
            self.g.add_edge(src.0, id.0, slot);
        }
    }

    pub fn remove(&mut self, id: NodeId) {
        self.g.remove_node(id.0);
    }

    /// Data inputs and parameters of a node, split: parameters are the inputs whose op is `Param`.
    pub fn split_inputs(&self, id: NodeId) -> (Vec<NodeId>, Vec<NodeId>) {
        self.inputs(id)
            .into_iter()
            .partition(|&i| !self.node(i).op.is_param())
    }
}
