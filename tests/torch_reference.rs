//! Agreement with PyTorch: the interpreter's outputs (and in train mode its updated batch-norm statistics)
//! against float64 references computed by PyTorch from the same float32 weights and inputs
//! (tests/fixtures/torch, written by tools/torch_fixtures.py). Forward within 1e-5 relative; gradients of
//! `sum(output * dout)` through the autodiff graph within 1e-4.

mod common;

use std::path::Path;

use nnc::interp::{self, Mode, RunOptions};
use nnc::tensor::{self, LoadOptions, Tensor};

pub struct Case {
    pub name: String,
    pub mode: Mode,
}

pub fn cases() -> Vec<Case> {
    std::fs::read_to_string("tests/fixtures/torch/cases.txt")
        .expect("cases.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, mode) = l.split_once(' ').expect("`<case> <mode>`");
            Case {
                name: name.to_string(),
                mode: if mode == "train" {
                    Mode::Train
                } else {
                    Mode::Eval
                },
            }
        })
        .collect()
}

/// The io entries with a given prefix, prefix stripped.
pub fn entries(io: &[(String, Tensor)], prefix: &str) -> Vec<(String, Tensor)> {
    io.iter()
        .filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
        .collect()
}

fn max_abs(t: &Tensor) -> f64 {
    t.to_f64().iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Largest `|a - b| / (|b| + floor)` over elements, with `floor` a millionth of b's largest magnitude so
/// that elements near zero are judged against the tensor's scale.
pub fn max_rel_error(a: &Tensor, b: &Tensor) -> f64 {
    max_rel_error_at(a, b, max_abs(b))
}

/// As `max_rel_error`, with the scale given: a gradient that is zero in exact arithmetic (a bias before
/// batch norm) holds only rounding noise, which is judged against the scale of the case's gradients.
pub fn max_rel_error_at(a: &Tensor, b: &Tensor, scale: f64) -> f64 {
    let (a, b) = (a.to_f64(), b.to_f64());
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let floor = scale * 1e-6 + f64::MIN_POSITIVE;
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs() / (y.abs() + floor))
        .fold(0.0, f64::max)
}

/// A case's model, weights and io tensors.
fn load(case: &Case) -> (nnc::ir::Graph, tensor::Weights, Vec<(String, Tensor)>) {
    let dir = Path::new("tests/fixtures/torch");
    let g = common::model(&dir.join(format!("{}.nn", case.name)));
    let weights_file = dir.join(format!("{}.weights.safetensors", case.name));
    let (weights, _) =
        tensor::read_weights(&weights_file, &g, LoadOptions::default()).expect("weights fit");
    let io =
        tensor::read_tensors(&dir.join(format!("{}.io.safetensors", case.name))).expect("io file");
    (g, weights, io)
}

#[test]
fn forward_matches_pytorch() {
    let mut report = Vec::new();
    for case in cases() {
        let (g, weights, io) = load(&case);
        let inputs = entries(&io, "input.");
        let outcome = interp::run(
            &g,
            &weights,
            &inputs,
            RunOptions {
                mode: case.mode,
                seed: 0,
            },
        )
        .expect("runs");
        for (name, want) in entries(&io, "output.") {
            let got = &outcome
                .outputs
                .iter()
                .find(|(n, _)| *n == name)
                .expect("output exists")
                .1;
            let err = max_rel_error(got, &want);
            report.push((format!("{} output {name}", case.name), err));
        }
        for (name, want) in entries(&io, "running_after.") {
            let got = Tensor::F(
                outcome
                    .updated
                    .get(&name)
                    .unwrap_or_else(|| panic!("{} did not update {name}", case.name))
                    .clone(),
            );
            report.push((
                format!("{} running {name}", case.name),
                max_rel_error(&got, &want),
            ));
        }
    }
    let bad: Vec<String> = report
        .iter()
        .filter(|(_, e)| *e > 1e-5)
        .map(|(n, e)| format!("{n}: {e:.3e}"))
        .collect();
    assert!(!report.is_empty());
    assert!(
        bad.is_empty(),
        "off PyTorch by more than 1e-5 relative:\n{}",
        bad.join("\n")
    );
}

#[test]
fn gradients_match_pytorch() {
    use nnc::autodiff::{backward, Objective};
    let mut report = Vec::new();
    for case in cases() {
        let (g, weights, io) = load(&case);
        let training = backward(&g, &Objective::Upstream).expect("differentiable");
        nnc::passes::verify(&training).expect("the backward graph verifies");
        let mut inputs = entries(&io, "input.");
        inputs.extend(
            entries(&io, "dout.")
                .into_iter()
                .map(|(n, t)| (format!("d.{n}"), t)),
        );
        let outcome = interp::run(
            &training,
            &weights,
            &inputs,
            RunOptions {
                mode: case.mode,
                seed: 0,
            },
        )
        .expect("runs");
        let mut wanted: Vec<(String, Tensor)> = entries(&io, "grad.");
        wanted.extend(entries(&io, "grad_input."));
        assert!(!wanted.is_empty(), "{} has reference gradients", case.name);
        let case_scale = wanted.iter().map(|(_, t)| max_abs(t)).fold(0.0, f64::max);
        for (name, want) in wanted {
            let got = outcome
                .outputs
                .iter()
                .find(|(n, _)| *n == format!("grad.{name}"))
                .unwrap_or_else(|| panic!("{}: no gradient for {name}", case.name));
            let scale = max_abs(&want).max(1e-3 * case_scale);
            report.push((
                format!("{} grad {name}", case.name),
                max_rel_error_at(&got.1, &want, scale),
            ));
        }
    }
    let bad: Vec<String> = report
        .iter()
        .filter(|(_, e)| *e > 1e-4)
        .map(|(n, e)| format!("{n}: {e:.3e}"))
        .collect();
    assert!(
        bad.is_empty(),
        "gradients off PyTorch by more than 1e-4 relative:\n{}",
        bad.join("\n")
    );
}
