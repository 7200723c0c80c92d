//! The syntax room: `.nn` text in, AST with spans and all syntax diagnostics out.
//!
//! A file that fails to parse is split at its top-level items (lines that start with `import`, `block`,
//! `model` or `train`) and each item is parsed alone, so one bad item does not hide errors in the others.

pub mod ast;
mod load;
mod parser;

pub use load::{load, load_text, read_source, Module, Program, MAX_SOURCE_BYTES};

use crate::diag::{Code, Diagnostic, FileId, Span};

/// Parses a whole file. Returns the items that parsed and every syntax diagnostic.
pub fn parse(src: &str, file: FileId) -> (ast::File, Vec<Diagnostic>) {
    if let Some(d) = too_deep(src, file) {
        return (ast::File::default(), vec![d]);
    }
    match parser::parse_items(src, file, 0) {
        Ok(items) => (ast::File { items }, Vec::new()),
        Err(first) => {
            let mut items = Vec::new();
            let mut diags = Vec::new();
            for (start, end) in item_chunks(src) {
                match parser::parse_items(&src[start..end], file, start) {
                    Ok(mut parsed) => items.append(&mut parsed),
                    Err(mut errs) => diags.append(&mut errs),
                }
            }
            // The chunking is a heuristic: if it found nothing wrong, the whole-file error stands.
            if diags.is_empty() {
                diags = first;
            }
            (ast::File { items }, diags)
        }
    }
}

/// Byte ranges of the top-level items, split before each line starting with an item keyword.
fn item_chunks(src: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        let starts_item = ["import", "block", "model", "train"].iter().any(|k| {
            line.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with([' ', '\t', '{', '"']))
        });
        if starts_item && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(src.len())))
        .collect()
}

/// Brackets nested deeper than this are refused before parsing, so the recursive parser and the
/// evaluator stay far from the stack's limit.
pub const MAX_NESTING: usize = 64;

/// Longest `else if` chain in a file: each link nests the parser one level deeper, like a bracket.
pub const MAX_ELSE_IF: usize = 256;

fn too_deep(src: &str, file: FileId) -> Option<Diagnostic> {
    let words: Vec<(usize, &str)> = src
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - src.as_ptr() as usize, w))
        .collect();
    let links: Vec<usize> = words
        .windows(2)
        .filter(|w| w[0].1 == "else" && w[1].1.starts_with("if"))
        .map(|w| w[0].0)
        .collect();
    if links.len() > MAX_ELSE_IF {
        let at = links[MAX_ELSE_IF];
        return Some(
            Diagnostic::error(
                Code::Syntax,
                Span::new(file, at, at + 4),
                format!("more than {MAX_ELSE_IF} `else if` links in one file"),
            )
            .with_label("too many")
            .with_help("choose with a lookup instead, e.g. a list indexed by the condition"),
        );
    }
    let mut depth = 0usize;
    for (i, c) in src.char_indices() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let span = Span::new(file, i, i + 1);
                    return Some(
                        Diagnostic::error(
                            Code::Syntax,
                            span,
                            format!("brackets nested more than {MAX_NESTING} deep"),
                        )
                        .with_label("too deep")
                        .with_help("split the expression with bindings or blocks"),
                    );
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}
