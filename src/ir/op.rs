//! The closed set of operations in the graph IR, with their attributes inline, and the one table of their
//! text names shared by the lowering (layer calls) and the printer (dumps).

use super::graph::NodeId;
use super::train::{Init, Loss, Regularizer};
use super::types::TensorType;

/// Elementwise activation functions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Relu,
    Sigmoid,
    Tanh,
    Identity,
    LeakyRelu { slope: f64 },
}

/// The recurrent cell of an `Op::Rnn`, with PyTorch's gate order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `h' = act(W_ih x + b_ih + W_hh h + b_hh)`, with tanh (`relu = false`) or ReLU.
    Simple { relu: bool },
    /// Gates i, f, g, o.
    Lstm,
    /// Gates r, z, n.
    Gru,
}

impl Cell {
    /// How many `hidden`-sized blocks of rows the weight matrices have.
    pub fn gates(self) -> u64 {
        match self {
            Cell::Simple { .. } => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// What a parameter is for: tells initializers its fan-in/fan-out and role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamRole {
    Weight,
    Bias,
    /// Batch-norm scale (PyTorch `weight`).
    Gamma,
    /// Batch-norm shift (PyTorch `bias`).
    Beta,
    RunningMean,
    RunningVar,
    Embedding,
    WeightIh,
    WeightHh,
    BiasIh,
    BiasHh,
}

impl ParamRole {
    /// The parameter's own name, as PyTorch's `state_dict()` spells it.
    pub fn name(self) -> &'static str {
        match self {
            ParamRole::Weight | ParamRole::Gamma | ParamRole::Embedding => "weight",
            ParamRole::Bias | ParamRole::Beta => "bias",
            ParamRole::RunningMean => "running_mean",
            ParamRole::RunningVar => "running_var",
            ParamRole::WeightIh => "weight_ih_l0",
            ParamRole::WeightHh => "weight_hh_l0",
            ParamRole::BiasIh => "bias_ih_l0",
            ParamRole::BiasHh => "bias_hh_l0",
        }
    }

    /// Buffers (running statistics) are state, never trained.
    pub fn is_buffer(self) -> bool {
        matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }

    /// Whether the weight regularizer and weight initializer apply (not biases, BN affine or buffers).
    pub fn is_weight(self) -> bool {
        matches!(
            self,
            ParamRole::Weight | ParamRole::Embedding | ParamRole::WeightIh | ParamRole::WeightHh
        )
    }
}

/// A parameter node: its role, initializer and training flags. Its shape is the node's type.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub role: ParamRole,
    pub init: Init,
    pub regularizer: Regularizer,
    pub trainable: bool,
}

