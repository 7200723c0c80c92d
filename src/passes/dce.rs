//! Dead-code elimination: removes every node whose value cannot reach a model output, parameters of
//! removed layers included. Model inputs are kept even if unused (they are part of the signature).
//! It does not merge duplicate computations (that is CSE's job).

use std::collections::HashSet;

use crate::ir::{Graph, NodeId, Op};

/// Returns the number of nodes removed.
pub fn dce(g: &mut Graph) -> usize {
    let mut live: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = g.outputs.iter().map(|(_, id)| *id).collect();
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(g.inputs(id));
        }
    }
    let dead: Vec<NodeId> = g
        .node_ids()
        .into_iter()
        .filter(|id| !live.contains(id) && !matches!(g.node(*id).op, Op::Input { .. }))
        .collect();
    for &id in &dead {
        g.remove(id);
    }
    dead.len()
}
