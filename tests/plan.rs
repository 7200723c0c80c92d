//! Kernel plans: the memory plan's invariants on every zoo model (no two live buffers overlap, every view
//! fits its buffer, reads only of live buffers), and an executor that runs plans through one flat arena with
//! the interpreter's kernels, whose outputs must equal the interpreter's bit for bit (a clobbered buffer
//! would show).

mod common;

use std::collections::HashMap;

use ndarray::{ArrayD, Dimension, IxDyn};
use nnc::interp::{self, Mode, RunOptions};
use nnc::ir::Graph;
use nnc::plan::{self, KernelPlan, Storage, View};
use nnc::tensor::{self, Rng, Tensor};

fn max_index(v: &View) -> u64 {
    v.offset
        + v.dims
            .iter()
            .zip(&v.strides)
            .map(|(d, s)| d.saturating_sub(1) * s)
            .sum::<u64>()
}

fn check_invariants(p: &KernelPlan, name: &str) {
    let arena: Vec<(u64, u64, (usize, usize))> = p
        .buffers
        .iter()
        .filter_map(|b| match (&b.storage, b.live) {
            (Storage::Arena { offset }, Some(live)) => Some((*offset, *offset + b.bytes, live)),
            _ => None,
        })
        .collect();
    for (i, a) in arena.iter().enumerate() {
        assert!(a.1 <= p.arena_bytes, "{name}: buffer past the arena end");
        assert_eq!(a.0 % 64, 0, "{name}: unaligned buffer");
        for b in &arena[i + 1..] {
            let live_together = a.2 .0 <= b.2 .1 && b.2 .0 <= a.2 .1;
            let overlap = a.0 < b.1 && b.0 < a.1;
            assert!(
                !(live_together && overlap),
                "{name}: buffers {a:?} and {b:?} overlap while both live"
            );
        }
    }
    for (i, s) in p.steps.iter().enumerate() {
        for v in s.inputs.iter().chain(std::iter::once(&s.output)) {
            let b = &p.buffers[v.buffer];
            assert!(
                max_index(v) < b.bytes / 4,
                "{name}: step {i} view {v:?} outside its buffer of {} bytes",
                b.bytes
            );
            if let Some((first, last)) = b.live {
                assert!(
                    first <= i && i <= last,
                    "{name}: step {i} uses buffer {} outside its lifetime {first}..{last}",
                    v.buffer
                );
            }
        }
    }
    assert!(
        p.arena_bytes <= p.naive_bytes,
        "{name}: arena {} > naive {}",
        p.arena_bytes,
        p.naive_bytes
    );
}

#[test]
fn plans_of_every_zoo_model_keep_their_invariants() {
    for path in common::nn_files("models") {
        let g = common::model(&path);
        for batch in [1, 3] {
            check_invariants(
                &plan::build(&g, batch),
                &format!("{} batch {batch}", path.display()),
            );
        }
    }
}

/// Memory of a plan run: the arena and the buffers outside it, as f64 elements.
struct Memory {
    arena: Vec<f64>,
    other: HashMap<usize, Vec<f64>>,
}

impl Memory {
    fn slot(&mut self, p: &KernelPlan, buffer: usize) -> (&mut Vec<f64>, usize) {
        match p.buffers[buffer].storage {
            Storage::Arena { offset } => (&mut self.arena, (offset / 4) as usize),
            _ => {
                let len = (p.buffers[buffer].bytes / 4) as usize;
                (
                    self.other
                        .entry(buffer)
                        .or_insert_with(|| vec![f64::NAN; len]),
                    0,
                )
            }
        }
    }

    fn read(&mut self, p: &KernelPlan, v: &View) -> ArrayD<f64> {
        let (mem, base) = self.slot(p, v.buffer);
        let dims: Vec<usize> = v.dims.iter().map(|&d| d as usize).collect();
        ArrayD::from_shape_fn(IxDyn(&dims), |ix| {
            let at: u64 = v.offset
                + ix.slice()
                    .iter()
                    .zip(&v.strides)
                    .map(|(&i, &s)| i as u64 * s)
                    .sum::<u64>();
            mem[base + at as usize]
        })
    }

    fn write(&mut self, p: &KernelPlan, v: &View, a: &ArrayD<f64>) {
        let (mem, base) = self.slot(p, v.buffer);
        for (ix, &x) in a.indexed_iter() {
            let at: u64 = v.offset
                + ix.slice()
                    .iter()
                    .zip(&v.strides)
                    .map(|(&i, &s)| i as u64 * s)
                    .sum::<u64>();
            mem[base + at as usize] = x;
        }
    }
}

