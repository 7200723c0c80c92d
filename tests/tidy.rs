//! Tidy: cheap conventions of the code base (rust-analyzer's tidy.rs): every source file says what it is
//! for in a leading `//!` line, rooms import only the rooms upstream of them, and files stay short.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all(dirs: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for d in dirs {
        rust_files(Path::new(d), &mut files);
    }
    files.sort();
    files
}

#[test]
fn every_file_starts_with_a_doc_line() {
    let bad: Vec<String> = all(&["src", "tests", "benches"])
        .into_iter()
        .filter(|p| {
            !std::fs::read_to_string(p)
                .expect("readable")
                .starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        bad.is_empty(),
        "files without a leading `//!` line: {bad:?}"
    );
}

#[test]
fn files_stay_under_800_lines() {
    let long: Vec<String> = all(&["src", "tests"])
        .into_iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(&p)
                .expect("readable")
                .lines()
                .count();
            (n > 800).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by concern: {long:?}");
}

/// Each room and the crate paths it must not use. Data flows text -> syntax -> lower -> ir -> passes ->
/// report, and ir -> autodiff; the interpreter runs IR on tensors; ir -> plan -> codegen -> runtime runs
/// it on native code (the runtime shares the interpreter's input checks and errors). Every room may use
/// `diag`.
const BOUNDARIES: &[(&str, &[&str])] = &[
    (
        "src/diag",
        &[
            "crate::syntax",
            "crate::ir",
            "crate::lower",
            "crate::passes",
            "crate::report",
            "crate::autodiff",
            "crate::interp",
            "crate::tensor",
        ],
    ),
    (
        "src/syntax",
        &[
            "crate::ir",
            "crate::lower",
            "crate::passes",
            "crate::report",
            "crate::autodiff",
            "crate::interp",
            "crate::tensor",
        ],
    ),
    (
        "src/ir",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::passes",
            "crate::report",
            "crate::autodiff",
            "crate::interp",
            "crate::tensor",
        ],
    ),
    (
        "src/lower",
        &[
            "crate::passes",
            "crate::report",
            "crate::autodiff",
            "crate::interp",
            "crate::tensor",
        ],
    ),
    (
        "src/passes",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::report",
            "crate::autodiff",
            "crate::interp",
            "crate::tensor",
        ],
    ),
    (
        "src/report",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::autodiff",
            "crate::interp",
            "crate::tensor",
        ],
    ),
    (
        "src/autodiff",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::passes",
            "crate::report",
            "crate::interp",
            "crate::tensor",
        ],
    ),
    (
        "src/tensor",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::passes",
            "crate::report",
            "crate::autodiff",
            "crate::interp",
        ],
    ),
    (
        "src/interp",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::passes",
            "crate::report",
            "crate::autodiff",
            "crate::plan",
            "crate::codegen",
            "crate::runtime",
        ],
    ),
    (
        "src/plan",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::report",
            "crate::autodiff",
            "crate::interp",
            "crate::codegen",
            "crate::runtime",
        ],
    ),
    (
        "src/codegen",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::passes",
            "crate::report",
            "crate::autodiff",
            "crate::interp",
            "crate::plan",
            "crate::runtime",
        ],
    ),
    (
        "src/runtime",
        &[
            "crate::syntax",
            "crate::lower",
            "crate::passes",
            "crate::report",
            "crate::autodiff",
        ],
    ),
];

/// Adds `crate::x` for every name imported through a group such as `use crate::{x, y::z}`, so grouped
/// imports are checked like plain ones.
fn expand_groups(text: &str) -> String {
    let mut out = text.to_string();
    for (start, _) in text.match_indices("crate::{") {
        let rest = &text[start + "crate::{".len()..];
        let mut depth = 1;
        let end = rest.char_indices().find(|&(_, c)| {
            depth += (c == '{') as i32 - (c == '}') as i32;
            depth == 0
        });
        let group = &rest[..end.map_or(rest.len(), |(i, _)| i)];
        for item in group.split(',') {
            let name = item
                .trim()
                .split("::")
                .next()
                .unwrap_or("")
                .trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
            out.push_str(&format!("\ncrate::{name}"));
        }
    }
    out
}

