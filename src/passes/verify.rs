//! The verifier: re-derives every node's type and checks the graph's structure. A failure is a bug in
//! nnc (an earlier pass broke an invariant), never a user error; it names the bad node.

use crate::ir::shape::{infer, ShapeError};
use crate::ir::{Graph, NodeId, Op};

/// An IR invariant that does not hold.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{node} (`{path}`): {problem}")]
pub struct VerifyError {
    pub node: NodeId,
    pub path: String,
    pub problem: String,
}

/// Checks: the graph is acyclic; input slots are dense; parameters and inputs have no inputs, parameters
/// have no batch dimension and inputs do; every other node's type equals what shape inference derives;
/// model inputs and outputs exist.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let err = |id: NodeId, problem: String| VerifyError {
        node: id,
        path: g.node(id).path.clone(),
        problem,
    };
    if g.topo_order().is_none() {
        let id = g
            .node_ids()
            .into_iter()
            .next()
            .expect("a cyclic graph has nodes");
        return Err(err(id, "the graph has a cycle".into()));
    }
    for id in g.node_ids() {
        let node = g.node(id);
        let mut slots: Vec<usize> = g.input_slots(id).into_iter().map(|(s, _)| s).collect();
        slots.sort();
        if slots.iter().enumerate().any(|(i, s)| i != *s) {
            return Err(err(id, format!("input slots are not 0..n: {slots:?}")));
        }
        match &node.op {
            Op::Param(_) | Op::Input { .. } => {
                if !slots.is_empty() {
                    return Err(err(id, "an input or parameter has inputs".into()));
                }
                if node.op.is_param() == node.ty.has_batch() {
                    return Err(err(
                        id,
                        format!("batch dimension misplaced in `{}`", node.ty),
                    ));
                }
            }
            op => {
                let inputs = g.inputs(id);
                let tys: Vec<_> = inputs.iter().map(|&i| &g.node(i).ty).collect();
                match infer(op, &tys) {
                    Ok(ty) if ty == node.ty => {}
                    Ok(ty) => {
                        return Err(err(
                            id,
                            format!("type is `{}` but inference gives `{ty}`", node.ty),
                        ))
                    }
                    Err(ShapeError::Declared) => {
                        unreachable!("only inputs and parameters are declared")
                    }
                    Err(e) => return Err(err(id, format!("shape inference fails: {e}"))),
                }
                // Layers take data inputs first, then parameters. A gradient node keeps its forward op's
                // slots and appends y and dy, so the rule does not apply to it.
                let is_param = |i: &NodeId| g.node(*i).op.is_param();
                let layer = !matches!(op, Op::Grad { .. });
                if let Some(first) = inputs.iter().position(is_param).filter(|_| layer) {
                    if !inputs[first..].iter().all(is_param) {
                        return Err(err(id, "a data input comes after a parameter".into()));
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashMap::new();
    for id in g
        .node_ids()
        .into_iter()
        .filter(|&id| g.node(id).op.is_param())
    {
        if let Some(first) = seen.insert(g.node(id).path.clone(), id) {
            return Err(err(id, format!("parameter name also used by {first}")));
        }
    }
    for (name, id) in g.inputs.iter().chain(&g.outputs) {
        if !g.contains(*id) {
            return Err(VerifyError {
                node: *id,
                path: name.clone(),
                problem: "model input or output refers to a removed node".into(),
            });
        }
    }
    Ok(())
}
