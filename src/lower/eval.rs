//! The elaborator: evaluates a model's body at compile time, inlining blocks, unrolling `seq`s and loops,
//! and adding a typed node to the graph for every layer it meets.

use std::collections::HashMap;

use super::names::{Hint, Scopes};
use super::params::ParamSettings;
use super::value::{Spanned, Value};
use crate::diag::{did_you_mean, Code, Diagnostic, Frame, Span};
use crate::ir::{Graph, Op};
use crate::syntax::ast::*;

/// Most nodes one model may create: stops runaway loops long before memory runs out.
pub(super) const NODE_BUDGET: usize = 1_000_000;
/// Most loop iterations one model may evaluate: loops that create no layers still end.
const WORK_BUDGET: usize = 10_000_000;
/// Deepest expression or block-call nesting the evaluator follows.
const MAX_DEPTH: usize = 512;

/// Variables of one block invocation (or the model body), and the module whose blocks are visible.
#[derive(Clone)]
pub struct Env {
    pub vars: HashMap<String, Value>,
    pub module: usize,
}

pub struct Elab<'p> {
    pub graph: Graph,
    pub diags: Vec<Diagnostic>,
    pub names: Scopes,
    /// For each module, the blocks callable from it, with the module that defines each.
    pub blocks: Vec<HashMap<String, (usize, &'p BlockDef)>>,
    pub params: ParamSettings,
    pub(super) chain: Vec<Frame>,
    pub(super) active: Vec<(usize, String)>,
    pub(super) budget_reported: bool,
    pub(super) depth: usize,
    /// Loop iterations evaluated so far, against [`WORK_BUDGET`].
    work: usize,
}

/// What a body evaluated to.
pub enum Flow {
    Returned(Vec<Spanned>),
    Fell(Option<Spanned>),
}

