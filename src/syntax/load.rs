//! Reading a root file and, transitively, the files it imports, into a [`Program`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ast::{File, Item};
use crate::diag::{Code, Diagnostic, FileId, SourceMap};

/// One parsed file.
#[derive(Debug)]
pub struct Module {
    pub file: FileId,
    pub path: PathBuf,
    pub ast: File,
    /// For each `import` item of this file, in order, the index of the imported module (if it loaded).
    pub imports: Vec<Option<usize>>,
}

/// The root file (module 0) and everything it imports.
#[derive(Debug, Default)]
pub struct Program {
    pub modules: Vec<Module>,
}

/// Loads `path` and its imports. Returns `None` only if the root file itself cannot be read.
pub fn load(path: &Path, sources: &mut SourceMap, diags: &mut Vec<Diagnostic>) -> Option<Program> {
    let text = read_source(path).ok()?;
    Some(load_text(path, text, sources, diags))
}

/// Loads a root file given as text (for tests and tools); imports are resolved relative to `path`.
pub fn load_text(
    path: &Path,
    text: String,
    sources: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> Program {
    let mut loader = Loader {
        sources,
        diags,
        program: Program::default(),
        by_path: HashMap::new(),
    };
    loader.add(path.to_path_buf(), text, &mut Vec::new());
    loader.program
}

struct Loader<'a> {
    sources: &'a mut SourceMap,
    diags: &'a mut Vec<Diagnostic>,
    program: Program,
    by_path: HashMap<PathBuf, usize>,
}

impl Loader<'_> {
    /// Parses one file and loads its imports depth-first; `active` holds the files being loaded (for cycles).
    fn add(&mut self, path: PathBuf, text: String, active: &mut Vec<PathBuf>) -> usize {
        let file = self.sources.add(path.display().to_string(), text);
        let (ast, mut errs) = super::parse(self.sources.text(file), file);
        self.diags.append(&mut errs);
        let key = canonical(&path);
        let index = self.program.modules.len();
        self.by_path.insert(key.clone(), index);
        self.program.modules.push(Module {
            file,
            path: path.clone(),
            ast,
            imports: Vec::new(),
        });
        active.push(key);
        let import_items: Vec<(String, crate::diag::Span)> = self.program.modules[index]
            .ast
            .items
            .iter()
            .filter_map(|i| {
                if let Item::Import(imp) = i {
                    Some((imp.path.clone(), imp.path_span))
                } else {
                    None
                }
            })
            .collect();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut imports = Vec::new();
        for (rel, span) in import_items {
            let target = dir.join(&rel);
            let key = canonical(&target);
            if active.contains(&key) {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadImport,
                        span,
                        format!("import cycle: `{rel}` imports this file back"),
                    )
                    .with_label("this import closes a cycle")
                    .with_help("move the shared blocks into a third file that both import"),
                );
                imports.push(None);
                continue;
            }
            if let Some(&m) = self.by_path.get(&key) {
                imports.push(Some(m));
                continue;
            }
            match read_source(&target) {
                Ok(text) => imports.push(Some(self.add(target, text, active))),
                Err(e) => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadImport,
                            span,
                            format!("cannot read imported file `{rel}`"),
                        )
                        .with_label(format!("{e} (looked for {})", target.display())),
                    );
                    imports.push(None);
                }
            }
        }
        active.pop();
        self.program.modules[index].imports = imports;
        index
    }
}

/// Largest source file nnc reads.
pub const MAX_SOURCE_BYTES: u64 = 16 << 20;

/// Reads a source file: a regular file of at most [`MAX_SOURCE_BYTES`], in UTF-8.
pub fn read_source(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_SOURCE_BYTES >> 20
        )));
    }
    std::fs::read_to_string(path)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
