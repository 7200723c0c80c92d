//! Layer naming scopes: labels, `seq` positions, bound variables and generated names (docs/language.md,
//! "Names").

use std::collections::{HashMap, HashSet};

use crate::diag::{Code, Diagnostic, Span};
use crate::syntax::ast::Ident;

/// Where a layer's name comes from, strongest first.
#[derive(Clone, Debug)]
pub enum Hint {
    Label(Ident),
    Index(usize, Span),
    Bind(String),
    None,
}

/// One naming scope: a model, block call or seq.
#[derive(Default)]
struct Scope {
    path: String,
    /// Labels and seq positions: must be unique.
    hard: HashMap<String, Span>,
    /// Every name given out in this scope.
    taken: HashSet<String>,
}

#[derive(Default)]
pub struct Scopes {
    stack: Vec<Scope>,
}

impl Scopes {
    /// Claims a name in the innermost scope and returns the full dotted path.
    pub fn claim(&mut self, hint: &Hint, op_name: &str) -> Result<String, Diagnostic> {
        let scope = self.stack.last_mut().expect("a model scope is always open");
        let name = match hint {
            Hint::Label(l) => hard(scope, &l.name, l.span, "label")?,
            Hint::Index(i, span) => hard(scope, &i.to_string(), *span, "seq position")?,
            Hint::Bind(v) => soft(scope, v),
            Hint::None => soft(scope, op_name),
        };
        Ok(if scope.path.is_empty() {
            name
        } else {
            format!("{}.{name}", scope.path)
        })
    }

    pub fn push(&mut self, path: String) {
        self.stack.push(Scope {
            path,
            ..Scope::default()
        });
    }

    pub fn pop(&mut self) {
        self.stack.pop();
    }
}

fn hard(scope: &mut Scope, name: &str, span: Span, what: &str) -> Result<String, Diagnostic> {
    let shown = if scope.path.is_empty() {
        name.to_string()
    } else {
        format!("{}.{name}", scope.path)
    };
    if let Some(prev) = scope.hard.get(name) {
        return Err(Diagnostic::error(
            Code::DuplicateLayerName,
            span,
            format!("layer name `{shown}` is used twice"),
        )
        .with_label(format!("this {what} names a second layer `{name}`"))
        .with_secondary(*prev, "first used here")
        .with_help("give each layer in a scope its own label"));
    }
    // A generated or bound name given out earlier in this scope.
    if scope.taken.contains(name) {
        return Err(Diagnostic::error(
            Code::DuplicateLayerName,
            span,
            format!("layer name `{shown}` is already taken in this scope"),
        )
        .with_label(format!(
            "an earlier layer was named `{name}` after its variable or op"
        ))
        .with_help("choose another label, or label the earlier layer too"));
    }
    scope.hard.insert(name.to_string(), span);
    scope.taken.insert(name.to_string());
    Ok(name.to_string())
}

fn soft(scope: &mut Scope, base: &str) -> String {
    let mut name = base.to_string();
    let mut k = 0;
    while scope.taken.contains(&name) {
        k += 1;
        name = format!("{base}_{k}");
    }
    scope.taken.insert(name.clone());
    name
}
