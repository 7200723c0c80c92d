//! Recurrent layers (simple RNN, LSTM, GRU) with PyTorch's gate order and two bias vectors, zero initial
//! state, `[N, T, F]` inputs; forward, and backward by backpropagation through time.

use ndarray::{s, Array1, Array2, Array3, ArrayD, ArrayView1, Axis, Ix2, Ix3};

use crate::ir::Cell;

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// Everything the forward pass computed for one sample, kept for the backward pass.
struct Trace {
    /// Hidden states h_0 (zeros) .. h_T.
    h: Vec<Array1<f64>>,
    /// LSTM cell states c_0 .. c_T.
    c: Vec<Array1<f64>>,
    /// Gate activations per step: simple `[h']`, LSTM `[i, f, g, o]`, GRU `[r, z, n, W_hn h + b_hn]`.
    gates: Vec<Vec<Array1<f64>>>,
}

struct Weights<'a> {
    w_ih: ndarray::ArrayView2<'a, f64>,
    w_hh: ndarray::ArrayView2<'a, f64>,
    b_ih: Array1<f64>,
    b_hh: Array1<f64>,
}

fn weights<'a>(
    w_ih: &'a ArrayD<f64>,
    w_hh: &'a ArrayD<f64>,
    bias: Option<(&ArrayD<f64>, &ArrayD<f64>)>,
) -> Weights<'a> {
    let rows = w_ih.shape()[0];
    let (b_ih, b_hh) = match bias {
        Some((a, b)) => (a.iter().copied().collect(), b.iter().copied().collect()),
        None => (Array1::zeros(rows), Array1::zeros(rows)),
    };
    Weights {
        w_ih: w_ih.view().into_dimensionality::<Ix2>().expect("2-d"),
        w_hh: w_hh.view().into_dimensionality::<Ix2>().expect("2-d"),
        b_ih,
        b_hh,
    }
}

fn block(v: &Array1<f64>, k: usize, h: usize) -> Array1<f64> {
    v.slice(s![k * h..(k + 1) * h]).to_owned()
}

fn step_forward(
    cell: Cell,
    hd: usize,
    w: &Weights,
    x: ArrayView1<f64>,
    h: &Array1<f64>,
    c: &Array1<f64>,
) -> (Array1<f64>, Array1<f64>, Vec<Array1<f64>>) {
    let gi = w.w_ih.dot(&x) + &w.b_ih;
    let gh = w.w_hh.dot(h) + &w.b_hh;
    match cell {
        Cell::Simple { relu } => {
            let pre = &gi + &gh;
            let h2 = if relu {
                pre.mapv(|v| if v > 0.0 || v.is_nan() { v } else { 0.0 })
            } else {
                pre.mapv(f64::tanh)
            };
            (h2.clone(), c.clone(), vec![h2])
        }
        Cell::Lstm => {
            let pre = &gi + &gh;
            let i = block(&pre, 0, hd).mapv(sigmoid);
            let f = block(&pre, 1, hd).mapv(sigmoid);
            let g = block(&pre, 2, hd).mapv(f64::tanh);
            let o = block(&pre, 3, hd).mapv(sigmoid);
            let c2 = &f * c + &i * &g;
            let h2 = &o * &c2.mapv(f64::tanh);
            (h2, c2, vec![i, f, g, o])
        }
        Cell::Gru => {
            let r = (block(&gi, 0, hd) + block(&gh, 0, hd)).mapv(sigmoid);
            let z = (block(&gi, 1, hd) + block(&gh, 1, hd)).mapv(sigmoid);
            let hn = block(&gh, 2, hd);
            let n = (block(&gi, 2, hd) + &r * &hn).mapv(f64::tanh);
            let h2 = (1.0 - &z) * &n + &z * h;
            (h2, c.clone(), vec![r, z, n, hn])
        }
    }
}

fn trace(cell: Cell, hd: usize, w: &Weights, xs: ndarray::ArrayView2<f64>) -> Trace {
    let mut t = Trace {
        h: vec![Array1::zeros(hd)],
        c: vec![Array1::zeros(hd)],
        gates: Vec::new(),
    };
    for x in xs.outer_iter() {
        let (h, c, g) = step_forward(
            cell,
            hd,
            w,
            x,
            t.h.last().expect("h_0"),
            t.c.last().expect("c_0"),
        );
        t.h.push(h);
        t.c.push(c);
        t.gates.push(g);
    }
    t
}

pub fn forward(
    cell: Cell,
    hidden: usize,
    x: &ArrayD<f64>,
    w_ih: &ArrayD<f64>,
    w_hh: &ArrayD<f64>,
    bias: Option<(&ArrayD<f64>, &ArrayD<f64>)>,
    return_sequences: bool,
) -> ArrayD<f64> {
    let x = x.view().into_dimensionality::<Ix3>().expect("[N, T, F]");
    let (n, steps, _) = x.dim();
    let w = weights(w_ih, w_hh, bias);
    let mut seq = Array3::<f64>::zeros((n, steps, hidden));
    let mut last = Array2::<f64>::zeros((n, hidden));
    for b in 0..n {
        let t = trace(cell, hidden, &w, x.index_axis(Axis(0), b));
        for (step, h) in t.h.iter().skip(1).enumerate() {
            seq.slice_mut(s![b, step, ..]).assign(h);
        }
        last.row_mut(b).assign(t.h.last().expect("h_T"));
    }
    if return_sequences {
        seq.into_dyn()
    } else {
        last.into_dyn()
    }
}

