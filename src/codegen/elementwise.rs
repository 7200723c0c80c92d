//! Elementwise and small reduction kernels: activations, add, multiply, per-channel affine (folded batch
//! norm), softmax, local response normalization, strided copy, fill and embedding gather. Each loop over
//! contiguous values has an F32X4 body and a scalar tail (`Kb::for_lanes`).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, I32, I64};
use cranelift_codegen::ir::{Function, InstBuilder, MemFlagsData, Value};
use cranelift_codegen::isa::TargetFrontendConfig;

use super::builder::{Draft, Kb, Lanes};
use super::{math, ActKind, ChainCode, ChainOp, KernelId};

/// Generates elementwise kernel `id` (see [`KernelId`] for the arguments of each).
pub fn build(id: KernelId, config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| match id {
        KernelId::Unary(act) => unary(kb, act),
        KernelId::Add | KernelId::Mul => binary(kb, id == KernelId::Add),
        KernelId::Chain(code) => chain(kb, code),
        KernelId::Affine(act) => affine(kb, act),
        KernelId::Softmax => softmax(kb),
        KernelId::Lrn => lrn(kb),
        KernelId::Copy => copy(kb),
        KernelId::Fill => fill(kb),
        KernelId::Embedding => embedding(kb),
        _ => unreachable!("{id:?} is not an elementwise kernel"),
    })
}

/// Argument `i`, an f32 in the low 32 bits.
pub fn f32_arg(kb: &mut Kb, i: usize) -> Value {
    let v = kb.arg(i);
    let v = kb.b.ins().ireduce(I32, v);
    kb.b.ins().bitcast(F32, MemFlagsData::new(), v)
}

/// A scalar f32 and its splat, built once outside a loop; `pick` chooses by lanes.
#[derive(Clone, Copy)]
struct Both(Value, Value);

impl Both {
    fn new(kb: &mut Kb, s: Value) -> Both {
        let v = kb.broadcast(Lanes::Four, s);
        Both(s, v)
    }

    fn pick(self, lanes: Lanes) -> Value {
        match lanes {
            Lanes::One => self.0,
            Lanes::Four => self.1,
        }
    }
}

/// `[x, y, n, slope]`: `y[i] = act(x[i])`, in place allowed (each element is read before it is written).
fn unary(kb: &mut Kb, act: ActKind) {
    let [x, y, n] = [0, 1, 2].map(|i| kb.arg(i));
    let slope = f32_arg(kb, 3);
    let slope = Both::new(kb, slope);
    kb.for_lanes(n, |kb, lanes, i| {
        let v = kb.load(lanes, x, i);
        let v = math::act(kb, lanes, act, v, slope.pick(lanes));
        kb.store(v, y, i);
    });
}

/// `[a, b, y, n]`: `y = a + b` or `y = a * b`.
fn binary(kb: &mut Kb, add: bool) {
    let [a, b, y, n] = [0, 1, 2, 3].map(|i| kb.arg(i));
    kb.for_lanes(n, |kb, lanes, i| {
        let u = kb.load(lanes, a, i);
        let v = kb.load(lanes, b, i);
        let r = if add {
            kb.b.ins().fadd(u, v)
        } else {
            kb.b.ins().fmul(u, v)
        };
        kb.store(r, y, i);
    });
}

/// `[x_0 .. x_{k-1}, y, n, c_0 .. c_{len-1}]`: a fused elementwise chain (see [`KernelId::Chain`]).
fn chain(kb: &mut Kb, code: ChainCode) {
    let inputs = code.inputs as usize;
    let links = &code.links[..code.len as usize];
    let xs: Vec<Value> = (0..inputs).map(|i| kb.arg(i)).collect();
    let (y, n) = (kb.arg(inputs), kb.arg(inputs + 1));
    let consts: Vec<Both> = (0..links.len())
        .map(|l| {
            let c = f32_arg(kb, inputs + 2 + l);
            Both::new(kb, c)
        })
        .collect();
    kb.for_lanes(n, |kb, lanes, i| {
        let mut regs: Vec<Value> = xs.iter().map(|&x| kb.load(lanes, x, i)).collect();
        for (l, &(op, a, b)) in links.iter().enumerate() {
            let (a, b) = (regs[a as usize], regs[b as usize]);
            let c = consts[l].pick(lanes);
            let v = match op {
                ChainOp::Act(act) => math::act(kb, lanes, act, a, c),
                ChainOp::Add => kb.b.ins().fadd(a, b),
                ChainOp::Mul => kb.b.ins().fmul(a, b),
                ChainOp::Scale => {
                    let zero = kb.fconst(lanes, 0.0);
                    kb.b.ins().fma(a, c, zero)
                }
            };
            regs.push(v);
        }
        let v = *regs.last().expect("a chain has links");
        kb.store(v, y, i);
    });
}

