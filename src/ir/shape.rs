//! Shape inference: the output type of every op from its input types. Used when a node is added and again
//! by the verifier, so the two can never disagree.

use super::op::{Cell, Chain, Op};
use super::train::Loss;
use super::types::{DType, Dim, TensorType, MAX_ELEMENTS};

/// Why an op cannot take the types it was given.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("the types of inputs and parameters are declared, not inferred")]
    Declared,
    #[error("`{op}` takes {expected} inputs, found {found}")]
    Arity {
        op: &'static str,
        expected: String,
        found: usize,
    },
    #[error("`{op}` expects {expected}, found `{found}`")]
    Rank {
        op: &'static str,
        expected: String,
        found: TensorType,
    },
    #[error("`{op}` expects {expected} elements, found `{found}`")]
    Dtype {
        op: &'static str,
        expected: &'static str,
        found: TensorType,
    },
    #[error("`{op}` input {index} has type `{other}`, but input 0 has type `{first}`")]
    Mismatch {
        op: &'static str,
        index: usize,
        first: TensorType,
        other: TensorType,
    },
    #[error("`concat` input {index} has type `{other}`, which differs from input 0's `{first}` outside axis {axis}")]
    ConcatMismatch {
        index: usize,
        axis: usize,
        first: TensorType,
        other: TensorType,
    },
    #[error("kernel {kernel} (with dilation) is larger than the padded input {what} {input}")]
    KernelTooLarge {
        what: &'static str,
        kernel: u64,
        input: u64,
    },
    #[error("{what} must be positive")]
    NonPositive { what: &'static str },
    #[error("{what} {value} is not divisible by groups {groups}")]
    Groups {
        what: &'static str,
        value: u64,
        groups: u64,
    },
    #[error("cannot reshape {from} elements into {to}")]
    Reshape { from: u64, to: u64 },
    #[error("the result has more than 2^48 elements per example")]
    TooLarge,
    #[error("padding {pad} is more than half of the kernel {kernel}")]
    PadTooLarge { pad: u64, kernel: u64 },
    #[error("parameter `{role}` has type `{found}`, expected `{expected}`")]
    ParamShape {
        role: &'static str,
        expected: TensorType,
        found: TensorType,
    },
    #[error("axis {axis} is out of range for rank {rank}")]
    Axis { axis: usize, rank: usize },
}

type R<T> = Result<T, ShapeError>;

/// The output type of `op` applied to `inputs` (data inputs, then parameters, in slot order).
pub fn infer(op: &Op, inputs: &[&TensorType]) -> R<TensorType> {
    let ty = infer_unbounded(op, inputs)?;
    let per_example = ty.dims.iter().try_fold(1u64, |acc, d| match d {
        Dim::Batch => Some(acc),
        Dim::Fixed(n) => acc.checked_mul(*n),
    });
    match per_example {
        Some(n) if n <= MAX_ELEMENTS => Ok(ty),
        _ => Err(ShapeError::TooLarge),
    }
}

