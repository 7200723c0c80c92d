//! Checks shared by the JIT tests (`jit.rs`, `winograd.rs`): a model against the reference interpreter,
//! and the same bits from every GEMM implementation on one and two threads.

#![allow(dead_code)]

use std::path::Path;

use nnc::codegen::GemmImpl;
use nnc::interp::{self, Mode, RunOptions};
use nnc::ir::{Graph, Op, ParamRole};
use nnc::runtime::Program;
use nnc::tensor::{self, Rng, Tensor, Weights};

use super::common;

/// `max |a - b| / max |b|` over an output.
pub fn relative_error(got: &Tensor, want: &Tensor) -> f64 {
    let (g, w) = (got.to_f64(), want.to_f64());
    assert_eq!(g.shape(), w.shape());
    let scale = w.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    g.iter()
        .zip(w.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale
}

/// Batch-norm parameters and statistics drawn at random: initialization leaves them at 1 and 0, which
/// would hide a wrong fold of batch norm into a convolution.
pub fn randomize_bn(g: &Graph, w: &mut Weights, rng: &mut Rng) {
    for id in g.node_ids() {
        let node = g.node(id);
        let Op::Param(p) = &node.op else { continue };
        let (lo, hi) = match p.role {
            ParamRole::Gamma | ParamRole::RunningVar => (0.5, 2.0),
            ParamRole::Beta | ParamRole::RunningMean => (-0.5, 0.5),
            _ => continue,
        };
        if let Some(a) = w.get_mut(&node.path) {
            a.mapv_inplace(|_| rng.uniform_in(lo, hi));
        }
    }
}

/// The compilation of the model at `path` with the inference optimizations (fusion) applied.
pub fn optimized(path: &Path) -> nnc::Compilation {
    let options = nnc::Options {
        optimize: true,
        ..nnc::Options::default()
    };
    nnc::compile(path, &options)
}

/// The model at `path` with the inference optimizations (fusion) applied.
pub fn fused_model(path: &Path) -> Graph {
    let c = optimized(path);
    assert!(c.diags.is_empty(), "{}", common::rendered(&c));
    c.graph.expect("a graph")
}

/// Runs `path` at `batch` on the interpreter as written, and checks against it: the interpreter on the
/// fused graph (within 1e-9: the same math in another order; models under 2 GMACs), the JIT on the graph as
/// written and on the fused graph (within 1e-4). Returns the fused JIT's outputs.
pub fn agree(path: &Path, batch: usize, threads: usize) -> Vec<(String, Tensor)> {
    let g = common::model(path);
    let fused = fused_model(path);
    let mut weights = tensor::initialize(&g, 1);
    let mut rng = Rng::new(7);
    randomize_bn(&g, &mut weights, &mut rng);
    let inputs = common::random_inputs(&g, batch, &mut rng, 100);
    let eval = RunOptions {
        mode: Mode::Eval,
        seed: 0,
    };
    let want = interp::run(&g, &weights, &inputs, eval).expect("the interpreter runs");
    let check = |got: &[(String, Tensor)], what: &str, tolerance: f64| {
        for ((name, a), (_, b)) in got.iter().zip(&want.outputs) {
            let err = relative_error(a, b);
            assert!(
                err <= tolerance,
                "{} batch {batch}, {what}: output {name} differs from the interpreter by {err:e}",
                path.display()
            );
        }
    };
    // The interpreter is slow on the largest models; ResNet-18, GoogLeNet and the smaller ones cover every
    // fusion rule on the interpreter, and the JIT check below covers every model.
    if nnc::passes::count(&g, batch as u64).macs < 2_000_000_000 {
        let refused = interp::run(&fused, &weights, &inputs, eval).expect("the interpreter runs");
        check(&refused.outputs, "interpreter on the fused graph", 1e-9);
    }
    let mut got = Vec::new();
    for (graph, what) in [(&g, "JIT as written"), (&fused, "JIT fused")] {
        let plan = nnc::plan::build(graph, batch as u64);
        let mut program = Program::compile(graph, &plan, &weights, threads).expect("compiles");
        got = program.run(&inputs).expect("runs");
        check(&got, what, 1e-4);
    }
    got
}

thread_local! {
    /// This test's files: a directory per test thread, removed when the test ends.
    static DIR: tempfile::TempDir = tempfile::Builder::new().prefix("nnc-jit-").tempdir().expect("temp dir");
}

pub fn write_model(name: &str, text: &str) -> std::path::PathBuf {
    let path = DIR.with(|d| d.path().join(name));
    std::fs::write(&path, text).expect("writable");
    path
}

/// Runs `g` with every GEMM implementation this CPU runs (each with its packing and pooling kernels), on
/// one and two threads, and checks the outputs have the bits of the Cranelift kernels on one thread.
pub fn same_bits_everywhere(g: &Graph, batch: usize, model: &str) {
    let runs: Vec<(GemmImpl, usize)> = [GemmImpl::Cranelift, GemmImpl::Avx2, GemmImpl::Avx512]
        .into_iter()
        .filter(|g| g.available())
        .flat_map(|g| [(g, 1), (g, 2)])
        .collect();
    let weights = tensor::initialize(g, 3);
    let inputs = common::random_inputs(g, batch, &mut Rng::new(5), 50);
    let plan = nnc::plan::build(g, batch as u64);
    let run = |(gemm, threads): (GemmImpl, usize)| {
        let mut p = Program::compile_with(g, &plan, &weights, threads, gemm).expect("compiles");
        p.run(&inputs).expect("runs")
    };
    let bits = |t: &Tensor| t.to_f64().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let want = run(runs[0]);
    for &at in &runs[1..] {
        for ((name, a), (_, b)) in want.iter().zip(&run(at)) {
            assert!(
                bits(a) == bits(b),
                "{model}: output {name} differs between {:?} and {at:?}",
                runs[0]
            );
        }
    }
}
