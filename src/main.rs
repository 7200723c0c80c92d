//! The `nnc` command line: parses arguments, runs the library pipeline, prints reports and diagnostics.
//! Exit codes: 0 success, 1 errors in the model, 2 usage errors (bad arguments, unreadable file).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use nnc::codegen::GemmImpl;
use nnc::{diag, ir, passes, report, Compilation, Options};

mod commands;
mod jit;

#[derive(Parser)]
#[command(
    name = "nnc",
    version,
    about = "A declarative neural-network compiler",
    propagate_version = true
)]
struct Cli {
    /// When to color diagnostics.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    /// Print each pipeline stage's time to standard error.
    #[arg(long, global = true)]
    time_passes: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check a .nn file; silent with exit code 0 when it is fine.
    Check { file: PathBuf },
    /// Print a Keras-style summary: layers, output shapes, parameters, MACs and memory.
    Summary {
        file: PathBuf,
        /// Batch size for shapes, MACs and memory.
        #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        batch: u64,
        /// Print JSON for tools instead of a table (keys in docs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Print the graph IR as text (one line per node) or as Graphviz DOT.
    Dump {
        file: PathBuf,
        /// Stop after this pass: `lower` (as built), a pass name such as `dce` or `fold-bn`, or `fuse`
        /// (after every inference optimization). Default: the passes every command runs (no fusion).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Optimizations to skip when `--after` reaches them (repeatable).
        #[arg(long, value_name = "PASS")]
        disable_pass: Vec<String>,
    },
    /// Write initialized weights (the model's initializers, or PyTorch's defaults) to a safetensors file.
    Init {
        file: PathBuf,
        /// The safetensors file to write.
        #[arg(long, short)]
        output: PathBuf,
        /// Seed of the initializers (default: the train section's `seed`, else 0).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run inference: read inputs from .npy/.npz, print or write the outputs.
    Run {
        file: PathBuf,
        /// Weights (safetensors, by parameter name; PyTorch state_dict files load as they are).
        #[arg(long, short)]
        weights: Option<PathBuf>,
        /// `x.npy` for a one-input model, `NAME=FILE.npy` per input, or an .npz with one array per input.
        #[arg(long, short, required = true)]
        input: Vec<String>,
        /// Write the outputs here (.npy for one output, .npz for several) instead of printing a summary.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// `jit`: native code (f32); `interp`: the reference interpreter (f64, and the only one for
        /// --train-mode).
        #[arg(long, value_enum, default_value_t = Backend::Jit)]
        backend: Backend,
        /// Threads of the JIT (default: the machine's cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
        threads: Option<u64>,
        /// GEMM macro-kernel: `auto` (the widest this CPU runs), `avx512`, `avx2` or `cranelift`.
        #[arg(long, value_enum, default_value_t = GemmChoice::Auto)]
        gemm: GemmChoice,
        /// Initialize parameters the weights file lacks instead of refusing it.
        #[arg(long)]
        allow_missing: bool,
        /// Ignore tensors in the weights file that the model does not have.
        #[arg(long)]
        allow_extra: bool,
        /// Seed for initialization of missing weights and for dropout in --train-mode.
        #[arg(long)]
        seed: Option<u64>,
        /// Run in training mode: batch norm uses batch statistics, dropout drops.
        #[arg(long)]
        train_mode: bool,
        #[command(flatten)]
        optimize: Optimize,
    },
    /// Compile to native code and print a report: stage times, kernels, memory, params and MACs.
    Compile {
        file: PathBuf,
        #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        batch: u64,
        /// Print this instead of the report: the IR, the kernel plan, Cranelift IR or machine code.
        #[arg(long, value_enum)]
        emit: Option<EmitKind>,
        /// Threads the program will run on (default: the machine's cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
        threads: Option<u64>,
        /// GEMM macro-kernel: `auto` (the widest this CPU runs), `avx512`, `avx2` or `cranelift`.
        #[arg(long, value_enum, default_value_t = GemmChoice::Auto)]
        gemm: GemmChoice,
        #[command(flatten)]
        optimize: Optimize,
    },
    /// Benchmark the compiled model: latency (median, min), throughput and a per-kernel profile.
    Bench {
        file: PathBuf,
        #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        batch: u64,
        /// Threads (default: the machine's cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
        threads: Option<u64>,
        /// GEMM macro-kernel: `auto` (the widest this CPU runs), `avx512`, `avx2` or `cranelift`.
        #[arg(long, value_enum, default_value_t = GemmChoice::Auto)]
        gemm: GemmChoice,
        /// Timed runs, after two warm-up runs.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        iters: u64,
        /// Print JSON for tools (keys in docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        optimize: Optimize,
    },
}

/// Graph optimizations before native code (fusion of layers into their producers' epilogues, CSE).
#[derive(clap::Args, Clone)]
struct Optimize {
    /// Compile the layers as written: no fusion or other graph optimization.
    #[arg(long)]
    no_fuse: bool,
    /// Skip one optimization (repeatable): cse, fold-bn, fuse-residual, fuse-activation, merge-siblings
    /// or fuse-elementwise.
    #[arg(long, value_name = "PASS")]
    disable_pass: Vec<String>,
    /// Run 3x3 and 5x5 stride-1 convolutions directly, not as Winograd F(2x2, 3x3), F(4x4, 3x3) or
    /// F(2x2, 5x5) (JIT only; Winograd is the default on CPUs with AVX2 and FMA).
    #[arg(long)]
    no_winograd: bool,
}

impl Optimize {
    fn options(&self, on: bool) -> Options {
        Options {
            optimize: on && !self.no_fuse,
            disabled: self.disable_pass.clone(),
            ..Options::default()
        }
    }
}

/// Checks `--disable-pass` names; prints the error and returns false for an unknown one.
fn known_passes(names: &[String]) -> bool {
    for n in names {
        if !passes::optional_pass_names().contains(&n.as_str()) {
            let known: Vec<String> = passes::OPTIMIZATIONS
                .iter()
                .map(|p| format!("{} ({})", p.name, p.doc))
                .collect();
            eprintln!(
                "error: unknown pass `{n}` for --disable-pass; passes: {}",
                known.join(", ")
            );
            return false;
        }
    }
    true
}

#[derive(Clone, Copy, ValueEnum)]
enum EmitKind {
    Ir,
    Plan,
    Clif,
    Asm,
}

#[derive(Clone, Copy, ValueEnum)]
enum GemmChoice {
    /// AVX-512 when the CPU has it, else AVX2 + FMA when it has both, else Cranelift.
    Auto,
    /// The AVX-512 kernel (an error on a CPU without AVX-512F).
    Avx512,
    /// The AVX2 + FMA kernel (an error on a CPU without them).
    Avx2,
    /// The Cranelift kernel (128-bit vectors, any CPU).
    Cranelift,
}

/// The GEMM implementation `choice` names, or a usage error if this CPU cannot run it.
fn gemm_impl(choice: GemmChoice) -> Result<GemmImpl, String> {
    match choice {
        GemmChoice::Auto => Ok(GemmImpl::detect()),
        GemmChoice::Cranelift => Ok(GemmImpl::Cranelift),
        GemmChoice::Avx2 if GemmImpl::Avx2.available() => Ok(GemmImpl::Avx2),
        GemmChoice::Avx2 => {
            Err("--gemm avx2: this CPU lacks AVX2 or FMA; use --gemm auto or cranelift".into())
        }
        GemmChoice::Avx512 if GemmImpl::Avx512.available() => Ok(GemmImpl::Avx512),
        GemmChoice::Avx512 => {
            Err("--gemm avx512: this CPU lacks AVX-512F; use --gemm auto, avx2 or cranelift".into())
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// Native code compiled by Cranelift (f32).
    Jit,
    /// The reference interpreter (f64, PyTorch semantics).
    Interp,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Dot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Deeply nested models recurse in the evaluator; give it a generous stack.
    let child = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || run(cli));
    match child.map(|h| h.join()) {
        Ok(Ok(code)) => ExitCode::from(code),
        _ => {
            eprintln!("error: internal compiler error (nnc crashed); please report this with the .nn file");
            ExitCode::from(101)
        }
    }
}

fn run(cli: Cli) -> u8 {
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal(),
    };
    let gemm = match &cli.command {
        Command::Run { gemm, .. } | Command::Compile { gemm, .. } | Command::Bench { gemm, .. } => {
            gemm_impl(*gemm)
        }
        _ => Ok(GemmImpl::Cranelift),
    };
    let winograd = match &cli.command {
        Command::Run { optimize, .. }
        | Command::Compile { optimize, .. }
        | Command::Bench { optimize, .. } => !optimize.no_winograd,
        _ => true,
    };
    let gemm = match gemm {
        Ok(g) => g,
        Err(message) => {
            eprintln!("error: {message}");
            return 2;
        }
    };
    let (file, options) = match &cli.command {
        Command::Check { file } => (
            file,
            Options {
                allow_no_model: true,
                ..Options::default()
            },
        ),
        Command::Summary { file, .. } | Command::Init { file, .. } => (file, Options::default()),
        Command::Run {
            file,
            optimize,
            backend,
            train_mode,
            ..
        } => {
            if !known_passes(&optimize.disable_pass) {
                return 2;
            }
            let jit = matches!(backend, Backend::Jit) && !train_mode;
            (file, optimize.options(jit))
        }
        Command::Compile { file, optimize, .. } | Command::Bench { file, optimize, .. } => {
            if !known_passes(&optimize.disable_pass) {
                return 2;
            }
            (file, optimize.options(true))
        }
        Command::Dump {
            file,
            after,
            disable_pass,
            ..
        } => {
            if let Some(a) = after {
                if !passes::pass_names().contains(&a.as_str()) {
                    let names: Vec<String> =
                        std::iter::once("lower (the graph as built)".to_string())
                            .chain(
                                passes::PASSES
                                    .iter()
                                    .chain(passes::OPTIMIZATIONS)
                                    .map(|p| format!("{} ({})", p.name, p.doc)),
                            )
                            .chain(std::iter::once(format!(
                                "{} (after every optimization)",
                                passes::FUSE
                            )))
                            .collect();
                    eprintln!(
                        "error: unknown pass `{a}` for --after; passes: {}",
                        names.join(", ")
                    );
                    return 2;
                }
            }
            if !known_passes(disable_pass) {
                return 2;
            }
            (
                file,
                Options {
                    until: after.clone(),
                    disabled: disable_pass.clone(),
                    ..Options::default()
                },
            )
        }
    };
    let text = match nnc::syntax::read_source(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", file.display());
            return 2;
        }
    };
    let c = nnc::compile_text(file, text, &options);
    eprint!("{}", diag::render(&c.sources, &c.diags, color));
    if cli.time_passes {
        for (stage, time) in &c.timings {
            eprintln!("time: {:>9.3} ms  {stage}", time.as_secs_f64() * 1e3);
        }
    }
    let Some(graph) = c.graph.as_ref() else {
        return exit_code(&c);
    };
    match &cli.command {
        Command::Check { .. } => {}
        Command::Summary { batch, json, .. } => {
            let stats = passes::count(graph, *batch);
            if *json {
                print!("{}", report::summary_json(graph, &stats));
            } else {
                print!("{}", report::summary_table(graph, &stats));
            }
        }
        Command::Dump { format, .. } => match format {
            Format::Text => print!("{}", ir::dump::to_text(graph)),
            Format::Dot => print!("{}", ir::dump::to_dot(graph)),
        },
        Command::Init { output, seed, .. } => {
            return report_command(commands::init(graph, output, *seed))
        }
        Command::Compile {
            batch,
            emit,
            threads,
            ..
        } => {
            let emit = match emit {
                None => jit::Emit::Report,
                Some(EmitKind::Ir) => jit::Emit::Ir,
                Some(EmitKind::Plan) => jit::Emit::Plan,
                Some(EmitKind::Clif) => jit::Emit::Clif,
                Some(EmitKind::Asm) => jit::Emit::Asm,
            };
            let threads = threads.map_or_else(nnc::runtime::default_threads, |t| t as usize);
            return report_command(jit::compile(
                graph,
                &c.timings,
                &c.decisions,
                *batch,
                threads,
                (gemm, winograd),
                emit,
            ));
        }
        Command::Bench {
            batch,
            threads,
            iters,
            json,
            ..
        } => {
            let args = jit::BenchArgs {
                batch: *batch,
                threads: threads.map_or_else(nnc::runtime::default_threads, |t| t as usize),
                iters: *iters as usize,
                json: *json,
                gemm,
                winograd,
            };
            return report_command(jit::bench(graph, &c.timings, &args));
        }
        Command::Run {
            weights,
            input,
            output,
            backend,
            threads,
            allow_missing,
            allow_extra,
            seed,
            train_mode,
            ..
        } => {
            let args = commands::RunArgs {
                weights: weights.clone(),
                inputs: input.clone(),
                output: output.clone(),
                allow_missing: *allow_missing,
                allow_extra: *allow_extra,
                seed: *seed,
                train_mode: *train_mode,
                jit: matches!(backend, Backend::Jit),
                threads: threads.map_or_else(nnc::runtime::default_threads, |t| t as usize),
                gemm,
                winograd,
            };
            return report_command(commands::run(graph, &args));
        }
    }
    exit_code(&c)
}

fn report_command(result: Result<String, commands::Failure>) -> u8 {
    match result {
        Ok(text) => {
            print!("{text}");
            if !text.is_empty() && !text.ends_with('\n') {
                println!();
            }
            0
        }
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

fn exit_code(c: &Compilation) -> u8 {
    if c.has_errors() {
        1
    } else {
        0
    }
}
