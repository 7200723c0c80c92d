//! The verifier catches broken IR invariants and names the bad node; the pipeline reports them as internal
//! errors (E9001), never as user errors.

mod common;

use std::path::Path;

use nnc::ir::{Dim, Op};
use nnc::passes::verify;

#[test]
fn a_wrong_type_is_caught_and_named() {
    let mut g = common::model(Path::new("models/lenet5.nn"));
    assert_eq!(verify(&g), Ok(()));
    let conv = g
        .node_ids()
        .into_iter()
        .find(|&id| matches!(g.node(id).op, Op::Conv2d { .. }))
        .expect("a conv");
    g.node_mut(conv).ty.dims[1] = Dim::Fixed(7);
    let err = verify(&g).expect_err("the type no longer matches inference");
    assert_eq!(
        (err.node, err.path.as_str()),
        (conv, g.node(conv).path.as_str())
    );
    assert!(
        err.problem.contains("f32[N, 7, 24, 24]") && err.problem.contains("f32[N, 6, 24, 24]"),
        "{}",
        err.problem
    );
}

#[test]
fn a_parameter_with_a_batch_dimension_is_caught() {
    let mut g = common::model(Path::new("models/mlp_iris.nn"));
    let p = g
        .node_ids()
        .into_iter()
        .find(|&id| g.node(id).op.is_param())
        .expect("a parameter");
    g.node_mut(p).ty.dims.insert(0, Dim::Batch);
    assert!(verify(&g)
        .expect_err("batch on a parameter")
        .problem
        .contains("batch dimension misplaced"));
}
