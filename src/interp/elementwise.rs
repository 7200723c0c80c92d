//! Elementwise ops, activations, softmax, sums and products, concatenation and reshapes; with gradients.

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use crate::ir::Act;

pub fn reshape<T: Clone>(x: &ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    x.to_shape(IxDyn(shape))
        .expect("reshapes keep the element count")
        .to_owned()
}

fn sigmoid(v: f64) -> f64 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

pub fn activation(act: Act, x: &ArrayD<f64>) -> ArrayD<f64> {
    match act {
        // NaN propagates, as in PyTorch.
        Act::Relu => x.mapv(|v| if v > 0.0 || v.is_nan() { v } else { 0.0 }),
        Act::Sigmoid => x.mapv(sigmoid),
        Act::Tanh => x.mapv(f64::tanh),
        Act::Identity => x.clone(),
        Act::LeakyRelu { slope } => x.mapv(|v| if v > 0.0 { v } else { slope * v }),
    }
}

/// `dy * act'(x)`. ReLU's derivative at 0 is 0, as in PyTorch.
pub fn activation_grad(act: Act, x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
    let mut out = dy.clone();
    out.zip_mut_with(x, |g, &v| {
        *g *= match act {
            Act::Relu => (v > 0.0) as u8 as f64,
            Act::Sigmoid => sigmoid(v) * (1.0 - sigmoid(v)),
            Act::Tanh => 1.0 - v.tanh().powi(2),
            Act::Identity => 1.0,
            Act::LeakyRelu { slope } => {
                if v > 0.0 {
                    1.0
                } else {
                    slope
                }
            }
        }
    });
    out
}

/// Softmax along `axis`, computed stably by subtracting the maximum.
pub fn softmax(x: &ArrayD<f64>, axis: usize) -> ArrayD<f64> {
    let mut y = x.clone();
    for mut lane in y.lanes_mut(Axis(axis)) {
        let max = lane.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        lane.mapv_inplace(|v| (v - max).exp());
        let sum = lane.sum();
        lane.mapv_inplace(|v| v / sum);
    }
    y
}

/// Log-softmax along `axis`: `x - max - log(sum(exp(x - max)))`.
pub fn log_softmax(x: &ArrayD<f64>, axis: usize) -> ArrayD<f64> {
    let mut y = x.clone();
    for mut lane in y.lanes_mut(Axis(axis)) {
        let max = lane.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let lse = max + lane.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        lane.mapv_inplace(|v| v - lse);
    }
    y
}

/// Softmax gradient from its output: `dx = y * (dy - sum(dy * y))` along the axis.
pub fn softmax_grad(y: &ArrayD<f64>, dy: &ArrayD<f64>, axis: usize) -> ArrayD<f64> {
    let mut dx = dy.clone();
    for (mut g, yl) in dx
        .lanes_mut(Axis(axis))
        .into_iter()
        .zip(y.lanes(Axis(axis)))
    {
        let dot: f64 = g.iter().zip(yl.iter()).map(|(a, b)| a * b).sum();
        g.zip_mut_with(&yl, |gv, &yv| *gv = yv * (*gv - dot));
    }
    dx
}

pub fn sum(xs: &[&ArrayD<f64>]) -> ArrayD<f64> {
    let mut out = xs[0].clone();
    for x in &xs[1..] {
        out += *x;
    }
    out
}

pub fn product(xs: &[&ArrayD<f64>]) -> ArrayD<f64> {
    let mut out = xs[0].clone();
    for x in &xs[1..] {
        out *= *x;
    }
    out
}

pub fn concat<T: Clone>(xs: &[&ArrayD<T>], axis: usize) -> ArrayD<T> {
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    ndarray::concatenate(Axis(axis), &views).expect("shape inference checked the concat")
}

/// The part `[start, start + len)` of `x` along `axis` (the gradient of one concat input).
pub fn slice(x: &ArrayD<f64>, axis: usize, start: usize, len: usize) -> ArrayD<f64> {
    x.slice_axis(Axis(axis), Slice::from(start..start + len))
        .to_owned()
}