/// Runs a plan: each step reads its input views from memory, computes with the interpreter's kernel and
/// writes its output view. Integer inputs are passed through unchanged.
fn execute(
    g: &Graph,
    p: &KernelPlan,
    weights: &tensor::Weights,
    inputs: &[(String, Tensor)],
) -> Vec<(String, ArrayD<f64>)> {
    // Stale data in a reused buffer must not matter: start the arena full of NaN.
    let mut m = Memory {
        arena: vec![f64::NAN; (p.arena_bytes / 4) as usize],
        other: HashMap::new(),
    };
    let mut ints: HashMap<usize, Tensor> = HashMap::new();
    for (name, v) in &p.inputs {
        match &inputs.iter().find(|(n, _)| n == name).expect("input").1 {
            Tensor::F(a) => m.write(p, v, a),
            t @ Tensor::I(_) => {
                ints.insert(v.buffer, t.clone());
            }
        }
    }
    for (i, b) in p.buffers.iter().enumerate() {
        if let Storage::Weight { name } = &b.storage {
            m.write(
                p,
                &View::dense(
                    i,
                    0,
                    weights[name].shape().iter().map(|&d| d as u64).collect(),
                ),
                &weights[name],
            );
        }
    }
    let batch = p.batch as usize;
    for s in &p.steps {
        let args: Vec<Tensor> = s
            .inputs
            .iter()
            .map(|v| {
                ints.get(&v.buffer)
                    .cloned()
                    .unwrap_or_else(|| Tensor::F(m.read(p, v)))
            })
            .collect();
        let refs: Vec<&Tensor> = args.iter().collect();
        let out = interp::eval_node(
            g,
            s.node,
            &refs,
            RunOptions {
                mode: Mode::Eval,
                seed: 0,
            },
            batch,
        )
        .expect("step runs");
        m.write(p, &s.output, &out.to_f64());
    }
    p.outputs
        .iter()
        .map(|(n, v)| (n.clone(), m.read(p, v)))
        .collect()
}

#[test]
fn executing_a_plan_gives_the_interpreters_outputs() {
    // GoogLeNet and Inception v3 (nested concats) at batch 2, where concat slices are strided.
    for (name, batches) in [
        ("lenet5", &[1usize, 2][..]),
        ("googlenet", &[2]),
        ("inception_v3", &[2]),
        ("text_classifier", &[3]),
        ("mlp_iris", &[1]),
    ] {
        let path = std::path::PathBuf::from(format!("models/{name}.nn"));
        let g = common::model(&path);
        let weights = tensor::initialize(&g, 4);
        for &batch in batches {
            let mut rng = Rng::new(batch as u64);
            let inputs = common::random_inputs(&g, batch, &mut rng, 50);
            let p = plan::build(&g, batch as u64);
            let want = interp::run(
                &g,
                &weights,
                &inputs,
                RunOptions {
                    mode: Mode::Eval,
                    seed: 0,
                },
            )
            .expect("runs")
            .outputs;
            let got = execute(&g, &p, &weights, &inputs);
            for ((n, a), (_, b)) in got.iter().zip(&want) {
                assert_eq!(
                    a,
                    &b.to_f64(),
                    "{name} batch {batch}: output {n} differs when run through the plan's memory"
                );
            }
        }
    }
}

#[test]
fn concats_write_in_place_and_reshapes_are_views() {
    let g = common::model(std::path::Path::new("models/googlenet.nn"));
    let p = plan::build(&g, 2);
    let concats: Vec<_> = p
        .steps
        .iter()
        .filter(|s| matches!(s.op, nnc::ir::Op::Concat { .. }))
        .collect();
    assert_eq!(concats.len(), 9);
    for c in concats {
        // Every branch output already lives in its slice of the concat's buffer.
        assert!(
            c.inputs.iter().all(|v| v.buffer == c.output.buffer),
            "{}: {:?}",
            c.path,
            c.inputs
        );
    }
    assert!(
        p.steps
            .iter()
            .all(|s| !matches!(s.op, nnc::ir::Op::Flatten)),
        "flatten is a view"
    );
    assert!(p.steps.iter().any(|s| s.in_place), "ReLUs run in place");
}
