//! The layer catalogue: each built-in layer's text name, its arguments in positional order, and how its
//! arguments and input types become an [`Op`] with parameter shapes. docs/language.md mirrors this table.

use super::args::{same_padding, LayerArgs, Padding};
use crate::ir::{Act, Cell, Op, ParamRole, TensorType};

/// How many input tensors a layer takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inputs {
    One,
    /// Two or more (`add`, `mul`) or one or more (`concat`), given as leading positional tensors or a list.
    Many,
}

/// What a layer call builds: the op, its parameters (role and shape, in input-slot order), and an optional
/// activation applied after it.
pub struct Built {
    pub op: Op,
    pub params: Vec<(ParamRole, Vec<u64>)>,
    pub activation: Option<Op>,
}

pub struct LayerSpec {
    pub name: &'static str,
    pub inputs: Inputs,
    /// Arguments after the input(s), in positional order.
    pub args: &'static [&'static str],
    /// Whether the layer owns parameters (and so takes `init`, `bias_init`, `regularizer`, `trainable`).
    pub has_params: bool,
    pub build: fn(&mut LayerArgs, &[&TensorType]) -> Built,
}

/// Keyword arguments every layer with parameters accepts.
pub const PARAM_OPTIONS: &[&str] = &["init", "bias_init", "regularizer", "trainable"];

const ACTIVATIONS: &[&str] = &["linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu"];

macro_rules! layer {
    ($name:literal, $inputs:ident, [$($arg:literal),*], $params:literal, $build:expr) => {
        LayerSpec { name: $name, inputs: Inputs::$inputs, args: &[$($arg),*], has_params: $params, build: $build }
    };
}

pub static LAYERS: &[LayerSpec] = &[
    layer!(
        "dense",
        One,
        ["units", "bias", "activation", "in_features"],
        true,
        dense
    ),
    layer!(
        "linear",
        One,
        ["units", "bias", "activation", "in_features"],
        true,
        dense
    ),
    layer!(
        "conv2d",
        One,
        [
            "filters",
            "kernel",
            "stride",
            "padding",
            "dilation",
            "groups",
            "bias",
            "activation"
        ],
        true,
        conv2d
    ),
    layer!(
        "maxpool",
        One,
        ["kernel", "stride", "padding", "dilation", "ceil_mode"],
        false,
        maxpool
    ),
    layer!(
        "avgpool",
        One,
        [
            "kernel",
            "stride",
            "padding",
            "ceil_mode",
            "count_include_pad"
        ],
        false,
        avgpool
    ),
    layer!("global_avgpool", One, ["keepdims"], false, |a, _| plain(
        Op::GlobalAvgPool {
            keepdims: a.bool("keepdims", true)
        }
    )),
    layer!("adaptive_avgpool", One, ["size"], false, |a, _| plain(
        Op::AdaptiveAvgPool2d {
            size: a.pair("size", None)
        }
    )),
    layer!("flatten", One, [], false, |_, _| plain(Op::Flatten)),
    layer!("reshape", One, ["shape"], false, reshape),
    layer!(
        "batchnorm",
        One,
        ["eps", "momentum", "affine"],
        true,
        batchnorm
    ),
    layer!("dropout", One, ["rate"], false, |a, _| plain(Op::Dropout {
        rate: a.float_in("rate", 0.5, 0.0, 1.0, false)
    })),
    layer!("lrn", One, ["size", "alpha", "beta", "k"], false, lrn),
    layer!("zeropad", One, ["padding"], false, zeropad),
    layer!("relu", One, [], false, |_, _| plain(Op::Activation(
        Act::Relu
    ))),
    layer!("sigmoid", One, [], false, |_, _| plain(Op::Activation(
        Act::Sigmoid
    ))),
    layer!("tanh", One, [], false, |_, _| plain(Op::Activation(
        Act::Tanh
    ))),
    layer!("identity", One, [], false, |_, _| plain(Op::Activation(
        Act::Identity
    ))),
    layer!("leaky_relu", One, ["slope"], false, |a, _| plain(
        Op::Activation(Act::LeakyRelu {
            slope: a.float("slope", 0.01)
        })
    )),
    layer!("softmax", One, ["axis"], false, softmax),
    layer!("add", Many, [], false, |_, _| plain(Op::Add)),
    layer!("mul", Many, [], false, |_, _| plain(Op::Mul)),
    layer!("scale", One, ["factor"], false, |a, _| plain(Op::Scale {
        factor: a.float("factor", 1.0)
    })),
    layer!("concat", Many, ["axis"], false, concat),
    layer!("embedding", One, ["vocab", "dim"], true, embedding),
    layer!(
        "simple_rnn",
        One,
        ["hidden", "return_sequences", "bias", "activation"],
        true,
        |a, i| rnn(a, i, None)
    ),
    layer!(
        "lstm",
        One,
        ["hidden", "return_sequences", "bias"],
        true,
        |a, i| rnn(a, i, Some(Cell::Lstm))
    ),
    layer!(
        "gru",
        One,
        ["hidden", "return_sequences", "bias"],
        true,
        |a, i| rnn(a, i, Some(Cell::Gru))
    ),
];

