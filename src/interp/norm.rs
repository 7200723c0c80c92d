//! Normalization and regularization layers: batch norm (inference and training mode), local response
//! norm, dropout; forward and backward.

use ndarray::{Array1, Array3, ArrayD, Axis};

use crate::tensor::Rng;

/// `x` as `[N, C, L]` (L = the product of the axes after the channels; 1 for `[N, C]`).
fn ncl(x: &ArrayD<f64>) -> Array3<f64> {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let l = x.len() / (n * c).max(1);
    x.to_shape((n, c, l))
        .expect("same element count")
        .to_owned()
}

fn per_channel(a: &ArrayD<f64>) -> Array1<f64> {
    a.iter().copied().collect()
}

/// Applies `y = (x - mean) * scale + shift` per channel, where `scale = gamma / sqrt(var + eps)`.
fn normalize(
    x: &ArrayD<f64>,
    mean: &Array1<f64>,
    inv_std: &Array1<f64>,
    gamma: Option<&ArrayD<f64>>,
    beta: Option<&ArrayD<f64>>,
) -> ArrayD<f64> {
    let x3 = ncl(x);
    let gamma = gamma.map(per_channel);
    let beta = beta.map(per_channel);
    let mut y = x3.clone();
    for ((_, ch, _), v) in y.indexed_iter_mut() {
        let g = gamma.as_ref().map_or(1.0, |g| g[ch]);
        let b = beta.as_ref().map_or(0.0, |b| b[ch]);
        *v = (*v - mean[ch]) * inv_std[ch] * g + b;
    }
    y.into_shape_with_order(x.raw_dim())
        .expect("same element count")
}

pub fn batchnorm_eval(
    x: &ArrayD<f64>,
    gamma: Option<&ArrayD<f64>>,
    beta: Option<&ArrayD<f64>>,
    mean: &ArrayD<f64>,
    var: &ArrayD<f64>,
    eps: f64,
) -> ArrayD<f64> {
    let inv_std = per_channel(var).mapv(|v| 1.0 / (v + eps).sqrt());
    normalize(x, &per_channel(mean), &inv_std, gamma, beta)
}

/// Batch statistics per channel: mean and biased variance.
pub fn batch_stats(x: &ArrayD<f64>) -> (Array1<f64>, Array1<f64>, usize) {
    let x3 = ncl(x);
    let m = x3.shape()[0] * x3.shape()[2];
    let mean = x3.sum_axis(Axis(2)).sum_axis(Axis(0)) / m as f64;
    let mut var = Array1::zeros(mean.len());
    for ((_, ch, _), v) in x3.indexed_iter() {
        var[ch] += (v - mean[ch]).powi(2);
    }
    (mean, var / m as f64, m)
}

/// Training mode: normalizes with batch statistics; returns the output and the new running mean and
/// variance (`(1 - momentum) * running + momentum * batch`, with the unbiased batch variance).
pub fn batchnorm_train(
    x: &ArrayD<f64>,
    gamma: Option<&ArrayD<f64>>,
    beta: Option<&ArrayD<f64>>,
    running_mean: &ArrayD<f64>,
    running_var: &ArrayD<f64>,
    eps: f64,
    momentum: f64,
) -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
    let (mean, var, m) = batch_stats(x);
    let inv_std = var.mapv(|v| 1.0 / (v + eps).sqrt());
    let y = normalize(x, &mean, &inv_std, gamma, beta);
    let unbiased = if m > 1 {
        &var * (m as f64 / (m - 1) as f64)
    } else {
        var.clone()
    };
    let new_mean = running_mean * (1.0 - momentum) + &(mean.into_dyn() * momentum);
    let new_var = running_var * (1.0 - momentum) + &(unbiased.into_dyn() * momentum);
    (y, new_mean, new_var)
}

/// Training-mode batch-norm gradients `(dx, dgamma, dbeta)`:
/// `dx = gamma * inv_std / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))`.
pub fn batchnorm_train_grad(
    x: &ArrayD<f64>,
    gamma: Option<&ArrayD<f64>>,
    dy: &ArrayD<f64>,
    eps: f64,
) -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
    let (mean, var, m) = batch_stats(x);
    let inv_std = var.mapv(|v| 1.0 / (v + eps).sqrt());
    let (x3, dy3) = (ncl(x), ncl(dy));
    let c = mean.len();
    let mut sum_dy = Array1::<f64>::zeros(c);
    let mut sum_dy_xhat = Array1::<f64>::zeros(c);
    for (((_, ch, _), xv), g) in x3.indexed_iter().zip(dy3.iter()) {
        let xhat = (xv - mean[ch]) * inv_std[ch];
        sum_dy[ch] += g;
        sum_dy_xhat[ch] += g * xhat;
    }
    let gamma = gamma.map(per_channel).unwrap_or_else(|| Array1::ones(c));
    let mut dx = x3.clone();
    for (((_, ch, _), v), g) in dx.indexed_iter_mut().zip(dy3.iter()) {
        let xhat = (*v - mean[ch]) * inv_std[ch];
        *v = gamma[ch] * inv_std[ch] / m as f64
            * (m as f64 * g - sum_dy[ch] - xhat * sum_dy_xhat[ch]);
    }
    (
        dx.into_shape_with_order(x.raw_dim()).expect("same count"),
        sum_dy_xhat.into_dyn(),
        sum_dy.into_dyn(),
    )
}

