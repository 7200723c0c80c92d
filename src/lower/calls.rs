//! Calls, pipelines and `seq`s: applying layers and blocks to tensors, and adding their nodes to the graph.

use std::collections::HashMap;

use super::args::{bind, LayerArgs};
use super::eval::{Elab, Env, Flow, NODE_BUDGET};
use super::layers::{self, Inputs, LayerSpec, PARAM_OPTIONS};
use super::names::Hint;
use super::value::{Spanned, Value};
use crate::diag::{did_you_mean, Code, Diagnostic, Frame, Span};
use crate::ir::shape::ShapeError;
use crate::ir::{NodeId, Op};
use crate::syntax::ast::*;

impl<'p> Elab<'p> {
    // ---- stages, calls and seqs -----------------------------------------------------------------

    /// Applies a pipeline stage to a piped input.
    pub(super) fn stage(
        &mut self,
        env: &mut Env,
        stage: &Expr,
        input: Spanned,
        hint: Hint,
    ) -> Value {
        match &stage.kind {
            ExprKind::Labelled(label, inner) => {
                self.stage(env, inner, input, Hint::Label(label.clone()))
            }
            ExprKind::Call(call) => self.call(env, call, Some(input), hint, stage.span),
            ExprKind::Name(n) => {
                let call = Call {
                    callee: Ident {
                        name: n.clone(),
                        span: stage.span,
                    },
                    args: Vec::new(),
                };
                self.call(env, &call, Some(input), hint, stage.span)
            }
            ExprKind::Seq(items) => self.seq(env, items, input, hint),
            _ => self.fail(
                Diagnostic::error(
                    Code::NotAStage,
                    stage.span,
                    "a pipeline stage must be a layer, a block or a `seq`",
                )
                .with_label("this cannot take an input"),
            ),
        }
    }

    pub(super) fn seq(
        &mut self,
        env: &mut Env,
        items: &[SeqItem],
        input: Spanned,
        hint: Hint,
    ) -> Value {
        if input.value.is_poison() {
            return Value::Poison;
        }
        let path = match self.names.claim(&hint, "seq") {
            Ok(p) => p,
            Err(d) => return self.fail(d),
        };
        self.names.push(path);
        let mut cur = input;
        let mut index = 0;
        let mut inner_env = env.clone();
        self.seq_items(&mut inner_env, items, &mut cur, &mut index);
        self.names.pop();
        cur.value
    }

    pub(super) fn seq_items(
        &mut self,
        env: &mut Env,
        items: &[SeqItem],
        cur: &mut Spanned,
        index: &mut usize,
    ) {
        for item in items {
            if cur.value.is_poison() {
                return;
            }
            match item {
                SeqItem::Stage { stage, repeat } => {
                    let times = match repeat {
                        None => 1,
                        Some(r) => match self.count(env, r, "a repetition count") {
                            Some(n) => n,
                            None => return,
                        },
                    };
                    for _ in 0..times {
                        let v =
                            self.stage(env, stage, cur.clone(), Hint::Index(*index, stage.span));
                        *index += 1;
                        *cur = Spanned {
                            value: v,
                            span: stage.span,
                        };
                        if cur.value.is_poison() {
                            return;
                        }
                    }
                }
                SeqItem::For { var, lo, hi, items } => {
                    let (Some(lo_v), Some(hi_v)) =
                        (self.int_value(env, lo), self.int_value(env, hi))
                    else {
                        return;
                    };
                    if hi_v.saturating_sub(lo_v) > NODE_BUDGET as i64 {
                        self.report(
                            Diagnostic::error(
                                Code::TooLarge,
                                hi.span,
                                "loop has too many iterations",
                            )
                            .with_label(format!("{} iterations", hi_v.saturating_sub(lo_v))),
                        );
                        *cur = Spanned {
                            value: Value::Poison,
                            span: cur.span,
                        };
                        return;
                    }
                    for i in lo_v..hi_v {
                        if !self.tick(var.span) {
                            *cur = Spanned {
                                value: Value::Poison,
                                span: cur.span,
                            };
                            return;
                        }
                        let mut body_env = env.clone();
                        body_env.vars.insert(var.name.clone(), Value::Int(i));
                        self.seq_items(&mut body_env, items, cur, index);
                    }
                }
                SeqItem::If {
                    cond,
                    then,
                    otherwise,
                } => match self.eval(env, cond, Hint::None) {
                    Value::Bool(true) => self.seq_items(env, then, cur, index),
                    Value::Bool(false) => self.seq_items(env, otherwise, cur, index),
                    Value::Poison => {
                        *cur = Spanned {
                            value: Value::Poison,
                            span: cur.span,
                        }
                    }
                    other => {
                        let d = self.type_error(cond.span, "an `if` condition", "a bool", &other);
                        self.report(d);
                        *cur = Spanned {
                            value: Value::Poison,
                            span: cur.span,
                        };
                    }
                },
            }
        }
    }

