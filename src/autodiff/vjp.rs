//! The vector-Jacobian rules: for each op, how the gradient with respect to one input is expressed in IR.
//! One rule per op, no catch-all arm: a new op does not compile until it states its gradient here. The
//! math of each `Op::Grad` is in docs/semantics.md and the interpreter's `grad.rs`; the rules are checked
//! by finite differences in tests/gradients.rs.

use super::{AutodiffError, Builder};
use crate::ir::{NodeId, Op};

/// The contribution to the gradient of input `slot` of node `id`, given its output gradient `dy`.
pub(super) fn rule(
    b: &mut Builder,
    id: NodeId,
    slot: usize,
    dy: NodeId,
) -> Result<NodeId, AutodiffError> {
    let op = b.g.node(id).op.clone();
    match op {
        // d(a + b + ...)/da = 1: the upstream gradient flows unchanged.
        Op::Add => Ok(dy),
        // Every other op: Grad{op, slot}(inputs..., y, dy).
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::AdaptiveAvgPool2d { .. }
        | Op::GlobalAvgPool { .. }
        | Op::Flatten
        | Op::Reshape { .. }
        | Op::BatchNorm { .. }
        | Op::Dropout { .. }
        | Op::Lrn { .. }
        | Op::ZeroPad2d { .. }
        | Op::Activation(_)
        | Op::Softmax { .. }
        | Op::Mul
        | Op::Scale { .. }
        | Op::Concat { .. }
        | Op::Embedding { .. }
        | Op::Rnn { .. }
        | Op::Loss { .. }
        | Op::Penalty { .. } => {
            let mut inputs = b.g.inputs(id);
            inputs.extend([id, dy]);
            let path = format!("grad.{}.{slot}", b.g.node(id).path);
            b.add(
                Op::Grad {
                    forward: Box::new(op),
                    slot,
                },
                &inputs,
                path,
            )
        }
        Op::Input { .. } | Op::Param(_) | Op::Constant { .. } => {
            unreachable!("leaves have no inputs to differentiate")
        }
        Op::Grad { .. } => unreachable!("backward graphs are not differentiated again"),
        Op::Fused(_) | Op::Chain(_) => {
            unreachable!("fusion runs on inference graphs, never before autodiff")
        }
    }
}