/// `[x, y, scale, shift, channels, plane, slope]`: `y = act(x * scale[c] + shift[c])` per channel plane.
fn affine(kb: &mut Kb, act: ActKind) {
    let [x, y, scale, shift, channels, plane] = [0, 1, 2, 3, 4, 5].map(|i| kb.arg(i));
    let slope = f32_arg(kb, 6);
    let slope = Both::new(kb, slope);
    let plane_bytes = kb.b.ins().imul_imm_s(plane, 4);
    kb.for_n(channels, |kb, c| {
        let off = kb.b.ins().imul(c, plane_bytes);
        let xc = kb.b.ins().iadd(x, off);
        let yc = kb.b.ins().iadd(y, off);
        let s = kb.load(Lanes::One, scale, c);
        let t = kb.load(Lanes::One, shift, c);
        let (s, t) = (Both::new(kb, s), Both::new(kb, t));
        kb.for_lanes(plane, |kb, lanes, i| {
            let v = kb.load(lanes, xc, i);
            let v = kb.b.ins().fma(v, s.pick(lanes), t.pick(lanes));
            let v = math::act(kb, lanes, act, v, slope.pick(lanes));
            kb.store(v, yc, i);
        });
    });
}

/// `[x, y, outer, len, inner]`: softmax over the middle axis. With `inner == 1` each row is contiguous and
/// is reduced with vectors (max, then `e^(x - max)` stored and summed, then scaled by `1 / sum`); otherwise
/// four (or one) columns of the `[len, inner]` slab are processed side by side.
fn softmax(kb: &mut Kb) {
    let [x, y, outer, len, inner] = [0, 1, 2, 3, 4].map(|i| kb.arg(i));
    let slab = kb.b.ins().imul(len, inner);
    let slab_bytes = kb.b.ins().imul_imm_s(slab, 4);
    let contiguous = kb.b.ins().icmp_imm_s(IntCC::Equal, inner, 1);
    kb.for_n(outer, |kb, o| {
        let off = kb.b.ins().imul(o, slab_bytes);
        let xo = kb.b.ins().iadd(x, off);
        let yo = kb.b.ins().iadd(y, off);
        kb.if_else(
            contiguous,
            |kb| softmax_row(kb, xo, yo, len),
            |kb| softmax_columns(kb, xo, yo, len, inner),
        );
    });
}

/// Softmax of the contiguous row `x[..len]` into `y`.
fn softmax_row(kb: &mut Kb, x: Value, y: Value, len: Value) {
    let ninf = kb.fconst(Lanes::One, f32::NEG_INFINITY);
    let ninf4 = kb.broadcast(Lanes::Four, ninf);
    let (m4, m1) = (kb.var(Lanes::Four.float(), ninf4), kb.var(F32, ninf));
    kb.for_lanes(len, |kb, lanes, i| {
        let var = if lanes == Lanes::Four { m4 } else { m1 };
        let v = kb.load(lanes, x, i);
        let m = kb.b.use_var(var);
        let m = kb.max(lanes, v, m);
        kb.b.def_var(var, m);
    });
    let m4v = kb.b.use_var(m4);
    let m = kb.hmax(m4v);
    let m1v = kb.b.use_var(m1);
    let m = kb.max(Lanes::One, m, m1v);
    let m = Both::new(kb, m);
    let zero = kb.fconst(Lanes::One, 0.0);
    let zero4 = kb.broadcast(Lanes::Four, zero);
    let (s4, s1) = (kb.var(Lanes::Four.float(), zero4), kb.var(F32, zero));
    kb.for_lanes(len, |kb, lanes, i| {
        let var = if lanes == Lanes::Four { s4 } else { s1 };
        let v = kb.load(lanes, x, i);
        let v = kb.b.ins().fsub(v, m.pick(lanes));
        let e = math::exp(kb, lanes, v);
        kb.store(e, y, i);
        let s = kb.b.use_var(var);
        let s = kb.b.ins().fadd(s, e);
        kb.b.def_var(var, s);
    });
    let s4v = kb.b.use_var(s4);
    let s = kb.hsum(s4v);
    let s1v = kb.b.use_var(s1);
    let s = kb.b.ins().fadd(s, s1v);
    let one = kb.fconst(Lanes::One, 1.0);
    let inv = kb.b.ins().fdiv(one, s);
    let inv = Both::new(kb, inv);
    kb.for_lanes(len, |kb, lanes, i| {
        let v = kb.load(lanes, y, i);
        let v = kb.b.ins().fmul(v, inv.pick(lanes));
        kb.store(v, y, i);
    });
}

