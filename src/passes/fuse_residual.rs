//! `fuse-residual`: computes a residual connection `add(product, r)` in the product's epilogue: the output
//! tile starts from `r` and the product accumulates onto it, so the sum never takes a pass over memory. With
//! memory planning, the product then writes over `r` when `r` dies there (ResNet's shortcut).
//!
//! It fires on an `add` of exactly two values where one is a convolution or dense layer (bare, or with a
//! folded batch norm or scale, but no activation yet) read by the add alone and not a model output. When
//! both are, the one later in the graph's order becomes the product (the other is then already computed).
//! It does not fuse adds of three or more values, or a residual after an activation.

use crate::ir::{Act, Graph, Op};

use super::rewrite::{absorb, as_fused, sole_user, Extra};
use super::Decision;

pub fn fuse_residual(g: &mut Graph) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let order = g.topo_order().expect("a verified graph is acyclic");
    let position = |id| order.iter().position(|&o| o == id);
    for &add in &order {
        if !g.contains(add) || g.node(add).op != Op::Add {
            continue;
        }
        let inputs = g.inputs(add);
        let [a, b] = inputs[..] else {
            continue;
        };
        let open = |id| {
            as_fused(&g.node(id).op).is_some_and(|f| !f.residual && f.act == Act::Identity)
                && sole_user(g, id) == Some(add)
        };
        let mut candidates: Vec<_> = [a, b].into_iter().filter(|&x| open(x)).collect();
        candidates.sort_by_key(|&x| position(x));
        let Some(&product) = candidates.last() else {
            continue;
        };
        let residual = if product == a { b } else { a };
        let mut f = as_fused(&g.node(product).op).expect("checked");
        f.residual = true;
        decisions.push(absorb(
            g,
            "fuse-residual",
            product,
            add,
            f,
            Extra::Residual(residual),
        ));
    }
    decisions
}
