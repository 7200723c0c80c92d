//! The commands that run models: `nnc init` (initial weights) and `nnc run` (inference on the reference
//! interpreter). Argument parsing lives in main.rs; this file turns arguments into library calls and
//! prints results.

use std::path::{Path, PathBuf};

use nnc::interp::{self, Mode, RunOptions};

/// What a run produced.
struct Outcome {
    outputs: Vec<(String, Tensor)>,
}
use nnc::ir::Graph;
use nnc::tensor::{self, FileError, LoadOptions, Tensor};

/// A failed command: what to print and the exit code (1: the data does not fit the model, 2: usage).
pub struct Failure {
    pub message: String,
    pub code: u8,
}

fn file_failure(e: FileError) -> Failure {
    let code = if matches!(e, FileError::Read { .. }) {
        2
    } else {
        1
    };
    Failure {
        message: e.to_string(),
        code,
    }
}

fn seed_of(g: &Graph, seed: Option<u64>) -> u64 {
    seed.or(g.train.as_ref().map(|t| t.seed)).unwrap_or(0)
}

/// Bytes of memory available to this process (Linux `MemAvailable`), if known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses work whose estimated memory exceeds what the machine has, instead of aborting mid-way.
fn check_memory(needed: u64, what: &str) -> Result<(), Failure> {
    match available_memory() {
        Some(available) if needed > available => Err(Failure {
            message: format!(
                "{what} needs about {:.1} GiB of memory; {:.1} GiB is available",
                needed as f64 / (1u64 << 30) as f64,
                available as f64 / (1u64 << 30) as f64
            ),
            code: 1,
        }),
        _ => Ok(()),
    }
}

pub fn init(g: &Graph, output: &Path, seed: Option<u64>) -> Result<String, Failure> {
    // f64 values while initializing, then an f32 copy to serialize.
    let weight_bytes = nnc::passes::count(g, 1).weight_bytes;
    check_memory(weight_bytes.saturating_mul(3), "initializing this model")?;
    let weights = tensor::initialize(g, seed_of(g, seed));
    tensor::write_weights(output, &weights).map_err(file_failure)?;
    let count: usize = weights.values().map(|a| a.len()).sum();
    Ok(format!(
        "wrote {} tensors ({count} values) to {}",
        weights.len(),
        output.display()
    ))
}

pub struct RunArgs {
    pub weights: Option<PathBuf>,
    pub inputs: Vec<String>,
    pub output: Option<PathBuf>,
    pub allow_missing: bool,
    pub allow_extra: bool,
    pub seed: Option<u64>,
    pub train_mode: bool,
    /// Run on the JIT (inference mode only) rather than the interpreter.
    pub jit: bool,
    pub threads: usize,
    pub gemm: nnc::codegen::GemmImpl,
    /// 3x3 stride-1 convolutions may run as Winograd F(2x2, 3x3) or F(4x4, 3x3) (`--no-winograd`
    /// clears it).
    pub winograd: bool,
}

pub fn run(g: &Graph, args: &RunArgs) -> Result<String, Failure> {
    let seed = seed_of(g, args.seed);
    let mut notes = String::new();
    let inputs = read_inputs(g, &args.inputs)?;
    // The interpreter holds every value in f64 and frees values after their last use, much as the memory
    // plan reuses its arena: about twice the plan's f32 weights and arena.
    let batch = inputs
        .first()
        .and_then(|(_, t)| t.shape().first().copied())
        .unwrap_or(1) as u64;
    let plan = nnc::plan::build(g, batch);
    let outside_arena: u64 = plan
        .buffers
        .iter()
        .filter(|b| b.live.is_none())
        .map(|b| b.bytes)
        .fold(0, u64::saturating_add);
    check_memory(
        outside_arena
            .saturating_add(plan.arena_bytes)
            .saturating_mul(2),
        "running this model",
    )?;
    let source = weight_source(g, args, seed, &mut notes)?;
    let mode = if args.train_mode {
        Mode::Train
    } else {
        Mode::Eval
    };
    let user = |e: nnc::interp::RunError| Failure {
        message: e.to_string(),
        code: 1,
    };
    let outputs = if args.jit && !args.train_mode {
        // Compiled code reads the weights file tensor by tensor while packing; it is never held whole.
        let params: &dyn tensor::Params = match &source {
            WeightSource::File(f) => f,
            WeightSource::Initialized(w) => w,
        };
        let mut compiled = nnc::runtime::Compiled::new(g, params, args.threads)
            .with_gemm(args.gemm)
            .with_winograd(args.winograd);
        compiled.run(&inputs).map_err(|e| Failure {
            message: e.to_string(),
            code: 1,
        })?
    } else {
        if args.jit {
            notes.push_str("note: --train-mode runs on the reference interpreter\n");
        }
        let weights = match source {
            WeightSource::File(f) => f.to_weights().map_err(file_failure)?,
            WeightSource::Initialized(w) => w,
        };
        interp::run(g, &weights, &inputs, RunOptions { mode, seed })
            .map_err(user)?
            .outputs
    };
    let outcome = Outcome { outputs };
    match &args.output {
        Some(path) => {
            tensor::write_arrays(path, &outcome.outputs).map_err(file_failure)?;
            notes.push_str(&format!(
                "wrote {} output(s) to {}\n",
                outcome.outputs.len(),
                path.display()
            ));
            Ok(notes)
        }
        None => Ok(notes + &describe(&outcome.outputs)),
    }
}