/// Softmax down the columns of the `[len, inner]` slab at `x`, four columns at a time.
fn softmax_columns(kb: &mut Kb, x: Value, y: Value, len: Value, inner: Value) {
    let row_bytes = kb.b.ins().imul_imm_s(inner, 4);
    kb.for_lanes(inner, |kb, lanes, j| {
        let col = kb.b.ins().imul_imm_s(j, 4);
        let xc = kb.b.ins().iadd(x, col);
        let yc = kb.b.ins().iadd(y, col);
        let flags = kb.flags;
        let ty = lanes.float();
        let ninf = kb.fconst(lanes, f32::NEG_INFINITY);
        let m = kb.var(ty, ninf);
        kb.for_n(len, |kb, l| {
            let a = kb.b.ins().imul(l, row_bytes);
            let a = kb.b.ins().iadd(xc, a);
            let v = kb.b.ins().load(ty, flags, a, 0);
            let cur = kb.b.use_var(m);
            let nm = kb.max(lanes, v, cur);
            kb.b.def_var(m, nm);
        });
        let zero = kb.fconst(lanes, 0.0);
        let s = kb.var(ty, zero);
        kb.for_n(len, |kb, l| {
            let off = kb.b.ins().imul(l, row_bytes);
            let a = kb.b.ins().iadd(xc, off);
            let v = kb.b.ins().load(ty, flags, a, 0);
            let mv = kb.b.use_var(m);
            let v = kb.b.ins().fsub(v, mv);
            let e = math::exp(kb, lanes, v);
            let a = kb.b.ins().iadd(yc, off);
            kb.b.ins().store(flags, e, a, 0);
            let cur = kb.b.use_var(s);
            let ns = kb.b.ins().fadd(cur, e);
            kb.b.def_var(s, ns);
        });
        let one = kb.fconst(lanes, 1.0);
        let sv = kb.b.use_var(s);
        let inv = kb.b.ins().fdiv(one, sv);
        kb.for_n(len, |kb, l| {
            let a = kb.b.ins().imul(l, row_bytes);
            let a = kb.b.ins().iadd(yc, a);
            let v = kb.b.ins().load(ty, flags, a, 0);
            let v = kb.b.ins().fmul(v, inv);
            kb.b.ins().store(flags, v, a, 0);
        });
    });
}

/// `[x, y, channels, plane, size, alpha, beta, k]`: `y = x * e^(-beta log(k + alpha / size * window sum of
/// x^2))`, the window `c - size/2 ..= c + (size-1)/2` clipped to the channels.
fn lrn(kb: &mut Kb) {
    let [x, y, channels, plane, size] = [0, 1, 2, 3, 4].map(|i| kb.arg(i));
    let [alpha, beta, k] = [5, 6, 7].map(|i| f32_arg(kb, i));
    let size_f = kb.b.ins().fcvt_from_sint(F32, size);
    let coef = kb.b.ins().fdiv(alpha, size_f);
    let nbeta = kb.b.ins().fneg(beta);
    let (coef, nbeta, k) = (Both::new(kb, coef), Both::new(kb, nbeta), Both::new(kb, k));
    let before = kb.b.ins().sshr_imm_s(size, 1);
    let after = kb.b.ins().iadd_imm_s(size, -1);
    let after = kb.b.ins().sshr_imm_s(after, 1);
    let zero = kb.iconst(0);
    let plane_bytes = kb.b.ins().imul_imm_s(plane, 4);
    kb.for_n(channels, |kb, c| {
        let lo = kb.b.ins().isub(c, before);
        let lo = kb.b.ins().smax(lo, zero);
        let hi = kb.b.ins().iadd(c, after);
        let hi = kb.b.ins().iadd_imm_s(hi, 1);
        let hi = kb.b.ins().smin(hi, channels);
        let off = kb.b.ins().imul(c, plane_bytes);
        let xc = kb.b.ins().iadd(x, off);
        let yc = kb.b.ins().iadd(y, off);
        kb.for_lanes(plane, |kb, lanes, i| {
            let ty = lanes.float();
            let z = kb.fconst(lanes, 0.0);
            let sum = kb.var(ty, z);
            let xi = kb.addr(x, i, 4);
            kb.for_range(lo, hi, 1, |kb, cc| {
                let a = kb.b.ins().imul(cc, plane_bytes);
                let a = kb.b.ins().iadd(xi, a);
                let v = kb.b.ins().load(ty, kb.flags, a, 0);
                let s = kb.b.use_var(sum);
                let s = kb.b.ins().fma(v, v, s);
                kb.b.def_var(sum, s);
            });
            let s = kb.b.use_var(sum);
            let base = kb.b.ins().fma(s, coef.pick(lanes), k.pick(lanes));
            let l = math::log(kb, lanes, base);
            let l = kb.b.ins().fmul(l, nbeta.pick(lanes));
            let f = math::exp(kb, lanes, l);
            let v = kb.load(lanes, xc, i);
            let v = kb.b.ins().fmul(v, f);
            kb.store(v, yc, i);
        });
    });
}

