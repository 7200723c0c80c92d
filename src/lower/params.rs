//! Resolving each parameter's initializer, regularizer and trainable flag: call-site arguments win over
//! the train section's `layer "glob"` rules, which win over its defaults.

use std::cell::Cell;

use super::spec;
use crate::diag::{Code, Diagnostic, Span};
use crate::ir::train::{Init, Regularizer};
use crate::ir::{Param, ParamRole};
use crate::syntax::ast::{Expr, Ident, Setting};

/// Per-parameter settings from one source (a call, a rule, or the defaults).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub init: Option<Init>,
    pub bias_init: Option<Init>,
    pub regularizer: Option<Regularizer>,
    pub trainable: Option<bool>,
}

pub struct Rule {
    pub pattern: String,
    pub span: Span,
    pub options: Options,
    pub hit: Cell<bool>,
}

#[derive(Default)]
pub struct ParamSettings {
    pub defaults: Options,
    pub rules: Vec<Rule>,
}

impl ParamSettings {
    /// Options given at a call site: `init=`, `bias_init=`, `regularizer=` specs and `trainable=`.
    pub fn call_options(
        &self,
        specs: &[(Ident, &Expr)],
        trainable: Option<bool>,
    ) -> Result<Options, Vec<Diagnostic>> {
        let mut o = Options {
            trainable,
            ..Options::default()
        };
        let mut errors = Vec::new();
        for (name, e) in specs {
            let r = match name.name.as_str() {
                "init" => spec::init(e).map(|v| o.init = Some(v)),
                "bias_init" => spec::init(e).map(|v| o.bias_init = Some(v)),
                _ => spec::regularizer(e).map(|v| o.regularizer = Some(v)),
            };
            if let Err(d) = r {
                errors.push(d);
            }
        }
        if errors.is_empty() {
            Ok(o)
        } else {
            Err(errors)
        }
    }

    /// The parameter node for `role` of the layer at `layer_path`.
    pub fn resolve(&self, layer_path: &str, role: ParamRole, call: &Options) -> Param {
        if role.is_buffer() {
            return Param {
                role,
                init: Init::Default,
                regularizer: Regularizer::None,
                trainable: false,
            };
        }
        let mut chosen = self.defaults.clone();
        for rule in &self.rules {
            if glob(&rule.pattern, layer_path) {
                rule.hit.set(true);
                overlay(&mut chosen, &rule.options);
            }
        }
        overlay(&mut chosen, call);
        let is_bias = matches!(
            role,
            ParamRole::Bias | ParamRole::BiasIh | ParamRole::BiasHh
        );
        let init = if role.is_weight() {
            chosen.init
        } else if is_bias {
            chosen.bias_init
        } else {
            None
        };
        let regularizer = if role.is_weight() {
            chosen.regularizer
        } else {
            None
        };
        Param {
            role,
            init: init.unwrap_or(Init::Default),
            regularizer: regularizer.unwrap_or(Regularizer::None),
            trainable: chosen.trainable.unwrap_or(true),
        }
    }

    /// Rules that matched no layer.
    pub fn unused_rules(&self) -> Vec<Diagnostic> {
        self.rules
            .iter()
            .filter(|r| !r.hit.get())
            .map(|r| {
                Diagnostic::error(Code::RuleMatchesNothing, r.span, format!("layer rule `{}` matches no layer with parameters", r.pattern))
                    .with_label("matches nothing")
                    .with_help("patterns match layer paths such as `layer1.0.conv1`; `*` matches any characters")
            })
            .collect()
    }
}

fn overlay(base: &mut Options, top: &Options) {
    if top.init.is_some() {
        base.init = top.init.clone();
    }
    if top.bias_init.is_some() {
        base.bias_init = top.bias_init.clone();
    }
    if top.regularizer.is_some() {
        base.regularizer = top.regularizer.clone();
    }
    if top.trainable.is_some() {
        base.trainable = top.trainable;
    }
}

/// Reads one per-parameter setting into `o`; returns false if `key` is not one.
pub fn read_setting(o: &mut Options, s: &Setting, diags: &mut Vec<Diagnostic>) -> bool {
    let r = match s.key.name.as_str() {
        "init" => spec::init(&s.value).map(|v| o.init = Some(v)),
        "bias_init" => spec::init(&s.value).map(|v| o.bias_init = Some(v)),
        "regularizer" => spec::regularizer(&s.value).map(|v| o.regularizer = Some(v)),
        "trainable" => match spec::constant(&s.value) {
            Ok(crate::lower::value::Value::Bool(b)) => {
                o.trainable = Some(b);
                Ok(())
            }
            _ => Err(Diagnostic::error(
                Code::WrongType,
                s.value.span,
                "`trainable` must be `true` or `false`",
            )
            .with_label("expected a bool")),
        },
        _ => return false,
    };
    if let Err(d) = r {
        diags.push(d);
    }
    true
}

/// Shell-style glob with `*` only; `*` matches any run of characters, dots included.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}
