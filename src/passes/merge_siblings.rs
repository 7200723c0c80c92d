//! `merge-siblings`: 1x1 convolutions (stride 1, no padding, one group, no residual) that read the same
//! input and end in the same activation are marked as one group, computed as one matrix product: the
//! members' filters stacked as the rows of one GEMM that reads the shared input once, each member's rows
//! written to its own output. An Inception module's reduce convolutions are such siblings. The planner
//! schedules a group's members together (their outputs live from the group's first step) and the backend
//! lowers them as one product; each member still computes the value it computed before.
//!
//! It does not merge other kernel shapes (their patches differ per output pixel only by offsets, but a
//! 1x1 convolution reads the input in place, which is what sharing saves), products with a residual (each
//! would need its own accumulator) or different activations (one kernel applies one epilogue), and it
//! leaves dense layers alone.

use std::collections::HashMap;

use crate::ir::{Graph, NodeId, Op};

use super::rewrite::as_fused;
use super::Decision;

pub fn merge_siblings(g: &mut Graph) -> Vec<Decision> {
    let order = g.topo_order().expect("a verified graph is acyclic");
    let position: HashMap<NodeId, usize> =
        order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut decisions = Vec::new();
    for &x in &order {
        let mut users = g.users(x);
        users.sort_by_key(|u| position[u]);
        users.dedup();
        // Eligible users, grouped by activation in schedule order.
        let mut groups: Vec<Vec<NodeId>> = Vec::new();
        for u in users {
            let inputs = g.inputs(u);
            let Some(f) = as_fused(&g.node(u).op) else {
                continue;
            };
            let one_by_one = matches!(
                f.core,
                Op::Conv2d {
                    kernel: [1, 1],
                    stride: [1, 1],
                    pad: [0, 0, 0, 0],
                    groups: 1,
                    ..
                }
            );
            let reads_x_once = inputs[0] == x && inputs.iter().filter(|&&i| i == x).count() == 1;
            if !one_by_one || !reads_x_once || f.residual || f.group.is_some() {
                continue;
            }
            let act = f.act;
            let same = groups
                .iter_mut()
                .find(|grp| as_fused(&g.node(grp[0]).op).is_some_and(|h| h.act == act));
            match same {
                Some(grp) => grp.push(u),
                None => groups.push(vec![u]),
            }
        }
        for members in groups.into_iter().filter(|m| m.len() > 1) {
            let leader = members[0];
            let mut filters = 0;
            for &m in &members {
                let mut f = as_fused(&g.node(m).op).expect("eligible");
                if let Op::Conv2d { filters: n, .. } = f.core {
                    filters += n;
                }
                f.group = Some(leader);
                g.node_mut(m).op = Op::Fused(Box::new(f));
            }
            decisions.push(Decision {
                rule: "merge-siblings",
                nodes: members.iter().map(|&m| g.node(m).path.clone()).collect(),
                result: format!("{} 1x1 conv2d as one GEMM of {filters} rows", members.len()),
            });
        }
    }
    decisions
}
