//! Losses and regularization penalties, forward (a scalar) and gradient, following Keras 3's definitions and
//! reductions (docs/semantics.md, sections 14 and 15).

use ndarray::{ArrayD, Axis};

use super::elementwise::{log_softmax, softmax};
use crate::ir::train::{Loss, Regularizer};
use crate::tensor::Tensor;

const EPS: f64 = 1e-7;

fn clip(v: f64) -> f64 {
    v.clamp(EPS, 1.0 - EPS)
}

/// The clip's derivative: 1 strictly inside the bounds, 0 on or outside them.
fn clip_grad(v: f64) -> f64 {
    (v > EPS && v < 1.0 - EPS) as u8 as f64
}

/// Targets as dense float arrays shaped like the prediction; sparse class indices become one-hot.
/// `Err(class)` for a class index outside `[0, K)`.
fn dense_targets(loss: &Loss, pred: &ArrayD<f64>, target: &Tensor) -> Result<ArrayD<f64>, i64> {
    match (loss, target) {
        (Loss::SparseCategoricalCrossentropy { .. }, Tensor::I(t)) => {
            let k = *pred.shape().last().expect("rank >= 2");
            let mut onehot = ArrayD::<f64>::zeros(pred.raw_dim());
            for (mut row, &c) in onehot
                .lanes_mut(Axis(pred.ndim() - 1))
                .into_iter()
                .zip(t.iter())
            {
                if c < 0 || c as usize >= k {
                    return Err(c);
                }
                row[c as usize] = 1.0;
            }
            Ok(onehot)
        }
        (_, t) => Ok(t.to_f64()),
    }
}

/// The number of positions a categorical loss averages over (all but the class axis).
fn positions(pred: &ArrayD<f64>) -> f64 {
    (pred.len() / pred.shape().last().copied().unwrap_or(1).max(1)) as f64
}

/// `(L, dL/dpred)`.
pub fn loss(loss: &Loss, pred: &ArrayD<f64>, target: &Tensor) -> Result<(f64, ArrayD<f64>), i64> {
    let t = dense_targets(loss, pred, target)?;
    let m = pred.len() as f64;
    let class_axis = Axis(pred.ndim() - 1);
    Ok(match loss {
        Loss::Mae => {
            let d = pred - &t;
            (
                d.mapv(f64::abs).sum() / m,
                d.mapv(|v| {
                    if v > 0.0 {
                        1.0
                    } else if v < 0.0 {
                        -1.0
                    } else {
                        0.0
                    }
                }) / m,
            )
        }
        Loss::Mse => {
            let d = pred - &t;
            (d.mapv(|v| v * v).sum() / m, d * (2.0 / m))
        }
        Loss::Rmse => {
            let d = pred - &t;
            let l = (d.mapv(|v| v * v).sum() / m).sqrt();
            let g = if l > 0.0 {
                d / (m * l)
            } else {
                ArrayD::zeros(pred.raw_dim())
            };
            (l, g)
        }
        Loss::BinaryCrossentropy { from_logits: false } => {
            let mut total = 0.0;
            let mut g = pred.clone();
            for ((gv, &y), &tv) in g.iter_mut().zip(pred.iter()).zip(t.iter()) {
                let p = clip(y);
                total -= tv * p.ln() + (1.0 - tv) * (1.0 - p).ln();
                *gv = (p - tv) / (p * (1.0 - p)) * clip_grad(y) / m;
            }
            (total / m, g)
        }
        Loss::BinaryCrossentropy { from_logits: true } => {
            let mut total = 0.0;
            let mut g = pred.clone();
            for ((gv, &x), &tv) in g.iter_mut().zip(pred.iter()).zip(t.iter()) {
                total += x.max(0.0) - x * tv + (-x.abs()).exp().ln_1p();
                *gv = (1.0 / (1.0 + (-x).exp()) - tv) / m;
            }
            (total / m, g)
        }
        Loss::CategoricalCrossentropy {
            from_logits,
            label_smoothing,
        } => {
            let k = pred.shape()[pred.ndim() - 1] as f64;
            let t = t.mapv(|v| v * (1.0 - label_smoothing) + label_smoothing / k);
            categorical(pred, &t, *from_logits, positions(pred), class_axis)
        }
        Loss::SparseCategoricalCrossentropy { from_logits } => {
            categorical(pred, &t, *from_logits, positions(pred), class_axis)
        }
    })
}

fn categorical(
    pred: &ArrayD<f64>,
    t: &ArrayD<f64>,
    from_logits: bool,
    p: f64,
    class_axis: Axis,
) -> (f64, ArrayD<f64>) {
    if from_logits {
        let ls = log_softmax(pred, class_axis.0);
        let sm = softmax(pred, class_axis.0);
        let total = -(t * &ls).sum();
        let mut g = sm.clone();
        for ((mut gl, sl), tl) in g
            .lanes_mut(class_axis)
            .into_iter()
            .zip(sm.lanes(class_axis))
            .zip(t.lanes(class_axis))
        {
            let tsum = tl.sum();
            for ((gv, &s), &tv) in gl.iter_mut().zip(sl.iter()).zip(tl.iter()) {
                *gv = (s * tsum - tv) / p;
            }
        }
        return (total / p, g);
    }
    // From probabilities: renormalize, clip, then cross-entropy (Keras).
    let mut total = 0.0;
    let mut g = pred.clone();
    for ((mut gl, yl), tl) in g
        .lanes_mut(class_axis)
        .into_iter()
        .zip(pred.lanes(class_axis))
        .zip(t.lanes(class_axis))
    {
        let s: f64 = yl.sum();
        let q: Vec<f64> = yl.iter().map(|v| v / s).collect();
        let gamma: Vec<f64> = q
            .iter()
            .zip(tl.iter())
            .map(|(&qv, &tv)| -tv / clip(qv) * clip_grad(qv))
            .collect();
        total -= q
            .iter()
            .zip(tl.iter())
            .map(|(&qv, &tv)| tv * clip(qv).ln())
            .sum::<f64>();
        let dot: f64 = gamma.iter().zip(&q).map(|(a, b)| a * b).sum();
        for (gv, gm) in gl.iter_mut().zip(&gamma) {
            *gv = (gm - dot) / (p * s);
        }
    }
    (total / p, g)
}

/// `(penalty, dpenalty/dw)`: L1 `l1 * sum|w|`, L2 `l2 * sum w^2` (Keras's convention).
pub fn penalty(reg: &Regularizer, w: &ArrayD<f64>) -> (f64, ArrayD<f64>) {
    let (l1, l2) = match reg {
        Regularizer::None => (0.0, 0.0),
        Regularizer::L1(a) => (*a, 0.0),
        Regularizer::L2(b) => (0.0, *b),
        Regularizer::L1L2 { l1, l2 } => (*l1, *l2),
    };
    let value = l1 * w.mapv(f64::abs).sum() + l2 * w.mapv(|v| v * v).sum();
    let grad = w.mapv(|v| {
        l1 * if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            0.0
        } + 2.0 * l2 * v
    });
    (value, grad)
}