    pub(super) fn int_value(&mut self, env: &mut Env, e: &Expr) -> Option<i64> {
        match self.eval(env, e, Hint::None) {
            Value::Int(v) => Some(v),
            Value::Poison => None,
            other => {
                let d = self.type_error(e.span, "a loop bound", "an int", &other);
                self.report(d);
                None
            }
        }
    }

    /// A non-negative count below the node budget.
    pub(super) fn count(&mut self, env: &mut Env, e: &Expr, what: &str) -> Option<u64> {
        match self.eval(env, e, Hint::None) {
            Value::Int(v) if v >= 0 && v as usize <= NODE_BUDGET => Some(v as u64),
            Value::Int(v) if v < 0 => {
                self.report(
                    Diagnostic::error(
                        Code::NonPositive,
                        e.span,
                        format!("{what} cannot be negative, found {v}"),
                    )
                    .with_label("negative"),
                );
                None
            }
            Value::Int(v) => {
                self.report(
                    Diagnostic::error(
                        Code::TooLarge,
                        e.span,
                        format!("{what} of {v} is too large"),
                    )
                    .with_label("too many repetitions"),
                );
                None
            }
            Value::Poison => None,
            other => {
                let d = self.type_error(e.span, what, "an int", &other);
                self.report(d);
                None
            }
        }
    }

