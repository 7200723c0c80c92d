//! Diagnostics: every file in tests/diagnostics/ is compiled and its rendered output snapshotted. A file's
//! name starts with the code it is about, and that code must be among those it reports; every code nnc
//! defines has at least one such file.

mod common;

use std::collections::BTreeSet;

use common::{compile, nn_files, rendered, stem};
use nnc::diag::Code;

#[test]
fn rendered_diagnostics() {
    for path in nn_files("tests/diagnostics") {
        let c = compile(&path);
        let text = rendered(&c);
        let name = stem(&path);
        let code = &name[..5];
        if code != "E0000" {
            assert!(
                text.contains(&format!("[{code}]")),
                "{} does not report {code}:\n{text}",
                path.display()
            );
        }
        assert_eq!(
            c.has_errors(),
            code.starts_with('E'),
            "{}: errors and the file's code disagree:\n{text}",
            path.display()
        );
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn every_code_has_a_test_file() {
    let covered: BTreeSet<String> = nn_files("tests/diagnostics")
        .iter()
        .map(|p| stem(p)[..5].to_string())
        .collect();
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.id())
        .filter(|id| !id.starts_with("E9") && !covered.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a file in tests/diagnostics: {missing:?}"
    );
}

#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string("docs/diagnostics.md").expect("docs/diagnostics.md exists");
    for code in Code::ALL {
        assert!(
            doc.contains(&format!("## {}", code.id())),
            "docs/diagnostics.md has no section for {}",
            code.id()
        );
    }
}

#[test]
fn all_errors_in_a_file_are_reported() {
    let c = compile(std::path::Path::new(
        "tests/diagnostics/E0000_many_errors.nn",
    ));
    let codes: Vec<&str> = c
        .diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.id())
        .collect();
    assert_eq!(codes, ["E0103", "E0101", "E0305"]);
    let c = compile(std::path::Path::new(
        "tests/diagnostics/E0001_syntax_many_items.nn",
    ));
    assert_eq!(c.diags.iter().filter(|d| d.code == Code::Syntax).count(), 2);
}
