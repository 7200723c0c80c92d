//! Every zoo model runs on the reference interpreter with `nnc init` weights (PyTorch's default
//! initialization or the model's own initializers) and gives finite outputs of the declared shapes.

mod common;

use nnc::interp::{self, Mode, RunOptions};
use nnc::tensor::{self, Rng};

/// Runs every other zoo model, starting at `first`: two tests, so the two cores share the work.
fn run_models(first: usize) {
    for path in common::nn_files("models")
        .into_iter()
        .skip(first)
        .step_by(2)
    {
        let g = common::model(&path);
        let weights = tensor::initialize(&g, 1);
        let mut rng = Rng::new(2);
        let inputs = common::random_inputs(&g, 1, &mut rng, 100);
        let out = interp::run(
            &g,
            &weights,
            &inputs,
            RunOptions {
                mode: Mode::Eval,
                seed: 0,
            },
        )
        .expect("runs");
        for ((name, t), (_, id)) in out.outputs.iter().zip(&g.outputs) {
            let want: Vec<usize> = g
                .node(*id)
                .ty
                .shape_at(1)
                .iter()
                .map(|&d| d as usize)
                .collect();
            assert_eq!(
                t.shape(),
                want.as_slice(),
                "{}: output {name}",
                path.display()
            );
            assert!(
                t.to_f64().iter().all(|v| v.is_finite()),
                "{}: output {name} is not finite",
                path.display()
            );
        }
    }
}

#[test]
fn zoo_models_run_with_initialized_weights_even() {
    run_models(0);
}

#[test]
fn zoo_models_run_with_initialized_weights_odd() {
    run_models(1);
}
