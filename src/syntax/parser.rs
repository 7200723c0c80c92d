//! pest parsing of `.nn` text into the AST; pest types stay in this file.

use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::*;
use crate::diag::{Code, Diagnostic, FileId, Span};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/nn.pest"]
struct NnParser;

/// Parses `src` (file `file`), starting at byte `offset` of that file, into items.
pub(super) fn parse_items(
    src: &str,
    file: FileId,
    offset: usize,
) -> Result<Vec<Item>, Vec<Diagnostic>> {
    let pairs =
        NnParser::parse(Rule::file, src).map_err(|e| vec![syntax_error(e, src, file, offset)])?;
    let mut b = Builder {
        file,
        offset,
        diags: Vec::new(),
    };
    let mut items = Vec::new();
    for pair in pairs.flatten().filter(|p| p.as_rule() == Rule::file) {
        for item in pair.into_inner() {
            match item.as_rule() {
                Rule::EOI => {}
                _ => items.push(b.item(item)),
            }
        }
    }
    if b.diags.is_empty() {
        Ok(items)
    } else {
        Err(b.diags)
    }
}

fn rule_name(rule: &Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident => "a name",
        Rule::expr
        | Rule::or_expr
        | Rule::and_expr
        | Rule::cmp_expr
        | Rule::add_expr
        | Rule::mul_expr
        | Rule::unary
        | Rule::postfix => "an expression",
        Rule::int => "an integer",
        Rule::float => "a number",
        Rule::string => "a string",
        Rule::boolean => "`true` or `false`",
        Rule::pipe => "`|>`",
        Rule::or_op => "`||`",
        Rule::and_op => "`&&`",
        Rule::cmp_op => "a comparison",
        Rule::add_op | Rule::mul_op => "an operator",
        Rule::unary_op => "`-` or `!`",
        Rule::field => "`.`",
        Rule::index => "`[`",
        Rule::stage => "a layer or block call",
        Rule::ty | Rule::ty_name | Rule::list_ty => "a type (int, float, bool, str, tensor, any)",
        Rule::tensor_type => "a tensor type like `f32[N, 3, 224, 224]`",
        Rule::dtype => "an element type (f32, f64, i32, i64)",
        Rule::dim => "a dimension",
        Rule::import | Rule::block_def | Rule::model_def | Rule::train_def => {
            "`import`, `block`, `model` or `train`"
        }
        Rule::EOI => "end of file",
        Rule::binding | Rule::assert_stmt | Rule::return_stmt | Rule::expr_stmt => "a statement",
        Rule::layer_rule | Rule::setting => "a setting",
        Rule::seq_for | Rule::seq_if | Rule::seq_repeat => "a seq item",
        Rule::param | Rule::params => "a parameter",
        Rule::typed_name => "a typed name like `x: f32[N, 10]`",
        Rule::arg | Rule::args | Rule::kwarg => "an argument",
        Rule::import_list => "`{`",
        Rule::range => "a range like `0..4`",
        _ => return None,
    })
}

fn syntax_error(e: pest::error::Error<Rule>, src: &str, file: FileId, offset: usize) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().filter_map(rule_name).collect();
            names.dedup();
            let mut seen = Vec::new();
            names.retain(|n| {
                if seen.contains(n) {
                    false
                } else {
                    seen.push(*n);
                    true
                }
            });
            names
        }
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    let found = token_at(src, pos);
    let end = pos + found.len().max(if pos < src.len() { 1 } else { 0 });
    let span = Span::new(file, offset + pos, offset + end.min(src.len()));
    let found_text = if found.is_empty() {
        "end of file".to_string()
    } else {
        format!("`{found}`")
    };
    let message = if expected.is_empty() {
        format!("unexpected {found_text}")
    } else {
        format!("expected {}, found {found_text}", join_or(&expected))
    };
    let mut d = Diagnostic::error(Code::Syntax, span, message).with_label("unexpected here");
    if found == "=" && expected.contains(&"a comparison") {
        d = d.with_help("use `==` to compare values");
    } else if found.starts_with('\'') {
        d = d.with_help("strings use double quotes: \"...\"");
    }
    d
}

