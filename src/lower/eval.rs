//! The elaborator: evaluates a model's body at compile time, inlining blocks, unrolling `seq`s and loops,
//! and adding a typed node to the graph for every layer it meets.

use std::collections::HashMap;

use super::args::{bind, LayerArgs};
use super::layers::{self, Inputs, LayerSpec, PARAM_OPTIONS};
use super::names::{Hint, Scopes};
use super::params::ParamSettings;
use super::value::{Spanned, Value};
use crate::diag::{did_you_mean, Code, Diagnostic, Frame, Span};
use crate::ir::shape::ShapeError;
use crate::ir::{Graph, NodeId, Op};
use crate::syntax::ast::*;
use crate::syntax::Program;

/// Most nodes one model may create: stops runaway loops long before memory runs out.
const NODE_BUDGET: usize = 1_000_000;
/// Deepest expression or block-call nesting the evaluator follows.
const MAX_DEPTH: usize = 512;

/// Variables of one block invocation (or the model body), and the module whose blocks are visible.
#[derive(Clone)]
pub struct Env {
    pub vars: HashMap<String, Value>,
    pub module: usize,
}

pub struct Elab<'p> {
    pub program: &'p Program,
    pub graph: Graph,
    pub diags: Vec<Diagnostic>,
    pub names: Scopes,
    /// For each module, the blocks callable from it, with the module that defines each.
    pub blocks: Vec<HashMap<String, (usize, &'p BlockDef)>>,
    pub params: ParamSettings<'p>,
    chain: Vec<Frame>,
    active: Vec<(usize, String)>,
    budget_reported: bool,
    depth: usize,
}

/// What a body evaluated to.
pub enum Flow {
    Returned(Vec<Spanned>),
    Fell(Option<Spanned>),
}

