//! Recurrent cell steps: the gate nonlinearities and state updates of one LSTM, GRU or simple-RNN step for a
//! batch, after the input and hidden projections (GEMMs) have produced the gate pre-activations. PyTorch
//! gate order; vectorized over the hidden units.

use cranelift_codegen::ir::{Function, InstBuilder, Value};
use cranelift_codegen::isa::TargetFrontendConfig;

use super::builder::{Draft, Kb, Lanes};
use super::{math, ActKind, KernelId};

/// Generates cell kernel `id` (see [`KernelId`] for the arguments of each).
pub fn build(id: KernelId, config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| match id {
        KernelId::LstmCell => lstm(kb),
        KernelId::GruCell => gru(kb),
        KernelId::RnnCell(act) => simple(kb, act),
        _ => unreachable!("{id:?} is not a recurrent cell kernel"),
    })
}

/// `base + b * stride` (stride in elements).
fn row(kb: &mut Kb, base: Value, b: Value, stride: Value) -> Value {
    let off = kb.b.ins().imul(b, stride);
    kb.addr(base, off, 4)
}

/// `[p + g * hidden * 4]` for the gates `g` of `n`: the start of each gate block of one row.
fn gates<const N: usize>(kb: &mut Kb, p: Value, hidden_bytes: Value) -> [Value; N] {
    let mut out = [p; N];
    for (g, o) in out.iter_mut().enumerate().skip(1) {
        let off = kb.b.ins().imul_imm_s(hidden_bytes, g as i64);
        *o = kb.b.ins().iadd(p, off);
    }
    out
}

/// `gx[g] + gh[g]` at hidden unit `j`.
fn pre(kb: &mut Kb, lanes: Lanes, gx: Value, gh: Value, j: Value) -> Value {
    let a = kb.load(lanes, gx, j);
    let b = kb.load(lanes, gh, j);
    kb.b.ins().fadd(a, b)
}

/// `[gx, gh, c, h, n, hidden, gx_stride, h_stride]`: `i, f, o = σ(..)`, `g = tanh(..)`,
/// `c = f c + i g`, `h = o tanh(c)`.
fn lstm(kb: &mut Kb) {
    let [gx, gh, c, h, n, hidden, gx_stride, h_stride] =
        [0, 1, 2, 3, 4, 5, 6, 7].map(|i| kb.arg(i));
    let hidden_bytes = kb.b.ins().imul_imm_s(hidden, 4);
    let gh_stride = kb.b.ins().imul_imm_s(hidden, 4);
    kb.for_n(n, |kb, b| {
        let x0 = row(kb, gx, b, gx_stride);
        let h0 = row(kb, gh, b, gh_stride);
        let cb = row(kb, c, b, hidden);
        let hb = row(kb, h, b, h_stride);
        let xg: [Value; 4] = gates(kb, x0, hidden_bytes);
        let hg: [Value; 4] = gates(kb, h0, hidden_bytes);
        kb.for_lanes(hidden, |kb, lanes, j| {
            let i = pre(kb, lanes, xg[0], hg[0], j);
            let i = math::sigmoid(kb, lanes, i);
            let f = pre(kb, lanes, xg[1], hg[1], j);
            let f = math::sigmoid(kb, lanes, f);
            let g = pre(kb, lanes, xg[2], hg[2], j);
            let g = math::tanh(kb, lanes, g);
            let o = pre(kb, lanes, xg[3], hg[3], j);
            let o = math::sigmoid(kb, lanes, o);
            let c_old = kb.load(lanes, cb, j);
            let ig = kb.b.ins().fmul(i, g);
            let c_new = kb.b.ins().fma(f, c_old, ig);
            kb.store(c_new, cb, j);
            let t = math::tanh(kb, lanes, c_new);
            let h_new = kb.b.ins().fmul(o, t);
            kb.store(h_new, hb, j);
        });
    });
}

