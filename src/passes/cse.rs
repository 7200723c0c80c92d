//! `cse`: common-subexpression elimination. Two computed nodes with the same op (attributes included) and
//! the same inputs in the same slots compute the same value; the later one's uses move to the earlier,
//! and the later is removed (unless it is a model output: each output keeps its own node). Inputs, parameters and constants are never merged (two parameters with equal
//! shapes hold different weights), nor are ops whose result is random in training (dropout).

use std::collections::HashMap;

use crate::ir::{Graph, Op};

use super::Decision;

pub fn cse(g: &mut Graph) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let mut seen: HashMap<String, crate::ir::NodeId> = HashMap::new();
    let order = g.topo_order().expect("a verified graph is acyclic");
    for id in order {
        let node = g.node(id);
        let output = g.outputs.iter().any(|(_, o)| *o == id);
        if output
            || matches!(
                node.op,
                Op::Input { .. } | Op::Param(_) | Op::Constant { .. } | Op::Dropout { .. }
            )
        {
            continue;
        }
        // Ops carry f64 attributes, so they are keyed by their exact printed form.
        let key = format!("{:?} {:?}", node.op, g.inputs(id));
        match seen.get(&key) {
            Some(&first) => {
                decisions.push(Decision {
                    rule: "cse",
                    nodes: vec![g.node(first).path.clone(), node.path.clone()],
                    result: format!("{} computed once", node.op.name()),
                });
                g.replace_uses(id, first);
                g.remove(id);
            }
            None => {
                seen.insert(key, id);
            }
        }
    }
    decisions
}
