//! Passes over the graph IR. One table of named passes drives the pipeline, `nnc dump --after` and
//! `--time-passes`; the verifier runs after each one.

mod count;
mod dce;
mod verify;

pub use count::{count, LayerStats, Stats};
pub use dce::dce;
pub use verify::{verify, VerifyError};

use crate::ir::Graph;

/// A transformation pass: its name (as given to `--after`) and what it runs.
pub struct Pass {
    pub name: &'static str,
    pub doc: &'static str,
    pub run: fn(&mut Graph),
}

/// The passes after lowering, in pipeline order. `lower` names the graph as the lowering built it.
pub const PASSES: &[Pass] = &[Pass {
    name: "dce",
    doc: "remove layers whose values reach no output",
    run: |g| {
        dce(g);
    },
}];

/// Every name `--after` accepts.
pub fn pass_names() -> Vec<&'static str> {
    std::iter::once("lower")
        .chain(PASSES.iter().map(|p| p.name))
        .collect()
}

/// Runs the passes up to and including `until` (all of them if `None`), verifying after each.
/// `on_pass` is told each pass's name and duration.
pub fn run(
    g: &mut Graph,
    until: Option<&str>,
    mut on_pass: impl FnMut(&str, std::time::Duration),
) -> Result<(), VerifyError> {
    verify(g)?;
    if until == Some("lower") {
        return Ok(());
    }
    for pass in PASSES {
        let start = std::time::Instant::now();
        (pass.run)(g);
        on_pass(pass.name, start.elapsed());
        verify(g)?;
        if until == Some(pass.name) {
            break;
        }
    }
    Ok(())
}