fn infer_unbounded(op: &Op, inputs: &[&TensorType]) -> R<TensorType> {
    let name = op.name();
    match op {
        Op::Input { .. } | Op::Param(_) => Err(ShapeError::Declared),
        Op::Constant { .. } => {
            arity(name, inputs, 0)?;
            Ok(scalar())
        }
        Op::Loss { loss } => loss_type(loss, inputs),
        Op::Penalty { .. } => {
            arity(name, inputs, 1)?;
            float(name, inputs[0])?;
            Ok(scalar())
        }
        Op::Grad { forward, slot } => grad_type(forward, *slot, inputs),
        Op::Fused(f) => fused_type(f, inputs),
        Op::Chain(c) => {
            // Links read registers that exist, and every input has the first's type.
            let regs = inputs.len() + c.links.len();
            let ok = inputs.len() == c.inputs
                && c.inputs <= Chain::MAX_INPUTS
                && c.links.len() <= Chain::MAX_LINKS
                && !inputs.is_empty()
                && !c.links.is_empty()
                && c.links
                    .iter()
                    .enumerate()
                    .all(|(i, l)| l.reads().iter().all(|&r| r < inputs.len() + i));
            if !ok {
                return Err(ShapeError::Arity {
                    op: name,
                    expected: format!("links reading earlier registers of {regs}"),
                    found: inputs.len(),
                });
            }
            Ok(same_type(name, inputs)?.clone())
        }
        Op::Dense { units, bias } => {
            arity(name, inputs, 2 + *bias as usize)?;
            let x = float(name, inputs[0])?;
            if x.rank() < 2 || !x.has_batch() {
                return Err(rank_err(name, "a tensor `[N, ..., features]`", x));
            }
            let features = x.size(x.rank() - 1).unwrap_or(0);
            param(name, inputs[1], &[*units, features], x.dtype)?;
            if *bias {
                param(name, inputs[2], &[*units], x.dtype)?;
            }
            let mut dims = x.dims.clone();
            *dims.last_mut().expect("rank >= 2") = Dim::Fixed(*units);
            Ok(TensorType::new(x.dtype, dims))
        }
        Op::Conv2d {
            filters,
            kernel,
            stride,
            pad,
            dilation,
            groups,
            bias,
        } => {
            arity(name, inputs, 2 + *bias as usize)?;
            let (x, c, h, w) = image(name, inputs[0])?;
            positive("groups", *groups)?;
            positive("filters", *filters)?;
            if c % groups != 0 {
                return Err(ShapeError::Groups {
                    what: "input channels",
                    value: c,
                    groups: *groups,
                });
            }
            if filters % groups != 0 {
                return Err(ShapeError::Groups {
                    what: "filters",
                    value: *filters,
                    groups: *groups,
                });
            }
            param(
                name,
                inputs[1],
                &[*filters, c / groups, kernel[0], kernel[1]],
                x.dtype,
            )?;
            if *bias {
                param(name, inputs[2], &[*filters], x.dtype)?;
            }
            let (ho, wo) = spatial((h, w), *kernel, *stride, *pad, *dilation, false)?;
            Ok(TensorType::batched(x.dtype, &[*filters, ho, wo]))
        }
        Op::MaxPool2d {
            kernel,
            stride,
            pad,
            dilation,
            ceil_mode,
        } => {
            arity(name, inputs, 1)?;
            let (x, c, h, w) = image(name, inputs[0])?;
            pool_pad(*kernel, *pad, *dilation)?;
            let (ho, wo) = spatial((h, w), *kernel, *stride, *pad, *dilation, *ceil_mode)?;
            Ok(TensorType::batched(x.dtype, &[c, ho, wo]))
        }
        Op::AvgPool2d {
            kernel,
            stride,
            pad,
            ceil_mode,
            ..
        } => {
            arity(name, inputs, 1)?;
            let (x, c, h, w) = image(name, inputs[0])?;
            pool_pad(*kernel, *pad, [1, 1])?;
            let (ho, wo) = spatial((h, w), *kernel, *stride, *pad, [1, 1], *ceil_mode)?;
            Ok(TensorType::batched(x.dtype, &[c, ho, wo]))
        }
        Op::AdaptiveAvgPool2d { size } => {
            arity(name, inputs, 1)?;
            let (x, c, _, _) = image(name, inputs[0])?;
            positive("output size", size[0].min(size[1]))?;
            Ok(TensorType::batched(x.dtype, &[c, size[0], size[1]]))
        }
        Op::GlobalAvgPool { keepdims } => {
            arity(name, inputs, 1)?;
            let (x, c, _, _) = image(name, inputs[0])?;
            let dims: &[u64] = if *keepdims { &[c, 1, 1] } else { &[c] };
            Ok(TensorType::batched(x.dtype, dims))
        }
        Op::Flatten => {
            arity(name, inputs, 1)?;
            let x = activation(name, inputs[0], 2, "a tensor `[N, ...]` of rank 2 or more")?;
            let n = checked_product(&x.fixed_dims())?;
            Ok(TensorType::batched(x.dtype, &[n]))
        }
        Op::Reshape { shape } => {
            arity(name, inputs, 1)?;
            let x = activation(name, inputs[0], 1, "a tensor `[N, ...]`")?;
            let from = checked_product(&x.fixed_dims())?;
            let to = checked_product(shape)?;
            if from != to || shape.contains(&0) {
                return Err(ShapeError::Reshape { from, to });
            }
            Ok(TensorType::batched(x.dtype, shape))
        }
        Op::BatchNorm { affine, .. } => {
            arity(name, inputs, if *affine { 5 } else { 3 })?;
            let x = float(
                name,
                activation(
                    name,
                    inputs[0],
                    2,
                    "a tensor `[N, C]`, `[N, C, L]` or `[N, C, H, W]`",
                )?,
            )?;
            if x.rank() > 4 {
                return Err(rank_err(
                    name,
                    "a tensor `[N, C]`, `[N, C, L]` or `[N, C, H, W]`",
                    x,
                ));
            }
            let c = x.size(1).unwrap_or(0);
            for p in &inputs[1..] {
                param(name, p, &[c], x.dtype)?;
            }
            Ok(x.clone())
        }
        Op::Lrn { size, .. } => {
            arity(name, inputs, 1)?;
            positive("size", *size)?;
            Ok(float(
                name,
                activation(
                    name,
                    inputs[0],
                    3,
                    "a tensor `[N, C, ...]` of rank 3 or more",
                )?,
            )?
            .clone())
        }
        Op::Dropout { .. } | Op::Activation(_) | Op::Scale { .. } => {
            arity(name, inputs, 1)?;
            Ok(float(name, activation(name, inputs[0], 1, "a tensor `[N, ...]`")?)?.clone())
        }
        Op::Softmax { axis } => {
            arity(name, inputs, 1)?;
            let x = float(
                name,
                activation(name, inputs[0], 2, "a tensor `[N, ...]` of rank 2 or more")?,
            )?;
            if *axis == 0 || *axis >= x.rank() {
                return Err(ShapeError::Axis {
                    axis: *axis,
                    rank: x.rank(),
                });
            }
            Ok(x.clone())
        }
        Op::ZeroPad2d { pad } => {
            arity(name, inputs, 1)?;
            let (x, c, h, w) = image(name, inputs[0])?;
            let ho = h.checked_add(pad[0] + pad[1]).ok_or(ShapeError::TooLarge)?;
            let wo = w.checked_add(pad[2] + pad[3]).ok_or(ShapeError::TooLarge)?;
            Ok(TensorType::batched(x.dtype, &[c, ho, wo]))
        }
        Op::Add | Op::Mul => {
            if inputs.len() < 2 {
                return Err(ShapeError::Arity {
                    op: name,
                    expected: "2 or more".into(),
                    found: inputs.len(),
                });
            }
            // Gradients add up parameter-shaped and scalar tensors too, so any one float type is accepted.
            Ok(same_type(name, inputs)?.clone())
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err(ShapeError::Arity {
                    op: name,
                    expected: "1 or more".into(),
                    found: 0,
                });
            }
            let x = activation(name, inputs[0], 2, "a tensor `[N, ...]` of rank 2 or more")?;
            if *axis == 0 || *axis >= x.rank() {
                return Err(ShapeError::Axis {
                    axis: *axis,
                    rank: x.rank(),
                });
            }
            let mut total = 0u64;
            for (i, other) in inputs.iter().enumerate() {
                let same_elsewhere = other.rank() == x.rank()
                    && other.dtype == x.dtype
                    && (0..x.rank()).all(|d| d == *axis || other.dims[d] == x.dims[d]);
                if !same_elsewhere {
                    return Err(ShapeError::ConcatMismatch {
                        index: i,
                        axis: *axis,
                        first: x.clone(),
                        other: (*other).clone(),
                    });
                }
                total = total
                    .checked_add(other.size(*axis).unwrap_or(0))
                    .ok_or(ShapeError::TooLarge)?;
            }
            let mut dims = x.dims.clone();
            dims[*axis] = Dim::Fixed(total);
            Ok(TensorType::new(x.dtype, dims))
        }
        Op::Embedding { vocab, dim } => {
            arity(name, inputs, 2)?;
            let x = activation(name, inputs[0], 1, "integer indices `[N, ...]`")?;
            if x.dtype.is_float() {
                return Err(ShapeError::Dtype {
                    op: name,
                    expected: "integer (i32 or i64)",
                    found: x.clone(),
                });
            }
            param(name, inputs[1], &[*vocab, *dim], DType::F32)?;
            let mut dims = x.dims.clone();
            dims.push(Dim::Fixed(*dim));
            Ok(TensorType::new(DType::F32, dims))
        }
        Op::Rnn {
            cell,
            hidden,
            return_sequences,
            bias,
        } => {
            arity(name, inputs, if *bias { 5 } else { 3 })?;
            let x = float(name, inputs[0])?;
            if x.rank() != 3 || !x.has_batch() {
                return Err(rank_err(name, "a sequence `[N, T, F]`", x));
            }
            positive("hidden", *hidden)?;
            let (steps, features) = (x.size(1).unwrap_or(0), x.size(2).unwrap_or(0));
            let rows = Cell::gates(*cell) * hidden;
            param(name, inputs[1], &[rows, features], x.dtype)?;
            param(name, inputs[2], &[rows, *hidden], x.dtype)?;
            if *bias {
                param(name, inputs[3], &[rows], x.dtype)?;
                param(name, inputs[4], &[rows], x.dtype)?;
            }
            let dims: &[u64] = if *return_sequences {
                &[steps, *hidden]
            } else {
                &[*hidden]
            };
            Ok(TensorType::batched(x.dtype, dims))
        }
    }
}

