//! Reverse-mode automatic differentiation on the IR: from a forward graph and an objective, builds one
//! graph that computes the forward pass, the loss and the gradients, made of ordinary IR nodes (the
//! gradient of each op is an `Op::Grad` node, see `vjp.rs`), so the interpreter and later the JIT execute
//! backward graphs exactly like forward ones.
//!
//! What it does not do: higher-order derivatives, and gradients of integer values (embedding indices,
//! class targets) or of frozen parameters and batch-norm running statistics.

mod vjp;

use std::collections::{HashMap, HashSet};

use crate::diag::Span;
use crate::ir::shape::ShapeError;
use crate::ir::train::{Loss, Regularizer};
use crate::ir::{DType, Graph, NodeId, Op, TensorType};

/// What the gradients are of.
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// The training loss on the model's single output against a new input `target`, plus the regularization
    /// penalties of the parameters that have one. Outputs: `loss`, the model's outputs, then gradients.
    Loss(Loss),
    /// `sum(output * d.output)` over the outputs, with each upstream gradient a new input `d.<output>`: the
    /// vector-Jacobian product. Outputs: the model's outputs, then gradients.
    Upstream,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AutodiffError {
    #[error("a loss needs a model with exactly one output; this one has {0}")]
    OutputCount(usize),
    /// A node could not be added: a bug in a vector-Jacobian rule or in shape inference.
    #[error("internal error: the gradient node for `{path}` does not type-check: {error}")]
    Internal { path: String, error: ShapeError },
}

/// Builds the training graph. Gradients are outputs named `grad.<parameter name>` (trainable parameters
/// that the objective depends on) and `grad.<input name>` (float model inputs), in graph order.
pub fn backward(forward: &Graph, objective: &Objective) -> Result<Graph, AutodiffError> {
    let g = forward.clone();
    let order = g.topo_order().expect("a verified graph is acyclic");
    let requires = requires_grad(&g, &order);
    let mut b = Builder {
        g,
        grads: HashMap::new(),
    };
    let model_outputs = forward.outputs.clone();
    let mut outputs = Vec::new();
    match objective {
        Objective::Upstream => {
            for (name, id) in &model_outputs {
                let ty = b.g.node(*id).ty.clone();
                let seed = b.input(format!("d.{name}"), ty);
                b.grads.entry(*id).or_default().push(seed);
            }
        }
        Objective::Loss(loss) => {
            let [(_, out)] = model_outputs.as_slice() else {
                return Err(AutodiffError::OutputCount(model_outputs.len()));
            };
            let out = *out;
            let target_ty = target_type(loss, &b.g.node(out).ty);
            let target = b.input("target".into(), target_ty);
            let one = b.add(Op::Constant { value: 1.0 }, &[], "grad.seed".into())?;
            let loss_node = b.add(
                Op::Loss { loss: loss.clone() },
                &[out, target],
                "loss".into(),
            )?;
            let d_out = b.add(
                Op::Grad {
                    forward: Box::new(Op::Loss { loss: loss.clone() }),
                    slot: 0,
                },
                &[out, target, loss_node, one],
                "grad.loss".into(),
            )?;
            b.grads.entry(out).or_default().push(d_out);
            let mut terms = vec![loss_node];
            for id in order.iter().copied().filter(|id| requires.contains(id)) {
                let Op::Param(p) = &b.g.node(id).op else {
                    continue;
                };
                if p.regularizer == Regularizer::None {
                    continue;
                }
                let reg = p.regularizer.clone();
                let path = b.g.node(id).path.clone();
                let pen = b.add(
                    Op::Penalty { reg: reg.clone() },
                    &[id],
                    format!("penalty.{path}"),
                )?;
                let d = b.add(
                    Op::Grad {
                        forward: Box::new(Op::Penalty { reg }),
                        slot: 0,
                    },
                    &[id, pen, one],
                    format!("grad.penalty.{path}"),
                )?;
                b.grads.entry(id).or_default().push(d);
                terms.push(pen);
            }
            let total = if terms.len() == 1 {
                terms[0]
            } else {
                b.add(Op::Add, &terms, "loss.total".into())?
            };
            outputs.push(("loss".to_string(), total));
        }
    }
    outputs.extend(model_outputs);
    // Reverse topological order: a node's gradient is complete before it is propagated to its inputs.
    for &id in order.iter().rev() {
        if !b.grads.contains_key(&id) || matches!(b.g.node(id).op, Op::Input { .. } | Op::Param(_))
        {
            continue;
        }
        let dy = b.total(id)?;
        let inputs = b.g.inputs(id);
        for (slot, &input) in inputs.iter().enumerate() {
            if !requires.contains(&input) {
                continue;
            }
            let contribution = vjp::rule(&mut b, id, slot, dy)?;
            b.grads.entry(input).or_default().push(contribution);
        }
    }
    for &id in &order {
        let node = b.g.node(id);
        let name = match &node.op {
            Op::Param(_) => node.path.clone(),
            Op::Input { index } => forward.inputs[*index].0.clone(),
            _ => continue,
        };
        if requires.contains(&id) && b.grads.contains_key(&id) {
            let total = b.total(id)?;
            outputs.push((format!("grad.{name}"), total));
        }
    }
    b.g.outputs = outputs;
    Ok(b.g)
}

/// Nodes whose gradient is wanted or flows: float model inputs, trainable parameters, and every node
/// computed from them.
fn requires_grad(g: &Graph, order: &[NodeId]) -> HashSet<NodeId> {
    let mut set = HashSet::new();
    for &id in order {
        let node = g.node(id);
        let wanted = match &node.op {
            Op::Param(p) => p.trainable,
            Op::Input { .. } => node.ty.dtype.is_float(),
            _ => node.ty.dtype.is_float() && g.inputs(id).iter().any(|i| set.contains(i)),
        };
        if wanted {
            set.insert(id);
        }
    }
    set
}

/// The target a loss compares the prediction with.
fn target_type(loss: &Loss, pred: &TensorType) -> TensorType {
    match loss {
        Loss::SparseCategoricalCrossentropy { .. } => {
            TensorType::new(DType::I64, pred.dims[..pred.rank() - 1].to_vec())
        }
        _ => pred.clone(),
    }
}

/// The graph being extended and the gradient contributions collected so far, per node.
pub(crate) struct Builder {
    pub g: Graph,
    grads: HashMap<NodeId, Vec<NodeId>>,
}

impl Builder {
    pub fn add(
        &mut self,
        op: Op,
        inputs: &[NodeId],
        path: String,
    ) -> Result<NodeId, AutodiffError> {
        let span = inputs
            .first()
            .map_or(Span::default(), |&i| self.g.node(i).span);
        self.g
            .add(op, inputs, span, path.clone())
            .map_err(|error| AutodiffError::Internal { path, error })
    }

    fn input(&mut self, name: String, ty: TensorType) -> NodeId {
        let index = self.g.inputs.len();
        let id = self
            .g
            .add_typed(Op::Input { index }, ty, &[], Span::default(), name.clone());
        self.g.inputs.push((name, id));
        id
    }

    /// The node's full gradient: its one contribution, or their sum (made once, then reused).
    fn total(&mut self, id: NodeId) -> Result<NodeId, AutodiffError> {
        let parts = self.grads[&id].clone();
        if parts.len() == 1 {
            return Ok(parts[0]);
        }
        let path = format!("grad.{}", self.g.node(id).path);
        let sum = self.add(Op::Add, &parts, path)?;
        self.grads.insert(id, vec![sum]);
        Ok(sum)
    }
}