/// Gradients `[dx, dW_ih, dW_hh, db_ih, db_hh]` given the output gradient `dy`. The arguments mirror the op's
/// attributes and inputs one to one.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    cell: Cell,
    hd: usize,
    x: &ArrayD<f64>,
    w_ih: &ArrayD<f64>,
    w_hh: &ArrayD<f64>,
    bias: Option<(&ArrayD<f64>, &ArrayD<f64>)>,
    return_sequences: bool,
    dy: &ArrayD<f64>,
) -> [ArrayD<f64>; 5] {
    let x = x.view().into_dimensionality::<Ix3>().expect("[N, T, F]");
    let (n, steps, feat) = x.dim();
    let w = weights(w_ih, w_hh, bias);
    let rows = w.w_ih.nrows();
    let mut dx = Array3::<f64>::zeros((n, steps, feat));
    let mut dw_ih = Array2::<f64>::zeros((rows, feat));
    let mut dw_hh = Array2::<f64>::zeros((rows, hd));
    let mut db_ih = Array1::<f64>::zeros(rows);
    let mut db_hh = Array1::<f64>::zeros(rows);
    for b in 0..n {
        let xs = x.index_axis(Axis(0), b);
        let t = trace(cell, hd, &w, xs);
        let mut dh = Array1::<f64>::zeros(hd);
        let mut dc = Array1::<f64>::zeros(hd);
        for step in (0..steps).rev() {
            // Upstream gradient into h_{step+1}.
            if return_sequences {
                dh += &dy.slice(s![b, step, ..]);
            } else if step == steps - 1 {
                dh += &dy.slice(s![b, ..]);
            }
            let (h_prev, c_prev, gates) = (&t.h[step], &t.c[step], &t.gates[step]);
            // Gradients of the pre-activations of the input and hidden projections.
            let (d_gi, d_gh) = match cell {
                Cell::Simple { relu } => {
                    let h2 = &gates[0];
                    let d = if relu {
                        &dh * &h2.mapv(|v| (v > 0.0) as u8 as f64)
                    } else {
                        &dh * &h2.mapv(|v| 1.0 - v * v)
                    };
                    (d.clone(), d)
                }
                Cell::Lstm => {
                    let (i, f, g, o) = (&gates[0], &gates[1], &gates[2], &gates[3]);
                    let c2 = &t.c[step + 1];
                    let tc = c2.mapv(f64::tanh);
                    let dc_total = &dc + &(&dh * o * &tc.mapv(|v| 1.0 - v * v));
                    let di = &dc_total * g * &i.mapv(|v| v * (1.0 - v));
                    let df = &dc_total * c_prev * &f.mapv(|v| v * (1.0 - v));
                    let dg = &dc_total * i * &g.mapv(|v| 1.0 - v * v);
                    let do_ = &dh * &tc * &o.mapv(|v| v * (1.0 - v));
                    dc = &dc_total * f;
                    let mut d = Array1::<f64>::zeros(4 * hd);
                    for (k, part) in [di, df, dg, do_].iter().enumerate() {
                        d.slice_mut(s![k * hd..(k + 1) * hd]).assign(part);
                    }
                    (d.clone(), d)
                }
                Cell::Gru => {
                    let (r, z, nn, hn) = (&gates[0], &gates[1], &gates[2], &gates[3]);
                    let dn = &dh * &(1.0 - z) * &nn.mapv(|v| 1.0 - v * v);
                    let dz = &dh * &(h_prev - nn) * &z.mapv(|v| v * (1.0 - v));
                    let dr = &dn * hn * &r.mapv(|v| v * (1.0 - v));
                    let mut d_gi = Array1::<f64>::zeros(3 * hd);
                    let mut d_gh = Array1::<f64>::zeros(3 * hd);
                    for (k, part) in [&dr, &dz, &dn].iter().enumerate() {
                        d_gi.slice_mut(s![k * hd..(k + 1) * hd]).assign(part);
                    }
                    d_gh.slice_mut(s![0..hd]).assign(&dr);
                    d_gh.slice_mut(s![hd..2 * hd]).assign(&dz);
                    d_gh.slice_mut(s![2 * hd..3 * hd]).assign(&(&dn * r));
                    (d_gi, d_gh)
                }
            };
            let x_t = xs.row(step);
            dw_ih += &outer(&d_gi, &x_t);
            dw_hh += &outer(&d_gh, &h_prev.view());
            db_ih += &d_gi;
            db_hh += &d_gh;
            dx.slice_mut(s![b, step, ..]).assign(&w.w_ih.t().dot(&d_gi));
            let mut dh_prev = w.w_hh.t().dot(&d_gh);
            if let Cell::Gru = cell {
                dh_prev += &(&dh * &gates[1]);
            }
            dh = dh_prev;
        }
    }
    [
        dx.into_dyn(),
        dw_ih.into_dyn(),
        dw_hh.into_dyn(),
        db_ih.into_dyn(),
        db_hh.into_dyn(),
    ]
}

fn outer(a: &Array1<f64>, b: &ArrayView1<f64>) -> Array2<f64> {
    let a2 = a.view().insert_axis(Axis(1));
    let b2 = b.view().insert_axis(Axis(0));
    a2.dot(&b2)
}
