//! Diagnostics: user errors with stable codes and source spans, rendered like rustc's.
//!
//! Every room reports problems in `.nn` files as [`Diagnostic`] values; only the CLI prints them.
//! Rendering goes through `codespan-reporting` with ASCII framing (`-->`, `|`, `^`).

mod codes;

pub use codes::Code;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term;

/// Index of a file in a [`SourceMap`].
pub type FileId = usize;

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// The files a compilation read, by id, for rendering spans.
pub struct SourceMap {
    files: SimpleFiles<String, String>,
}

impl Default for SourceMap {
    fn default() -> SourceMap {
        SourceMap {
            files: SimpleFiles::new(),
        }
    }
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    pub fn add(&mut self, name: String, text: String) -> FileId {
        self.files.add(name, text)
    }

    pub fn text(&self, file: FileId) -> &str {
        self.files
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    pub fn name(&self, file: FileId) -> String {
        self.files
            .get(file)
            .map(|f| f.name().clone())
            .unwrap_or_default()
    }

    /// `file.nn:line:col` of a span's start, 1-based.
    pub fn location(&self, span: Span) -> String {
        match self.files.location(span.file, span.start as usize) {
            Ok(loc) => format!(
                "{}:{}:{}",
                self.name(span.file),
                loc.line_number,
                loc.column_number
            ),
            Err(_) => self.name(span.file),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One frame of the block call chain a diagnostic happened in: block `name`, called at `call`.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub block: String,
    pub call: Span,
}

/// A problem found in user input (or, with [`Code::InternalBug`], in nnc itself).
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    pub span: Option<Span>,
    /// Text under the primary caret.
    pub label: String,
    pub secondary: Vec<(Span, String)>,
    pub notes: Vec<String>,
    pub help: Option<String>,
    /// Innermost frame last.
    pub chain: Vec<Frame>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: if code.id().starts_with('W') {
                Severity::Warning
            } else {
                Severity::Error
            },
            code,
            message: message.into(),
            span: Some(span),
            label: String::new(),
            secondary: Vec::new(),
            notes: Vec::new(),
            help: None,
            chain: Vec::new(),
        }
    }

    /// A diagnostic with no source location (a file that cannot be read, an internal bug).
    pub fn global(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span: None,
            ..Diagnostic::error(code, Span::default(), message)
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_help_opt(mut self, help: Option<String>) -> Diagnostic {
        self.help = help.or(self.help);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// "did you mean `x`?" for the candidate closest to `word`, if any is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        let close = score > 0.85 || strsim::levenshtein(word, c) <= (word.len().max(2) / 3).max(1);
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Renders diagnostics like rustc. `color` selects ANSI colors (for terminals).
pub fn render(sources: &SourceMap, diags: &[Diagnostic], color: bool) -> String {
    use term::termcolor::{Ansi, NoColor};
    let config = term::Config {
        chars: term::Chars::ascii(),
        ..term::Config::default()
    };
    let mut out = Vec::new();
    for d in diags {
        let cs_diag = to_codespan(sources, d);
        // Writing into a Vec cannot fail, and every span was made from these files.
        let result = if color {
            term::emit(&mut Ansi::new(&mut out), &config, &sources.files, &cs_diag)
        } else {
            term::emit(
                &mut NoColor::new(&mut out),
                &config,
                &sources.files,
                &cs_diag,
            )
        };
        if let Err(e) = result {
            out.extend_from_slice(
                format!(
                    "error[{}]: {} (cannot show source: {e})\n",
                    d.code.id(),
                    d.message
                )
                .as_bytes(),
            );
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn to_codespan(sources: &SourceMap, d: &Diagnostic) -> cs::Diagnostic<FileId> {
    let base = match d.severity {
        Severity::Error if d.code == Code::InternalBug => cs::Diagnostic::bug(),
        Severity::Error => cs::Diagnostic::error(),
        Severity::Warning => cs::Diagnostic::warning(),
    };
    let mut labels = Vec::new();
    if let Some(span) = d.span {
        labels.push(
            cs::Label::primary(span.file, span.start as usize..span.end as usize)
                .with_message(&d.label),
        );
    }
    for (span, msg) in &d.secondary {
        labels.push(
            cs::Label::secondary(span.file, span.start as usize..span.end as usize)
                .with_message(msg),
        );
    }
    let mut notes = d
        .notes
        .iter()
        .map(|n| format!("note: {n}"))
        .collect::<Vec<_>>();
    for frame in d.chain.iter().rev() {
        notes.push(format!(
            "note: in block `{}` called at {}",
            frame.block,
            sources.location(frame.call)
        ));
    }
    if let Some(help) = &d.help {
        notes.push(format!("help: {help}"));
    }
    base.with_code(d.code.id())
        .with_message(&d.message)
        .with_labels(labels)
        .with_notes(notes)
}
