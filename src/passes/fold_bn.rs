//! `fold-bn`: folds an inference batch norm, and a constant `scale` after it, into the convolution or dense
//! layer before them. The fused op keeps the batch norm's parameters as inputs; a backend folds them into
//! the packed weights and bias when it compiles (`w' = w * s`, `b' = (b - mean) * s + beta` with `s = gamma /
//! sqrt(var + eps)`), so the graph stays valid for any weights file.
//!
//! It fires only when the product's value is read by the batch norm (or scale) alone and is not a model
//! output, and, for a dense layer, when its output is `[N, units]` (batch norm's channel axis is then the
//! units). It does not fold a batch norm before a product (into the next layer's weights), and it is for
//! inference only: a training graph's batch norm uses batch statistics.

use crate::ir::op::BnFold;
use crate::ir::{Graph, Op};

use super::rewrite::{absorb, as_fused, sole_user, Extra};
use super::Decision;

pub fn fold_bn(g: &mut Graph) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let order = g.topo_order().expect("a verified graph is acyclic");
    for id in order {
        if !g.contains(id) {
            continue;
        }
        while let Some((f, user)) = as_fused(&g.node(id).op).zip(sole_user(g, id)) {
            let open = !f.residual && f.act == crate::ir::Act::Identity;
            let extra: Vec<_> = g.inputs(user)[1..].to_vec();
            let mut grown = f.clone();
            match g.node(user).op {
                Op::BatchNorm { eps, affine, .. } if open && f.bn.is_none() && f.scale == 1.0 => {
                    let dense_rank =
                        matches!(f.core, Op::Dense { .. }) && g.node(id).ty.rank() != 2;
                    if dense_rank {
                        break;
                    }
                    grown.bn = Some(BnFold { eps, affine });
                }
                Op::Scale { factor } if open => grown.scale *= factor,
                _ => break,
            }
            decisions.push(absorb(g, "fold-bn", id, user, grown, Extra::Params(&extra)));
        }
    }
    decisions
}
