//! Binding call arguments to parameters (shared by blocks and layers) and reading typed layer arguments.

use std::collections::HashMap;

use super::value::{Spanned, Value};
use crate::diag::{did_you_mean, Code, Diagnostic, Span};
use crate::ir::Graph;
use crate::syntax::ast::Ident;

/// Binds positional then keyword arguments to `params` (in order). Reports unknown, duplicate and surplus
/// arguments; missing ones are left for the caller, which knows the defaults.
pub fn bind(
    callee: &Ident,
    what: &str,
    params: &[&str],
    extra_kw: &[&str],
    pos: Vec<Spanned>,
    kw: Vec<(Ident, Spanned)>,
) -> Result<HashMap<String, Spanned>, Diagnostic> {
    let mut out: HashMap<String, Spanned> = HashMap::new();
    if pos.len() > params.len() {
        let extra = &pos[params.len()];
        return Err(Diagnostic::error(
            Code::TooManyArguments,
            extra.span,
            format!(
                "{what} `{}` takes {} positional argument{} after its input, found {}",
                callee.name,
                params.len(),
                if params.len() == 1 { "" } else { "s" },
                pos.len()
            ),
        )
        .with_label("unexpected argument")
        .with_secondary(callee.span, format!("parameters: {}", params.join(", "))));
    }
    for (name, v) in params.iter().zip(pos) {
        out.insert(name.to_string(), v);
    }
    for (name, v) in kw {
        if !params.contains(&name.name.as_str()) && !extra_kw.contains(&name.name.as_str()) {
            let all = params.iter().chain(extra_kw).copied();
            return Err(Diagnostic::error(
                Code::UnknownArgument,
                name.span,
                format!("{what} `{}` has no argument `{}`", callee.name, name.name),
            )
            .with_label("unknown argument")
            .with_help_opt(did_you_mean(&name.name, all))
            .with_note(format!(
                "`{}` takes: {}",
                callee.name,
                params
                    .iter()
                    .chain(extra_kw)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(prev) = out.get(&name.name) {
            return Err(Diagnostic::error(
                Code::DuplicateArgument,
                name.span,
                format!("argument `{}` is given twice", name.name),
            )
            .with_label("given again here")
            .with_secondary(prev.span, "first given here"));
        }
        out.insert(name.name, v);
    }
    Ok(out)
}

/// A padding argument before it is resolved against an input size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Padding {
    Same,
    /// `[top, bottom, left, right]`.
    Explicit([u64; 4]),
}

/// Typed access to a layer's bound arguments. Errors are collected; accessors return a harmless placeholder
/// after an error so that a builder can run to its end and report everything.
pub struct LayerArgs<'a> {
    pub callee: Ident,
    pub vals: HashMap<String, Spanned>,
    pub errors: Vec<Diagnostic>,
    pub graph: &'a Graph,
}

impl LayerArgs<'_> {
    fn get(&self, name: &str) -> Option<&Spanned> {
        self.vals.get(name)
    }

    pub fn span_of(&self, name: &str) -> Span {
        self.get(name).map_or(self.callee.span, |v| v.span)
    }

    fn wrong(&mut self, name: &str, expected: &str) {
        let v = self
            .get(name)
            .cloned()
            .expect("wrong() is called for present arguments");
        let d = match &v.value {
            Value::Sym(s) => Diagnostic::error(
                Code::UnknownName,
                v.span,
                format!("cannot find `{s}` in this scope"),
            )
            .with_label(format!("`{name}` expects {expected}")),
            Value::Poison => return,
            other => Diagnostic::error(
                Code::WrongType,
                v.span,
                format!(
                    "argument `{name}` of `{}` expects {expected}, found {}",
                    self.callee.name,
                    other.describe(self.graph)
                ),
            )
            .with_label(format!("expected {expected}")),
        };
        self.errors.push(d);
    }

    fn missing(&mut self, name: &str) {
        self.errors.push(
            Diagnostic::error(
                Code::MissingArgument,
                self.callee.span,
                format!("`{}` needs argument `{name}`", self.callee.name),
            )
            .with_label(format!("missing `{name}`"))
            .with_help(format!("pass it by position or as `{name}=...`")),
        );
    }

    fn non_positive(&mut self, name: &str, v: i64) {
        let span = self.span_of(name);
        self.errors.push(
            Diagnostic::error(
                Code::NonPositive,
                span,
                format!(
                    "`{name}` of `{}` must be positive, found {v}",
                    self.callee.name
                ),
            )
            .with_label("must be at least 1"),
        );
    }

    pub fn has(&self, name: &str) -> bool {
        self.vals.contains_key(name)
    }

    /// A positive integer; required if `default` is `None`.
    pub fn positive(&mut self, name: &str, default: Option<u64>) -> u64 {
        match self.get(name).map(|v| v.value.clone()) {
            None => default.unwrap_or_else(|| {
                self.missing(name);
                1
            }),
            Some(Value::Int(v)) if v > 0 && v as u64 <= crate::ir::types::MAX_ELEMENTS => v as u64,
            Some(Value::Int(v)) if v > 0 => {
                let span = self.span_of(name);
                self.errors.push(
                    Diagnostic::error(
                        Code::TooLarge,
                        span,
                        format!("`{name}` of `{}` is {v}, more than 2^48", self.callee.name),
                    )
                    .with_label("too large"),
                );
                1
            }
            Some(Value::Int(v)) => {
                self.non_positive(name, v);
                1
            }
            Some(_) => {
                self.wrong(name, "a positive int");
                1
            }
        }
    }

    /// An integer, possibly negative (axes).
    pub fn int(&mut self, name: &str, default: i64) -> i64 {
        match self.get(name).map(|v| v.value.clone()) {
            None => default,
            Some(Value::Int(v)) => v,
            Some(_) => {
                self.wrong(name, "an int");
                default
            }
        }
    }

    pub fn float(&mut self, name: &str, default: f64) -> f64 {
        match self.get(name).map(|v| v.value.clone()) {
            None => default,
            Some(Value::Int(v)) => v as f64,
            Some(Value::Float(v)) => v,
            Some(_) => {
                self.wrong(name, "a number");
                default
            }
        }
    }

    /// A float in `[lo, hi)` (or `[lo, hi]` when `hi_inclusive`).
    pub fn float_in(
        &mut self,
        name: &str,
        default: f64,
        lo: f64,
        hi: f64,
        hi_inclusive: bool,
    ) -> f64 {
        let v = self.float(name, default);
        let ok = v >= lo && (v < hi || (hi_inclusive && v == hi));
        if !ok {
            let span = self.span_of(name);
            let close = if hi_inclusive { "]" } else { ")" };
            self.errors.push(
                Diagnostic::error(
                    Code::BadValue,
                    span,
                    format!("`{name}` must be in [{lo}, {hi}{close}, found {v}"),
                )
                .with_label("out of range"),
            );
        }
        v
    }

    /// A positive float.
    pub fn float_pos(&mut self, name: &str, default: f64) -> f64 {
        let v = self.float(name, default);
        if v <= 0.0 || v.is_nan() {
            let span = self.span_of(name);
            self.errors.push(
                Diagnostic::error(
                    Code::BadValue,
                    span,
                    format!("`{name}` must be positive, found {v}"),
                )
                .with_label("must be > 0"),
            );
        }
        v
    }

    pub fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.get(name).map(|v| v.value.clone()) {
            None => default,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                self.wrong(name, "`true` or `false`");
                default
            }
        }
    }

    /// One of a set of names (`activation=relu`).
    pub fn choice(
        &mut self,
        name: &str,
        allowed: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        match self.get(name).map(|v| v.value.clone()) {
            None => default,
            Some(Value::Sym(s)) | Some(Value::Str(s)) => match allowed.iter().find(|a| **a == s) {
                Some(a) => a,
                None => {
                    let span = self.span_of(name);
                    self.errors.push(
                        Diagnostic::error(
                            Code::BadValue,
                            span,
                            format!("`{s}` is not a valid `{name}`"),
                        )
                        .with_label(format!("expected one of: {}", allowed.join(", ")))
                        .with_help_opt(did_you_mean(&s, allowed.iter().copied())),
                    );
                    default
                }
            },
            Some(_) => {
                self.wrong(name, &format!("one of {}", allowed.join(", ")));
                default
            }
        }
    }

    fn int_list(&mut self, name: &str, value: &Value) -> Option<Vec<i64>> {
        match value {
            Value::Int(v) => Some(vec![*v]),
            Value::List(items) => items
                .iter()
                .map(|i| {
                    if let Value::Int(v) = i {
                        Some(*v)
                    } else {
                        None
                    }
                })
                .collect(),
            _ => {
                let _ = name;
                None
            }
        }
    }

    /// A size per spatial axis: an int for both, or `[h, w]`. All entries positive.
    pub fn pair(&mut self, name: &str, default: Option<[u64; 2]>) -> [u64; 2] {
        let Some(v) = self.get(name).map(|v| v.value.clone()) else {
            return default.unwrap_or_else(|| {
                self.missing(name);
                [1, 1]
            });
        };
        match self.int_list(name, &v).as_deref() {
            Some(&[a]) | Some(&[a, _]) if a <= 0 => {
                self.non_positive(name, a);
                [1, 1]
            }
            Some(&[_, b]) if b <= 0 => {
                self.non_positive(name, b);
                [1, 1]
            }
            Some(&[a]) => [a as u64, a as u64],
            Some(&[a, b]) => [a as u64, b as u64],
            _ => {
                self.wrong(name, "an int or `[h, w]`");
                [1, 1]
            }
        }
    }

    /// Explicit non-negative padding: int, `[ph, pw]` or `[top, bottom, left, right]`; or `same`/`valid`
    /// when `symbolic`.
    pub fn padding(&mut self, name: &str, symbolic: bool) -> Padding {
        let Some(v) = self.get(name).map(|v| v.value.clone()) else {
            return Padding::Explicit([0; 4]);
        };
        if symbolic {
            if let Value::Sym(s) | Value::Str(s) = &v {
                match s.as_str() {
                    "same" => return Padding::Same,
                    "valid" => return Padding::Explicit([0; 4]),
                    _ => {
                        let span = self.span_of(name);
                        self.errors.push(
                            Diagnostic::error(Code::BadValue, span, format!("`{s}` is not a valid padding"))
                                .with_label("expected `same`, `valid`, an int, `[ph, pw]` or `[top, bottom, left, right]`")
                                .with_help_opt(did_you_mean(s, ["same", "valid"])),
                        );
                        return Padding::Explicit([0; 4]);
                    }
                }
            }
        }
        let list = self.int_list(name, &v);
        if let Some(neg) = list.as_ref().and_then(|l| l.iter().find(|x| **x < 0)) {
            let span = self.span_of(name);
            self.errors.push(
                Diagnostic::error(
                    Code::NonPositive,
                    span,
                    format!("padding cannot be negative, found {neg}"),
                )
                .with_label("negative padding"),
            );
            return Padding::Explicit([0; 4]);
        }
        match list.as_deref() {
            Some(&[p]) => Padding::Explicit([p as u64; 4]),
            Some(&[h, w]) => Padding::Explicit([h as u64, h as u64, w as u64, w as u64]),
            Some(&[t, b, l, r]) => Padding::Explicit([t as u64, b as u64, l as u64, r as u64]),
            _ => {
                let expected = if symbolic {
                    "`same`, `valid`, an int, `[ph, pw]` or `[t, b, l, r]`"
                } else {
                    "an int, `[ph, pw]` or `[t, b, l, r]`"
                };
                self.wrong(name, expected);
                Padding::Explicit([0; 4])
            }
        }
    }

    /// A list of ints (reshape targets).
    pub fn ints(&mut self, name: &str) -> Vec<i64> {
        match self.get(name).map(|v| v.value.clone()) {
            None => {
                self.missing(name);
                Vec::new()
            }
            Some(v) => self.int_list(name, &v).unwrap_or_else(|| {
                self.wrong(name, "a list of ints");
                Vec::new()
            }),
        }
    }
}

/// TensorFlow's `same` padding along one axis: output `ceil(len / stride)`, extra padding at the end.
pub fn same_padding(len: u64, kernel: u64, stride: u64, dilation: u64) -> [u64; 2] {
    let out = len.div_ceil(stride.max(1));
    let needed = (out.saturating_sub(1))
        .saturating_mul(stride)
        .saturating_add(dilation.saturating_mul(kernel.saturating_sub(1)))
        .saturating_add(1);
    let total = needed.saturating_sub(len);
    [total / 2, total - total / 2]
}