/// Inference-mode batch-norm gradients `(dx, dgamma, dbeta)` (running statistics are constants).
pub fn batchnorm_eval_grad(
    x: &ArrayD<f64>,
    gamma: Option<&ArrayD<f64>>,
    mean: &ArrayD<f64>,
    var: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    eps: f64,
) -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
    let (mean, inv_std) = (
        per_channel(mean),
        per_channel(var).mapv(|v| 1.0 / (v + eps).sqrt()),
    );
    let c = mean.len();
    let gamma = gamma.map(per_channel).unwrap_or_else(|| Array1::ones(c));
    let (x3, dy3) = (ncl(x), ncl(dy));
    let mut dgamma = Array1::<f64>::zeros(c);
    let mut dbeta = Array1::<f64>::zeros(c);
    let mut dx = dy3.clone();
    for (((_, ch, _), v), xv) in dx.indexed_iter_mut().zip(x3.iter()) {
        dgamma[ch] += *v * (xv - mean[ch]) * inv_std[ch];
        dbeta[ch] += *v;
        *v *= gamma[ch] * inv_std[ch];
    }
    (
        dx.into_shape_with_order(x.raw_dim()).expect("same count"),
        dgamma.into_dyn(),
        dbeta.into_dyn(),
    )
}

/// `torch.nn.LocalResponseNorm`: `b_c = a_c / (k + alpha / n * sum_{c'} a_c'^2)^beta`, the sum over
/// `c' in [c - n/2, c + (n-1)/2]` clipped to the channels.
pub fn lrn(x: &ArrayD<f64>, size: usize, alpha: f64, beta: f64, k: f64) -> ArrayD<f64> {
    let x3 = ncl(x);
    let d = lrn_denominator(&x3, size, alpha, k);
    let y = &x3 / &d.mapv(|v| v.powf(beta));
    y.into_shape_with_order(x.raw_dim()).expect("same count")
}

/// `k + alpha / n * window sum of squares`, per element of `[N, C, L]`.
fn lrn_denominator(x3: &Array3<f64>, size: usize, alpha: f64, k: f64) -> Array3<f64> {
    let (_, c, _) = x3.dim();
    let mut d = Array3::<f64>::from_elem(x3.raw_dim(), k);
    for ((b, ch, l), v) in d.indexed_iter_mut() {
        let lo = ch.saturating_sub(size / 2);
        let hi = (ch + (size - 1) / 2).min(c - 1);
        let sum: f64 = (lo..=hi).map(|cc| x3[[b, cc, l]].powi(2)).sum();
        *v += alpha / size as f64 * sum;
    }
    d
}

/// Gradient of LRN: `dx_j = dy_j / d_j^beta - 2 alpha beta / n * x_j * sum_{c: j in window(c)} dy_c x_c d_c^(-beta-1)`.
pub fn lrn_grad(
    x: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    size: usize,
    alpha: f64,
    beta: f64,
    k: f64,
) -> ArrayD<f64> {
    let (x3, dy3) = (ncl(x), ncl(dy));
    let (_, c, _) = x3.dim();
    let d = lrn_denominator(&x3, size, alpha, k);
    let mut dx = Array3::<f64>::zeros(x3.raw_dim());
    for ((b, j, l), v) in dx.indexed_iter_mut() {
        let mut acc = dy3[[b, j, l]] * d[[b, j, l]].powf(-beta);
        // Channel c's window covers j when c - n/2 <= j <= c + (n-1)/2.
        let lo = j.saturating_sub((size - 1) / 2);
        let hi = (j + size / 2).min(c - 1);
        let mut s = 0.0;
        for cc in lo..=hi {
            s += dy3[[b, cc, l]] * x3[[b, cc, l]] * d[[b, cc, l]].powf(-beta - 1.0);
        }
        acc -= 2.0 * alpha * beta / size as f64 * x3[[b, j, l]] * s;
        *v = acc;
    }
    dx.into_shape_with_order(x.raw_dim()).expect("same count")
}

/// The dropout layer at `path` draws its mask from this stream.
pub fn dropout_mask_rng(seed: u64, path: &str) -> (u64, String) {
    (seed, path.to_string())
}

/// The scaled keep mask of inverted dropout: `1/(1-p)` where kept, 0 where dropped.
pub fn dropout_mask(shape: &[usize], rate: f64, key: &(u64, String)) -> ArrayD<f64> {
    let mut rng = Rng::for_name(key.0, &key.1);
    let scale = 1.0 / (1.0 - rate);
    ArrayD::from_shape_fn(shape, |_| if rng.uniform() >= rate { scale } else { 0.0 })
}

pub fn dropout(x: &ArrayD<f64>, rate: f64, key: &(u64, String)) -> ArrayD<f64> {
    x * &dropout_mask(x.shape(), rate, key)
}