/// `[src, dst, rows, len, src_stride, dst_stride]`.
fn copy(kb: &mut Kb) {
    let [src, dst, rows, len, ss, ds] = [0, 1, 2, 3, 4, 5].map(|i| kb.arg(i));
    let ss = kb.b.ins().imul_imm_s(ss, 4);
    let ds = kb.b.ins().imul_imm_s(ds, 4);
    kb.for_n(rows, |kb, r| {
        let s = kb.b.ins().imul(r, ss);
        let s = kb.b.ins().iadd(src, s);
        let d = kb.b.ins().imul(r, ds);
        let d = kb.b.ins().iadd(dst, d);
        copy_run(kb, s, d, len);
    });
}

/// Copies `len` values from `s` to `d` (bit-exact: plain loads and stores).
fn copy_run(kb: &mut Kb, s: Value, d: Value, len: Value) {
    kb.for_lanes(len, |kb, lanes, i| {
        let v = kb.load(lanes, s, i);
        kb.store(v, d, i);
    });
}

/// `[dst, n, value]`.
fn fill(kb: &mut Kb) {
    let [dst, n] = [0, 1].map(|i| kb.arg(i));
    let v = f32_arg(kb, 2);
    let v = Both::new(kb, v);
    kb.for_lanes(n, |kb, lanes, i| kb.store(v.pick(lanes), dst, i));
}

/// `[idx, table, y, count, dim]`: row `idx[i]` (i32) of `table` to row `i` of `y`.
fn embedding(kb: &mut Kb) {
    let [idx, table, y, count, dim] = [0, 1, 2, 3, 4].map(|i| kb.arg(i));
    let row_bytes = kb.b.ins().imul_imm_s(dim, 4);
    kb.for_n(count, |kb, i| {
        let a = kb.addr(idx, i, 4);
        let id = kb.b.ins().load(I32, kb.flags, a, 0);
        let id = kb.b.ins().sextend(I64, id);
        let s = kb.b.ins().imul(id, row_bytes);
        let s = kb.b.ins().iadd(table, s);
        let d = kb.b.ins().imul(i, row_bytes);
        let d = kb.b.ins().iadd(y, d);
        copy_run(kb, s, d, dim);
    });
}

#[cfg(test)]
mod tests {
    use super::super::math::testing::*;
    use crate::codegen::{ActKind, KernelId, Kernels};
    use crate::tensor::Rng;

    const ACTS: [ActKind; 5] = [
        ActKind::Identity,
        ActKind::Relu,
        ActKind::LeakyRelu,
        ActKind::Sigmoid,
        ActKind::Tanh,
    ];

    fn act(kind: ActKind, v: f64, slope: f64) -> f64 {
        match kind {
            ActKind::Identity => v,
            ActKind::Relu => v.max(0.0),
            ActKind::LeakyRelu => {
                if v > 0.0 {
                    v
                } else {
                    slope * v
                }
            }
            ActKind::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            ActKind::Tanh => v.tanh(),
        }
    }

    /// The output without its guard, after checking the guard.
    fn body(y: &[f32]) -> &[f32] {
        check_guard(y);
        &y[..y.len() - 1]
    }