pub fn lookup(name: &str) -> Option<&'static LayerSpec> {
    LAYERS.iter().find(|l| l.name == name)
}

fn plain(op: Op) -> Built {
    Built {
        op,
        params: Vec::new(),
        activation: None,
    }
}

/// The input's size at `axis` (counting from the end if negative), or 0 when the input has no such fixed
/// dimension; shape inference then reports the real problem.
fn dim(x: &TensorType, axis: isize) -> u64 {
    let i = if axis < 0 {
        x.rank() as isize + axis
    } else {
        axis
    };
    if i < 0 {
        return 0;
    }
    x.size(i as usize).unwrap_or(0)
}

fn activation(a: &mut LayerArgs) -> Option<Op> {
    match a.choice("activation", ACTIVATIONS, "linear") {
        "relu" => Some(Op::Activation(Act::Relu)),
        "sigmoid" => Some(Op::Activation(Act::Sigmoid)),
        "tanh" => Some(Op::Activation(Act::Tanh)),
        "leaky_relu" => Some(Op::Activation(Act::LeakyRelu { slope: 0.01 })),
        "softmax" => Some(Op::Softmax { axis: 0 }),
        _ => None,
    }
}

fn dense(a: &mut LayerArgs, inputs: &[&TensorType]) -> Built {
    let units = a.positive("units", None);
    let bias = a.bool("bias", true);
    let features = dim(inputs[0], -1);
    // PyTorch users state the input size (`nn.Linear(256, 120)`); when given, it must match the input.
    if a.has("in_features") {
        let stated = a.positive("in_features", None);
        if stated != features && features > 0 {
            let span = a.span_of("in_features");
            a.errors.push(
                crate::diag::Diagnostic::error(
                    crate::diag::Code::RankMismatch,
                    span,
                    format!("`{}` is declared with {stated} input features, but its input `{}` has {features}", a.callee.name, inputs[0]),
                )
                .with_label(format!("the input has {features} features"))
                .with_help("flatten or reshape the input first, or correct `in_features`"),
            );
        }
    }
    let mut params = vec![(ParamRole::Weight, vec![units, features])];
    if bias {
        params.push((ParamRole::Bias, vec![units]));
    }
    Built {
        op: Op::Dense { units, bias },
        params,
        activation: activation(a),
    }
}

fn conv2d(a: &mut LayerArgs, inputs: &[&TensorType]) -> Built {
    let x = inputs[0];
    let filters = a.positive("filters", None);
    let kernel = a.pair("kernel", None);
    let stride = a.pair("stride", Some([1, 1]));
    let dilation = a.pair("dilation", Some([1, 1]));
    let groups = a.positive("groups", Some(1));
    let bias = a.bool("bias", true);
    let pad = resolve_padding(a.padding("padding", true), x, kernel, stride, dilation);
    let cin = dim(x, 1);
    let mut params = vec![(
        ParamRole::Weight,
        vec![filters, cin / groups, kernel[0], kernel[1]],
    )];
    if bias {
        params.push((ParamRole::Bias, vec![filters]));
    }
    Built {
        op: Op::Conv2d {
            filters,
            kernel,
            stride,
            pad,
            dilation,
            groups,
            bias,
        },
        params,
        activation: activation(a),
    }
}

fn resolve_padding(
    p: Padding,
    x: &TensorType,
    kernel: [u64; 2],
    stride: [u64; 2],
    dilation: [u64; 2],
) -> [u64; 4] {
    match p {
        Padding::Explicit(pad) => pad,
        Padding::Same => {
            let [t, b] = same_padding(dim(x, 2), kernel[0], stride[0], dilation[0]);
            let [l, r] = same_padding(dim(x, 3), kernel[1], stride[1], dilation[1]);
            [t, b, l, r]
        }
    }
}

fn maxpool(a: &mut LayerArgs, inputs: &[&TensorType]) -> Built {
    let kernel = a.pair("kernel", None);
    let stride = a.pair("stride", Some(kernel));
    let dilation = a.pair("dilation", Some([1, 1]));
    let ceil_mode = a.bool("ceil_mode", false);
    let pad = resolve_padding(
        a.padding("padding", true),
        inputs[0],
        kernel,
        stride,
        dilation,
    );
    plain(Op::MaxPool2d {
        kernel,
        stride,
        pad,
        dilation,
        ceil_mode,
    })
}

fn avgpool(a: &mut LayerArgs, inputs: &[&TensorType]) -> Built {
    let kernel = a.pair("kernel", None);
    let stride = a.pair("stride", Some(kernel));
    let ceil_mode = a.bool("ceil_mode", false);
    let count_include_pad = a.bool("count_include_pad", true);
    let pad = resolve_padding(
        a.padding("padding", true),
        inputs[0],
        kernel,
        stride,
        [1, 1],
    );
    plain(Op::AvgPool2d {
        kernel,
        stride,
        pad,
        ceil_mode,
        count_include_pad,
    })
}