impl<'p> Elab<'p> {
    pub fn new(blocks: Vec<HashMap<String, (usize, &'p BlockDef)>>, params: ParamSettings) -> Self {
        Elab {
            graph: Graph::default(),
            diags: Vec::new(),
            names: Scopes::default(),
            blocks,
            params,
            chain: Vec::new(),
            active: Vec::new(),
            budget_reported: false,
            depth: 0,
            work: 0,
        }
    }

    /// Counts one unit of compile-time work; false (after reporting once) when the budget is spent.
    pub(super) fn tick(&mut self, span: Span) -> bool {
        self.work += 1;
        if self.work == WORK_BUDGET {
            self.report(
                Diagnostic::error(
                    Code::TooLarge,
                    span,
                    format!("the model's loops run more than {WORK_BUDGET} iterations"),
                )
                .with_label("stopped in this loop"),
            );
        }
        self.work < WORK_BUDGET
    }

    /// Records a diagnostic with the current block call chain.
    pub fn report(&mut self, mut d: Diagnostic) {
        d.chain = self.chain.clone();
        self.diags.push(d);
    }

    pub(super) fn fail(&mut self, d: Diagnostic) -> Value {
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
                Stmt::Assert {
                    cond,
                    message,
                    span,
                } => self.assert(env, cond, message.as_ref(), *span),
                Stmt::Return(exprs, _) => {
                    let values = exprs
                        .iter()
                        .map(|e| Spanned {
                            value: self.eval(env, e, Hint::None),
                            span: e.span,
                        })
                        .collect();
                    return Flow::Returned(values);
                }
                Stmt::Expr(e) => {
                    let h = if i == last { hint.clone() } else { Hint::None };
                    let v = self.eval(env, e, h);
                    if i == last {
                        return Flow::Fell(Some(Spanned {
                            value: v,
                            span: e.span,
                        }));
                    }
                }
            }
        }
        Flow::Fell(None)
    }

    pub(super) fn assert(
        &mut self,
        env: &mut Env,
        cond: &Expr,
        message: Option<&Expr>,
        span: Span,
    ) {
        match self.eval(env, cond, Hint::None) {
            Value::Bool(true) | Value::Poison => {}
            Value::Bool(false) => {
                let text = match message.map(|m| self.eval(env, m, Hint::None)) {
                    Some(Value::Str(s)) => s,
                    Some(Value::Poison) => return,
                    Some(other) => other.show(&self.graph),
                    None => "assertion failed".to_string(),
                };
                self.report(
                    Diagnostic::error(Code::AssertFailed, span, text)
                        .with_label("this assert failed"),
                );
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
            return self.fail(
                Diagnostic::error(
                    Code::TooLarge,
                    e.span,
                    "expression or block calls nested too deeply",
                )
                .with_label(format!("more than {MAX_DEPTH} levels")),
            );
        }
        self.depth += 1;
        let v = self.eval_inner(env, e, hint);
        self.depth -= 1;
        v
    }

    pub(super) fn eval_inner(&mut self, env: &mut Env, e: &Expr, hint: Hint) -> Value {
        match &e.kind {
            ExprKind::Int(v) => Value::Int(*v),
            ExprKind::Float(v) => Value::Float(*v),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Name(n) => env
                .vars
                .get(n)
                .cloned()
                .unwrap_or_else(|| Value::Sym(n.clone())),
            ExprKind::List(items) => Value::List(
                items
                    .iter()
                    .map(|i| self.eval(env, i, Hint::None))
                    .collect(),
            ),
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
                self.binary(
                    *op,
                    Spanned {
                        value: lv,
                        span: l.span,
                    },
                    Spanned {
                        value: rv,
                        span: r.span,
                    },
                    e.span,
                    hint,
                )
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
                ExprKind::Call(call) => {
                    self.call(env, call, None, Hint::Label(label.clone()), e.span)
                }
                _ => self.missing_input(inner),
            },
            ExprKind::Seq(_) => self.missing_input(e),
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => {
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
                    return self.fail(
                        Diagnostic::error(
                            Code::WrongType,
                            e.span,
                            "`if` without `else` has no value when its condition is false",
                        )
                        .with_label("add an `else` branch"),
                    );
                };
                let mut inner_env = env.clone();
                match self.body(&mut inner_env, branch, hint) {
                    Flow::Fell(Some(v)) => v.value,
                    Flow::Fell(None) | Flow::Returned(_) => self.fail(
                        Diagnostic::error(
                            Code::BadReturn,
                            branch.span,
                            "an `if` branch must end with an expression (its value)",
                        )
                        .with_label("this branch has no value"),
                    ),
                }
            }
            ExprKind::Pipe(input, stage) => {
                let v = self.eval(env, input, Hint::None);
                self.stage(
                    env,
                    stage,
                    Spanned {
                        value: v,
                        span: input.span,
                    },
                    hint,
                )
            }
        }
    }

    pub(super) fn missing_input(&mut self, e: &Expr) -> Value {
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
        Diagnostic::error(
            Code::WrongType,
            span,
            format!(
                "{what} must be {expected}, found {}",
                found.describe(&self.graph)
            ),
        )
        .with_label(format!("expected {expected}"))
    }

    pub(super) fn unknown_name(&self, span: Span, name: &str) -> Diagnostic {
        Diagnostic::error(
            Code::UnknownName,
            span,
            format!("cannot find `{name}` in this scope"),
        )
        .with_label("not bound")
    }

    /// `unknown_name` with suggestions from the variables in scope.
    pub(super) fn unknown_name_in(&self, env: &Env, span: Span, name: &str) -> Diagnostic {
        self.unknown_name(span, name)
            .with_help_opt(did_you_mean(name, env.vars.keys().map(String::as_str)))
    }

    pub(super) fn unary(&mut self, op: UnOp, v: Value, span: Span, inner: Span) -> Value {
        match (op, v) {
            (_, Value::Poison) => Value::Poison,
            (UnOp::Neg, Value::Int(i)) => match i.checked_neg() {
                Some(n) => Value::Int(n),
                None => self.fail(
                    Diagnostic::error(Code::Arithmetic, span, "integer overflow")
                        .with_label("negation overflows"),
                ),
            },
            (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
            (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
            (UnOp::Neg, Value::Tensor(_)) => self.fail(
                Diagnostic::error(Code::BadOperands, span, "tensors cannot be negated")
                    .with_help("write `-1 * x` to scale by -1"),
            ),
            (op, other) => {
                let (sym, expected) = if op == UnOp::Neg {
                    ("-", "a number")
                } else {
                    ("!", "a bool")
                };
                if let Value::Sym(s) = &other {
                    return self.fail(self.unknown_name(inner, s));
                }
                let d = Diagnostic::error(
                    Code::BadOperands,
                    span,
                    format!(
                        "`{sym}` expects {expected}, found {}",
                        other.describe(&self.graph)
                    ),
                )
                .with_label(format!("cannot apply `{sym}`"));
                self.fail(d)
            }
        }
    }

    pub(super) fn binary(
        &mut self,
        op: BinOp,
        l: Spanned,
        r: Spanned,
        span: Span,
        hint: Hint,
    ) -> Value {
        use Value::*;
        if l.value.is_poison() || r.value.is_poison() {
            return Poison;
        }
        for side in [&l, &r] {
            if let Sym(s) = &side.value {
                return self.fail(self.unknown_name(side.span, s));
            }
        }
        let overflow = |this: &mut Self| {
            this.fail(
                Diagnostic::error(
                    Code::Arithmetic,
                    span,
                    "integer overflow in compile-time arithmetic",
                )
                .with_label("overflows a 64-bit integer"),
            )
        };
        match (op, &l.value, &r.value) {
            (BinOp::Add, Tensor(a), Tensor(b)) => {
                self.node_op(Op::Add, &[(*a, l.span), (*b, r.span)], hint, span, "add")
            }
            (BinOp::Mul, Tensor(a), Tensor(b)) => {
                self.node_op(Op::Mul, &[(*a, l.span), (*b, r.span)], hint, span, "mul")
            }
            (BinOp::Mul, Int(_) | Float(_), Tensor(t))
            | (BinOp::Mul, Tensor(t), Int(_) | Float(_)) => {
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
                    return self.fail(
                        Diagnostic::error(Code::Arithmetic, r.span, "division by zero")
                            .with_label("this is zero"),
                    );
                }
                let v = match op {
                    BinOp::Add => a.checked_add(b),
                    BinOp::Sub => a.checked_sub(b),
                    BinOp::Mul => a.checked_mul(b),
                    BinOp::Div => floor_div(a, b),
                    _ => floor_div(a, b)
                        .and_then(|q| q.checked_mul(b))
                        .and_then(|m| a.checked_sub(m)),
                };
                match v {
                    Some(v) => Int(v),
                    None => overflow(self),
                }
            }
            (
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem,
                Int(_) | Float(_),
                Int(_) | Float(_),
            ) => {
                let (a, b) = (as_f64(&l.value), as_f64(&r.value));
                if matches!(op, BinOp::Div | BinOp::Rem) && b == 0.0 {
                    return self.fail(
                        Diagnostic::error(Code::Arithmetic, r.span, "division by zero")
                            .with_label("this is zero"),
                    );
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
            (
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge,
                Int(_) | Float(_),
                Int(_) | Float(_),
            ) => {
                let (a, b) = (as_f64(&l.value), as_f64(&r.value));
                Bool(match op {
                    BinOp::Lt => a < b,
                    BinOp::Le => a <= b,
                    BinOp::Gt => a > b,
                    _ => a >= b,
                })
            }
            (BinOp::And | BinOp::Or, Bool(a), Bool(b)) => {
                Bool(if op == BinOp::And { *a && *b } else { *a || *b })
            }
            (op, a, b) => {
                let mut d = Diagnostic::error(
                    Code::BadOperands,
                    span,
                    format!(
                        "`{}` cannot be applied to {} and {}",
                        op.symbol(),
                        a.describe(&self.graph),
                        b.describe(&self.graph)
                    ),
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

    pub(super) fn field(&mut self, v: Value, span: Span, field: &Ident) -> Value {
        match (&v, field.name.as_str()) {
            (Value::Poison, _) => Value::Poison,
            (Value::Tensor(id), "shape") => {
                let dims = self.graph.node(*id).ty.dims.clone();
                Value::List(
                    dims.iter()
                        .map(|d| match d {
                            crate::ir::Dim::Batch => Value::Batch,
                            crate::ir::Dim::Fixed(n) => Value::Int(*n as i64),
                        })
                        .collect(),
                )
            }
            (Value::Tensor(id), "rank") => Value::Int(self.graph.node(*id).ty.rank() as i64),
            (Value::Tensor(_), other) => self.fail(
                Diagnostic::error(
                    Code::UnknownName,
                    field.span,
                    format!("tensors have no field `{other}`"),
                )
                .with_label("unknown field")
                .with_help_opt(
                    did_you_mean(other, ["shape", "rank"])
                        .or(Some("tensors have `shape` and `rank`".into())),
                ),
            ),
            (Value::Sym(s), _) => self.fail(self.unknown_name(span, s)),
            (other, _) => {
                let d = Diagnostic::error(
                    Code::WrongType,
                    span,
                    format!(
                        "only tensors have fields, found {}",
                        other.describe(&self.graph)
                    ),
                )
                .with_label(format!("has no field `{}`", field.name));
                self.fail(d)
            }
        }
    }

    pub(super) fn index(&mut self, v: Value, i: Value, span: Span) -> Value {
        match (v, i) {
            (Value::Poison, _) | (_, Value::Poison) => Value::Poison,
            (Value::List(items), Value::Int(k)) => {
                let len = items.len() as i64;
                let idx = if k < 0 { k + len } else { k };
                if idx < 0 || idx >= len {
                    return self.fail(
                        Diagnostic::error(
                            Code::BadIndex,
                            span,
                            format!("index {k} is out of range for a list of length {len}"),
                        )
                        .with_label("out of range"),
                    );
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
                let d = Diagnostic::error(
                    Code::WrongType,
                    span,
                    format!(
                        "only lists can be indexed, found {}",
                        other.describe(&self.graph)
                    ),
                )
                .with_help("use `x.shape[i]` for a tensor's dimensions");
                self.fail(d)
            }
        }
    }
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