/// `[gx, gh, h_prev, h, n, hidden, gx_stride, h_stride, hp_stride]`: `r, z = σ(..)`,
/// `n = tanh(xn + r hn)` (`hn` includes its bias), `h = (1 - z) n + z h_prev`.
fn gru(kb: &mut Kb) {
    let [gx, gh, hp, h, n, hidden, gx_stride, h_stride, hp_stride] =
        [0, 1, 2, 3, 4, 5, 6, 7, 8].map(|i| kb.arg(i));
    let hidden_bytes = kb.b.ins().imul_imm_s(hidden, 4);
    let gh_stride = kb.b.ins().imul_imm_s(hidden, 3);
    kb.for_n(n, |kb, b| {
        let x0 = row(kb, gx, b, gx_stride);
        let h0 = row(kb, gh, b, gh_stride);
        let pb = row(kb, hp, b, hp_stride);
        let hb = row(kb, h, b, h_stride);
        let xg: [Value; 3] = gates(kb, x0, hidden_bytes);
        let hg: [Value; 3] = gates(kb, h0, hidden_bytes);
        kb.for_lanes(hidden, |kb, lanes, j| {
            let r = pre(kb, lanes, xg[0], hg[0], j);
            let r = math::sigmoid(kb, lanes, r);
            let z = pre(kb, lanes, xg[1], hg[1], j);
            let z = math::sigmoid(kb, lanes, z);
            let xn = kb.load(lanes, xg[2], j);
            let hn = kb.load(lanes, hg[2], j);
            let a = kb.b.ins().fma(r, hn, xn);
            let nn = math::tanh(kb, lanes, a);
            let one = kb.fconst(lanes, 1.0);
            let keep = kb.b.ins().fsub(one, z);
            let prev = kb.load(lanes, pb, j);
            let zh = kb.b.ins().fmul(z, prev);
            let h_new = kb.b.ins().fma(keep, nn, zh);
            kb.store(h_new, hb, j);
        });
    });
}

