//! Validating the train section: defaults and layer rules for parameters, then loss, optimizer, schedule
//! and metrics into a [`TrainConfig`].

use std::cell::Cell;

use super::params::{read_setting, Options, ParamSettings, Rule};
use super::spec;
use super::value::Value;
use crate::diag::{did_you_mean, Code, Diagnostic};
use crate::ir::train::{Loss, Optimizer, TrainConfig};
use crate::ir::Graph;
use crate::syntax::ast::TrainDef;

const KEYS: &[&str] = &[
    "loss",
    "optimizer",
    "batch_size",
    "epochs",
    "metrics",
    "seed",
    "init",
    "bias_init",
    "regularizer",
    "trainable",
];

/// The per-parameter part of the train section (read before the model is lowered).
pub fn param_settings(t: Option<&TrainDef>, diags: &mut Vec<Diagnostic>) -> ParamSettings {
    let mut settings = ParamSettings::default();
    let Some(t) = t else { return settings };
    for s in &t.settings {
        read_setting(&mut settings.defaults, s, diags);
    }
    for r in &t.rules {
        let mut options = Options::default();
        for s in &r.settings {
            if !read_setting(&mut options, s, diags) {
                diags.push(
                    Diagnostic::error(
                        Code::BadTrainSetting,
                        s.key.span,
                        format!("`{}` cannot be set per layer", s.key.name),
                    )
                    .with_label("not a per-layer setting")
                    .with_help_opt(did_you_mean(
                        &s.key.name,
                        ["init", "bias_init", "regularizer", "trainable"],
                    ))
                    .with_note(
                        "layer rules take `init`, `bias_init`, `regularizer` and `trainable`",
                    ),
                );
            }
        }
        settings.rules.push(Rule {
            pattern: r.pattern.clone(),
            span: r.pattern_span,
            options,
            hit: Cell::new(false),
        });
    }
    settings
}

/// The model-wide part of the train section.
pub fn config(t: &TrainDef, g: &Graph, diags: &mut Vec<Diagnostic>) -> Option<TrainConfig> {
    let mut loss = None;
    let mut optimizer = None;
    let mut batch_size = 32;
    let mut epochs = 1;
    let mut metrics = Vec::new();
    let mut seed = 0;
    let before = diags.len();
    let mut seen: Vec<(&str, crate::diag::Span)> = Vec::new();
    for s in &t.settings {
        let key = s.key.name.as_str();
        if !KEYS.contains(&key) {
            diags.push(
                Diagnostic::error(
                    Code::BadTrainSetting,
                    s.key.span,
                    format!("unknown train setting `{key}`"),
                )
                .with_label("not a train setting")
                .with_help_opt(did_you_mean(key, KEYS.iter().copied()))
                .with_note(format!("settings: {}", KEYS.join(", "))),
            );
            continue;
        }
        if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == key) {
            diags.push(
                Diagnostic::error(
                    Code::BadTrainSetting,
                    s.key.span,
                    format!("train setting `{key}` is set twice"),
                )
                .with_label("set again here")
                .with_secondary(*prev, "first set here"),
            );
            continue;
        }
        seen.push((key, s.key.span));
        let r = match key {
            "loss" => spec::loss(&s.value).map(|l| loss = Some(l)),
            "optimizer" => spec::optimizer(&s.value).map(|o| optimizer = Some(o)),
            "batch_size" => count(&s.value, key).map(|n| batch_size = n),
            "epochs" => count(&s.value, key).map(|n| epochs = n),
            "seed" => match spec::constant(&s.value) {
                Ok(Value::Int(v)) if v >= 0 => {
                    seed = v as u64;
                    Ok(())
                }
                _ => Err(Diagnostic::error(
                    Code::WrongType,
                    s.value.span,
                    "`seed` must be a non-negative int",
                )
                .with_label("expected an int")),
            },
            "metrics" => match &s.value.kind {
                crate::syntax::ast::ExprKind::List(items) => items
                    .iter()
                    .try_for_each(|m| spec::metric(m).map(|v| metrics.push(v))),
                _ => spec::metric(&s.value).map(|v| metrics.push(v)),
            },
            // Per-parameter defaults were read before lowering.
            _ => Ok(()),
        };
        if let Err(d) = r {
            diags.push(d);
        }
    }
    let Some(loss) = loss else {
        if diags.len() == before {
            diags.push(
                Diagnostic::error(
                    Code::BadTrainSetting,
                    t.span,
                    "the train section has no `loss`",
                )
                .with_label("missing `loss = ...`")
                .with_help("e.g. `loss = sparse_categorical_crossentropy`"),
            );
        }
        return None;
    };
    check_loss(&loss, g, t, diags);
    let optimizer = optimizer.unwrap_or(Optimizer::Sgd {
        lr: 0.01,
        momentum: 0.0,
        nesterov: false,
        dampening: 0.0,
        weight_decay: 0.0,
    });
    (diags.len() == before).then_some(TrainConfig {
        loss,
        optimizer,
        batch_size,
        epochs,
        metrics,
        seed,
    })
}

fn count(e: &crate::syntax::ast::Expr, key: &str) -> Result<u64, Diagnostic> {
    match spec::constant(e) {
        Ok(Value::Int(v)) if v > 0 => Ok(v as u64),
        Ok(Value::Int(v)) => Err(Diagnostic::error(
            Code::BadHyperParameter,
            e.span,
            format!("`{key}` must be positive, found {v}"),
        )
        .with_label("must be at least 1")),
        _ => Err(Diagnostic::error(
            Code::WrongType,
            e.span,
            format!("`{key}` must be a positive int"),
        )
        .with_label("expected an int")),
    }
}

/// The loss needs one output, and a class axis for the categorical losses.
fn check_loss(loss: &Loss, g: &Graph, t: &TrainDef, diags: &mut Vec<Diagnostic>) {
    let span = t
        .settings
        .iter()
        .find(|s| s.key.name == "loss")
        .map_or(t.span, |s| s.value.span);
    if g.outputs.len() != 1 {
        diags.push(
            Diagnostic::error(
                Code::LossMismatch,
                span,
                format!(
                    "the loss needs a model with one output; this one has {}",
                    g.outputs.len()
                ),
            )
            .with_label("which output?"),
        );
        return;
    }
    let out = &g.node(g.outputs[0].1).ty;
    let categorical = matches!(
        loss,
        Loss::CategoricalCrossentropy { .. } | Loss::SparseCategoricalCrossentropy { .. }
    );
    if categorical && out.size(out.rank() - 1).is_some_and(|c| c < 2) {
        diags.push(
            Diagnostic::error(
                Code::LossMismatch,
                span,
                format!("a categorical loss needs at least 2 classes, but the output is `{out}`"),
            )
            .with_label("one class")
            .with_help("for one sigmoid output use `binary_crossentropy`"),
        );
    }
}