/// A scalar `f32[]`: losses, penalties, constants.
fn scalar() -> TensorType {
    TensorType::new(DType::F32, Vec::new())
}

/// The loss's inputs: a batched float prediction and a target of the same shape (integer class indices
/// without the class axis for the sparse categorical loss).
fn loss_type(loss: &Loss, inputs: &[&TensorType]) -> R<TensorType> {
    arity("loss", inputs, 2)?;
    let pred = float(
        "loss",
        activation("loss", inputs[0], 2, "a prediction `[N, ...]`")?,
    )?;
    let target = inputs[1];
    let expected = match loss {
        Loss::SparseCategoricalCrossentropy { .. } => {
            if target.dtype.is_float() {
                return Err(ShapeError::Dtype {
                    op: "loss",
                    expected: "integer (class index)",
                    found: target.clone(),
                });
            }
            TensorType::new(target.dtype, pred.dims[..pred.rank() - 1].to_vec())
        }
        _ => pred.clone(),
    };
    if *target != expected {
        return Err(ShapeError::Mismatch {
            op: "loss",
            index: 1,
            first: expected,
            other: target.clone(),
        });
    }
    Ok(scalar())
}

/// A gradient has the type of the forward input it is taken for; the forward op must accept the inputs it
/// is given, and the upstream gradient must have the forward output's type.
fn grad_type(forward: &Op, slot: usize, inputs: &[&TensorType]) -> R<TensorType> {
    if inputs.len() < 3 || slot >= inputs.len() - 2 {
        return Err(ShapeError::Arity {
            op: "grad",
            expected: format!("the forward inputs (more than {slot}), y and dy"),
            found: inputs.len(),
        });
    }
    let k = inputs.len() - 2;
    let (y, dy) = (inputs[k], inputs[k + 1]);
    let forward_y = infer(forward, &inputs[..k])?;
    for (i, t) in [(k, y), (k + 1, dy)] {
        if *t != forward_y {
            return Err(ShapeError::Mismatch {
                op: "grad",
                index: i,
                first: forward_y.clone(),
                other: t.clone(),
            });
        }
    }
    float("grad", inputs[slot]).cloned()
}

