//! Reading option specs such as `adam(lr=1e-3)`, `l2(1e-4)` or `he_normal`: a name with constant arguments.
//! Used for initializers and regularizers at call sites and for everything in the train section.

use std::collections::HashMap;

use super::args::{bind, LayerArgs};
use super::value::{Spanned, Value};
use crate::diag::{did_you_mean, Code, Diagnostic};
use crate::ir::train::{Init, Loss, Metric, Optimizer, Regularizer};
use crate::ir::Graph;
use crate::syntax::ast::{Arg, BinOp, Expr, ExprKind, Ident, UnOp};

/// A constant: literals, names (as symbols), negation, simple arithmetic and lists.
pub fn constant(e: &Expr) -> Result<Value, Diagnostic> {
    Ok(match &e.kind {
        ExprKind::Int(v) => Value::Int(*v),
        ExprKind::Float(v) => Value::Float(*v),
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Str(s) => Value::Str(s.clone()),
        ExprKind::Name(n) => Value::Sym(n.clone()),
        ExprKind::List(items) => Value::List(items.iter().map(constant).collect::<Result<_, _>>()?),
        ExprKind::Unary(UnOp::Neg, inner) => match constant(inner)? {
            Value::Int(v) => Value::Int(v.checked_neg().ok_or_else(|| not_constant(e))?),
            Value::Float(v) => Value::Float(-v),
            _ => return Err(not_constant(e)),
        },
        ExprKind::Binary(op @ (BinOp::Mul | BinOp::Div | BinOp::Add | BinOp::Sub), l, r) => {
            let (a, b) = (
                number(&constant(l)?).ok_or_else(|| not_constant(l))?,
                number(&constant(r)?).ok_or_else(|| not_constant(r))?,
            );
            Value::Float(match op {
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
                BinOp::Add => a + b,
                _ => a - b,
            })
        }
        ExprKind::Call(call) => Value::Sym(call.callee.name.clone()),
        _ => return Err(not_constant(e)),
    })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn not_constant(e: &Expr) -> Diagnostic {
    Diagnostic::error(Code::WrongType, e.span, "expected a constant here")
        .with_label("not a literal, name or list")
}

/// A spec's name and its arguments, bound to `params` and readable with typed accessors.
pub struct Spec<'g> {
    pub name: &'static str,
    pub args: LayerArgs<'g>,
}

