//! `fuse-elementwise`: computes a run of elementwise layers (activations, add, multiply, scale) as one
//! kernel, one pass over memory instead of one per layer (`Op::Chain`). A layer joins the elementwise
//! layer that reads it when that layer is its only reader and it is not a model output; the chain grows
//! until no such pair is left. It runs after the epilogue fusions, so it takes what they leave: an
//! activation after pooling, concatenation or another activation, products and sums of gates, sums of more
//! than one residual. The joined layers' values are never stored.
//!
//! It does not fuse softmax or LRN (they read neighbouring elements), batch norm (folded into the product
//! before it by `fold-bn`, else a per-channel map), or anything across shapes: nnc's elementwise ops take
//! tensors of one shape, so every input of a chain has the chain's shape. A chain stays within
//! [`Chain::MAX_LINKS`] links and [`Chain::MAX_INPUTS`] inputs (the kernel's limits); a pair that would pass
//! them is left as two kernels.

use crate::ir::op::{Chain, Link};
use crate::ir::{Graph, Op};

use super::rewrite::sole_user;
use super::Decision;

pub fn fuse_elementwise(g: &mut Graph) -> Vec<Decision> {
    let mut decisions = Vec::new();
    loop {
        let before = decisions.len();
        let order = g.topo_order().expect("a verified graph is acyclic");
        for id in order {
            if !g.contains(id) {
                continue;
            }
            let Some(a) = as_chain(&g.node(id).op, g.inputs(id).len()) else {
                continue;
            };
            let Some(user) = sole_user(g, id) else {
                continue;
            };
            let user_inputs = g.inputs(user);
            let Some(b) = as_chain(&g.node(user).op, user_inputs.len()) else {
                continue;
            };
            let p = user_inputs
                .iter()
                .position(|&i| i == id)
                .expect("a user reads its input");
            let merged = merge(&a, &b, p);
            if merged.links.len() > Chain::MAX_LINKS || merged.inputs > Chain::MAX_INPUTS {
                continue;
            }
            let mut inputs = g.inputs(id);
            inputs.extend(
                user_inputs
                    .iter()
                    .enumerate()
                    .filter(|&(slot, _)| slot != p)
                    .map(|(_, &i)| i),
            );
            decisions.push(Decision {
                rule: "fuse-elementwise",
                nodes: vec![g.node(id).path.clone(), g.node(user).path.clone()],
                result: format!("chain of {}", merged.kind()),
            });
            g.node_mut(user).op = Op::Chain(Box::new(merged));
            g.set_inputs(user, &inputs);
            g.remove(id);
        }
        if decisions.len() == before {
            return decisions;
        }
    }
}

/// An elementwise layer with `inputs` inputs (or a chain) as a chain.
fn as_chain(op: &Op, inputs: usize) -> Option<Chain> {
    let links = match op {
        Op::Chain(c) => return Some((**c).clone()),
        Op::Activation(a) => vec![Link::Act(*a, 0)],
        Op::Scale { factor } => vec![Link::Scale(*factor, 0)],
        // As the unfused kernels add them: ((x0 + x1) + x2) + ...
        Op::Add | Op::Mul if inputs >= 2 => (1..inputs)
            .map(|i| {
                let acc = if i == 1 { 0 } else { inputs + i - 2 };
                if *op == Op::Add {
                    Link::Add(acc, i)
                } else {
                    Link::Mul(acc, i)
                }
            })
            .collect(),
        _ => return None,
    };
    Some(Chain { inputs, links })
}

/// The chain computing `b` with its input `p` computed by `a` in place of being read: inputs `a`'s, then
/// `b`'s other than `p`; links `a`'s, then `b`'s.
fn merge(a: &Chain, b: &Chain, p: usize) -> Chain {
    let inputs = a.inputs + b.inputs - 1;
    let a_reg = |r: usize| {
        if r < a.inputs {
            r
        } else {
            inputs + r - a.inputs
        }
    };
    let a_out = inputs + a.links.len() - 1;
    let b_reg = |r: usize| match r {
        _ if r == p => a_out,
        _ if r < p => a.inputs + r,
        _ if r < b.inputs => a.inputs + r - 1,
        _ => inputs + a.links.len() + r - b.inputs,
    };
    let remap = |l: &Link, f: &dyn Fn(usize) -> usize| match *l {
        Link::Act(act, r) => Link::Act(act, f(r)),
        Link::Scale(s, r) => Link::Scale(s, f(r)),
        Link::Add(x, y) => Link::Add(f(x), f(y)),
        Link::Mul(x, y) => Link::Mul(f(x), f(y)),
    };
    let links = a
        .links
        .iter()
        .map(|l| remap(l, &a_reg))
        .chain(b.links.iter().map(|l| remap(l, &b_reg)))
        .collect();
    Chain { inputs, links }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Act;

    #[test]
    fn merge_renumbers_registers() {
        // a: %2 = add(%0, %1) over (u, v); b: %2 = mul(%0, %1) over (w, a's value): merged over (u, v, w):
        // %3 = add(%0, %1); %4 = mul(%2, %3).
        let a = as_chain(&Op::Add, 2).unwrap();
        let b = as_chain(&Op::Mul, 2).unwrap();
        let m = merge(&a, &b, 1);
        assert_eq!(m.inputs, 3);
        assert_eq!(m.links, vec![Link::Add(0, 1), Link::Mul(2, 3)]);
        // Then a sigmoid of that: %5 = sigmoid(%4).
        let s = as_chain(&Op::Activation(Act::Sigmoid), 1).unwrap();
        let m2 = merge(&m, &s, 0);
        assert_eq!(m2.links.last(), Some(&Link::Act(Act::Sigmoid, 4)));
        // A three-input sum: ((x0 + x1) + x2).
        let add3 = as_chain(&Op::Add, 3).unwrap();
        assert_eq!(add3.links, vec![Link::Add(0, 1), Link::Add(3, 2)]);
    }
}