/// One operation. Inputs are the node's incoming edges in slot order; parameters come after the data inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The model's input number `index`.
    Input {
        index: usize,
    },
    Param(Param),
    /// Inputs: x `[N, ..., in]`, weight `[units, in]`, bias `[units]` if `bias`.
    Dense {
        units: u64,
        bias: bool,
    },
    /// Inputs: x `[N, C, H, W]`, weight `[filters, C/groups, kh, kw]`, bias `[filters]` if `bias`.
    /// `pad` is `[top, bottom, left, right]`.
    Conv2d {
        filters: u64,
        kernel: [u64; 2],
        stride: [u64; 2],
        pad: [u64; 4],
        dilation: [u64; 2],
        groups: u64,
        bias: bool,
    },
    MaxPool2d {
        kernel: [u64; 2],
        stride: [u64; 2],
        pad: [u64; 4],
        dilation: [u64; 2],
        ceil_mode: bool,
    },
    AvgPool2d {
        kernel: [u64; 2],
        stride: [u64; 2],
        pad: [u64; 4],
        ceil_mode: bool,
        count_include_pad: bool,
    },
    AdaptiveAvgPool2d {
        size: [u64; 2],
    },
    GlobalAvgPool {
        keepdims: bool,
    },
    Flatten,
    /// Target dimensions after the batch dimension, fully resolved (no -1).
    Reshape {
        shape: Vec<u64>,
    },
    /// Inputs: x, then weight and bias if `affine`, then running_mean, running_var.
    BatchNorm {
        eps: f64,
        momentum: f64,
        affine: bool,
    },
    Dropout {
        rate: f64,
    },
    Lrn {
        size: u64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    ZeroPad2d {
        pad: [u64; 4],
    },
    Activation(Act),
    Softmax {
        axis: usize,
    },
    /// Elementwise sum of two or more tensors of one shape.
    Add,
    /// Elementwise product of two or more tensors of one shape.
    Mul,
    Scale {
        factor: f64,
    },
    Concat {
        axis: usize,
    },
    /// Inputs: integer indices `[N, ...]`, weight `[vocab, dim]`.
    Embedding {
        vocab: u64,
        dim: u64,
    },
    /// Inputs: x `[N, T, F]`, weight_ih `[G*H, F]`, weight_hh `[G*H, H]`, and if `bias` bias_ih, bias_hh `[G*H]`.
    Rnn {
        cell: Cell,
        hidden: u64,
        return_sequences: bool,
        bias: bool,
    },
    /// A scalar constant `f32[]` (the seed of a backward pass).
    Constant {
        value: f64,
    },
    /// The training loss, a scalar `f32[]`. Inputs: prediction, target (same shape; for the sparse
    /// categorical loss integer class indices without the class axis).
    Loss {
        loss: Loss,
    },
    /// A regularization penalty of one weight, a scalar `f32[]`.
    Penalty {
        reg: Regularizer,
    },
    /// The gradient of `forward` with respect to its input `slot`, made by autodiff. Inputs: the forward
    /// op's inputs (in its slot order), its output `y`, and the upstream gradient `dy` (shaped as `y`).
    /// One op for every layer's vector-Jacobian product keeps backward graphs in the same IR as forward ones.
    Grad {
        forward: Box<Op>,
        slot: usize,
    },
    /// A convolution or dense layer with the layers after it computed in its epilogue, made by the fusion
    /// passes for inference (see [`Fused`]).
    Fused(Box<Fused>),
    /// Elementwise layers computed as one pass over memory, made by `fuse-elementwise` for inference
    /// (see [`Chain`]).
    Chain(Box<Chain>),
}

/// Elementwise ops on tensors of one shape, computed element by element in one kernel: the node's inputs
/// are registers `0..n`, link `i` writes register `n + i`, and the last link's register is the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    /// The node's input count.
    pub inputs: usize,
    pub links: Vec<Link>,
}

/// One elementwise op of a [`Chain`], on registers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Link {
    Act(Act, usize),
    Add(usize, usize),
    Mul(usize, usize),
    Scale(f64, usize),
}

impl Link {
    /// The elementwise op this link computes.
    pub fn op(&self) -> Op {
        match *self {
            Link::Act(a, _) => Op::Activation(a),
            Link::Add(..) => Op::Add,
            Link::Mul(..) => Op::Mul,
            Link::Scale(factor, _) => Op::Scale { factor },
        }
    }

    /// The registers it reads.
    pub fn reads(&self) -> Vec<usize> {
        match *self {
            Link::Act(_, r) | Link::Scale(_, r) => vec![r],
            Link::Add(a, b) | Link::Mul(a, b) => vec![a, b],
        }
    }
}

impl Chain {
    /// Most links and inputs of a chain (the kernel's identity holds them inline).
    pub const MAX_LINKS: usize = 8;
    pub const MAX_INPUTS: usize = 8;

    /// The ops in order, `relu+add+sigmoid`, for reports.
    pub fn kind(&self) -> String {
        let names: Vec<&str> = self.links.iter().map(|l| l.op().name()).collect();
        names.join("+")
    }

    /// The links as text, `r2 = relu(r0); r3 = add(r2, r1)` (registers `r0..` are the inputs in slot
    /// order), for dumps.
    pub fn text(&self) -> String {
        let inputs = self.inputs;
        let links: Vec<String> = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let args: Vec<String> = l.reads().iter().map(|r| format!("r{r}")).collect();
                let extra = match l {
                    Link::Act(Act::LeakyRelu { slope }, _) => format!(", slope={slope}"),
                    Link::Scale(f, _) => format!(", factor={f}"),
                    _ => String::new(),
                };
                format!(
                    "r{} = {}({}{extra})",
                    inputs + i,
                    l.op().name(),
                    args.join(", ")
                )
            })
            .collect();
        links.join("; ")
    }
}

