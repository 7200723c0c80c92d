//! Helpers shared by the integration tests. Cargo runs tests from the package root, so paths such as
//! `models/resnet50.nn` are relative to it, and diagnostics show them the same way on every machine.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nnc::{diag, ir::Graph, Compilation, Options};

/// The `.nn` files directly in `dir` (relative to the package root), sorted.
pub fn nn_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("directory exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .collect();
    files.sort();
    files
}

pub fn compile(path: &Path) -> Compilation {
    nnc::compile(path, &Options::default())
}

/// Compiles a model that must be free of errors and warnings, and returns its graph.
pub fn model(path: &Path) -> Graph {
    let c = compile(path);
    assert!(
        c.diags.is_empty(),
        "{} has diagnostics:\n{}",
        path.display(),
        rendered(&c)
    );
    c.graph.expect("no diagnostics means a graph")
}

pub fn rendered(c: &Compilation) -> String {
    diag::render(&c.sources, &c.diags, false)
}

/// The file name without extension, for snapshot names.
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// The error codes `text` produces when compiled as `path`, in order.
pub fn error_codes(path: &str, text: &str) -> Vec<&'static str> {
    let c = nnc::compile_text(Path::new(path), text.to_string(), &Options::default());
    c.diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.id())
        .collect()
}

/// Random inputs for a graph's inputs at `batch`: floats uniform in [-1, 1), integers in [0, classes).
pub fn random_inputs(
    g: &Graph,
    batch: usize,
    rng: &mut nnc::tensor::Rng,
    classes: i64,
) -> Vec<(String, nnc::tensor::Tensor)> {
    nnc::tensor::random_inputs(g, batch as u64, rng, classes as u64)
}