fn reshape(a: &mut LayerArgs, inputs: &[&TensorType]) -> Built {
    use crate::diag::{Code, Diagnostic};
    let target = a.ints("shape");
    let span = a.span_of("shape");
    let known: u64 = inputs[0]
        .fixed_dims()
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d));
    let wildcards = target.iter().filter(|&&d| d == -1).count();
    let bad = target.iter().find(|&&d| d == 0 || d < -1);
    if let Some(b) = bad {
        a.errors.push(
            Diagnostic::error(
                Code::NonPositive,
                span,
                format!("reshape dimensions must be positive (or one -1), found {b}"),
            )
            .with_label("invalid dimension"),
        );
        return plain(Op::Reshape { shape: vec![known] });
    }
    if wildcards > 1 {
        a.errors.push(
            Diagnostic::error(Code::BadValue, span, "reshape takes at most one -1")
                .with_label("more than one -1"),
        );
        return plain(Op::Reshape { shape: vec![known] });
    }
    let given: u64 = target
        .iter()
        .filter(|&&d| d > 0)
        .fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
    let shape = target
        .iter()
        .map(|&d| {
            if d == -1 {
                known.checked_div(given).unwrap_or(0)
            } else {
                d as u64
            }
        })
        .collect();
    // An inexact -1 is caught by shape inference as an element-count mismatch.
    plain(Op::Reshape { shape })
}

fn batchnorm(a: &mut LayerArgs, inputs: &[&TensorType]) -> Built {
    let eps = a.float_pos("eps", 1e-5);
    let momentum = a.float_in("momentum", 0.1, 0.0, 1.0, true);
    let affine = a.bool("affine", true);
    let c = dim(inputs[0], 1);
    let mut params = Vec::new();
    if affine {
        params.push((ParamRole::Gamma, vec![c]));
        params.push((ParamRole::Beta, vec![c]));
    }
    params.push((ParamRole::RunningMean, vec![c]));
    params.push((ParamRole::RunningVar, vec![c]));
    Built {
        op: Op::BatchNorm {
            eps,
            momentum,
            affine,
        },
        params,
        activation: None,
    }
}

fn lrn(a: &mut LayerArgs, _: &[&TensorType]) -> Built {
    let size = a.positive("size", None);
    let alpha = a.float("alpha", 1e-4);
    let beta = a.float("beta", 0.75);
    let k = a.float("k", 1.0);
    plain(Op::Lrn {
        size,
        alpha,
        beta,
        k,
    })
}

fn zeropad(a: &mut LayerArgs, _: &[&TensorType]) -> Built {
    if !a.has("padding") {
        a.positive("padding", None);
    }
    match a.padding("padding", false) {
        Padding::Explicit(pad) => plain(Op::ZeroPad2d { pad }),
        Padding::Same => unreachable!("non-symbolic padding is never `same`"),
    }
}

fn normalize_axis(a: &mut LayerArgs, axis: i64, rank: usize) -> usize {
    use crate::diag::{Code, Diagnostic};
    let r = rank as i64;
    let resolved = if axis < 0 { axis + r } else { axis };
    if resolved <= 0 || resolved >= r {
        let span = a.span_of("axis");
        a.errors.push(
            Diagnostic::error(
                Code::BadIndex,
                span,
                format!("axis {axis} is out of range for a tensor of rank {rank}"),
            )
            .with_label(format!(
                "expected an axis in 1..{rank} (axis 0 is the batch)"
            )),
        );
        return 1;
    }
    resolved as usize
}

fn softmax(a: &mut LayerArgs, inputs: &[&TensorType]) -> Built {
    let axis = a.int("axis", -1);
    let axis = normalize_axis(a, axis, inputs[0].rank().max(2));
    plain(Op::Softmax { axis })
}

fn concat(a: &mut LayerArgs, inputs: &[&TensorType]) -> Built {
    let axis = a.int("axis", 1);
    let axis = normalize_axis(a, axis, inputs.first().map_or(2, |x| x.rank().max(2)));
    plain(Op::Concat { axis })
}

fn embedding(a: &mut LayerArgs, _: &[&TensorType]) -> Built {
    let vocab = a.positive("vocab", None);
    let dim = a.positive("dim", None);
    Built {
        op: Op::Embedding { vocab, dim },
        params: vec![(ParamRole::Embedding, vec![vocab, dim])],
        activation: None,
    }
}

fn rnn(a: &mut LayerArgs, inputs: &[&TensorType], cell: Option<Cell>) -> Built {
    let hidden = a.positive("hidden", None);
    let return_sequences = a.bool("return_sequences", false);
    let bias = a.bool("bias", true);
    let cell = cell.unwrap_or_else(|| Cell::Simple {
        relu: a.choice("activation", &["tanh", "relu"], "tanh") == "relu",
    });
    let rows = cell.gates() * hidden;
    let features = dim(inputs[0], 2);
    let mut params = vec![
        (ParamRole::WeightIh, vec![rows, features]),
        (ParamRole::WeightHh, vec![rows, hidden]),
    ];
    if bias {
        params.push((ParamRole::BiasIh, vec![rows]));
        params.push((ParamRole::BiasHh, vec![rows]));
    }
    Built {
        op: Op::Rnn {
            cell,
            hidden,
            return_sequences,
            bias,
        },
        params,
        activation: None,
    }
}
