//! nnc: a declarative neural-network compiler.
//!
//! The pipeline, one room per stage: text -> [`syntax`] (AST with spans) -> [`lower`] (typed graph IR,
//! shapes inferred as nodes are added) -> [`passes`] (verified after each) -> reports. [`compile`] runs it.

// Diagnostics are large and only on the error path; boxing them would cost clarity for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod autodiff;
pub mod codegen;
pub mod diag;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod passes;
pub mod plan;
pub mod report;
pub mod runtime;
pub mod syntax;
pub mod tensor;

use std::path::Path;
use std::time::Duration;

use diag::{Code, Diagnostic, SourceMap};

/// What to run and where to stop.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Stop after this pass (a name from [`passes::pass_names`]).
    pub until: Option<String>,
    /// Accept a file without a model (a block library); it yields no graph.
    pub allow_no_model: bool,
    /// Run the inference optimizations ([`passes::OPTIMIZATIONS`]): for a backend that executes the graph.
    pub optimize: bool,
    /// Optimizations not to run (`--disable-pass`).
    pub disabled: Vec<String>,
}

/// The result of compiling one file: its sources (for rendering), every diagnostic, and the graph if
/// there was no error.
pub struct Compilation {
    pub sources: SourceMap,
    pub diags: Vec<Diagnostic>,
    pub graph: Option<ir::Graph>,
    /// Each stage's name and time, in order.
    pub timings: Vec<(String, Duration)>,
    /// The rewrites the passes made (fusion decisions), in order.
    pub decisions: Vec<passes::Decision>,
}

impl Compilation {
    /// A compilation that stopped before producing a graph.
    fn failed(
        sources: SourceMap,
        diags: Vec<Diagnostic>,
        timings: Vec<(String, Duration)>,
    ) -> Compilation {
        Compilation {
            sources,
            diags,
            graph: None,
            timings,
            decisions: Vec::new(),
        }
    }

    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }
}

/// Reads, parses, lowers and runs the passes on the model in `path`. I/O failure of the root file is
/// reported as a diagnostic without a span.
pub fn compile(path: &Path, options: &Options) -> Compilation {
    let mut sources = SourceMap::new();
    let mut diags = Vec::new();
    let start = std::time::Instant::now();
    match syntax::load(path, &mut sources, &mut diags) {
        Some(program) => finish(program, sources, diags, options, start),
        None => {
            let d =
                Diagnostic::global(Code::BadImport, format!("cannot read `{}`", path.display()));
            Compilation::failed(sources, vec![d], Vec::new())
        }
    }
}

/// As [`compile`], for source text that claims to live at `path` (imports resolve relative to it).
pub fn compile_text(path: &Path, text: String, options: &Options) -> Compilation {
    let mut sources = SourceMap::new();
    let mut diags = Vec::new();
    let start = std::time::Instant::now();
    let program = syntax::load_text(path, text, &mut sources, &mut diags);
    finish(program, sources, diags, options, start)
}

fn finish(
    program: syntax::Program,
    sources: SourceMap,
    mut diags: Vec<Diagnostic>,
    options: &Options,
    start: std::time::Instant,
) -> Compilation {
    let mut timings = vec![("parse".to_string(), start.elapsed())];
    if diags.iter().any(Diagnostic::is_error) {
        return Compilation::failed(sources, diags, timings);
    }
    let t = std::time::Instant::now();
    let (graph, mut lower_diags) = lower::lower(&program, !options.allow_no_model);
    timings.push(("lower".to_string(), t.elapsed()));
    diags.append(&mut lower_diags);
    let Some(mut graph) = graph else {
        return Compilation::failed(sources, diags, timings);
    };
    let pipeline = passes::Pipeline {
        until: options.until.as_deref(),
        optimize: options.optimize,
        disabled: &options.disabled,
    };
    let result = passes::run(&mut graph, &pipeline, |name, d| {
        timings.push((name.to_string(), d))
    });
    let decisions = match result {
        Ok(d) => d,
        Err(e) => {
            diags.push(
                Diagnostic::global(Code::InternalBug, format!("the IR verifier failed: {e}"))
                    .with_note(
                    "this is a bug in nnc, not in your model; please report it with the .nn file",
                ),
            );
            return Compilation::failed(sources, diags, timings);
        }
    };
    Compilation {
        sources,
        diags,
        graph: Some(graph),
        timings,
        decisions,
    }
}
