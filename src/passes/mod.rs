//! Passes over the graph IR. Two tables of named passes drive the pipeline, `nnc dump --after`,
//! `--disable-pass` and `--time-passes`; the verifier runs after each pass.
//!
//! [`PASSES`] always run. [`OPTIMIZATIONS`] (common subexpressions and the fusion rules) run for a backend
//! that executes the graph for inference, or when `--after` names one of them (or `fuse`, all of them):
//! the summary, the interpreter and training see the layers as written.

mod count;
mod cse;
mod dce;
mod fold_bn;
mod fuse_activation;
mod fuse_elementwise;
mod fuse_residual;
mod merge_siblings;
mod rewrite;
mod verify;

pub use count::{count, LayerStats, Stats};
pub use dce::dce;
pub use verify::{verify, VerifyError};

use crate::ir::Graph;

/// One rewrite a pass made: the rule, the layers involved (by path) and what they became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub rule: &'static str,
    pub nodes: Vec<String>,
    pub result: String,
}

/// A transformation pass: its name (as given to `--after` and `--disable-pass`) and what it runs.
pub struct Pass {
    pub name: &'static str,
    pub doc: &'static str,
    pub run: fn(&mut Graph) -> Vec<Decision>,
}

/// The passes after lowering, in pipeline order. `lower` names the graph as the lowering built it.
pub const PASSES: &[Pass] = &[Pass {
    name: "dce",
    doc: "remove layers whose values reach no output",
    run: |g| {
        dce(g);
        Vec::new()
    },
}];

/// Inference optimizations, in pipeline order, after [`PASSES`].
pub const OPTIMIZATIONS: &[Pass] = &[
    Pass {
        name: "cse",
        doc: "compute identical layers on identical inputs once",
        run: cse::cse,
    },
    Pass {
        name: "fold-bn",
        doc: "fold batch norm and scale into the convolution or dense layer before them",
        run: fold_bn::fold_bn,
    },
    Pass {
        name: "fuse-residual",
        doc: "add a residual in the epilogue of the product that feeds the add",
        run: fuse_residual::fuse_residual,
    },
    Pass {
        name: "fuse-activation",
        doc: "apply an activation in the epilogue of the product before it",
        run: fuse_activation::fuse_activation,
    },
    Pass {
        name: "merge-siblings",
        doc: "compute 1x1 convolutions of one input as one product",
        run: merge_siblings::merge_siblings,
    },
    Pass {
        name: "fuse-elementwise",
        doc: "compute a run of elementwise layers as one kernel",
        run: fuse_elementwise::fuse_elementwise,
    },
];

/// The name `--after` takes for the graph after every optimization.
pub const FUSE: &str = "fuse";

/// Every name `--after` accepts.
pub fn pass_names() -> Vec<&'static str> {
    std::iter::once("lower")
        .chain(PASSES.iter().map(|p| p.name))
        .chain(OPTIMIZATIONS.iter().map(|p| p.name))
        .chain(std::iter::once(FUSE))
        .collect()
}

/// Every name `--disable-pass` accepts.
pub fn optional_pass_names() -> Vec<&'static str> {
    OPTIMIZATIONS.iter().map(|p| p.name).collect()
}

/// Which passes to run.
#[derive(Clone, Debug, Default)]
pub struct Pipeline<'a> {
    /// Stop after this pass (a name from [`pass_names`]); `None` runs them all.
    pub until: Option<&'a str>,
    /// Run [`OPTIMIZATIONS`] (also implied by an `until` naming one of them).
    pub optimize: bool,
    /// Optimizations not to run (names from [`optional_pass_names`]).
    pub disabled: &'a [String],
}

/// Runs the passes `p` selects, verifying after each. `on_pass` is told each pass's name and duration.
/// Returns the decisions of the passes that ran.
pub fn run(
    g: &mut Graph,
    p: &Pipeline,
    mut on_pass: impl FnMut(&str, std::time::Duration),
) -> Result<Vec<Decision>, VerifyError> {
    verify(g)?;
    let mut decisions = Vec::new();
    if p.until == Some("lower") {
        return Ok(decisions);
    }
    let optimize = p.optimize
        || p.until
            .is_some_and(|u| u == FUSE || OPTIMIZATIONS.iter().any(|o| o.name == u));
    let selected = PASSES
        .iter()
        .chain(OPTIMIZATIONS.iter().filter(|_| optimize));
    for pass in selected {
        if !p.disabled.iter().any(|d| d == pass.name) {
            let start = std::time::Instant::now();
            decisions.extend((pass.run)(g));
            on_pass(pass.name, start.elapsed());
            verify(g)?;
        }
        if p.until == Some(pass.name) {
            break;
        }
    }
    Ok(decisions)
}