impl<'p> Elab<'p> {
    pub fn new(program: &'p Program, blocks: Vec<HashMap<String, (usize, &'p BlockDef)>>, params: ParamSettings<'p>) -> Self {
        Elab {
            program,
            graph: Graph::default(),
            diags: Vec::new(),
            names: Scopes::default(),
            blocks,
            params,
            chain: Vec::new(),
            active: Vec::new(),
            budget_reported: false,
            depth: 0,
        }
    }

    /// Records a diagnostic with the current block call chain.
    pub fn report(&mut self, mut d: Diagnostic) {
        d.chain = self.chain.clone();
        self.diags.push(d);
    }

    fn fail(&mut self, d: Diagnostic) -> Value {
        self.report(d);
        Value::Poison
    }

    // ---- bodies and statements ------------------------------------------------------------------

    /// Evaluates statements; the value of a body is its `return` or its trailing expression.
    pub fn body(&mut self, env: &mut Env, body: &Body, hint: Hint) -> Flow {
        let last = body.stmts.len().saturating_sub(1);
        for (i, stmt) in body.stmts.iter().enumerate() {
            match stmt {
                Stmt::Bind(name, e) => {
                    let v = self.eval(env, e, Hint::Bind(name.name.clone()));
                    env.vars.insert(name.name.clone(), v);
                }
                Stmt::Assert { cond, message, span } => self.assert(env, cond, message.as_ref(), *span),
                Stmt::Return(exprs, _) => {
                    let values = exprs.iter().map(|e| Spanned { value: self.eval(env, e, Hint::None), span: e.span }).collect();
                    return Flow::Returned(values);
                }
                Stmt::Expr(e) => {
                    let h = if i == last { hint.clone() } else { Hint::None };
                    let v = self.eval(env, e, h);
                    if i == last {
                        return Flow::Fell(Some(Spanned { value: v, span: e.span }));
                    }
                }
            }
        }
        Flow::Fell(None)
    }

    fn assert(&mut self, env: &mut Env, cond: &Expr, message: Option<&Expr>, span: Span) {
        match self.eval(env, cond, Hint::None) {
            Value::Bool(true) | Value::Poison => {}
            Value::Bool(false) => {
                let text = match message.map(|m| self.eval(env, m, Hint::None)) {
                    Some(Value::Str(s)) => s,
                    Some(Value::Poison) => return,
                    Some(other) => format!("{other:?}"),
                    None => "assertion failed".to_string(),
                };
                self.report(Diagnostic::error(Code::AssertFailed, span, text).with_label("this assert failed"));
            }
            other => {
                let d = self.type_error(cond.span, "the condition of `assert`", "a bool", &other);
                self.report(d);
            }
        }
    }

    // ---- expressions ----------------------------------------------------------------------------

    pub fn eval(&mut self, env: &mut Env, e: &Expr, hint: Hint) -> Value {
        if self.depth >= MAX_DEPTH {
            return self.fail(Diagnostic::error(Code::TooLarge, e.span, "expression or block calls nested too deeply").with_label(format!("more than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let v = self.eval_inner(env, e, hint);
        self.depth -= 1;
        v
    }

    fn eval_inner(&mut self, env: &mut Env, e: &Expr, hint: Hint) -> Value {
        match &e.kind {
            ExprKind::Int(v) => Value::Int(*v),
            ExprKind::Float(v) => Value::Float(*v),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Name(n) => env.vars.get(n).cloned().unwrap_or_else(|| Value::Sym(n.clone())),
            ExprKind::List(items) => Value::List(items.iter().map(|i| self.eval(env, i, Hint::None)).collect()),
            ExprKind::Unary(op, inner) => {
                let v = self.eval(env, inner, Hint::None);
                self.unary(*op, v, e.span, inner.span)
            }
            ExprKind::Binary(op, l, r) => {
                let lv = self.eval(env, l, Hint::None);
                // `&&` and `||` short-circuit, so `stride != 1 || x.shape[1] != out` is safe to write.
                match (op, &lv) {
                    (BinOp::And, Value::Bool(false)) => return Value::Bool(false),
                    (BinOp::Or, Value::Bool(true)) => return Value::Bool(true),
                    _ => {}
                }
                let rv = self.eval(env, r, Hint::None);
                self.binary(*op, Spanned { value: lv, span: l.span }, Spanned { value: rv, span: r.span }, e.span, hint)
            }
            ExprKind::Field(inner, field) => {
                let v = self.eval(env, inner, Hint::None);
                self.field(v, inner.span, field)
            }
            ExprKind::Index(inner, index) => {
                let v = self.eval(env, inner, Hint::None);
                let i = self.eval(env, index, Hint::None);
                self.index(v, i, index.span)
            }
            ExprKind::Call(call) => self.call(env, call, None, hint, e.span),
            ExprKind::Labelled(label, inner) => match &inner.kind {
                ExprKind::Call(call) => self.call(env, call, None, Hint::Label(label.clone()), e.span),
                _ => self.missing_input(inner),
            },
            ExprKind::Seq(_) => self.missing_input(e),
            ExprKind::If { cond, then, otherwise } => {
                let c = self.eval(env, cond, Hint::None);
                let branch = match c {
                    Value::Bool(true) => Some(then),
                    Value::Bool(false) => otherwise.as_ref(),
                    Value::Poison => return Value::Poison,
                    other => {
                        let d = self.type_error(cond.span, "an `if` condition", "a bool", &other);
                        return self.fail(d);
                    }
                };
                let Some(branch) = branch else {
                    return self.fail(Diagnostic::error(Code::WrongType, e.span, "`if` without `else` has no value when its condition is false").with_label("add an `else` branch"));
                };
                let mut inner_env = env.clone();
                match self.body(&mut inner_env, branch, hint) {
                    Flow::Fell(Some(v)) => v.value,
                    Flow::Fell(None) | Flow::Returned(_) => self.fail(
                        Diagnostic::error(Code::BadReturn, branch.span, "an `if` branch must end with an expression (its value)")
                            .with_label("this branch has no value"),
                    ),
                }
            }
            ExprKind::Pipe(input, stage) => {
                let v = self.eval(env, input, Hint::None);
                self.stage(env, stage, Spanned { value: v, span: input.span }, hint)
            }
        }
    }

    fn missing_input(&mut self, e: &Expr) -> Value {
        self.fail(
            Diagnostic::error(Code::MissingInput, e.span, "this stage has no input")
                .with_label("nothing flows into this")
                .with_help("pipe a tensor into it: `x |> ...`"),
        )
    }

    pub fn type_error(&self, span: Span, what: &str, expected: &str, found: &Value) -> Diagnostic {
        if let Value::Sym(s) = found {
            return self.unknown_name(span, s);
        }
        Diagnostic::error(Code::WrongType, span, format!("{what} must be {expected}, found {}", found.describe(&self.graph)))
            .with_label(format!("expected {expected}"))
    }

    fn unknown_name(&self, span: Span, name: &str) -> Diagnostic {
        Diagnostic::error(Code::UnknownName, span, format!("cannot find `{name}` in this scope")).with_label("not bound")
    }

    /// `unknown_name` with suggestions from the variables in scope.
    fn unknown_name_in(&self, env: &Env, span: Span, name: &str) -> Diagnostic {
        self.unknown_name(span, name).with_help_opt(did_you_mean(name, env.vars.keys().map(String::as_str)))
    }

    fn unary(&mut self, op: UnOp, v: Value, span: Span, inner: Span) -> Value {
        match (op, v) {
            (_, Value::Poison) => Value::Poison,
            (UnOp::Neg, Value::Int(i)) => match i.checked_neg() {
                Some(n) => Value::Int(n),
                None => self.fail(Diagnostic::error(Code::Arithmetic, span, "integer overflow").with_label("negation overflows")),
            },
            (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
            (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
            (UnOp::Neg, Value::Tensor(_)) => self.fail(
                Diagnostic::error(Code::BadOperands, span, "tensors cannot be negated").with_help("write `-1 * x` to scale by -1"),
            ),
            (op, other) => {
                let (sym, expected) = if op == UnOp::Neg { ("-", "a number") } else { ("!", "a bool") };
                if let Value::Sym(s) = &other {
                    return self.fail(self.unknown_name(inner, s));
                }
                let d = Diagnostic::error(Code::BadOperands, span, format!("`{sym}` expects {expected}, found {}", other.describe(&self.graph)))
                    .with_label(format!("cannot apply `{sym}`"));
                self.fail(d)
            }
        }
    }

    fn binary(&mut self, op: BinOp, l: Spanned, r: Spanned, span: Span, hint: Hint) -> Value {
        use Value::*;
        if l.value.is_poison() || r.value.is_poison() {
            return Poison;
        }
        for side in [&l, &r] {
            if let Sym(s) = &side.value {
                return self.fail(self.unknown_name(side.span, s));
            }
        }
        let overflow = |this: &mut Self| this.fail(Diagnostic::error(Code::Arithmetic, span, "integer overflow in compile-time arithmetic").with_label("overflows a 64-bit integer"));
        match (op, &l.value, &r.value) {
            (BinOp::Add, Tensor(a), Tensor(b)) => self.node_op(Op::Add, &[(*a, l.span), (*b, r.span)], hint, span, "add"),
            (BinOp::Mul, Tensor(a), Tensor(b)) => self.node_op(Op::Mul, &[(*a, l.span), (*b, r.span)], hint, span, "mul"),
            (BinOp::Mul, Int(_) | Float(_), Tensor(t)) | (BinOp::Mul, Tensor(t), Int(_) | Float(_)) => {
                let (factor, tspan) = match (&l.value, &r.value) {
                    (Int(i), _) => (*i as f64, r.span),
                    (Float(f), _) => (*f, r.span),
                    (_, Int(i)) => (*i as f64, l.span),
                    (_, Float(f)) => (*f, l.span),
                    _ => unreachable!("one side is a number"),
                };
                self.node_op(Op::Scale { factor }, &[(*t, tspan)], hint, span, "scale")
            }
            (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem, Int(a), Int(b)) => {
                let (a, b) = (*a, *b);
                if matches!(op, BinOp::Div | BinOp::Rem) && b == 0 {
                    return self.fail(Diagnostic::error(Code::Arithmetic, r.span, "division by zero").with_label("this is zero"));
                }
                let v = match op {
                    BinOp::Add => a.checked_add(b),
                    BinOp::Sub => a.checked_sub(b),
                    BinOp::Mul => a.checked_mul(b),
                    BinOp::Div => floor_div(a, b),
                    _ => floor_div(a, b).and_then(|q| q.checked_mul(b)).and_then(|m| a.checked_sub(m)),
                };
                match v {
                    Some(v) => Int(v),
                    None => overflow(self),
                }
            }
            (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem, Int(_) | Float(_), Int(_) | Float(_)) => {
                let (a, b) = (as_f64(&l.value), as_f64(&r.value));
                if matches!(op, BinOp::Div | BinOp::Rem) && b == 0.0 {
                    return self.fail(Diagnostic::error(Code::Arithmetic, r.span, "division by zero").with_label("this is zero"));
                }
                Float(match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    _ => a - b * (a / b).floor(),
                })
            }
            (BinOp::Add, Str(a), Str(b)) => Str(format!("{a}{b}")),
            (BinOp::Eq | BinOp::Ne, a, b) if !matches!(a, Tensor(_)) && !matches!(b, Tensor(_)) => {
                let eq = match (a, b) {
                    (Int(_) | Float(_), Int(_) | Float(_)) => as_f64(a) == as_f64(b),
                    _ => a == b,
                };
                Bool(eq == (op == BinOp::Eq))
            }
            (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, Int(_) | Float(_), Int(_) | Float(_)) => {
                let (a, b) = (as_f64(&l.value), as_f64(&r.value));
                Bool(match op {
                    BinOp::Lt => a < b,
                    BinOp::Le => a <= b,
                    BinOp::Gt => a > b,
                    _ => a >= b,
                })
            }
            (BinOp::And | BinOp::Or, Bool(a), Bool(b)) => Bool(if op == BinOp::And { *a && *b } else { *a || *b }),
            (op, a, b) => {
                let mut d = Diagnostic::error(
                    Code::BadOperands,
                    span,
                    format!("`{}` cannot be applied to {} and {}", op.symbol(), a.describe(&self.graph), b.describe(&self.graph)),
                )
                .with_secondary(l.span, a.describe(&self.graph))
                .with_secondary(r.span, b.describe(&self.graph));
                if matches!((a, b), (Tensor(_), Tensor(_))) {
                    d = d.with_help("tensors support `+` (add) and `*` (elementwise product); scale by a number with `s * x`");
                }
                self.fail(d)
            }
        }
    }

    fn field(&mut self, v: Value, span: Span, field: &Ident) -> Value {
        match (&v, field.name.as_str()) {
            (Value::Poison, _) => Value::Poison,
            (Value::Tensor(id), "shape") => {
                let dims = self.graph.node(*id).ty.dims.clone();
                Value::List(dims.iter().map(|d| match d {
                    crate::ir::Dim::Batch => Value::Batch,
                    crate::ir::Dim::Fixed(n) => Value::Int(*n as i64),
                }).collect())
            }
            (Value::Tensor(id), "rank") => Value::Int(self.graph.node(*id).ty.rank() as i64),
            (Value::Tensor(_), other) => self.fail(
                Diagnostic::error(Code::UnknownName, field.span, format!("tensors have no field `{other}`"))
                    .with_label("unknown field")
                    .with_help_opt(did_you_mean(other, ["shape", "rank"]).or(Some("tensors have `shape` and `rank`".into()))),
            ),
            (Value::Sym(s), _) => self.fail(self.unknown_name(span, s)),
            (other, _) => {
                let d = Diagnostic::error(Code::WrongType, span, format!("only tensors have fields, found {}", other.describe(&self.graph)))
                    .with_label(format!("has no field `{}`", field.name));
                self.fail(d)
            }
        }
    }

    fn index(&mut self, v: Value, i: Value, span: Span) -> Value {
        match (v, i) {
            (Value::Poison, _) | (_, Value::Poison) => Value::Poison,
            (Value::List(items), Value::Int(k)) => {
                let len = items.len() as i64;
                let idx = if k < 0 { k + len } else { k };
                if idx < 0 || idx >= len {
                    return self.fail(Diagnostic::error(Code::BadIndex, span, format!("index {k} is out of range for a list of length {len}")).with_label("out of range"));
                }
                match &items[idx as usize] {
                    Value::Batch => self.fail(
                        Diagnostic::error(Code::BadIndex, span, "the batch dimension is symbolic and has no value at compile time")
                            .with_label("this reads the batch dimension")
                            .with_help("dimension 0 of an activation is the batch `N`; channels are `x.shape[1]`"),
                    ),
                    item => item.clone(),
                }
            }
            (Value::List(_), other) => {
                let d = self.type_error(span, "a list index", "an int", &other);
                self.fail(d)
            }
            (other, _) => {
                let d = Diagnostic::error(Code::WrongType, span, format!("only lists can be indexed, found {}", other.describe(&self.graph)))
                    .with_help("use `x.shape[i]` for a tensor's dimensions");
                self.fail(d)
            }
        }
    }

    // ---- stages, calls and seqs -----------------------------------------------------------------

    /// Applies a pipeline stage to a piped input.
    fn stage(&mut self, env: &mut Env, stage: &Expr, input: Spanned, hint: Hint) -> Value {
        match &stage.kind {
            ExprKind::Labelled(label, inner) => self.stage(env, inner, input, Hint::Label(label.clone())),
            ExprKind::Call(call) => self.call(env, call, Some(input), hint, stage.span),
            ExprKind::Name(n) => {
                let call = Call { callee: Ident { name: n.clone(), span: stage.span }, args: Vec::new() };
                self.call(env, &call, Some(input), hint, stage.span)
            }
            ExprKind::Seq(items) => self.seq(env, items, input, hint, stage.span),
            _ => self.fail(
                Diagnostic::error(Code::NotAStage, stage.span, "a pipeline stage must be a layer, a block or a `seq`")
                    .with_label("this cannot take an input"),
            ),
        }
    }

    fn seq(&mut self, env: &mut Env, items: &[SeqItem], input: Spanned, hint: Hint, span: Span) -> Value {
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
        let _ = span;
        cur.value
    }

    fn seq_items(&mut self, env: &mut Env, items: &[SeqItem], cur: &mut Spanned, index: &mut usize) {
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
                        let v = self.stage(env, stage, cur.clone(), Hint::Index(*index, stage.span));
                        *index += 1;
                        *cur = Spanned { value: v, span: stage.span };
                        if cur.value.is_poison() {
                            return;
                        }
                    }
                }
                SeqItem::For { var, lo, hi, items } => {
                    let (Some(lo_v), Some(hi_v)) = (self.int_value(env, lo), self.int_value(env, hi)) else { return };
                    if hi_v.saturating_sub(lo_v) > NODE_BUDGET as i64 {
                        self.report(Diagnostic::error(Code::TooLarge, hi.span, "loop has too many iterations").with_label(format!("{} iterations", hi_v.saturating_sub(lo_v))));
                        *cur = Spanned { value: Value::Poison, span: cur.span };
                        return;
                    }
                    for i in lo_v..hi_v {
                        let mut body_env = env.clone();
                        body_env.vars.insert(var.name.clone(), Value::Int(i));
                        self.seq_items(&mut body_env, items, cur, index);
                    }
                }
                SeqItem::If { cond, then, otherwise } => match self.eval(env, cond, Hint::None) {
                    Value::Bool(true) => self.seq_items(env, then, cur, index),
                    Value::Bool(false) => self.seq_items(env, otherwise, cur, index),
                    Value::Poison => *cur = Spanned { value: Value::Poison, span: cur.span },
                    other => {
                        let d = self.type_error(cond.span, "an `if` condition", "a bool", &other);
                        self.report(d);
                        *cur = Spanned { value: Value::Poison, span: cur.span };
                    }
                },
            }
        }
    }

    fn int_value(&mut self, env: &mut Env, e: &Expr) -> Option<i64> {
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
    fn count(&mut self, env: &mut Env, e: &Expr, what: &str) -> Option<u64> {
        match self.eval(env, e, Hint::None) {
            Value::Int(v) if v >= 0 && v as usize <= NODE_BUDGET => Some(v as u64),
            Value::Int(v) if v < 0 => {
                self.report(Diagnostic::error(Code::NonPositive, e.span, format!("{what} cannot be negative, found {v}")).with_label("negative"));
                None
            }
            Value::Int(v) => {
                self.report(Diagnostic::error(Code::TooLarge, e.span, format!("{what} of {v} is too large")).with_label("too many repetitions"));
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
    fn call(&mut self, env: &mut Env, call: &Call, input: Option<Spanned>, hint: Hint, span: Span) -> Value {
        let module = env.module;
        let block = self.blocks[module].get(&call.callee.name).copied();
        let layer = layers::lookup(&call.callee.name);
        if block.is_none() && layer.is_none() {
            if let Some(v) = env.vars.get(&call.callee.name) {
                let what = v.describe(&self.graph);
                return self.fail(Diagnostic::error(Code::UnknownLayer, call.callee.span, format!("`{}` is a variable ({what}), not a layer or block", call.callee.name))
                    .with_label("cannot be called"));
            }
            let names = layers::LAYERS.iter().map(|l| l.name).chain(self.blocks[module].keys().map(String::as_str));
            let help = did_you_mean(&call.callee.name, names);
            return self.fail(
                Diagnostic::error(Code::UnknownLayer, call.callee.span, format!("unknown layer or block `{}`", call.callee.name))
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
                Arg::Pos(e) => pos.push(Spanned { value: self.eval(env, e, Hint::None), span: e.span }),
                Arg::Kw(name, e) if layer.is_some_and(|l| l.has_params) && ["init", "bias_init", "regularizer"].contains(&name.name.as_str()) => {
                    specs.push((name.clone(), e));
                }
                Arg::Kw(name, e) => kw.push((name.clone(), Spanned { value: self.eval(env, e, Hint::None), span: e.span })),
            }
        }
        if input.as_ref().is_some_and(|i| i.value.is_poison()) || pos.iter().chain(kw.iter().map(|(_, v)| v)).any(|v| v.value.is_poison()) {
            return Value::Poison;
        }
        if let Some((def_module, def)) = block {
            return self.call_block(def_module, def, call, input, pos, kw, hint);
        }
        let spec = layer.expect("checked above");
        self.call_layer(env, spec, call, input, pos, kw, specs, hint, span)
    }

    #[allow(clippy::too_many_arguments)]
    fn call_block(&mut self, module: usize, def: &'p BlockDef, call: &Call, input: Option<Spanned>, mut pos: Vec<Spanned>, kw: Vec<(Ident, Spanned)>, hint: Hint) -> Value {
        let key = (module, def.name.name.clone());
        if self.active.contains(&key) {
            let cycle: Vec<String> = self.active.iter().skip_while(|k| **k != key).map(|(_, n)| format!("`{n}`")).collect();
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
        let mut block_env = Env { vars: HashMap::new(), module };
        for p in &def.params {
            let v = match bound.remove(&p.name.name) {
                Some(v) => v,
                None => match &p.default {
                    Some(d) => Spanned { value: self.eval(&mut block_env, d, Hint::None), span: d.span },
                    None => {
                        let d = Diagnostic::error(Code::MissingArgument, call.callee.span, format!("block `{}` needs argument `{}`", def.name.name, p.name.name))
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
                        Diagnostic::error(Code::WrongType, v.span, format!("argument `{}` of block `{}` must be {ty}, found {}", p.name.name, def.name.name, v.value.describe(&self.graph)))
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
        self.chain.push(Frame { block: def.name.name.clone(), call: call.callee.span });
        self.active.push(key);
        let flow = self.body(&mut block_env, &def.body, Hint::None);
        self.active.pop();
        self.chain.pop();
        self.names.pop();
        match flow {
            Flow::Returned(mut vals) if vals.len() == 1 => vals.remove(0).value,
            Flow::Returned(vals) => Value::List(vals.into_iter().map(|v| v.value).collect()),
            Flow::Fell(_) => self.fail(
                Diagnostic::error(Code::BadReturn, def.name.span, format!("block `{}` does not return a value", def.name.name))
                    .with_label("no `return` in this block")
                    .with_secondary(call.callee.span, "called here")
                    .with_help("end the block with `return <value>`"),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call_layer(
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
                    if pos.first().is_some_and(|v| matches!(v.value, Value::Tensor(_))) {
                        inputs.push(pos.remove(0));
                    } else if let Some(Spanned { value: Value::Sym(s), span }) = pos.first() {
                        return self.fail(self.unknown_name_in(env, *span, s));
                    }
                }
            }
            Inputs::Many => {
                while let Some(first) = pos.first() {
                    match &first.value {
                        Value::Tensor(_) => inputs.push(pos.remove(0)),
                        Value::List(items) if !items.is_empty() && items.iter().all(|i| matches!(i, Value::Tensor(_))) => {
                            let list = pos.remove(0);
                            if let Value::List(items) = list.value {
                                inputs.extend(items.into_iter().map(|value| Spanned { value, span: list.span }));
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
                Diagnostic::error(Code::MissingInput, call.callee.span, format!("`{}` is called without an input tensor", spec.name))
                    .with_label("no input")
                    .with_help(format!("pass the input first, `{0}(x, ...)`, or pipe it: `x |> {0}(...)`", spec.name)),
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
                ref other => Err(self.type_error(i.span, &format!("the input of `{}`", spec.name), "a tensor", other)),
            })
            .collect::<Result<_, _>>()
            .unwrap_or_else(|d| {
                self.report(d);
                Vec::new()
            });
        if in_ids.len() != inputs.len() {
            return Value::Poison;
        }
        let tys: Vec<crate::ir::TensorType> = in_ids.iter().map(|(id, _)| self.graph.node(*id).ty.clone()).collect();
        let ty_refs: Vec<&crate::ir::TensorType> = tys.iter().collect();
        let mut args = LayerArgs { callee: call.callee.clone(), vals, errors: Vec::new(), graph: &self.graph };
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
            let dtype = tys[0].dtype;
            let dtype = if dtype.is_float() { dtype } else { crate::ir::DType::F32 };
            let param = self.params.resolve(&path, *role, &options);
            let ty = crate::ir::TensorType::fixed(dtype, dims);
            let id = self.graph.add_typed(Op::Param(param), ty, &[], span, format!("{path}.{}", role.name()));
            all_inputs.push((id, span));
        }
        let out = self.add_node(built.op, &all_inputs, span, path.clone(), call.callee.span);
        match (out, built.activation) {
            (Value::Tensor(id), Some(mut act)) => {
                if let Op::Softmax { axis } = &mut act {
                    *axis = self.graph.node(id).ty.rank() - 1;
                }
                self.add_node(act, &[(id, span)], span, format!("{path}.activation"), call.callee.span)
            }
            (v, _) => v,
        }
    }

    /// Adds an op for an operator expression (`a + b`, `0.2 * x`), named by the hint.
    fn node_op(&mut self, op: Op, inputs: &[(NodeId, Span)], hint: Hint, span: Span, name: &str) -> Value {
        let path = match self.names.claim(&hint, name) {
            Ok(p) => p,
            Err(d) => return self.fail(d),
        };
        self.add_node(op, inputs, span, path, span)
    }

    /// Adds a node; a shape error becomes a diagnostic at `span` with each input's type shown.
    fn add_node(&mut self, op: Op, inputs: &[(NodeId, Span)], span: Span, path: String, head: Span) -> Value {
        if self.graph.len() >= NODE_BUDGET {
            if !self.budget_reported {
                self.budget_reported = true;
                self.report(Diagnostic::error(Code::TooLarge, span, format!("the model has more than {NODE_BUDGET} nodes")).with_label("stopped here"));
            }
            return Value::Poison;
        }
        let op_name = op.name();
        let ids: Vec<NodeId> = inputs.iter().map(|(id, _)| *id).collect();
        match self.graph.add(op, &ids, span, path) {
            Ok(id) => Value::Tensor(id),
            Err(e) => {
                let mut d = shape_diagnostic(&e, op_name, span, head);
                for (id, s) in inputs.iter().filter(|(id, _)| !self.graph.node(*id).op.is_param()) {
                    d = d.with_secondary(*s, format!("`{}`", self.graph.node(*id).ty));
                }
                self.fail(d)
            }
        }
    }
}

/// Maps a shape error to its user-facing code and message.
fn shape_diagnostic(e: &ShapeError, op: &str, span: Span, head: Span) -> Diagnostic {
    let code = match e {
        ShapeError::Mismatch { op: "concat", .. } => Code::ConcatMismatch,
        ShapeError::Mismatch { .. } => Code::AddMismatch,
        ShapeError::Rank { .. } | ShapeError::ParamShape { .. } | ShapeError::Arity { .. } | ShapeError::Axis { .. } => Code::RankMismatch,
        ShapeError::Dtype { .. } => Code::DtypeMismatch,
        ShapeError::KernelTooLarge { .. } => Code::KernelTooLarge,
        ShapeError::NonPositive { .. } => Code::NonPositive,
        ShapeError::Groups { .. } => Code::GroupMismatch,
        ShapeError::Reshape { .. } => Code::ReshapeMismatch,
        ShapeError::TooLarge => Code::TooLarge,
        ShapeError::PadTooLarge { .. } => Code::PadTooLarge,
        ShapeError::Declared => Code::InternalBug,
    };
    let message = match e {
        ShapeError::ParamShape { .. } => format!("`{op}` cannot take this input: its parameters would not fit"),
        ShapeError::Mismatch { op: "concat", .. } => "concatenated tensors must match in every dimension but the concat axis".to_string(),
        ShapeError::Mismatch { .. } => format!("`{op}` needs tensors of one shape"),
        other => format!("`{op}`: {other}"),
    };
    let label = match e {
        ShapeError::Mismatch { first, other, .. } => format!("`{first}` vs `{other}`"),
        other => other.to_string(),
    };
    let primary = if matches!(e, ShapeError::Mismatch { .. }) { span } else { head };
    Diagnostic::error(code, primary, message).with_label(label)
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => f64::NAN,
    }
}

/// Integer division rounding toward negative infinity (Python's `//`), `None` on overflow.
fn floor_div(a: i64, b: i64) -> Option<i64> {
    let q = a.checked_div(b)?;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q.checked_sub(1)
    } else {
        Some(q)
    }
}
