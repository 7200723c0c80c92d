//! What the fusion passes share: finding a value's single consumer, viewing a product as a fused op, and
//! replacing a consumer by the grown fused op.

use crate::ir::op::Fused;
use crate::ir::{Act, Graph, NodeId, Op};

use super::Decision;

/// The one node that reads `id`, if `id` is read by exactly one node in exactly one slot and is not a model
/// output: then its value may disappear into that consumer.
pub fn sole_user(g: &Graph, id: NodeId) -> Option<NodeId> {
    if g.outputs.iter().any(|(_, o)| *o == id) {
        return None;
    }
    match g.users(id).as_slice() {
        [u] if g.inputs(*u).iter().filter(|&&i| i == id).count() == 1 => Some(*u),
        _ => None,
    }
}

/// A convolution or dense layer (bare or already fused) as a fused op.
pub fn as_fused(op: &Op) -> Option<Fused> {
    match op {
        Op::Conv2d { .. } | Op::Dense { .. } => Some(Fused {
            core: op.clone(),
            bn: None,
            scale: 1.0,
            residual: false,
            act: Act::Identity,
            group: None,
        }),
        Op::Fused(f) => Some((**f).clone()),
        _ => None,
    }
}

/// Where a consumer's inputs go on the fused op.
pub enum Extra<'a> {
    None,
    /// Batch-norm parameters, after the others.
    Params(&'a [NodeId]),
    /// The residual, in slot 1.
    Residual(NodeId),
}

/// Makes `product` the fused op `f`, moves `consumer`'s extra inputs onto it, hands it `consumer`'s uses
/// and removes `consumer`. Returns the decision for the report.
pub fn absorb(
    g: &mut Graph,
    rule: &'static str,
    product: NodeId,
    consumer: NodeId,
    f: Fused,
    extra: Extra,
) -> Decision {
    let nodes = vec![g.node(product).path.clone(), g.node(consumer).path.clone()];
    let result = f.kind();
    g.node_mut(product).op = Op::Fused(Box::new(f));
    match extra {
        Extra::None => {}
        Extra::Params(ps) => {
            for &p in ps {
                g.push_input(product, p);
            }
        }
        Extra::Residual(r) => g.insert_input(product, 1, r),
    }
    g.replace_uses(consumer, product);
    g.remove(consumer);
    Decision {
        rule,
        nodes,
        result,
    }
}