    /// Evaluates a call: a block or a layer, with an optional piped input.
    pub(super) fn call(
        &mut self,
        env: &mut Env,
        call: &Call,
        input: Option<Spanned>,
        hint: Hint,
        span: Span,
    ) -> Value {
        let module = env.module;
        let block = self.blocks[module].get(&call.callee.name).copied();
        let layer = layers::lookup(&call.callee.name);
        if block.is_none() && layer.is_none() {
            if let Some(v) = env.vars.get(&call.callee.name) {
                let what = v.describe(&self.graph);
                return self.fail(
                    Diagnostic::error(Code::NotAStage, call.callee.span, format!("`{}` is a variable ({what}), not a layer or block", call.callee.name))
                        .with_label("cannot be called or piped into")
                        .with_help("a pipeline stage is a layer, a block or a `seq`; combine tensors with `+`, `*` or `concat`"),
                );
            }
            let names = layers::LAYERS
                .iter()
                .map(|l| l.name)
                .chain(self.blocks[module].keys().map(String::as_str));
            let help = did_you_mean(&call.callee.name, names);
            return self.fail(
                Diagnostic::error(
                    Code::UnknownLayer,
                    call.callee.span,
                    format!("unknown layer or block `{}`", call.callee.name),
                )
                .with_label("not a built-in layer or a block in scope")
                .with_help_opt(help),
            );
        }
        // Argument values; initializer and regularizer arguments are specs, read by the parameter room.
        let mut pos = Vec::new();
        let mut kw = Vec::new();
        let mut specs = Vec::new();
        for arg in &call.args {
            match arg {
                Arg::Pos(e) => pos.push(Spanned {
                    value: self.eval(env, e, Hint::None),
                    span: e.span,
                }),
                Arg::Kw(name, e)
                    if layer.is_some_and(|l| l.has_params)
                        && ["init", "bias_init", "regularizer"].contains(&name.name.as_str()) =>
                {
                    specs.push((name.clone(), e));
                }
                Arg::Kw(name, e) => kw.push((
                    name.clone(),
                    Spanned {
                        value: self.eval(env, e, Hint::None),
                        span: e.span,
                    },
                )),
            }
        }
        if input.as_ref().is_some_and(|i| i.value.is_poison())
            || pos
                .iter()
                .chain(kw.iter().map(|(_, v)| v))
                .any(|v| v.value.is_poison())
        {
            return Value::Poison;
        }
        if let Some((def_module, def)) = block {
            return self.call_block(def_module, def, call, input, pos, kw, hint);
        }
        let spec = layer.expect("checked above");
        self.call_layer(env, spec, call, input, pos, kw, specs, hint, span)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn call_block(
        &mut self,
        module: usize,
        def: &'p BlockDef,
        call: &Call,
        input: Option<Spanned>,
        mut pos: Vec<Spanned>,
        kw: Vec<(Ident, Spanned)>,
        hint: Hint,
    ) -> Value {
        let key = (module, def.name.name.clone());
        if self.active.contains(&key) {
            let cycle: Vec<String> = self
                .active
                .iter()
                .skip_while(|k| **k != key)
                .map(|(_, n)| format!("`{n}`"))
                .collect();
            return self.fail(
                Diagnostic::error(Code::Recursion, call.callee.span, format!("block `{}` calls itself", def.name.name))
                    .with_label("recursive call")
                    .with_secondary(def.name.span, "block defined here")
                    .with_note(format!("call cycle: {} -> `{}`", cycle.join(" -> "), def.name.name))
                    .with_help("blocks are inlined at compile time, so they cannot recurse; use `seq { ... } * n` or a `for` loop to repeat"),
            );
        }
        if let Some(i) = input {
            pos.insert(0, i);
        }
        let names: Vec<&str> = def.params.iter().map(|p| p.name.name.as_str()).collect();
        let mut bound = match bind(&call.callee, "block", &names, &[], pos, kw) {
            Ok(b) => b,
            Err(d) => return self.fail(d),
        };
        let mut block_env = Env {
            vars: HashMap::new(),
            module,
        };
        for p in &def.params {
            let v = match bound.remove(&p.name.name) {
                Some(v) => v,
                None => match &p.default {
                    Some(d) => Spanned {
                        value: self.eval(&mut block_env, d, Hint::None),
                        span: d.span,
                    },
                    None => {
                        let d = Diagnostic::error(
                            Code::MissingArgument,
                            call.callee.span,
                            format!("block `{}` needs argument `{}`", def.name.name, p.name.name),
                        )
                        .with_label(format!("missing `{}`", p.name.name))
                        .with_secondary(p.name.span, "parameter declared here");
                        return self.fail(d);
                    }
                },
            };
            if let Some((ty, _)) = &p.ty {
                if !v.value.fits(ty) && !v.value.is_poison() {
                    let d = if let Value::Sym(s) = &v.value {
                        self.unknown_name(v.span, s)
                    } else {
                        Diagnostic::error(
                            Code::WrongType,
                            v.span,
                            format!(
                                "argument `{}` of block `{}` must be {ty}, found {}",
                                p.name.name,
                                def.name.name,
                                v.value.describe(&self.graph)
                            ),
                        )
                        .with_label(format!("expected {ty}"))
                        .with_secondary(p.name.span, "parameter declared here")
                    };
                    return self.fail(d);
                }
            }
            let value = match (&p.ty, v.value) {
                (Some((crate::syntax::ast::Ty::Float, _)), Value::Int(i)) => Value::Float(i as f64),
                (_, other) => other,
            };
            block_env.vars.insert(p.name.name.clone(), value);
        }
        let path = match self.names.claim(&hint, &def.name.name) {
            Ok(p) => p,
            Err(d) => return self.fail(d),
        };
        self.names.push(path);
        self.chain.push(Frame {
            block: def.name.name.clone(),
            call: call.callee.span,
        });
        self.active.push(key);
        let flow = self.body(&mut block_env, &def.body, Hint::None);
        self.active.pop();
        self.chain.pop();
        self.names.pop();
        match flow {
            Flow::Returned(mut vals) if vals.len() == 1 => vals.remove(0).value,
            Flow::Returned(vals) => Value::List(vals.into_iter().map(|v| v.value).collect()),
            Flow::Fell(_) => self.fail(
                Diagnostic::error(
                    Code::BadReturn,
                    def.name.span,
                    format!("block `{}` does not return a value", def.name.name),
                )
                .with_label("no `return` in this block")
                .with_secondary(call.callee.span, "called here")
                .with_help("end the block with `return <value>`"),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn call_layer(
        &mut self,
        env: &mut Env,
        spec: &'static LayerSpec,
        call: &Call,
        input: Option<Spanned>,
        mut pos: Vec<Spanned>,
        kw: Vec<(Ident, Spanned)>,
        specs: Vec<(Ident, &Expr)>,
        hint: Hint,
        span: Span,
    ) -> Value {
        // Split off the input tensors.
        let mut inputs: Vec<Spanned> = input.into_iter().collect();
        match spec.inputs {
            Inputs::One => {
                if inputs.is_empty() {
                    if pos
                        .first()
                        .is_some_and(|v| matches!(v.value, Value::Tensor(_)))
                    {
                        inputs.push(pos.remove(0));
                    } else if let Some(Spanned {
                        value: Value::Sym(s),
                        span,
                    }) = pos.first()
                    {
                        return self.fail(self.unknown_name_in(env, *span, s));
                    }
                }
            }
            Inputs::Many => {
                while let Some(first) = pos.first() {
                    match &first.value {
                        Value::Tensor(_) => inputs.push(pos.remove(0)),
                        Value::List(items)
                            if !items.is_empty()
                                && items.iter().all(|i| matches!(i, Value::Tensor(_))) =>
                        {
                            let list = pos.remove(0);
                            if let Value::List(items) = list.value {
                                inputs.extend(items.into_iter().map(|value| Spanned {
                                    value,
                                    span: list.span,
                                }));
                            }
                        }
                        Value::Sym(s) => {
                            let s = s.clone();
                            return self.fail(self.unknown_name_in(env, first.span, &s));
                        }
                        _ => break,
                    }
                }
            }
        }
        if inputs.is_empty() {
            return self.fail(
                Diagnostic::error(
                    Code::MissingInput,
                    call.callee.span,
                    format!("`{}` is called without an input tensor", spec.name),
                )
                .with_label("no input")
                .with_help(format!(
                    "pass the input first, `{0}(x, ...)`, or pipe it: `x |> {0}(...)`",
                    spec.name
                )),
            );
        }
        let extra: &[&str] = if spec.has_params { PARAM_OPTIONS } else { &[] };
        let mut vals = match bind(&call.callee, "layer", spec.args, extra, pos, kw) {
            Ok(v) => v,
            Err(d) => return self.fail(d),
        };
        let trainable = match vals.remove("trainable").map(|v| (v.value, v.span)) {
            None => None,
            Some((Value::Bool(b), _)) => Some(b),
            Some((other, s)) => {
                let d = self.type_error(s, "`trainable`", "a bool", &other);
                return self.fail(d);
            }
        };
        let in_ids: Vec<(NodeId, Span)> = inputs
            .iter()
            .map(|i| match i.value {
                Value::Tensor(id) => Ok((id, i.span)),
                ref other => Err(self.type_error(
                    i.span,
                    &format!("the input of `{}`", spec.name),
                    "a tensor",
                    other,
                )),
            })
            .collect::<Result<_, _>>()
            .unwrap_or_else(|d| {
                self.report(d);
                Vec::new()
            });
        if in_ids.len() != inputs.len() {
            return Value::Poison;
        }
        let tys: Vec<crate::ir::TensorType> = in_ids
            .iter()
            .map(|(id, _)| self.graph.node(*id).ty.clone())
            .collect();
        let ty_refs: Vec<&crate::ir::TensorType> = tys.iter().collect();
        let mut args = LayerArgs {
            callee: call.callee.clone(),
            vals,
            errors: Vec::new(),
            graph: &self.graph,
        };
        let built = (spec.build)(&mut args, &ty_refs);
        let errors = std::mem::take(&mut args.errors);
        if !errors.is_empty() {
            for d in errors {
                self.report(d);
            }
            return Value::Poison;
        }
        let path = match self.names.claim(&hint, spec.name) {
            Ok(p) => p,
            Err(d) => return self.fail(d),
        };
        // Parameters, then the op, then the optional activation.
        let mut all_inputs: Vec<(NodeId, Span)> = in_ids.clone();
        let options = match self.params.call_options(&specs, trainable) {
            Ok(o) => o,
            Err(ds) => {
                for d in ds {
                    self.report(d);
                }
                return Value::Poison;
            }
        };
        for (role, dims) in &built.params {
            let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            if elements.is_none_or(|n| n > crate::ir::types::MAX_ELEMENTS) {
                return self.fail(
                    Diagnostic::error(
                        Code::TooLarge,
                        call.callee.span,
                        format!(
                            "parameter `{path}.{}` would have more than 2^48 elements",
                            role.name()
                        ),
                    )
                    .with_label(format!("shape {dims:?}")),
                );
            }
            let dtype = tys[0].dtype;
            let dtype = if dtype.is_float() {
                dtype
            } else {
                crate::ir::DType::F32
            };
            let param = self.params.resolve(&path, *role, &options);
            let ty = crate::ir::TensorType::fixed(dtype, dims);
            let id = self.graph.add_typed(
                Op::Param(param),
                ty,
                &[],
                span,
                format!("{path}.{}", role.name()),
            );
            all_inputs.push((id, span));
        }
        let out = self.add_node(built.op, &all_inputs, span, path.clone(), call.callee.span);
        match (out, built.activation) {
            (Value::Tensor(id), Some(mut act)) => {
                if let Op::Softmax { axis } = &mut act {
                    *axis = self.graph.node(id).ty.rank() - 1;
                }
                self.add_node(
                    act,
                    &[(id, span)],
                    span,
                    format!("{path}.activation"),
                    call.callee.span,
                )
            }
            (v, _) => v,
        }
    }

    /// Adds an op for an operator expression (`a + b`, `0.2 * x`), named by the hint.
    pub(super) fn node_op(
        &mut self,
        op: Op,
        inputs: &[(NodeId, Span)],
        hint: Hint,
        span: Span,
        name: &str,
    ) -> Value {
        let path = match self.names.claim(&hint, name) {
            Ok(p) => p,
            Err(d) => return self.fail(d),
        };
        self.add_node(op, inputs, span, path, span)
    }

    /// Adds a node; a shape error becomes a diagnostic at `span` with each input's type shown.
    pub(super) fn add_node(
        &mut self,
        op: Op,
        inputs: &[(NodeId, Span)],
        span: Span,
        path: String,
        head: Span,
    ) -> Value {
        if self.graph.len() >= NODE_BUDGET {
            if !self.budget_reported {
                self.budget_reported = true;
                self.report(
                    Diagnostic::error(
                        Code::TooLarge,
                        span,
                        format!("the model has more than {NODE_BUDGET} nodes"),
                    )
                    .with_label("stopped here"),
                );
            }
            return Value::Poison;
        }
        let op_name = op.name();
        let ids: Vec<NodeId> = inputs.iter().map(|(id, _)| *id).collect();
        match self.graph.add(op, &ids, span, path) {
            Ok(id) => Value::Tensor(id),
            Err(e) => {
                let mut d = shape_diagnostic(&e, op_name, span, head);
                for (id, s) in inputs
                    .iter()
                    .filter(|(id, _)| !self.graph.node(*id).op.is_param())
                {
                    d = d.with_secondary(*s, format!("`{}`", self.graph.node(*id).ty));
                }
                self.fail(d)
            }
        }
    }
}
/// Maps a shape error to its user-facing code, message and label.
fn shape_diagnostic(e: &ShapeError, op: &str, span: Span, head: Span) -> Diagnostic {
    let (code, label) = match e {
        ShapeError::ConcatMismatch { .. } => (
            Code::ConcatMismatch,
            "shapes differ outside the concat axis".to_string(),
        ),
        ShapeError::Mismatch { .. } => (Code::AddMismatch, "shapes differ".to_string()),
        ShapeError::Rank { expected, .. } => (Code::RankMismatch, format!("needs {expected}")),
        ShapeError::ParamShape { .. } | ShapeError::Arity { .. } | ShapeError::Axis { .. } => {
            (Code::RankMismatch, e.to_string())
        }
        ShapeError::Dtype { expected, .. } => {
            (Code::DtypeMismatch, format!("needs {expected} elements"))
        }
        ShapeError::KernelTooLarge { .. } => (
            Code::KernelTooLarge,
            "the kernel does not fit the input".to_string(),
        ),
        ShapeError::NonPositive { .. } => (Code::NonPositive, "must be positive".to_string()),
        ShapeError::Groups { .. } => (
            Code::GroupMismatch,
            "groups must divide channels and filters".to_string(),
        ),
        ShapeError::Reshape { .. } => (
            Code::ReshapeMismatch,
            "the element count changes".to_string(),
        ),
        ShapeError::TooLarge => (Code::TooLarge, "too large".to_string()),
        ShapeError::PadTooLarge { .. } => (Code::PadTooLarge, "padding too large".to_string()),
        ShapeError::Declared => (Code::InternalBug, e.to_string()),
    };
    let message = match e {
        ShapeError::ParamShape { .. } => {
            format!("`{op}` cannot take this input: its parameters would not fit")
        }
        ShapeError::ConcatMismatch { .. } => {
            "concatenated tensors must match in every dimension but the concat axis".to_string()
        }
        ShapeError::Mismatch { .. } => format!("`{op}` needs tensors of one shape"),
        ShapeError::Rank { .. } | ShapeError::Dtype { .. } => e.to_string(),
        other => format!("`{op}`: {other}"),
    };
    let help = match e {
        ShapeError::Rank { .. } => {
            Some("change a tensor's rank with `flatten` or `reshape([...])`")
        }
        ShapeError::KernelTooLarge { .. } => {
            Some("use a smaller kernel or stride, or pad the input (`padding=same`)")
        }
        ShapeError::PadTooLarge { .. } => Some("use `padding=same` or at most half the kernel"),
        _ => None,
    };
    let primary = if matches!(
        e,
        ShapeError::Mismatch { .. } | ShapeError::ConcatMismatch { .. }
    ) {
        span
    } else {
        head
    };
    Diagnostic::error(code, primary, message)
        .with_label(label)
        .with_help_opt(help.map(String::from))
}
