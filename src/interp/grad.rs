//! Gradients: the interpreter's side of `Op::Grad`, one arm per forward op (docs/semantics.md gives each
//! vector-Jacobian product). Autodiff decides which gradients exist; this file computes them.

use ndarray::{ArrayD, Axis, IxDyn};

use super::{conv, elementwise, f, loss, norm, pool, rnn, Context, Mode, RunError};
use crate::ir::{NodeId, Op};
use crate::tensor::Tensor;

/// Sums `dy` over every axis but `axis`: the gradient of a per-channel bias.
fn sum_except(dy: &ArrayD<f64>, axis: usize) -> ArrayD<f64> {
    let mut out = dy.clone();
    for ax in (0..dy.ndim()).rev() {
        if ax != axis {
            out = out.sum_axis(Axis(ax));
        }
    }
    out
}

impl Context<'_> {
    /// The gradient of `forward` (node `fwd`) with respect to its input `slot`. `args` are the forward op's
    /// inputs, `y` its output and `dy` the upstream gradient.
    pub(super) fn grad(
        &mut self,
        fwd: NodeId,
        forward: &Op,
        slot: usize,
        args: &[&Tensor],
        y: &Tensor,
        dy: &ArrayD<f64>,
    ) -> Result<ArrayD<f64>, RunError> {
        let x = || f(args[0]);
        let p = |i: usize| f(args[i]);
        let no_grad = |what: &str| -> ! { unreachable!("autodiff takes no gradient of {what}") };
        Ok(match forward {
            Op::Dense { .. } => {
                let w = p(1)
                    .view()
                    .into_dimensionality::<ndarray::Ix2>()
                    .expect("2-d weight")
                    .to_owned();
                let (_, dy2) = conv::rows_of(dy);
                match slot {
                    0 => dy2
                        .dot(&w)
                        .to_shape(IxDyn(x().shape()))
                        .expect("x's shape")
                        .into_owned(),
                    1 => {
                        let (_, x2) = conv::rows_of(x());
                        dy2.t().dot(&x2).into_dyn()
                    }
                    _ => dy2.sum_axis(Axis(0)).into_dyn(),
                }
            }
            Op::Conv2d {
                stride,
                pad,
                dilation,
                groups,
                ..
            } => match slot {
                0 => conv::conv2d_grad(x(), p(1), dy, *stride, *pad, *dilation, *groups).0,
                1 => conv::conv2d_grad(x(), p(1), dy, *stride, *pad, *dilation, *groups).1,
                _ => sum_except(dy, 1),
            },
            Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::GlobalAvgPool { .. } => pool::backward(forward, x(), dy),
            Op::ZeroPad2d { pad } => pool::zeropad_grad(dy, *pad),
            Op::Flatten | Op::Reshape { .. } => elementwise::reshape(dy, x().shape()),
            Op::BatchNorm { eps, affine, .. } => {
                let gamma = affine.then(|| p(1));
                let (dx, dgamma, dbeta) = match self.options.mode {
                    Mode::Train => norm::batchnorm_train_grad(x(), gamma, dy, *eps),
                    Mode::Eval => {
                        let n = args.len();
                        norm::batchnorm_eval_grad(x(), gamma, p(n - 2), p(n - 1), dy, *eps)
                    }
                };
                match (slot, affine) {
                    (0, _) => dx,
                    (1, true) => dgamma,
                    (2, true) => dbeta,
                    _ => no_grad("batch-norm running statistics"),
                }
            }
            Op::Dropout { rate } => match self.options.mode {
                Mode::Eval => dy.clone(),
                Mode::Train => {
                    dy * &norm::dropout_mask(
                        dy.shape(),
                        *rate,
                        &norm::dropout_mask_rng(self.options.seed, &self.g.node(fwd).path),
                    )
                }
            },
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => norm::lrn_grad(x(), dy, *size as usize, *alpha, *beta, *k),
            Op::Activation(act) => elementwise::activation_grad(*act, x(), dy),
            Op::Softmax { axis } => elementwise::softmax_grad(f(y), dy, *axis),
            Op::Add => dy.clone(),
            Op::Mul => {
                let mut out = dy.clone();
                for (i, a) in args.iter().enumerate() {
                    if i != slot {
                        out *= f(a);
                    }
                }
                out
            }
            Op::Scale { factor } => dy * *factor,
            Op::Concat { axis } => {
                let start: usize = args[..slot].iter().map(|a| a.shape()[*axis]).sum();
                elementwise::slice(dy, *axis, start, args[slot].shape()[*axis])
            }
            Op::Embedding { .. } => {
                let Tensor::I(idx) = args[0] else {
                    no_grad("integer indices")
                };
                let w = p(1);
                let dim = w.shape()[1];
                let mut dw = ArrayD::<f64>::zeros(w.raw_dim());
                let rows = dy.to_shape((idx.len(), dim)).expect("one row per index");
                for (&i, row) in idx.iter().zip(rows.outer_iter()) {
                    let mut target = dw.index_axis_mut(Axis(0), i as usize);
                    target += &row;
                }
                dw
            }
            Op::Rnn {
                cell,
                hidden,
                return_sequences,
                bias,
            } => {
                let b = bias.then(|| (p(3), p(4)));
                let grads = rnn::backward(
                    *cell,
                    *hidden as usize,
                    x(),
                    p(1),
                    p(2),
                    b,
                    *return_sequences,
                    dy,
                );
                grads[slot].clone()
            }
            Op::Loss { loss: l } => {
                let (_, g) = loss::loss(l, x(), args[1])
                    .map_err(|class| RunError::ClassOutOfRange { class })?;
                g * dy.first().copied().unwrap_or(1.0)
            }
            Op::Penalty { reg } => loss::penalty(reg, x()).1 * dy.first().copied().unwrap_or(1.0),
            Op::Input { .. } | Op::Param(_) | Op::Constant { .. } => no_grad("a leaf"),
            Op::Grad { .. } => no_grad("a gradient (no second-order derivatives)"),
            Op::Fused(_) | Op::Chain(_) => no_grad("a fused op (fusion is for inference)"),
        })
    }
}