/// A fused op's type: its core's, checked against the folded batch norm's parameters and the residual.
fn fused_type(f: &crate::ir::op::Fused, inputs: &[&TensorType]) -> R<TensorType> {
    arity("fused", inputs, f.arity())?;
    let core: Vec<&TensorType> = f.core_slots().into_iter().map(|i| inputs[i]).collect();
    let y = infer_unbounded(&f.core, &core)?;
    if let Some(b) = f.bn {
        let op = Op::BatchNorm {
            eps: b.eps,
            momentum: 0.0,
            affine: b.affine,
        };
        let with: Vec<&TensorType> = std::iter::once(&y)
            .chain(inputs[f.first_bn()..].iter().copied())
            .collect();
        infer_unbounded(&op, &with)?;
    }
    if f.residual && *inputs[1] != y {
        return Err(ShapeError::Mismatch {
            op: "fused",
            index: 1,
            first: y,
            other: inputs[1].clone(),
        });
    }
    Ok(y)
}

fn arity(op: &'static str, inputs: &[&TensorType], n: usize) -> R<()> {
    if inputs.len() == n {
        Ok(())
    } else {
        Err(ShapeError::Arity {
            op,
            expected: n.to_string(),
            found: inputs.len(),
        })
    }
}

fn rank_err(op: &'static str, expected: &str, found: &TensorType) -> ShapeError {
    ShapeError::Rank {
        op,
        expected: expected.to_string(),
        found: found.clone(),
    }
}