    #[test]
    fn unary_applies_each_activation_also_in_place() {
        let ids: Vec<KernelId> = ACTS.iter().map(|&a| KernelId::Unary(a)).collect();
        let k = Kernels::compile(&ids).unwrap();
        let mut rng = Rng::new(11);
        for &a in &ACTS {
            for n in SIZES {
                let x = random(&mut rng, n, -6.0, 6.0);
                let want: Vec<f64> = x.iter().map(|&v| act(a, v as f64, 0.125)).collect();
                let mut xs = x.clone();
                let mut y = guarded(&vec![0.0; n]);
                let args = [ptr(&mut xs), ptr(&mut y), n as i64, fbits(0.125)];
                k.call(KernelId::Unary(a), &args);
                assert!(max_err(body(&y), &want, 1e-30) <= 2e-6, "{a:?} n={n}");
                assert_eq!(xs, x, "input untouched");
                // In place: x and y the same buffer.
                let mut xy = guarded(&x);
                let p = ptr(&mut xy);
                k.call(KernelId::Unary(a), &[p, p, n as i64, fbits(0.125)]);
                assert_eq!(body(&xy), body(&y), "{a:?} n={n} in place");
            }
        }
    }

    #[test]
    fn add_and_mul() {
        let k = Kernels::compile(&[KernelId::Add, KernelId::Mul]).unwrap();
        let mut rng = Rng::new(12);
        for n in SIZES {
            let (mut a, mut b) = (
                random(&mut rng, n, -3.0, 3.0),
                random(&mut rng, n, -3.0, 3.0),
            );
            for (id, f) in [
                (KernelId::Add, (|u, v| u + v) as fn(f32, f32) -> f32),
                (KernelId::Mul, |u, v| u * v),
            ] {
                let mut y = guarded(&vec![0.0; n]);
                k.call(id, &[ptr(&mut a), ptr(&mut b), ptr(&mut y), n as i64]);
                let want: Vec<f32> = a.iter().zip(&b).map(|(&u, &v)| f(u, v)).collect();
                assert_eq!(body(&y), &want[..], "{id:?} n={n}");
            }
        }
    }

    #[test]
    fn affine_scales_shifts_and_activates_per_channel() {
        let acts = [ActKind::Identity, ActKind::LeakyRelu, ActKind::Sigmoid];
        let ids: Vec<KernelId> = acts.iter().map(|&a| KernelId::Affine(a)).collect();
        let k = Kernels::compile(&ids).unwrap();
        let mut rng = Rng::new(13);
        for &a in &acts {
            for plane in SIZES {
                let ch = 3;
                let mut x = random(&mut rng, ch * plane, -2.0, 2.0);
                let mut s = random(&mut rng, ch, 0.5, 2.0);
                let mut t = random(&mut rng, ch, -1.0, 1.0);
                let mut y = guarded(&vec![0.0; ch * plane]);
                let args = [ptr(&mut x), ptr(&mut y), ptr(&mut s), ptr(&mut t)];
                let args = [&args[..], &[ch as i64, plane as i64, fbits(0.25)]].concat();
                k.call(KernelId::Affine(a), &args);
                let want: Vec<f64> = (0..ch * plane)
                    .map(|i| {
                        let c = i / plane.max(1);
                        act(a, x[i] as f64 * s[c] as f64 + t[c] as f64, 0.25)
                    })
                    .collect();
                assert!(
                    max_err(body(&y), &want, 1e-6) <= 1e-5,
                    "{a:?} plane={plane}"
                );
            }
        }
    }

