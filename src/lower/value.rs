//! Compile-time values of the elaborator: numbers, strings, lists, tensors (graph nodes) and symbols.

use crate::diag::Span;
use crate::ir::{Graph, NodeId};
use crate::syntax::ast::Ty;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    List(Vec<Value>),
    Tensor(NodeId),
    /// A bare name that is not bound: meaningful as an option (`padding=same`), an error elsewhere.
    Sym(String),
    /// The symbolic batch dimension read from `x.shape`.
    Batch,
    /// The result of something that already reported an error; using it reports nothing more.
    Poison,
}

impl Value {
    /// How the value is described in messages: "int", "tensor `f32[N, 64]`", ...
    pub fn describe(&self, g: &Graph) -> String {
        match self {
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Bool(_) => "bool".into(),
            Value::Str(_) => "str".into(),
            Value::List(_) => "list".into(),
            Value::Tensor(id) => format!("tensor `{}`", g.node(*id).ty),
            Value::Sym(s) => format!("name `{s}`"),
            Value::Batch => "the symbolic batch dimension".into(),
            Value::Poison => "error".into(),
        }
    }

    /// The value as a user would write it, for messages: `3`, `0.5`, `[1, 7]`, `"text"`.
    pub fn show(&self, g: &Graph) -> String {
        match self {
            Value::Int(v) => v.to_string(),
            Value::Float(v) => format!("{v:?}"),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => format!("{s:?}"),
            Value::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|i| i.show(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Tensor(_) | Value::Sym(_) | Value::Batch | Value::Poison => self.describe(g),
        }
    }

    pub fn is_poison(&self) -> bool {
        match self {
            Value::Poison => true,
            Value::List(items) => items.iter().any(Value::is_poison),
            _ => false,
        }
    }

    /// Whether the value fits a declared type; an `int` fits `float`.
    pub fn fits(&self, ty: &Ty) -> bool {
        match (ty, self) {
            (Ty::Any, _) => true,
            (Ty::Int, Value::Int(_)) => true,
            (Ty::Float, Value::Int(_) | Value::Float(_)) => true,
            (Ty::Bool, Value::Bool(_)) => true,
            (Ty::Str, Value::Str(_)) => true,
            (Ty::Tensor, Value::Tensor(_)) => true,
            (Ty::List(t), Value::List(items)) => items.iter().all(|v| v.fits(t)),
            _ => false,
        }
    }
}

/// A value with the span of the expression that produced it.
#[derive(Clone, Debug)]
pub struct Spanned {
    pub value: Value,
    pub span: Span,
}