/// The type of every input (the first's, a float type), or which input differs.
fn same_type<'a>(op: &'static str, inputs: &[&'a TensorType]) -> R<&'a TensorType> {
    let x = float(op, inputs[0])?;
    for (i, other) in inputs.iter().enumerate().skip(1) {
        if *other != x {
            return Err(ShapeError::Mismatch {
                op,
                index: i,
                first: x.clone(),
                other: (*other).clone(),
            });
        }
    }
    Ok(x)
}

fn float<'a>(op: &'static str, x: &'a TensorType) -> R<&'a TensorType> {
    if x.dtype.is_float() {
        Ok(x)
    } else {
        Err(ShapeError::Dtype {
            op,
            expected: "floating-point (f32 or f64)",
            found: x.clone(),
        })
    }
}

/// An activation (batch first) of at least `min_rank`.
fn activation<'a>(
    op: &'static str,
    x: &'a TensorType,
    min_rank: usize,
    expected: &str,
) -> R<&'a TensorType> {
    if x.has_batch() && x.rank() >= min_rank {
        Ok(x)
    } else {
        Err(rank_err(op, expected, x))
    }
}

/// An image batch `[N, C, H, W]` of floats.
fn image<'a>(op: &'static str, x: &'a TensorType) -> R<(&'a TensorType, u64, u64, u64)> {
    let x = float(op, x)?;
    match (x.rank(), x.has_batch(), x.size(1), x.size(2), x.size(3)) {
        (4, true, Some(c), Some(h), Some(w)) => Ok((x, c, h, w)),
        _ => Err(rank_err(op, "an image batch `[N, C, H, W]`", x)),
    }
}

fn param(op: &'static str, p: &TensorType, dims: &[u64], dtype: DType) -> R<()> {
    let expected = TensorType::fixed(dtype, dims);
    if *p == expected {
        Ok(())
    } else {
        Err(ShapeError::ParamShape {
            role: op,
            expected,
            found: p.clone(),
        })
    }
}

fn positive(what: &'static str, v: u64) -> R<()> {
    if v == 0 {
        Err(ShapeError::NonPositive { what })
    } else {
        Ok(())
    }
}

fn checked_product(dims: &[u64]) -> R<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or(ShapeError::TooLarge)
}

/// PyTorch's rule: pooling padding is at most half the effective kernel.
fn pool_pad(kernel: [u64; 2], pad: [u64; 4], dilation: [u64; 2]) -> R<()> {
    for (axis, sides) in [(0, [pad[0], pad[1]]), (1, [pad[2], pad[3]])] {
        let eff = dilation[axis]
            .saturating_mul(kernel[axis].saturating_sub(1))
            .saturating_add(1);
        let worst = sides[0].max(sides[1]);
        if worst > eff / 2 {
            return Err(ShapeError::PadTooLarge {
                pad: worst,
                kernel: kernel[axis],
            });
        }
    }
    Ok(())
}

/// Output height and width of a 2-d sliding window over `(h, w)`; `pad` is `[top, bottom, left, right]`.
fn spatial(
    hw: (u64, u64),
    kernel: [u64; 2],
    stride: [u64; 2],
    pad: [u64; 4],
    dilation: [u64; 2],
    ceil: bool,
) -> R<(u64, u64)> {
    let ho = window(
        "height",
        hw.0,
        pad[0],
        pad[1],
        kernel[0],
        stride[0],
        dilation[0],
        ceil,
    )?;
    let wo = window(
        "width",
        hw.1,
        pad[2],
        pad[3],
        kernel[1],
        stride[1],
        dilation[1],
        ceil,
    )?;
    Ok((ho, wo))
}

/// Output length of a sliding window (convolution or pooling) along one axis, as PyTorch computes it.
#[allow(clippy::too_many_arguments)]
pub fn window(
    what: &'static str,
    len: u64,
    pad_lo: u64,
    pad_hi: u64,
    k: u64,
    s: u64,
    d: u64,
    ceil: bool,
) -> R<u64> {
    positive("kernel size", k)?;
    positive("stride", s)?;
    positive("dilation", d)?;
    let eff = d
        .checked_mul(k - 1)
        .and_then(|v| v.checked_add(1))
        .ok_or(ShapeError::TooLarge)?;
    let padded = len
        .checked_add(pad_lo)
        .and_then(|v| v.checked_add(pad_hi))
        .ok_or(ShapeError::TooLarge)?;
    if eff > padded {
        return Err(ShapeError::KernelTooLarge {
            what,
            kernel: eff,
            input: padded,
        });
    }
    let span = padded - eff;
    let mut out = if ceil {
        span.div_ceil(s) + 1
    } else {
        span / s + 1
    };
    // A window may not start in the trailing padding (PyTorch's ceil-mode rule).
    if ceil && (out - 1) * s >= len + pad_lo {
        out -= 1;
    }
    Ok(out)
}