    fn softmax_ref(x: &[f32], outer: usize, len: usize, inner: usize) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for o in 0..outer {
            for j in 0..inner {
                let at = |l: usize| (o * len + l) * inner + j;
                let m = (0..len).map(|l| x[at(l)] as f64).fold(f64::MIN, f64::max);
                let s: f64 = (0..len).map(|l| (x[at(l)] as f64 - m).exp()).sum();
                for l in 0..len {
                    y[at(l)] = (x[at(l)] as f64 - m).exp() / s;
                }
            }
        }
        y
    }

    #[test]
    fn softmax_over_the_middle_axis() {
        let k = Kernels::compile(&[KernelId::Softmax]).unwrap();
        let mut rng = Rng::new(14);
        let mut e_max: f64 = 0.0;
        let mut shapes: Vec<(usize, usize, usize)> = SIZES.iter().map(|&n| (2, n, 1)).collect();
        shapes.extend(SIZES.iter().map(|&n| (2, 5, n)));
        shapes.extend([(3, 1, 7), (1, 17, 3), (2, 3, 17), (1, 1000, 5)]);
        for (outer, len, inner) in shapes {
            let n = outer * len * inner;
            // Large offsets: the max must be subtracted for exp not to overflow.
            let off = rng.uniform_in(-500.0, 500.0);
            let mut x = random(&mut rng, n, off - 15.0, off + 15.0);
            let mut y = guarded(&vec![0.0; n]);
            let args = [
                ptr(&mut x),
                ptr(&mut y),
                outer as i64,
                len as i64,
                inner as i64,
            ];
            k.call(KernelId::Softmax, &args);
            let want = softmax_ref(&x, outer, len, inner);
            let e = max_err(body(&y), &want, 1e-30);
            assert!(e <= 1e-5, "[{outer}, {len}, {inner}]: {e}");
            e_max = e_max.max(e);
        }
        println!("softmax: max relative error {e_max:.3e}");
    }

    fn lrn_ref(x: &[f32], c: usize, plane: usize, size: usize, abk: [f64; 3]) -> Vec<f64> {
        let [alpha, beta, k] = abk;
        let mut y = vec![0.0; x.len()];
        for ch in 0..c {
            let lo = ch.saturating_sub(size / 2);
            let hi = (ch + (size - 1) / 2).min(c - 1);
            for i in 0..plane {
                let s: f64 = (lo..=hi).map(|cc| (x[cc * plane + i] as f64).powi(2)).sum();
                let d = k + alpha / size as f64 * s;
                y[ch * plane + i] = x[ch * plane + i] as f64 / d.powf(beta);
            }
        }
        y
    }

    #[test]
    fn lrn_matches_the_interpreter_formula() {
        let k = Kernels::compile(&[KernelId::Lrn]).unwrap();
        let mut rng = Rng::new(15);
        let mut e_max: f64 = 0.0;
        for plane in SIZES {
            for (c, size) in [(7, 5), (7, 4), (3, 1), (4, 9), (1, 3)] {
                let abk = [0.5, 0.75, 2.0];
                let mut x = random(&mut rng, c * plane, -3.0, 3.0);
                let mut y = guarded(&vec![0.0; c * plane]);
                let args = [
                    ptr(&mut x),
                    ptr(&mut y),
                    c as i64,
                    plane as i64,
                    size as i64,
                ];
                let f = abk.map(|v| fbits(v as f32));
                k.call(KernelId::Lrn, &[&args[..], &f[..]].concat());
                let want = lrn_ref(&x, c, plane, size, abk);
                let e = max_err(body(&y), &want, 1e-30);
                assert!(e <= 1e-5, "c={c} size={size} plane={plane}: {e}");
                e_max = e_max.max(e);
            }
        }
        println!("LRN: max relative error {e_max:.3e}");
    }

    #[test]
    fn copy_fill_and_embedding() {
        let k = Kernels::compile(&[KernelId::Copy, KernelId::Fill, KernelId::Embedding]).unwrap();
        let mut rng = Rng::new(16);
        for len in SIZES {
            let (rows, ss, ds) = (3, len + 2, len + 5);
            let mut src = random(&mut rng, rows * ss, -1.0, 1.0);
            let mut dst = guarded(&vec![7.0; rows * ds]);
            let args = [ptr(&mut src), ptr(&mut dst), rows as i64, len as i64];
            k.call(
                KernelId::Copy,
                &[&args[..], &[ss as i64, ds as i64]].concat(),
            );
            for (r, i) in (0..rows).flat_map(|r| (0..ds).map(move |i| (r, i))) {
                let want = if i < len { src[r * ss + i] } else { 7.0 };
                assert_eq!(dst[r * ds + i], want, "copy len={len} row {r} col {i}");
            }
            check_guard(&dst);

            let mut y = guarded(&vec![0.0; len]);
            k.call(KernelId::Fill, &[ptr(&mut y), len as i64, fbits(-2.5)]);
            assert_eq!(body(&y), &vec![-2.5; len][..]);

            let (rows, count) = (4, 6);
            let mut table = random(&mut rng, rows * len, -1.0, 1.0);
            let mut idx: Vec<i32> = vec![3, 0, 2, 2, 1, 3];
            let mut y = guarded(&vec![0.0; count * len]);
            let args = [ptr(&mut idx), ptr(&mut table), ptr(&mut y)];
            k.call(
                KernelId::Embedding,
                &[&args[..], &[count as i64, len as i64]].concat(),
            );
            let want: Vec<f32> = idx
                .iter()
                .flat_map(|&i| table[i as usize * len..][..len].to_vec())
                .collect();
            assert_eq!(body(&y), &want[..], "embedding dim={len}");
        }
    }
}