/// Where a run's parameters come from.
enum WeightSource {
    /// `--weights`, opened and checked (parameters it lacks filled in when allowed).
    File(tensor::WeightFile),
    /// No file: every parameter initialized.
    Initialized(tensor::Weights),
}

/// Opens `--weights` (initializing the parameters it lacks under `--allow-missing`, with a note), or
/// initializes every parameter (with a note).
fn weight_source(
    g: &Graph,
    args: &RunArgs,
    seed: u64,
    notes: &mut String,
) -> Result<WeightSource, Failure> {
    let Some(path) = &args.weights else {
        notes.push_str(&format!(
            "note: no --weights given: using freshly initialized weights (seed {seed})\n"
        ));
        return Ok(WeightSource::Initialized(tensor::initialize(g, seed)));
    };
    let options = LoadOptions {
        allow_missing: args.allow_missing,
        allow_extra: args.allow_extra,
    };
    let (mut file, missing) = tensor::WeightFile::open(path, g, options).map_err(file_failure)?;
    if !missing.is_empty() {
        file.fill(tensor::initialize_some(g, seed, |name| {
            missing.iter().any(|m| m == name)
        }));
        notes.push_str(&format!(
            "note: initialized {} parameters missing from {}\n",
            missing.len(),
            path.display()
        ));
    }
    Ok(WeightSource::File(file))
}

/// Inputs from `--input` values: `file.npy` for a one-input model, `name=file.npy`, or `file.npz` with one
/// member per input name.
fn read_inputs(g: &Graph, specs: &[String]) -> Result<Vec<(String, Tensor)>, Failure> {
    let usage = |message: String| Failure { message, code: 2 };
    let mut inputs = Vec::new();
    for spec in specs {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) => (Some(n.to_string()), p),
            None => (None, spec.as_str()),
        };
        for (member, t) in tensor::read_arrays(Path::new(path)).map_err(file_failure)? {
            let name = match (name.clone(), member) {
                (Some(n), _) => n,
                (None, Some(m)) => m,
                (None, None) if g.inputs.len() == 1 => g.inputs[0].0.clone(),
                (None, None) => {
                    let names: Vec<&str> = g.inputs.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(usage(format!("the model has inputs {names:?}: name them, `--input NAME=FILE.npy`, or pass an .npz")));
                }
            };
            inputs.push((name, t));
        }
    }
    if inputs.is_empty() {
        return Err(usage(
            "no input given: pass `--input x.npy` (or an .npz with one array per model input)"
                .into(),
        ));
    }
    Ok(inputs)
}

/// A short description of outputs: shape, and for `[N, C]` outputs each row's top classes.
fn describe(outputs: &[(String, Tensor)]) -> String {
    let mut out = String::new();
    for (name, t) in outputs {
        out.push_str(&format!("{name}: {} {:?}\n", t.kind(), t.shape()));
        let Tensor::F(a) = t else { continue };
        if a.ndim() == 2 && a.shape()[1] > 1 {
            for (row, values) in a.outer_iter().enumerate().take(8) {
                let mut idx: Vec<usize> = (0..values.len()).collect();
                idx.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
                let top: Vec<String> = idx
                    .iter()
                    .take(5)
                    .map(|&i| format!("{i}: {:.6}", values[i]))
                    .collect();
                out.push_str(&format!(
                    "  row {row}: argmax {}  top: {}\n",
                    idx[0],
                    top.join(", ")
                ));
            }
            if a.shape()[0] > 8 {
                out.push_str(&format!("  ... {} more rows\n", a.shape()[0] - 8));
            }
        } else {
            let shown: Vec<String> = a.iter().take(10).map(|v| format!("{v:.6}")).collect();
            let more = if a.len() > 10 { ", ..." } else { "" };
            out.push_str(&format!("  [{}{more}]\n", shown.join(", ")));
        }
    }
    out
}