/// A product (convolution or dense layer) and its epilogue: `y = act((bn(core(x)) * scale) + residual)`,
/// where `bn` is inference batch norm (running statistics) if present. Inputs, in slot order (data before
/// parameters): x; the residual if `residual`; the core's parameters (weight, bias if any); then the batch
/// norm's parameters as `Op::BatchNorm` orders them (gamma, beta if affine, running mean, running var).
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    /// An `Op::Conv2d` or `Op::Dense`.
    pub core: Op,
    /// A batch norm after the core, folded into its weights and bias by a backend.
    pub bn: Option<BnFold>,
    /// A constant factor after the batch norm (an `Op::Scale`), 1 if none.
    pub scale: f64,
    /// A tensor added last, before the activation (a residual connection).
    pub residual: bool,
    pub act: Act,
    /// Sibling products computed together as one (`merge-siblings`): the group's first member, the same
    /// for every member. The value each member computes is unchanged.
    pub group: Option<NodeId>,
}

/// The attributes of a folded batch norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnFold {
    pub eps: f64,
    pub affine: bool,
}

impl Fused {
    /// The core's input count (x, weight, bias).
    pub fn core_arity(&self) -> usize {
        match self.core {
            Op::Conv2d { bias, .. } | Op::Dense { bias, .. } => 2 + bias as usize,
            _ => unreachable!("the core of a fused op is a convolution or dense layer"),
        }
    }

    /// The batch norm's parameter count.
    pub fn bn_arity(&self) -> usize {
        self.bn.map_or(0, |b| if b.affine { 4 } else { 2 })
    }

    /// The input count.
    pub fn arity(&self) -> usize {
        self.core_arity() + self.bn_arity() + self.residual as usize
    }

    /// The slot of the first parameter (the core's weight).
    pub fn first_param(&self) -> usize {
        1 + self.residual as usize
    }

    /// The slots of the core's inputs, in the core's order.
    pub fn core_slots(&self) -> Vec<usize> {
        let p = self.first_param();
        std::iter::once(0)
            .chain(p..p + self.core_arity() - 1)
            .collect()
    }

    /// The slot of the batch norm's first parameter.
    pub fn first_bn(&self) -> usize {
        self.first_param() + self.core_arity() - 1
    }

    /// What the fused op computes, as the names of its parts joined by `+`: `conv2d+bn+add+relu`.
    pub fn kind(&self) -> String {
        let mut parts = vec![self.core.name()];
        if self.bn.is_some() {
            parts.push("bn");
        }
        if self.scale != 1.0 {
            parts.push("scale");
        }
        if self.residual {
            parts.push("add");
        }
        if self.act != Act::Identity {
            parts.push(Op::Activation(self.act).name());
        }
        parts.join("+")
    }
}