/// `[gx, gh, h, n, hidden, gx_stride, h_stride]`: `h = act(gx + gh)`. Leaky ReLU (which PyTorch's RNN does
/// not offer) would use slope 0.
fn simple(kb: &mut Kb, act: ActKind) {
    let [gx, gh, h, n, hidden, gx_stride, h_stride] = [0, 1, 2, 3, 4, 5, 6].map(|i| kb.arg(i));
    kb.for_n(n, |kb, b| {
        let xb = row(kb, gx, b, gx_stride);
        let gb = row(kb, gh, b, hidden);
        let hb = row(kb, h, b, h_stride);
        kb.for_lanes(hidden, |kb, lanes, j| {
            let v = pre(kb, lanes, xb, gb, j);
            let slope = kb.fconst(lanes, 0.0);
            let v = math::act(kb, lanes, act, v, slope);
            kb.store(v, hb, j);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::super::math::testing::*;
    use crate::codegen::{ActKind, KernelId, Kernels};
    use crate::tensor::Rng;

    fn sigmoid(v: f64) -> f64 {
        1.0 / (1.0 + (-v).exp())
    }

    /// Batch rows and strides for one cell test: `gates` gate blocks of `hidden` per row.
    struct Case {
        n: usize,
        hidden: usize,
        gx_stride: usize,
        h_stride: usize,
        gx: Vec<f32>,
        gh: Vec<f32>,
    }

    impl Case {
        fn new(rng: &mut Rng, n: usize, hidden: usize, gates: usize) -> Case {
            let gx_stride = gates * hidden + 3;
            Case {
                n,
                hidden,
                gx_stride,
                h_stride: hidden + 2,
                gx: random(rng, n * gx_stride, -3.0, 3.0),
                gh: random(rng, n * gates * hidden, -3.0, 3.0),
            }
        }

        /// `gx + gh` of gate `g`, row `b`, unit `j`.
        fn pre(&self, gates: usize, b: usize, g: usize, j: usize) -> f64 {
            self.x(b, g, j) + self.gh[(b * gates + g) * self.hidden + j] as f64
        }

        fn x(&self, b: usize, g: usize, j: usize) -> f64 {
            self.gx[b * self.gx_stride + g * self.hidden + j] as f64
        }

        /// `h` as written (stride `h_stride`): checks the guard and that the gaps are untouched.
        fn rows(&self, h: &[f32]) -> Vec<f32> {
            check_guard(h);
            let mut out = Vec::new();
            for b in 0..self.n {
                let row = &h[b * self.h_stride..][..self.h_stride];
                out.extend_from_slice(&row[..self.hidden]);
                assert!(row[self.hidden..].iter().all(|&v| v == 9.0), "gap written");
            }
            out
        }
    }

    #[test]
    fn lstm_cell_matches_f64() {
        let k = Kernels::compile(&[KernelId::LstmCell]).unwrap();
        let mut e_max: f64 = 0.0;
        let mut rng = Rng::new(21);
        for hidden in SIZES {
            let mut t = Case::new(&mut rng, 3, hidden, 4);
            let c0 = random(&mut rng, 3 * hidden, -2.0, 2.0);
            let mut c = guarded(&c0);
            let mut h = guarded(&vec![9.0; 3 * t.h_stride]);
            let args = [ptr(&mut t.gx), ptr(&mut t.gh), ptr(&mut c), ptr(&mut h)];
            let sizes = [3, hidden, t.gx_stride, t.h_stride].map(|v| v as i64);
            k.call(KernelId::LstmCell, &[&args[..], &sizes[..]].concat());
            let (mut want_c, mut want_h) = (Vec::new(), Vec::new());
            for b in 0..3 {
                for j in 0..hidden {
                    let i = sigmoid(t.pre(4, b, 0, j));
                    let f = sigmoid(t.pre(4, b, 1, j));
                    let g = t.pre(4, b, 2, j).tanh();
                    let o = sigmoid(t.pre(4, b, 3, j));
                    let (fc, ig) = (f * c0[b * hidden + j] as f64, i * g);
                    let c2 = fc + ig;
                    let scale = fc.abs() + ig.abs();
                    want_c.push((c2, scale));
                    want_h.push((o * c2.tanh(), o * scale));
                }
            }
            check_guard(&c);
            let e_c = max_err_scaled(&c[..3 * hidden], &want_c);
            let e_h = max_err_scaled(&t.rows(&h), &want_h);
            assert!(
                e_c <= 1e-5 && e_h <= 1e-5,
                "hidden={hidden}: c {e_c}, h {e_h}"
            );
            e_max = e_max.max(e_c).max(e_h);
        }
        println!("LSTM cell: max relative error {e_max:.3e}");
    }

    #[test]
    fn gru_cell_matches_f64() {
        let k = Kernels::compile(&[KernelId::GruCell]).unwrap();
        let mut e_max: f64 = 0.0;
        let mut rng = Rng::new(22);
        for hidden in SIZES {
            let mut t = Case::new(&mut rng, 3, hidden, 3);
            let hp_stride = hidden + 1;
            let mut hp = random(&mut rng, 3 * hp_stride, -1.0, 1.0);
            let mut h = guarded(&vec![9.0; 3 * t.h_stride]);
            let args = [ptr(&mut t.gx), ptr(&mut t.gh), ptr(&mut hp), ptr(&mut h)];
            let sizes = [3, hidden, t.gx_stride, t.h_stride, hp_stride].map(|v| v as i64);
            k.call(KernelId::GruCell, &[&args[..], &sizes[..]].concat());
            let mut want = Vec::new();
            for b in 0..3 {
                for j in 0..hidden {
                    let r = sigmoid(t.pre(3, b, 0, j));
                    let z = sigmoid(t.pre(3, b, 1, j));
                    let hn = t.gh[(b * 3 + 2) * hidden + j] as f64;
                    let (xn, rh) = (t.x(b, 2, j), r * hn);
                    let n = (xn + rh).tanh();
                    let zh = z * hp[b * hp_stride + j] as f64;
                    let scale = (1.0 - z) * (n.abs() + xn.abs() + rh.abs()) + zh.abs();
                    want.push(((1.0 - z) * n + zh, scale));
                }
            }
            let e = max_err_scaled(&t.rows(&h), &want);
            assert!(e <= 1e-5, "hidden={hidden}: {e}");
            e_max = e_max.max(e);
        }
        println!("GRU cell: max relative error {e_max:.3e}");
    }

    #[test]
    fn simple_rnn_cell_matches_f64() {
        let acts = [ActKind::Tanh, ActKind::Relu];
        let k = Kernels::compile(&acts.map(KernelId::RnnCell)).unwrap();
        let mut rng = Rng::new(23);
        let mut e_max: f64 = 0.0;
        for act in acts {
            for hidden in SIZES {
                let mut t = Case::new(&mut rng, 3, hidden, 1);
                let mut h = guarded(&vec![9.0; 3 * t.h_stride]);
                let args = [ptr(&mut t.gx), ptr(&mut t.gh), ptr(&mut h)];
                let sizes = [3, hidden, t.gx_stride, t.h_stride].map(|v| v as i64);
                k.call(KernelId::RnnCell(act), &[&args[..], &sizes[..]].concat());
                let want: Vec<(f64, f64)> = (0..3)
                    .flat_map(|b| (0..hidden).map(move |j| (b, j)))
                    .map(|(b, j)| {
                        let v = t.pre(1, b, 0, j);
                        let scale = t.x(b, 0, j).abs() + (v - t.x(b, 0, j)).abs();
                        if act == ActKind::Tanh {
                            (v.tanh(), scale)
                        } else {
                            (v.max(0.0), scale)
                        }
                    })
                    .collect();
                let e = max_err_scaled(&t.rows(&h), &want);
                assert!(e <= 1e-5, "{act:?} hidden={hidden}: {e}");
                e_max = e_max.max(e);
            }
        }
        println!("simple RNN cell: max relative error {e_max:.3e}");
    }
}