/// Reads `e` as one of `table`'s specs (`name` or `name(args)`); `what` names the kind in messages.
pub fn read<'g>(
    e: &'g Expr,
    what: &str,
    table: &[(&'static str, &'static [&'static str])],
    graph: &'g Graph,
) -> Result<Spec<'g>, Diagnostic> {
    let (callee, args): (Ident, &[Arg]) = match &e.kind {
        ExprKind::Name(n) => (
            Ident {
                name: n.clone(),
                span: e.span,
            },
            &[],
        ),
        ExprKind::Call(c) => (c.callee.clone(), &c.args),
        _ => {
            let d = Diagnostic::error(Code::WrongType, e.span, format!("expected {what}"))
                .with_label(format!(
                    "expected one of: {}",
                    table.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                ));
            return Err(d);
        }
    };
    let Some(&(name, params)) = table.iter().find(|t| t.0 == callee.name) else {
        return Err(Diagnostic::error(
            Code::UnknownTrainValue,
            callee.span,
            format!("unknown {what} `{}`", callee.name),
        )
        .with_label(format!(
            "expected one of: {}",
            table.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
        ))
        .with_help_opt(did_you_mean(&callee.name, table.iter().map(|t| t.0))));
    };
    let mut pos = Vec::new();
    let mut kw = Vec::new();
    for a in args {
        match a {
            Arg::Pos(x) => pos.push(Spanned {
                value: constant(x)?,
                span: x.span,
            }),
            Arg::Kw(k, x) => kw.push((
                k.clone(),
                Spanned {
                    value: constant(x)?,
                    span: x.span,
                },
            )),
        }
    }
    let vals: HashMap<String, Spanned> = bind(&callee, what, params, &[], pos, kw)?;
    Ok(Spec {
        name,
        args: LayerArgs {
            callee,
            vals,
            errors: Vec::new(),
            graph,
        },
    })
}

/// Finishes reading a spec: its first argument error, if any.
fn finish<T>(spec: Spec, value: T) -> Result<T, Diagnostic> {
    match spec.args.errors.into_iter().next() {
        Some(d) => Err(d),
        None => Ok(value),
    }
}

pub const INITS: &[(&str, &[&str])] = &[
    ("zeros", &[]),
    ("ones", &[]),
    ("constant", &["value"]),
    ("random_normal", &["mean", "std"]),
    ("random_uniform", &["min", "max"]),
    ("glorot_normal", &[]),
    ("glorot_uniform", &[]),
    ("he_normal", &[]),
    ("he_uniform", &[]),
];

pub fn init(e: &Expr) -> Result<Init, Diagnostic> {
    let g = Graph::default();
    let mut s = read(e, "initializer", INITS, &g)?;
    let v = match s.name {
        "zeros" => Init::Zeros,
        "ones" => Init::Ones,
        "constant" => Init::Constant {
            value: s.args.float("value", 0.0),
        },
        "random_normal" => Init::RandomNormal {
            mean: s.args.float("mean", 0.0),
            std: s.args.float_pos("std", 0.05),
        },
        "random_uniform" => {
            let (min, max) = (s.args.float("min", -0.05), s.args.float("max", 0.05));
            if min >= max {
                let span = s.args.span_of("max");
                s.args.errors.push(
                    Diagnostic::error(
                        Code::BadHyperParameter,
                        span,
                        format!("`max` ({max}) must be greater than `min` ({min})"),
                    )
                    .with_label("empty range"),
                );
            }
            Init::RandomUniform { min, max }
        }
        "glorot_normal" => Init::GlorotNormal,
        "glorot_uniform" => Init::GlorotUniform,
        "he_normal" => Init::HeNormal,
        _ => Init::HeUniform,
    };
    finish(s, v)
}

pub const REGULARIZERS: &[(&str, &[&str])] = &[
    ("none", &[]),
    ("l1", &["factor"]),
    ("l2", &["factor"]),
    ("l1_l2", &["l1", "l2"]),
];

pub fn regularizer(e: &Expr) -> Result<Regularizer, Diagnostic> {
    let g = Graph::default();
    let mut s = read(e, "regularizer", REGULARIZERS, &g)?;
    let v = match s.name {
        "none" => Regularizer::None,
        "l1" => Regularizer::L1(nonneg(&mut s, "factor", None)),
        "l2" => Regularizer::L2(nonneg(&mut s, "factor", None)),
        _ => Regularizer::L1L2 {
            l1: nonneg(&mut s, "l1", Some(0.01)),
            l2: nonneg(&mut s, "l2", Some(0.01)),
        },
    };
    finish(s, v)
}

/// A non-negative hyper-parameter; required when `default` is `None`.
fn nonneg(s: &mut Spec, name: &str, default: Option<f64>) -> f64 {
    if default.is_none() && !s.args.has(name) {
        s.args.positive(name, None);
        return 0.0;
    }
    let v = s.args.float(name, default.unwrap_or(0.0));
    if v < 0.0 || v.is_nan() {
        let span = s.args.span_of(name);
        s.args.errors.push(
            Diagnostic::error(
                Code::BadHyperParameter,
                span,
                format!("`{name}` cannot be negative, found {v}"),
            )
            .with_label("must be >= 0"),
        );
    }
    v
}

/// A hyper-parameter in `[lo, hi)`.
fn in_range(s: &mut Spec, name: &str, default: f64, lo: f64, hi: f64) -> f64 {
    let v = s.args.float(name, default);
    if !(v >= lo && v < hi) {
        let span = s.args.span_of(name);
        s.args.errors.push(
            Diagnostic::error(
                Code::BadHyperParameter,
                span,
                format!("`{name}` must be in [{lo}, {hi}), found {v}"),
            )
            .with_label("out of range"),
        );
    }
    v
}

/// A strictly positive hyper-parameter.
fn positive(s: &mut Spec, name: &str, default: f64) -> f64 {
    let v = s.args.float(name, default);
    // NaN is not positive either.
    if v.is_nan() || v <= 0.0 {
        let span = s.args.span_of(name);
        s.args.errors.push(
            Diagnostic::error(
                Code::BadHyperParameter,
                span,
                format!("`{name}` must be positive, found {v}"),
            )
            .with_label("must be > 0"),
        );
    }
    v
}

pub const LOSSES: &[(&str, &[&str])] = &[
    ("mae", &[]),
    ("mse", &[]),
    ("rmse", &[]),
    ("binary_crossentropy", &["from_logits"]),
    (
        "categorical_crossentropy",
        &["from_logits", "label_smoothing"],
    ),
    ("sparse_categorical_crossentropy", &["from_logits"]),
];

pub fn loss(e: &Expr) -> Result<Loss, Diagnostic> {
    let g = Graph::default();
    let mut s = read(e, "loss", LOSSES, &g)?;
    let v = match s.name {
        "mae" => Loss::Mae,
        "mse" => Loss::Mse,
        "rmse" => Loss::Rmse,
        "binary_crossentropy" => Loss::BinaryCrossentropy {
            from_logits: s.args.bool("from_logits", false),
        },
        "categorical_crossentropy" => Loss::CategoricalCrossentropy {
            from_logits: s.args.bool("from_logits", false),
            label_smoothing: in_range(&mut s, "label_smoothing", 0.0, 0.0, 1.0),
        },
        _ => Loss::SparseCategoricalCrossentropy {
            from_logits: s.args.bool("from_logits", false),
        },
    };
    finish(s, v)
}

pub const OPTIMIZERS: &[(&str, &[&str])] = &[
    (
        "sgd",
        &["lr", "momentum", "nesterov", "dampening", "weight_decay"],
    ),
    (
        "adagrad",
        &[
            "lr",
            "lr_decay",
            "initial_accumulator_value",
            "eps",
            "weight_decay",
        ],
    ),
    ("adadelta", &["lr", "rho", "eps", "weight_decay"]),
    (
        "rmsprop",
        &["lr", "alpha", "eps", "momentum", "centered", "weight_decay"],
    ),
    (
        "adam",
        &["lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad"],
    ),
];

pub fn optimizer(e: &Expr) -> Result<Optimizer, Diagnostic> {
    let g = Graph::default();
    let mut s = read(e, "optimizer", OPTIMIZERS, &g)?;
    let v = match s.name {
        "sgd" => {
            let lr = positive(&mut s, "lr", 0.01);
            let momentum = in_range(&mut s, "momentum", 0.0, 0.0, 1.0);
            let nesterov = s.args.bool("nesterov", false);
            let dampening = in_range(&mut s, "dampening", 0.0, 0.0, 1.0);
            let weight_decay = nonneg(&mut s, "weight_decay", Some(0.0));
            if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                let span = s.args.span_of("nesterov");
                s.args.errors.push(
                    Diagnostic::error(
                        Code::BadHyperParameter,
                        span,
                        "Nesterov momentum needs `momentum` > 0 and `dampening` = 0",
                    )
                    .with_label("nesterov is on")
                    .with_help("set `momentum=0.9`, for example"),
                );
            }
            Optimizer::Sgd {
                lr,
                momentum,
                nesterov,
                dampening,
                weight_decay,
            }
        }
        "adagrad" => Optimizer::Adagrad {
            lr: positive(&mut s, "lr", 0.01),
            lr_decay: nonneg(&mut s, "lr_decay", Some(0.0)),
            initial_accumulator_value: nonneg(&mut s, "initial_accumulator_value", Some(0.0)),
            eps: positive(&mut s, "eps", 1e-10),
            weight_decay: nonneg(&mut s, "weight_decay", Some(0.0)),
        },
        "adadelta" => Optimizer::Adadelta {
            lr: positive(&mut s, "lr", 1.0),
            rho: in_range(&mut s, "rho", 0.9, 0.0, 1.0),
            eps: positive(&mut s, "eps", 1e-6),
            weight_decay: nonneg(&mut s, "weight_decay", Some(0.0)),
        },
        "rmsprop" => Optimizer::RmsProp {
            lr: positive(&mut s, "lr", 0.01),
            alpha: in_range(&mut s, "alpha", 0.99, 0.0, 1.0),
            eps: positive(&mut s, "eps", 1e-8),
            momentum: in_range(&mut s, "momentum", 0.0, 0.0, 1.0),
            centered: s.args.bool("centered", false),
            weight_decay: nonneg(&mut s, "weight_decay", Some(0.0)),
        },
        _ => Optimizer::Adam {
            lr: positive(&mut s, "lr", 0.001),
            beta1: in_range(&mut s, "beta1", 0.9, 0.0, 1.0),
            beta2: in_range(&mut s, "beta2", 0.999, 0.0, 1.0),
            eps: positive(&mut s, "eps", 1e-8),
            weight_decay: nonneg(&mut s, "weight_decay", Some(0.0)),
            amsgrad: s.args.bool("amsgrad", false),
        },
    };
    finish(s, v)
}

pub const METRICS: &[(&str, &[&str])] = &[
    ("accuracy", &[]),
    ("binary_accuracy", &[]),
    ("categorical_accuracy", &[]),
    ("sparse_categorical_accuracy", &[]),
    ("top_k_accuracy", &["k"]),
    ("mae", &[]),
    ("mse", &[]),
    ("rmse", &[]),
];

pub fn metric(e: &Expr) -> Result<Metric, Diagnostic> {
    let g = Graph::default();
    let mut s = read(e, "metric", METRICS, &g)?;
    let v = match s.name {
        "accuracy" => Metric::Accuracy,
        "binary_accuracy" => Metric::BinaryAccuracy,
        "categorical_accuracy" => Metric::CategoricalAccuracy,
        "sparse_categorical_accuracy" => Metric::SparseCategoricalAccuracy,
        "top_k_accuracy" => Metric::TopKAccuracy {
            k: s.args.positive("k", Some(5)),
        },
        "mae" => Metric::Mae,
        "mse" => Metric::Mse,
        _ => Metric::Rmse,
    };
    finish(s, v)
}