impl Op {
    /// The op's name in dumps and summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param(_) => "param",
            Op::Dense { .. } => "dense",
            Op::Conv2d { .. } => "conv2d",
            Op::MaxPool2d { .. } => "maxpool",
            Op::AvgPool2d { .. } => "avgpool",
            Op::AdaptiveAvgPool2d { .. } => "adaptive_avgpool",
            Op::GlobalAvgPool { .. } => "global_avgpool",
            Op::Flatten => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::BatchNorm { .. } => "batchnorm",
            Op::Dropout { .. } => "dropout",
            Op::Lrn { .. } => "lrn",
            Op::ZeroPad2d { .. } => "zeropad",
            Op::Activation(a) => match a {
                Act::Relu => "relu",
                Act::Sigmoid => "sigmoid",
                Act::Tanh => "tanh",
                Act::Identity => "identity",
                Act::LeakyRelu { .. } => "leaky_relu",
            },
            Op::Softmax { .. } => "softmax",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Scale { .. } => "scale",
            Op::Concat { .. } => "concat",
            Op::Embedding { .. } => "embedding",
            Op::Rnn { cell, .. } => match cell {
                Cell::Simple { .. } => "simple_rnn",
                Cell::Lstm => "lstm",
                Cell::Gru => "gru",
            },
            Op::Constant { .. } => "constant",
            Op::Loss { .. } => "loss",
            Op::Penalty { .. } => "penalty",
            Op::Grad { .. } => "grad",
            Op::Fused(_) => "fused",
            Op::Chain(_) => "chain",
        }
    }

    /// The op's attributes as `key=value` pairs, for dumps. Defaults are printed too: dumps are exact.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        let pair = |a: [u64; 2]| format!("{}x{}", a[0], a[1]);
        let pad = |p: [u64; 4]| format!("{},{},{},{}", p[0], p[1], p[2], p[3]);
        match self {
            Op::Input { index } => vec![("index", index.to_string())],
            Op::Param(p) => vec![
                ("role", p.role.name().to_string()),
                ("init", p.init.to_string()),
                ("reg", p.regularizer.to_string()),
                ("trainable", p.trainable.to_string()),
            ],
            Op::Dense { units, bias } => {
                vec![("units", units.to_string()), ("bias", bias.to_string())]
            }
            Op::Conv2d {
                filters,
                kernel,
                stride,
                pad: p,
                dilation,
                groups,
                bias,
            } => vec![
                ("filters", filters.to_string()),
                ("kernel", pair(*kernel)),
                ("stride", pair(*stride)),
                ("pad", pad(*p)),
                ("dilation", pair(*dilation)),
                ("groups", groups.to_string()),
                ("bias", bias.to_string()),
            ],
            Op::MaxPool2d {
                kernel,
                stride,
                pad: p,
                dilation,
                ceil_mode,
            } => vec![
                ("kernel", pair(*kernel)),
                ("stride", pair(*stride)),
                ("pad", pad(*p)),
                ("dilation", pair(*dilation)),
                ("ceil", ceil_mode.to_string()),
            ],
            Op::AvgPool2d {
                kernel,
                stride,
                pad: p,
                ceil_mode,
                count_include_pad,
            } => vec![
                ("kernel", pair(*kernel)),
                ("stride", pair(*stride)),
                ("pad", pad(*p)),
                ("ceil", ceil_mode.to_string()),
                ("count_pad", count_include_pad.to_string()),
            ],
            Op::AdaptiveAvgPool2d { size } => vec![("size", pair(*size))],
            Op::GlobalAvgPool { keepdims } => vec![("keepdims", keepdims.to_string())],
            Op::Flatten => vec![],
            Op::Reshape { shape } => vec![("shape", format!("{shape:?}"))],
            Op::BatchNorm {
                eps,
                momentum,
                affine,
            } => {
                vec![
                    ("eps", eps.to_string()),
                    ("momentum", momentum.to_string()),
                    ("affine", affine.to_string()),
                ]
            }
            Op::Dropout { rate } => vec![("rate", rate.to_string())],
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => vec![
                ("size", size.to_string()),
                ("alpha", alpha.to_string()),
                ("beta", beta.to_string()),
                ("k", k.to_string()),
            ],
            Op::ZeroPad2d { pad: p } => vec![("pad", pad(*p))],
            Op::Activation(Act::LeakyRelu { slope }) => vec![("slope", slope.to_string())],
            Op::Activation(Act::Relu | Act::Sigmoid | Act::Tanh | Act::Identity) => vec![],
            Op::Softmax { axis } => vec![("axis", axis.to_string())],
            Op::Add | Op::Mul => vec![],
            Op::Scale { factor } => vec![("factor", factor.to_string())],
            Op::Concat { axis } => vec![("axis", axis.to_string())],
            Op::Embedding { vocab, dim } => {
                vec![("vocab", vocab.to_string()), ("dim", dim.to_string())]
            }
            Op::Rnn {
                cell,
                hidden,
                return_sequences,
                bias,
            } => {
                let mut v = vec![
                    ("hidden", hidden.to_string()),
                    ("seq", return_sequences.to_string()),
                ];
                if let Cell::Simple { relu: true } = cell {
                    v.push(("act", "relu".to_string()));
                }
                v.push(("bias", bias.to_string()));
                v
            }
            Op::Constant { value } => vec![("value", value.to_string())],
            Op::Loss { loss } => vec![("loss", format!("{loss:?}"))],
            Op::Penalty { reg } => vec![("reg", reg.to_string())],
            Op::Grad { forward, slot } => {
                let inner: Vec<String> = forward
                    .attrs()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let mut v = vec![
                    ("of", forward.name().to_string()),
                    ("slot", slot.to_string()),
                ];
                if !inner.is_empty() {
                    v.push(("attrs", format!("[{}]", inner.join(" "))));
                }
                v
            }
            Op::Chain(c) => vec![("of", c.kind()), ("links", format!("[{}]", c.text()))],
            Op::Fused(f) => {
                let mut v = vec![("of", f.kind())];
                v.extend(f.core.attrs());
                if let Some(bn) = f.bn {
                    v.push(("eps", bn.eps.to_string()));
                    v.push(("affine", bn.affine.to_string()));
                }
                if f.scale != 1.0 {
                    v.push(("scale", f.scale.to_string()));
                }
                if let Act::LeakyRelu { slope } = f.act {
                    v.push(("slope", slope.to_string()));
                }
                if let Some(g) = f.group {
                    v.push(("group", g.to_string()));
                }
                v
            }
        }
    }

    pub fn is_param(&self) -> bool {
        matches!(self, Op::Param(_))
    }

    /// Multiply-accumulates of one execution, given input types (data inputs first) and the output type, at
    /// `batch`. Only convolutions, dense layers and recurrent matmuls count (torch.utils.flop_counter's rule).
    pub fn macs(&self, inputs: &[&TensorType], output: &TensorType, batch: u64) -> u64 {
        match self {
            Op::Dense { units, .. } => {
                let x = inputs[0];
                let features = x.size(x.rank() - 1).unwrap_or(0);
                let rows = x.elements(batch) / features.max(1);
                rows.saturating_mul(features).saturating_mul(*units)
            }
            Op::Conv2d { kernel, groups, .. } => {
                let cin = inputs[0].size(1).unwrap_or(0);
                output
                    .elements(batch)
                    .saturating_mul(cin / groups * kernel[0] * kernel[1])
            }
            Op::Rnn { cell, hidden, .. } => {
                let x = inputs[0];
                let (steps, features) = (x.size(1).unwrap_or(0), x.size(2).unwrap_or(0));
                batch
                    .saturating_mul(steps)
                    .saturating_mul(cell.gates() * hidden * (features + hidden))
            }
            // A gradient's matmuls: for dense and conv layers the input and weight gradients each cost the
            // forward's MACs; a recurrent layer's input gradient also carries the hidden-state recurrence.
            Op::Grad { forward, slot } => {
                let (x, y) = (inputs[0], inputs[inputs.len() - 2]);
                match &**forward {
                    // Bias gradients (slot 2) are sums, not matmuls.
                    Op::Dense { .. } | Op::Conv2d { .. } if *slot < 2 => {
                        forward.macs(&[x], y, batch)
                    }
                    Op::Rnn { cell, hidden, .. } if *slot < 3 => {
                        let (steps, features) = (x.size(1).unwrap_or(0), x.size(2).unwrap_or(0));
                        let width = [features + hidden, features, *hidden][*slot];
                        batch
                            .saturating_mul(steps)
                            .saturating_mul(cell.gates() * hidden * width)
                    }
                    Op::Dense { .. }
                    | Op::Conv2d { .. }
                    | Op::Rnn { .. }
                    | Op::Input { .. }
                    | Op::Param(_)
                    | Op::MaxPool2d { .. }
                    | Op::AvgPool2d { .. }
                    | Op::AdaptiveAvgPool2d { .. }
                    | Op::GlobalAvgPool { .. }
                    | Op::Flatten
                    | Op::Reshape { .. }
                    | Op::BatchNorm { .. }
                    | Op::Dropout { .. }
                    | Op::Lrn { .. }
                    | Op::ZeroPad2d { .. }
                    | Op::Activation(_)
                    | Op::Softmax { .. }
                    | Op::Add
                    | Op::Mul
                    | Op::Scale { .. }
                    | Op::Concat { .. }
                    | Op::Embedding { .. }
                    | Op::Constant { .. }
                    | Op::Loss { .. }
                    | Op::Penalty { .. }
                    | Op::Grad { .. }
                    | Op::Fused(_)
                    | Op::Chain(_) => 0,
                }
            }
            Op::Fused(f) => f.core.macs(inputs, output, batch),
            Op::Input { .. }
            | Op::Param(_)
            | Op::Constant { .. }
            | Op::Loss { .. }
            | Op::Penalty { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::GlobalAvgPool { .. }
            | Op::Flatten
            | Op::Reshape { .. }
            | Op::BatchNorm { .. }
            | Op::Dropout { .. }
            | Op::Lrn { .. }
            | Op::ZeroPad2d { .. }
            | Op::Activation(_)
            | Op::Softmax { .. }
            | Op::Add
            | Op::Mul
            | Op::Scale { .. }
            | Op::Concat { .. }
            | Op::Embedding { .. }
            | Op::Chain(_) => 0,
        }
    }
}
