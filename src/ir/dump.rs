//! The canonical text dump of a graph (one line per node, in topological order, with its output type and
//! layer path), and a Graphviz DOT rendering. The text form is what snapshot tests and `nnc dump` show.

use std::fmt::Write;

use super::graph::Graph;
use super::op::Op;

/// One line per node: `%3 = conv2d %0, %1, %2 filters=64 kernel=3x3 ... : f32[N, 64, 32, 32]  # conv1`.
pub fn to_text(g: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "model {}", g.name);
    for id in order(g) {
        let node = g.node(id);
        let mut line = format!("{id} = {}", node.op.name());
        let inputs = g.inputs(id);
        for (i, input) in inputs.iter().enumerate() {
            line.push_str(if i == 0 { " " } else { ", " });
            let _ = write!(line, "{input}");
        }
        for (k, v) in node.op.attrs() {
            let _ = write!(line, " {k}={v}");
        }
        let _ = writeln!(out, "{line} : {}  # {}", node.ty, node.path);
    }
    for (name, id) in &g.outputs {
        let _ = writeln!(out, "output {name} = {id}");
    }
    if let Some(t) = &g.train {
        let _ = writeln!(out, "train loss={:?}", t.loss);
        let _ = writeln!(out, "train optimizer={:?}", t.optimizer);
        let _ = writeln!(
            out,
            "train batch_size={} epochs={} seed={}",
            t.batch_size, t.epochs, t.seed
        );
        let _ = writeln!(out, "train metrics={:?}", t.metrics);
    }
    out
}

/// Graphviz DOT: parameters are folded into their layer's label to keep pictures readable.
pub fn to_dot(g: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&g.name));
    let _ = writeln!(
        out,
        "  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];"
    );
    for id in order(g) {
        let node = g.node(id);
        if node.op.is_param() {
            continue;
        }
        let params: Vec<String> = g
            .inputs(id)
            .into_iter()
            .filter(|&i| g.node(i).op.is_param())
            .map(|i| {
                format!(
                    "{} {}",
                    g.node(i).path.rsplit('.').next().unwrap_or(""),
                    g.node(i).ty
                )
            })
            .collect();
        let mut label = format!("{}\\n{}\\n{}", escape(&node.path), node.op.name(), node.ty);
        for p in params {
            let _ = write!(label, "\\n{}", escape(&p));
        }
        let style = if matches!(node.op, Op::Input { .. }) {
            ", style=rounded"
        } else {
            ""
        };
        let _ = writeln!(out, "  n{} [label=\"{label}\"{style}];", id.index());
        for input in g.inputs(id) {
            if !g.node(input).op.is_param() {
                let _ = writeln!(out, "  n{} -> n{};", input.index(), id.index());
            }
        }
    }
    for (name, id) in &g.outputs {
        let _ = writeln!(
            out,
            "  out_{0} [label=\"{0}\", shape=ellipse];\n  n{1} -> out_{0};",
            escape(name),
            id.index()
        );
    }
    out.push_str("}\n");
    out
}

fn order(g: &Graph) -> Vec<super::graph::NodeId> {
    // A graph that reached a dump has been verified acyclic; fall back to id order rather than fail.
    g.topo_order().unwrap_or_else(|| g.node_ids())
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
