//! The abstract syntax tree of a `.nn` file. Every node carries the span it was parsed from.

use crate::diag::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug)]
pub enum Item {
    Import(Import),
    Block(BlockDef),
    Model(ModelDef),
    Train(TrainDef),
}

#[derive(Clone, Debug)]
pub struct Import {
    pub path: String,
    pub path_span: Span,
    /// `None` imports every block of the file.
    pub names: Option<Vec<Ident>>,
}

#[derive(Clone, Debug)]
pub struct BlockDef {
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Body,
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: Ident,
    pub ty: Option<(Ty, Span)>,
    pub default: Option<Expr>,
}

/// The declared type of a block parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    Int,
    Float,
    Bool,
    Str,
    Tensor,
    Any,
    List(Box<Ty>),
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ty::Int => f.write_str("int"),
            Ty::Float => f.write_str("float"),
            Ty::Bool => f.write_str("bool"),
            Ty::Str => f.write_str("str"),
            Ty::Tensor => f.write_str("tensor"),
            Ty::Any => f.write_str("any"),
            Ty::List(t) => write!(f, "[{t}]"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModelDef {
    pub name: Ident,
    pub inputs: Vec<TypedName>,
    pub outputs: Vec<TypedName>,
    pub body: Body,
}

#[derive(Clone, Debug)]
pub struct TypedName {
    pub name: Ident,
    pub dtype: String,
    pub dims: Vec<DimAst>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum DimAst {
    Fixed(i64, Span),
    Named(Ident),
}

#[derive(Clone, Debug)]
pub struct TrainDef {
    pub settings: Vec<Setting>,
    pub rules: Vec<LayerRule>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Setting {
    pub key: Ident,
    pub value: Expr,
}

#[derive(Clone, Debug)]
pub struct LayerRule {
    pub pattern: String,
    pub pattern_span: Span,
    pub settings: Vec<Setting>,
}

#[derive(Clone, Debug)]
pub struct Body {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum Stmt {
    Bind(Ident, Expr),
    Assert {
        cond: Expr,
        message: Option<Expr>,
        span: Span,
    },
    Return(Vec<Expr>, Span),
    Expr(Expr),
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Name(String),
    List(Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Field(Box<Expr>, Ident),
    Index(Box<Expr>, Box<Expr>),
    Call(Call),
    /// `label: stage`, naming the layer, block call or seq it wraps.
    Labelled(Ident, Box<Expr>),
    Seq(Vec<SeqItem>),
    If {
        cond: Box<Expr>,
        then: Body,
        otherwise: Option<Body>,
    },
    /// `input |> stage`.
    Pipe(Box<Expr>, Box<Expr>),
}

#[derive(Clone, Debug)]
pub struct Call {
    pub callee: Ident,
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug)]
pub enum Arg {
    Pos(Expr),
    Kw(Ident, Expr),
}

#[derive(Clone, Debug)]
pub enum SeqItem {
    /// A stage, optionally repeated: `bottleneck(64) * 3`.
    Stage { stage: Expr, repeat: Option<Expr> },
    For {
        var: Ident,
        lo: Expr,
        hi: Expr,
        items: Vec<SeqItem>,
    },
    If {
        cond: Expr,
        then: Vec<SeqItem>,
        otherwise: Vec<SeqItem>,
    },
}
