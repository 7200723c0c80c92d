//! `fuse-activation`: applies an activation (ReLU, leaky ReLU, sigmoid, tanh) in the epilogue of the
//! convolution or dense layer before it, on the output tile in registers, after any folded batch norm, scale
//! and residual. It fires when the product's value is read by the activation alone and is not a model
//! output, and the product has no activation yet. It does not fuse softmax (it reads a whole row) or
//! activations after pooling or concatenation.

use crate::ir::{Act, Graph, Op};

use super::rewrite::{absorb, as_fused, sole_user, Extra};
use super::Decision;

pub fn fuse_activation(g: &mut Graph) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let order = g.topo_order().expect("a verified graph is acyclic");
    for id in order {
        if !g.contains(id) {
            continue;
        }
        let Some(mut f) = as_fused(&g.node(id).op) else {
            continue;
        };
        let Some(user) = sole_user(g, id) else {
            continue;
        };
        match g.node(user).op {
            Op::Activation(act) if f.act == Act::Identity && act != Act::Identity => {
                f.act = act;
                decisions.push(absorb(g, "fuse-activation", id, user, f, Extra::None));
            }
            _ => {}
        }
    }
    decisions
}
