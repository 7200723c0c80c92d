//! Robustness: random bytes, random mutations of the zoo files and absurd sizes never panic nnc; every input
//! either compiles or yields at least one error diagnostic.

mod common;

use std::path::Path;

use common::nn_files;
use nnc::{compile_text, Options};

/// splitmix64: a tiny, seeded generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Compiles `text` as if it were `path`, on a thread with a large stack (as the CLI does), and checks the
/// outcome is a graph or an error. Returns a description of the failure, if any.
fn check(path: &Path, text: String) -> Result<(), String> {
    let p = path.to_path_buf();
    let shown = text.clone();
    let handle = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let c = compile_text(&p, text, &Options::default());
            c.graph.is_some() || c.has_errors()
        })
        .expect("spawn");
    match handle.join() {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("no graph and no error for:\n{shown}")),
        Err(_) => Err(format!("panic for:\n{shown}")),
    }
}

const TOKENS: &[&str] = &[
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "=",
    "==",
    "|>",
    "+",
    "*",
    "-",
    "/",
    "%",
    ".",
    "..",
    ";",
    "!",
    "\"",
    "0",
    "-1",
    "1e12",
    "1000000000000",
    "9223372036854775807",
    "99999999999999999999",
    "0.0",
    "1e400",
    "x",
    "h",
    "N",
    "seq",
    "for",
    "if",
    "else",
    "return",
    "assert",
    "block",
    "model",
    "train",
    "import",
    "layer",
    "conv2d",
    "dense",
    "maxpool",
    "concat",
    "add",
    "relu",
    "batchnorm",
    "lstm",
    "reshape",
    "embedding",
    "stride=0",
    "groups=7",
    "padding=same",
    "kernel=[1, 0]",
    "* 100000000",
    ".shape[0]",
    ".shape[-9]",
    "i64",
    "f32[N, 0]",
    "/*",
    "*/",
    "//",
    "\n",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(4) {
            0 => {
                let end = (at + 1 + rng.below(40)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let tok = TOKENS[rng.below(TOKENS.len())];
                s.splice(at..at, tok.chars());
            }
            2 => {
                let len = rng.below(60);
                let end = (at + len).min(s.len());
                let copy: Vec<char> = s[at.min(end)..end].to_vec();
                let to = rng.below(s.len() + 1);
                s.splice(to..to, copy);
            }
            _ => {
                if at < s.len() {
                    s[at] = TOKENS[rng.below(TOKENS.len())]
                        .chars()
                        .next()
                        .unwrap_or(' ');
                }
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(1);
    let mut failures = Vec::new();
    for _ in 0..300 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Err(e) = check(Path::new("fuzz.nn"), text) {
            failures.push(e);
        }
        // Random token soup is closer to the grammar and reaches further.
        let soup: String = (0..rng.below(60))
            .map(|_| TOKENS[rng.below(TOKENS.len())])
            .collect::<Vec<_>>()
            .join(" ");
        if let Err(e) = check(Path::new("fuzz.nn"), soup) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first:\n{}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn mutated_zoo_files_never_panic() {
    let mut rng = Rng(7);
    let mut failures = Vec::new();
    for path in nn_files("models") {
        let text = std::fs::read_to_string(&path).expect("readable");
        for _ in 0..40 {
            if let Err(e) = check(&path, mutate(&mut rng, &text)) {
                failures.push(format!("{}: {e}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first:\n{}",
        failures.len(),
        failures[0]
    );
}

fn codes(text: &str) -> Vec<&'static str> {
    common::error_codes("absurd.nn", text)
}

#[test]
fn absurd_sizes_are_clean_errors() {
    let cases = [
        ("model m(x: f32[N, 1000000000000, 1000, 1000]) -> y: f32[N, 1] { return x }", "E0308"),
        ("model m(x: f32[N, 1000000000000, 8, 8]) -> y: f32[N, 1] { return conv2d(x, 1000000000000, 3) }", "E0308"),
        ("model m(x: f32[N, 10]) -> y: f32[N, 1] { return dense(x, 9223372036854775807) }", "E0308"),
        ("model m(x: f32[N, 100000000, 100000000]) -> y: f32[N, 1] { return x }", "E0308"),
        ("model m(x: f32[N, 10]) -> y: f32[N, 1] { return x |> seq { relu * 100000000000 } }", "E0308"),
        ("model m(x: f32[N, 10]) -> y: f32[N, 10] { n = 9223372036854775807 + 1\n return x }", "E0204"),
        ("model m(x: f32[N, 4]) -> y: f32[N, 4] { return x |> seq { for i in 0..1000000 { for j in 0..1000000 { } } } }", "E0308"),
        ("model m(x: f32[N, 4, 8]) -> y: f32[N, 1] { return x |> lstm(4611686018427387904) }", "E0308"),
        ("model m(x: f32[N, 4, 8, 8]) -> y: f32[N, 4, 8, 8] { return zeropad(x, 9223372036854775807) }", "E0308"),
        ("model m(x: f32[N, 4, 8, 8]) -> y: f32[N, 4, 8, 8] { return maxpool(x, 9223372036854775807) }", "E0304"),
    ];
    for (text, code) in cases {
        assert!(
            check(Path::new("absurd.nn"), text.to_string()).is_ok(),
            "panicked: {text}"
        );
        let got = codes(text);
        assert!(
            got.contains(&code),
            "expected {code} for {text}, got {got:?}"
        );
    }
}

#[test]
fn deep_nesting_and_long_chains_are_refused_cleanly() {
    let deep = format!(
        "model m(x: f32[N, 4]) -> y: f32[N, 4] {{ n = {}1{}\n return x }}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert_eq!(codes(&deep), ["E0001"]);
    let long = format!(
        "model m(x: f32[N, 4]) -> y: f32[N, 4] {{ n = 1{}\n return x }}",
        " + 1".repeat(100_000)
    );
    assert_eq!(codes(&long), ["E0001"]);
    let chain = format!("model m(x: f32[N, 4]) -> y: f32[N, 4] {{ n = if false {{ 1 }}{} else {{ 2 }}\n return x }}", " else if false { 1 }".repeat(100_000));
    assert_eq!(codes(&chain), ["E0001"]);
    let pipes = format!(
        "model m(x: f32[N, 4]) -> y: f32[N, 4] {{ return x{} }}",
        " |> relu".repeat(100_000)
    );
    assert_eq!(codes(&pipes), ["E0001"]);
}