/// The token that starts at `pos`: a word, a number, or one punctuation character.
fn token_at(src: &str, pos: usize) -> &str {
    let rest = &src[pos.min(src.len())..];
    let word = rest
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last();
    match word {
        Some((i, c)) => &rest[..i + c.len_utf8()],
        None => rest.chars().next().map_or("", |c| &rest[..c.len_utf8()]),
    }
}

fn join_or(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Longest operator chain (`a + b + ...`, `x |> f |> ...`) in one expression.
const MAX_CHAIN: usize = 256;

struct Builder {
    file: FileId,
    offset: usize,
    diags: Vec<Diagnostic>,
}

impl Builder {
    /// The pair's span without trailing whitespace and comments, which pest includes in a rule that
    /// ends with an optional or repeated part.
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        let end = s.start() + trimmed_len(s.as_str());
        Span::new(self.file, self.offset + s.start(), self.offset + end)
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn item(&mut self, p: Pair<Rule>) -> Item {
        match p.as_rule() {
            Rule::import => {
                let mut inner = p.into_inner();
                let path = inner.next().expect("grammar: import has a path");
                let names = inner
                    .next()
                    .map(|l| l.into_inner().map(|i| self.ident(i)).collect());
                Item::Import(Import {
                    path: unquote(path.as_str()),
                    path_span: self.span(&path),
                    names,
                })
            }
            Rule::block_def => {
                let mut inner = p.into_inner();
                let name = self.ident(inner.next().expect("grammar: block name"));
                let mut params = Vec::new();
                let mut body = None;
                for q in inner {
                    match q.as_rule() {
                        Rule::params => params = q.into_inner().map(|x| self.param(x)).collect(),
                        _ => body = Some(self.body(q)),
                    }
                }
                Item::Block(BlockDef {
                    name,
                    params,
                    body: body.expect("grammar: block body"),
                })
            }
            Rule::model_def => {
                let mut inner = p.into_inner();
                let name = self.ident(inner.next().expect("grammar: model name"));
                let inputs = inner
                    .next()
                    .expect("grammar: inputs")
                    .into_inner()
                    .map(|t| self.typed_name(t))
                    .collect();
                let outputs = inner
                    .next()
                    .expect("grammar: outputs")
                    .into_inner()
                    .map(|t| self.typed_name(t))
                    .collect();
                let body = self.body(inner.next().expect("grammar: model body"));
                Item::Model(ModelDef {
                    name,
                    inputs,
                    outputs,
                    body,
                })
            }
            Rule::train_def => {
                let span = self.span(&p);
                let mut settings = Vec::new();
                let mut rules = Vec::new();
                for q in p.into_inner() {
                    match q.as_rule() {
                        Rule::setting => settings.push(self.setting(q)),
                        _ => {
                            let mut inner = q.into_inner();
                            let pat = inner.next().expect("grammar: layer rule pattern");
                            rules.push(LayerRule {
                                pattern: unquote(pat.as_str()),
                                pattern_span: self.span(&pat),
                                settings: inner.map(|s| self.setting(s)).collect(),
                            });
                        }
                    }
                }
                Item::Train(TrainDef {
                    settings,
                    rules,
                    span,
                })
            }
            r => unreachable!("grammar: unexpected item {r:?}"),
        }
    }

    fn setting(&mut self, p: Pair<Rule>) -> Setting {
        let mut inner = p.into_inner();
        let key = self.ident(inner.next().expect("grammar: setting key"));
        Setting {
            key,
            value: self.expr(inner.next().expect("grammar: setting value")),
        }
    }

    fn param(&mut self, p: Pair<Rule>) -> Param {
        let mut inner = p.into_inner();
        let name = self.ident(inner.next().expect("grammar: param name"));
        let mut ty = None;
        let mut default = None;
        for q in inner {
            match q.as_rule() {
                Rule::ty => ty = Some((self.ty(q.clone()), self.span(&q))),
                _ => default = Some(self.expr(q)),
            }
        }
        Param { name, ty, default }
    }

    fn ty(&self, p: Pair<Rule>) -> Ty {
        let q = p.into_inner().next().expect("grammar: type");
        match q.as_rule() {
            Rule::list_ty => Ty::List(Box::new(
                self.ty(q.into_inner().next().expect("grammar: element type")),
            )),
            _ => match q.as_str() {
                "int" => Ty::Int,
                "float" => Ty::Float,
                "bool" => Ty::Bool,
                "str" => Ty::Str,
                "tensor" => Ty::Tensor,
                _ => Ty::Any,
            },
        }
    }

    fn typed_name(&mut self, p: Pair<Rule>) -> TypedName {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let name = self.ident(inner.next().expect("grammar: name"));
        let mut tt = inner.next().expect("grammar: tensor type").into_inner();
        let dtype = tt.next().expect("grammar: dtype").as_str().to_string();
        let dims = tt
            .map(|d| {
                let q = d.into_inner().next().expect("grammar: dim");
                match q.as_rule() {
                    Rule::int => DimAst::Fixed(self.int(&q), self.span(&q)),
                    _ => DimAst::Named(self.ident(q)),
                }
            })
            .collect();
        TypedName {
            name,
            dtype,
            dims,
            span,
        }
    }

    fn int(&mut self, p: &Pair<Rule>) -> i64 {
        let text: String = p.as_str().chars().filter(|c| *c != '_').collect();
        text.parse().unwrap_or_else(|_| {
            self.diags.push(
                Diagnostic::error(
                    Code::BadLiteral,
                    self.span(p),
                    "integer literal is too large",
                )
                .with_label("does not fit in a 64-bit signed integer"),
            );
            0
        })
    }

    fn body(&mut self, p: Pair<Rule>) -> Body {
        let span = self.span(&p);
        let stmts = p.into_inner().map(|s| self.stmt(s)).collect();
        Body { stmts, span }
    }

    fn stmt(&mut self, p: Pair<Rule>) -> Stmt {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut inner = p.into_inner();
        match rule {
            Rule::binding => {
                let name = self.ident(inner.next().expect("grammar: binding name"));
                Stmt::Bind(
                    name,
                    self.expr(inner.next().expect("grammar: binding value")),
                )
            }
            Rule::assert_stmt => {
                let cond = self.expr(inner.next().expect("grammar: assert condition"));
                let message = inner.next().map(|m| self.expr(m));
                Stmt::Assert {
                    cond,
                    message,
                    span,
                }
            }
            Rule::return_stmt => Stmt::Return(inner.map(|e| self.expr(e)).collect(), span),
            Rule::expr_stmt => Stmt::Expr(self.expr(inner.next().expect("grammar: expression"))),
            r => unreachable!("grammar: unexpected statement {r:?}"),
        }
    }

    /// Refuses operator chains longer than [`MAX_CHAIN`]: each operator deepens the tree, and the evaluator
    /// recurses on it.
    fn check_chain(&mut self, p: &Pair<Rule>) -> bool {
        let n = p.clone().into_inner().count();
        let ok = n <= 2 * MAX_CHAIN;
        if !ok {
            self.diags.push(
                Diagnostic::error(
                    Code::Syntax,
                    self.span(p),
                    format!("expression chains more than {MAX_CHAIN} operators"),
                )
                .with_label("too long")
                .with_help("split it with bindings"),
            );
        }
        ok
    }

    fn mk(&self, kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span }
    }

    fn expr(&mut self, p: Pair<Rule>) -> Expr {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::expr => {
                if !self.check_chain(&p) {
                    return self.mk(ExprKind::Int(0), span);
                }
                let mut inner = p.into_inner();
                let mut e = self.expr(inner.next().expect("grammar: pipeline head"));
                while let Some(_pipe) = inner.next() {
                    let stage = self.stage(inner.next().expect("grammar: pipeline stage"));
                    let s = e.span.to(stage.span);
                    e = self.mk(ExprKind::Pipe(Box::new(e), Box::new(stage)), s);
                }
                e
            }
            Rule::or_expr | Rule::and_expr | Rule::add_expr | Rule::mul_expr | Rule::cmp_expr => {
                if !self.check_chain(&p) {
                    return self.mk(ExprKind::Int(0), span);
                }
                let mut inner = p.into_inner();
                let mut e = self.expr(inner.next().expect("grammar: operand"));
                while let Some(op) = inner.next() {
                    let rhs = self.expr(inner.next().expect("grammar: operand"));
                    let s = e.span.to(rhs.span);
                    e = self.mk(
                        ExprKind::Binary(binop(op.as_str()), Box::new(e), Box::new(rhs)),
                        s,
                    );
                }
                e
            }
            Rule::unary => {
                if !self.check_chain(&p) {
                    return self.mk(ExprKind::Int(0), span);
                }
                let parts: Vec<Pair<Rule>> = p.into_inner().collect();
                let (ops, last) = parts.split_at(parts.len() - 1);
                let mut e = self.expr(last[0].clone());
                for op in ops.iter().rev() {
                    let u = if op.as_str() == "-" {
                        UnOp::Neg
                    } else {
                        UnOp::Not
                    };
                    let s = self.span(op).to(e.span);
                    e = self.mk(ExprKind::Unary(u, Box::new(e)), s);
                }
                e
            }
            Rule::postfix => {
                if !self.check_chain(&p) {
                    return self.mk(ExprKind::Int(0), span);
                }
                let mut inner = p.into_inner();
                let mut e = self.expr(inner.next().expect("grammar: postfix head"));
                for q in inner {
                    let s = e.span.to(self.span(&q));
                    let rule = q.as_rule();
                    let sub = q.into_inner().next().expect("grammar: postfix operand");
                    e = match rule {
                        Rule::field => self.mk(ExprKind::Field(Box::new(e), self.ident(sub)), s),
                        _ => {
                            let idx = self.expr(sub);
                            self.mk(ExprKind::Index(Box::new(e), Box::new(idx)), s)
                        }
                    };
                }
                e
            }
            Rule::int => {
                let v = self.int(&p);
                self.mk(ExprKind::Int(v), span)
            }
            Rule::float => {
                let text: String = p.as_str().chars().filter(|c| *c != '_').collect();
                let v = text
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .unwrap_or_else(|| {
                        self.diags.push(Diagnostic::error(
                            Code::BadLiteral,
                            span,
                            "number literal is out of range",
                        ));
                        0.0
                    });
                self.mk(ExprKind::Float(v), span)
            }
            Rule::string => self.mk(ExprKind::Str(unquote(p.as_str())), span),
            Rule::boolean => self.mk(ExprKind::Bool(p.as_str() == "true"), span),
            Rule::ident => self.mk(ExprKind::Name(p.as_str().to_string()), span),
            Rule::list => {
                let items = p.into_inner().map(|e| self.expr(e)).collect();
                self.mk(ExprKind::List(items), span)
            }
            Rule::call | Rule::labelled | Rule::seq | Rule::stage => self.stage(p),
            Rule::if_expr => self.if_expr(p),
            r => unreachable!("grammar: unexpected expression {r:?}"),
        }
    }

    fn stage(&mut self, p: Pair<Rule>) -> Expr {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::stage => self.stage(p.into_inner().next().expect("grammar: stage")),
            Rule::labelled => {
                let mut inner = p.into_inner();
                let label = self.ident(inner.next().expect("grammar: label"));
                let target = self.stage(inner.next().expect("grammar: labelled stage"));
                self.mk(ExprKind::Labelled(label, Box::new(target)), span)
            }
            Rule::call => {
                let mut inner = p.into_inner();
                let callee = self.ident(inner.next().expect("grammar: callee"));
                let args = match inner.next() {
                    Some(args) => args.into_inner().map(|a| self.arg(a)).collect(),
                    None => Vec::new(),
                };
                self.mk(ExprKind::Call(Call { callee, args }), span)
            }
            Rule::seq => {
                let items = p.into_inner().map(|i| self.seq_item(i)).collect();
                self.mk(ExprKind::Seq(items), span)
            }
            Rule::ident => self.mk(ExprKind::Name(p.as_str().to_string()), span),
            _ => self.expr(p),
        }
    }

    fn arg(&mut self, p: Pair<Rule>) -> Arg {
        let q = p.into_inner().next().expect("grammar: argument");
        match q.as_rule() {
            Rule::kwarg => {
                let mut inner = q.into_inner();
                let name = self.ident(inner.next().expect("grammar: keyword"));
                Arg::Kw(
                    name,
                    self.expr(inner.next().expect("grammar: keyword value")),
                )
            }
            _ => Arg::Pos(self.expr(q)),
        }
    }

    fn if_expr(&mut self, p: Pair<Rule>) -> Expr {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let cond = self.expr(inner.next().expect("grammar: if condition"));
        let then = self.body(inner.next().expect("grammar: if body"));
        let otherwise = inner.next().map(|q| match q.as_rule() {
            Rule::body => self.body(q),
            _ => {
                // `else if`: a body whose only statement is the nested if.
                let e = self.if_expr(q);
                Body {
                    span: e.span,
                    stmts: vec![Stmt::Expr(e)],
                }
            }
        });
        self.mk(
            ExprKind::If {
                cond: Box::new(cond),
                then,
                otherwise,
            },
            span,
        )
    }

    fn seq_block(&mut self, p: Pair<Rule>) -> Vec<SeqItem> {
        p.into_inner().map(|i| self.seq_item(i)).collect()
    }

    fn seq_item(&mut self, p: Pair<Rule>) -> SeqItem {
        match p.as_rule() {
            Rule::seq_repeat => {
                let mut inner = p.into_inner();
                let stage = self.stage(inner.next().expect("grammar: seq stage"));
                SeqItem::Stage {
                    stage,
                    repeat: inner.next().map(|r| self.expr(r)),
                }
            }
            Rule::seq_for => {
                let mut inner = p.into_inner();
                let var = self.ident(inner.next().expect("grammar: loop variable"));
                let mut range = inner.next().expect("grammar: loop range").into_inner();
                let lo = self.expr(range.next().expect("grammar: range start"));
                let hi = self.expr(range.next().expect("grammar: range end"));
                let items = self.seq_block(inner.next().expect("grammar: loop body"));
                SeqItem::For { var, lo, hi, items }
            }
            Rule::seq_if => {
                let mut inner = p.into_inner();
                let cond = self.expr(inner.next().expect("grammar: seq if condition"));
                let then = self.seq_block(inner.next().expect("grammar: seq if body"));
                let otherwise = match inner.next() {
                    None => Vec::new(),
                    Some(q) if q.as_rule() == Rule::seq_block => self.seq_block(q),
                    Some(q) => {
                        vec![self.seq_item(q.into_inner().next().expect("grammar: else if"))]
                    }
                };
                SeqItem::If {
                    cond,
                    then,
                    otherwise,
                }
            }
            r => unreachable!("grammar: unexpected seq item {r:?}"),
        }
    }
}

fn binop(s: &str) -> BinOp {
    match s {
        "||" => BinOp::Or,
        "&&" => BinOp::And,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        "<=" => BinOp::Le,
        ">" => BinOp::Gt,
        ">=" => BinOp::Ge,
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        _ => BinOp::Rem,
    }
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// Length of `text` without trailing whitespace and comments.
fn trimmed_len(text: &str) -> usize {
    let mut t = text.trim_end();
    loop {
        let line_start = t.rfind('\n').map_or(0, |i| i + 1);
        let line = &t[line_start..];
        let comment = line_comment_start(line);
        if let Some(c) = comment {
            t = t[..line_start + c].trim_end();
        } else if t.ends_with("*/") {
            match t.rfind("/*") {
                Some(open) => t = t[..open].trim_end(),
                None => break,
            }
        } else {
            break;
        }
    }
    t.len()
}

/// Where a `//` comment starts in one line, ignoring `//` inside strings.
fn line_comment_start(line: &str) -> Option<usize> {
    let mut in_string = false;
    let bytes = line.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return Some(i),
            _ => {}
        }
    }
    None
}