#[test]
fn rooms_import_only_upstream() {
    let mut bad = Vec::new();
    for (room, forbidden) in BOUNDARIES {
        for file in all(&[room]) {
            let text = expand_groups(&std::fs::read_to_string(&file).expect("readable"));
            for f in *forbidden {
                if text.contains(f) {
                    bad.push(format!("{} uses {f}", file.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "import boundaries crossed: {bad:?}");
}

/// Third-party types stay in their rooms: pest in the parser, petgraph in the graph module,
/// codespan in the diagnostics room, clap in main, Cranelift in codegen, threads in the runtime.
#[test]
fn dependencies_stay_in_their_rooms() {
    let homes: &[(&str, &[&str])] = &[
        ("pest", &["src/syntax/parser.rs"]),
        ("petgraph", &["src/ir/graph.rs"]),
        ("codespan_reporting", &["src/diag/mod.rs"]),
        ("clap", &["src/main.rs"]),
        ("safetensors", &["src/tensor/files.rs"]),
        ("cranelift_codegen", &["src/codegen"]),
        ("cranelift_jit", &["src/codegen/jit.rs"]),
        (
            "cranelift_module",
            &["src/codegen/jit.rs", "src/codegen/call.rs"],
        ),
        ("cranelift_frontend", &["src/codegen"]),
        (
            "rayon",
            &[
                "src/runtime/exec.rs",
                "src/runtime/mod.rs",
                "src/runtime/gemm.rs",
            ],
        ),
        ("ndarray_npy", &["src/tensor/files.rs"]),
    ];
    let mut bad = Vec::new();
    for file in all(&["src"]) {
        let text = std::fs::read_to_string(&file).expect("readable");
        for (krate, allowed) in homes {
            let uses =
                text.contains(&format!("use {krate}")) || text.contains(&format!("{krate}::"));
            if uses && !allowed.iter().any(|a| file.starts_with(a)) {
                bad.push(format!("{} uses {krate}", file.display()));
            }
        }
    }
    assert!(bad.is_empty(), "dependencies outside their rooms: {bad:?}");
}

/// `unsafe` appears only at the boundary into generated code (`call.rs`) and in the Rust GEMM kernels it
/// enters (`avx2.rs`, `avx512.rs`, `twins.rs`, `patches.rs`, the Winograd transforms), each block with a `// SAFETY:` comment in the six lines above it.
#[test]
fn unsafe_only_at_the_jit_boundary() {
    let allowed = [
        Path::new("src/codegen/call.rs"),
        Path::new("src/codegen/avx2.rs"),
        Path::new("src/codegen/avx512.rs"),
        Path::new("src/codegen/twins.rs"),
        Path::new("src/codegen/patches.rs"),
        Path::new("src/codegen/winograd_avx2.rs"),
        Path::new("src/codegen/winograd_avx512.rs"),
        Path::new("src/codegen/winograd4.rs"),
        Path::new("src/codegen/winograd5.rs"),
        Path::new("src/codegen/conv_rows.rs"),
    ];
    for file in all(&["src"]) {
        let text = std::fs::read_to_string(&file).expect("readable");
        let uses = text
            .lines()
            .filter(|l| {
                l.contains("unsafe {") || l.contains("unsafe fn") || l.contains("unsafe impl")
            })
            .count();
        if !allowed.contains(&file.as_path()) {
            assert_eq!(
                uses,
                0,
                "{} uses unsafe outside src/codegen/call.rs and the Rust GEMM kernels",
                file.display()
            );
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("unsafe {") {
                let commented = lines[..i]
                    .iter()
                    .rev()
                    .take(6)
                    .any(|p| p.contains("// SAFETY:"));
                assert!(
                    commented,
                    "{}:{}: unsafe block without a `// SAFETY:` comment",
                    file.display(),
                    i + 1
                );
            }
        }
    }
}
