//! Activations and transcendental functions written in Cranelift IR, for four lanes or one: `exp`, `log`,
//! `sigmoid` and `tanh` as branch-free polynomial code (Cephes single-precision algorithms, about 1e-7
//! relative error), no calls out of generated code.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::constant::ConstantData;
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Type, Value};

use super::builder::{Kb, Lanes};
use super::ActKind;

/// `act(v)`; `slope` (same lanes as `v`) is used by leaky ReLU only. ReLU keeps NaN, as PyTorch does.
pub fn act(kb: &mut Kb, lanes: Lanes, kind: ActKind, v: Value, slope: Value) -> Value {
    match kind {
        ActKind::Identity => v,
        ActKind::Relu => {
            let zero = kb.fconst(lanes, 0.0);
            let neg = kb.fcmp(FloatCC::LessThan, v, zero);
            kb.select(lanes, neg, zero, v)
        }
        ActKind::LeakyRelu => {
            let zero = kb.fconst(lanes, 0.0);
            let neg = kb.fcmp(FloatCC::LessThan, v, zero);
            let scaled = kb.b.ins().fmul(v, slope);
            kb.select(lanes, neg, scaled, v)
        }
        ActKind::Sigmoid => sigmoid(kb, lanes, v),
        ActKind::Tanh => tanh(kb, lanes, v),
    }
}

/// A float constant in every lane: one load from the constant pool for four lanes.
fn cf(kb: &mut Kb, lanes: Lanes, v: f32) -> Value {
    match lanes {
        Lanes::One => kb.b.ins().f32const(v),
        Lanes::Four => vconst(kb, lanes.float(), v.to_bits()),
    }
}

/// An i32 constant in every lane.
fn ci(kb: &mut Kb, lanes: Lanes, v: i32) -> Value {
    match lanes {
        Lanes::One => kb.iconst32(lanes, v),
        Lanes::Four => vconst(kb, lanes.int(), v as u32),
    }
}

/// A 128-bit constant of four equal 32-bit lanes `bits`, of type `ty`.
fn vconst(kb: &mut Kb, ty: Type, bits: u32) -> Value {
    let bytes: Vec<u8> = (0..4).flat_map(|_| bits.to_le_bytes()).collect();
    let c = kb.b.func.dfg.constants.insert(ConstantData::from(bytes));
    kb.b.ins().vconst(ty, c)
}

fn to_int(kb: &mut Kb, lanes: Lanes, v: Value) -> Value {
    kb.b.ins().bitcast(lanes.int(), MemFlagsData::new(), v)
}

fn to_float(kb: &mut Kb, lanes: Lanes, v: Value) -> Value {
    kb.b.ins().bitcast(lanes.float(), MemFlagsData::new(), v)
}

/// `c[0] * x^(n-1) + ... + c[n-1]` by Horner's rule with fused multiply-adds.
fn poly(kb: &mut Kb, lanes: Lanes, x: Value, c: &[f32]) -> Value {
    let mut p = cf(kb, lanes, c[0]);
    for &k in &c[1..] {
        let k = cf(kb, lanes, k);
        p = kb.b.ins().fma(p, x, k);
    }
    p
}

/// `e^x`. Exact to about 1 ulp on [-87.3, 88.7]; gradual underflow to 0 below (0 for `-inf`), `inf` above,
/// NaN kept. The argument is clamped to [-104, 89], `x = n ln2 + r` with `n = round(x log2 e)` (the
/// `1.5 * 2^23` magic addition, whose low mantissa bits are `n`) and `|r| <= ln2 / 2` (ln2 split in two
/// so `n ln2` is exact), `e^r` is a degree-6 polynomial, and the result is scaled by `2^n` as
/// `2^(n/2) * 2^(n - n/2)`, two powers of two built in the exponent bits, so that `n` from -150 to 128
/// needs no special case.
pub fn exp(kb: &mut Kb, lanes: Lanes, x: Value) -> Value {
    let hi = cf(kb, lanes, 89.0);
    let lo = cf(kb, lanes, -104.0);
    // `min(hi, x)` and `max(lo, x)` pass a NaN `x` through.
    let x = kb.min(lanes, hi, x);
    let x = kb.max(lanes, lo, x);
    let log2e = cf(kb, lanes, std::f32::consts::LOG2_E);
    let magic = cf(kb, lanes, 12_582_912.0);
    let t = kb.b.ins().fma(x, log2e, magic);
    let nf = kb.b.ins().fsub(t, magic);
    let c1 = cf(kb, lanes, -0.693_359_4);
    let c2 = cf(kb, lanes, 2.121_944_4e-4);
    let r = kb.b.ins().fma(nf, c1, x);
    let r = kb.b.ins().fma(nf, c2, r);
    let p = poly(
        kb,
        lanes,
        r,
        &[
            1.987_569_1e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            5e-1,
        ],
    );
    let r2 = kb.b.ins().fmul(r, r);
    let y = kb.b.ins().fma(p, r2, r);
    let one = cf(kb, lanes, 1.0);
    let y = kb.b.ins().fadd(y, one);
    // n = bits(t) - bits(1.5 * 2^23).
    let ti = to_int(kb, lanes, t);
    let mb = ci(kb, lanes, 0x4B40_0000);
    let n = kb.b.ins().isub(ti, mb);
    let n1 = kb.b.ins().sshr_imm_s(n, 1);
    let n2 = kb.b.ins().isub(n, n1);
    let bias = ci(kb, lanes, 127);
    let mut y = y;
    for e in [n1, n2] {
        let e = kb.b.ins().iadd(e, bias);
        let e = kb.b.ins().ishl_imm_s(e, 23);
        let s = to_float(kb, lanes, e);
        y = kb.b.ins().fmul(y, s);
    }
    y
}

/// Natural logarithm for `x > 0` (normal numbers; Cephes `logf`): `x = m 2^e` with `m` in
/// `[sqrt(1/2), sqrt(2))` from the bits, `log(m)` by a degree-9 polynomial in `m - 1`, `e ln2` added in two
/// parts. Defined for positive normal numbers only (zero, negatives, subnormals, infinities and NaN give
/// meaningless values); callers pass values bounded away from zero, such as LRN's `k + ...`.
pub fn log(kb: &mut Kb, lanes: Lanes, x: Value) -> Value {
    let bits = to_int(kb, lanes, x);
    let e = kb.b.ins().ushr_imm_s(bits, 23);
    let off = ci(kb, lanes, 126);
    let e = kb.b.ins().isub(e, off);
    let mask = ci(kb, lanes, 0x007F_FFFF);
    let m = kb.b.ins().band(bits, mask);
    let half = ci(kb, lanes, 0x3F00_0000);
    let m = kb.b.ins().bor(m, half);
    // m in [0.5, 1), x = m 2^e.
    let m = to_float(kb, lanes, m);
    let ef = kb.b.ins().fcvt_from_sint(lanes.float(), e);
    let sqrthf = cf(kb, lanes, std::f32::consts::FRAC_1_SQRT_2);
    let small = kb.fcmp(FloatCC::LessThan, m, sqrthf);
    let zero = cf(kb, lanes, 0.0);
    let one = cf(kb, lanes, 1.0);
    let extra = kb.select(lanes, small, m, zero);
    let dec = kb.select(lanes, small, one, zero);
    let ef = kb.b.ins().fsub(ef, dec);
    let xm = kb.b.ins().fsub(m, one);
    let xm = kb.b.ins().fadd(xm, extra);
    let z = kb.b.ins().fmul(xm, xm);
    let p = poly(
        kb,
        lanes,
        xm,
        &[
            7.037_683_6e-2,
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_4e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ],
    );
    let y = kb.b.ins().fmul(p, xm);
    let y = kb.b.ins().fmul(y, z);
    let q1 = cf(kb, lanes, -2.121_944_4e-4);
    let y = kb.b.ins().fma(ef, q1, y);
    let mhalf = cf(kb, lanes, -0.5);
    let y = kb.b.ins().fma(z, mhalf, y);
    let r = kb.b.ins().fadd(xm, y);
    let q2 = cf(kb, lanes, 0.693_359_4);
    kb.b.ins().fma(ef, q2, r)
}

/// `1 / (1 + e^-x)`.
pub fn sigmoid(kb: &mut Kb, lanes: Lanes, x: Value) -> Value {
    let nx = kb.b.ins().fneg(x);
    let e = exp(kb, lanes, nx);
    let one = cf(kb, lanes, 1.0);
    let d = kb.b.ins().fadd(one, e);
    kb.b.ins().fdiv(one, d)
}

/// `tanh(x)` (Cephes `tanhf`) of `a = |x|`: an odd polynomial for `a < 0.625`, else `1 - 2 / (e^(2a) + 1)`;
/// both are computed and one selected, then given the sign bit of `x`.
pub fn tanh(kb: &mut Kb, lanes: Lanes, x: Value) -> Value {
    let bits = to_int(kb, lanes, x);
    let sign = ci(kb, lanes, i32::MIN);
    let sign = kb.b.ins().band(bits, sign);
    let a = kb.b.ins().fabs(x);
    // Large: 1 - 2 / (e^(2a) + 1) (1 once e^(2a) overflows).
    let a2 = kb.b.ins().fadd(a, a);
    let e = exp(kb, lanes, a2);
    let one = cf(kb, lanes, 1.0);
    let two = cf(kb, lanes, 2.0);
    let d = kb.b.ins().fadd(e, one);
    let q = kb.b.ins().fdiv(two, d);
    let big = kb.b.ins().fsub(one, q);
    // Small: a + a^3 P(a^2).
    let s = kb.b.ins().fmul(a, a);
    let p = poly(
        kb,
        lanes,
        s,
        &[
            -5.704_988_7e-3,
            2.063_909e-2,
            -5.373_971_6e-2,
            1.333_144_2e-1,
            -3.333_328e-1,
        ],
    );
    let p = kb.b.ins().fmul(p, s);
    let small = kb.b.ins().fma(p, a, a);
    let lim = cf(kb, lanes, 0.625);
    let is_small = kb.fcmp(FloatCC::LessThan, a, lim);
    let y = kb.select(lanes, is_small, small, big);
    // tanh(|x|) >= 0 (or NaN): x's sign bit restores the sign, -0 included.
    let y = to_int(kb, lanes, y);
    let y = kb.b.ins().bor(y, sign);
    to_float(kb, lanes, y)
}

/// Helpers shared by the kernel tests of this room: guarded output buffers, argument encoding, errors.
#[cfg(test)]
pub(super) mod testing {
    use crate::tensor::Rng;

    /// Sizes the tests run at: empty, shorter than a vector, vectors with tails, long.
    pub const SIZES: [usize; 6] = [0, 1, 3, 5, 17, 1000];

    /// The guard value placed after every output buffer (a NaN with a payload).
    pub const GUARD: u32 = 0x7FC0_1234;

    /// `v` followed by one guard element.
    pub fn guarded(v: &[f32]) -> Vec<f32> {
        let mut out = v.to_vec();
        out.push(f32::from_bits(GUARD));
        out
    }

    /// Asserts that the last element of `buf` is still the guard.
    pub fn check_guard(buf: &[f32]) {
        assert_eq!(
            buf.last().map(|v| v.to_bits()),
            Some(GUARD),
            "guard overwritten"
        );
    }

    pub fn ptr<T>(v: &mut [T]) -> i64 {
        v.as_mut_ptr() as i64
    }

    /// An f32 argument: its bits in the low 32 bits.
    pub fn fbits(v: f32) -> i64 {
        v.to_bits() as i64
    }

    pub fn random(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| rng.uniform_in(lo, hi) as f32).collect()
    }

    /// Relative error of `got` against `want`, absolute when `|want| <= floor`.
    pub fn err(got: f32, want: f64, floor: f64) -> f64 {
        let d = (got as f64 - want).abs();
        if want.abs() > floor {
            d / want.abs()
        } else {
            d
        }
    }

    /// The largest error of `got` against `want` relative to `max(|want|, scale)`: for results of sums that
    /// may cancel, `scale` is the size of the summed terms (an f32 result cannot be relatively closer).
    pub fn max_err_scaled(got: &[f32], want: &[(f64, f64)]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(&g, &(w, scale))| {
                let e = (g as f64 - w).abs() / w.abs().max(scale).max(1e-30);
                if e.is_nan() {
                    f64::INFINITY
                } else {
                    e
                }
            })
            .fold(0.0, f64::max)
    }

    /// The largest error of `got` against `want` (see [`err`]); a NaN counts as infinite.
    pub fn max_err(got: &[f32], want: &[f64], floor: f64) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(&g, &w)| {
                let e = err(g, w, floor);
                if e.is_nan() {
                    f64::INFINITY
                } else {
                    e
                }
            })
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use crate::codegen::{ActKind, KernelId, Kernels};
    use crate::tensor::Rng;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Runs `Unary(act)` on `x` and returns the output (guard checked).
    fn unary(k: &Kernels, act: ActKind, x: &[f32]) -> Vec<f32> {
        let mut xs = x.to_vec();
        let mut y = guarded(&vec![0.0; x.len()]);
        k.call(
            KernelId::Unary(act),
            &[ptr(&mut xs), ptr(&mut y), x.len() as i64, fbits(0.0)],
        );
        check_guard(&y);
        y.pop();
        y
    }

    /// A grid over `[lo, hi]` plus random points, a length that is not a multiple of four.
    fn sweep(lo: f64, hi: f64, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut v: Vec<f32> = (0..=40_000)
            .map(|i| (lo + (hi - lo) * i as f64 / 40_000.0) as f32)
            .collect();
        v.extend(random(&mut rng, 20_002, lo, hi));
        v
    }

    #[test]
    fn sigmoid_and_tanh_match_f64_over_a_sweep() {
        let k = Kernels::compile(&[
            KernelId::Unary(ActKind::Sigmoid),
            KernelId::Unary(ActKind::Tanh),
        ])
        .unwrap();
        let mut x = sweep(-20.0, 20.0, 1);
        // Near zero, where tanh must stay relatively accurate, and exact edge points.
        x.extend(sweep(-1e-3, 1e-3, 2));
        x.extend([
            0.0,
            -0.0,
            0.625,
            -0.625,
            0.624_999_9,
            1e-30,
            -1e-38,
            30.0,
            -30.0,
        ]);
        let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let want: Vec<f64> = xs.iter().map(|&v| sigmoid(v)).collect();
        let e_sig = max_err(&unary(&k, ActKind::Sigmoid, &x), &want, 1e-30);
        let want: Vec<f64> = xs.iter().map(|v| v.tanh()).collect();
        let th = unary(&k, ActKind::Tanh, &x);
        let e_tanh = max_err(&th, &want, 1e-30);
        println!("max relative error: sigmoid {e_sig:.3e}, tanh {e_tanh:.3e}");
        assert!(e_sig <= 2e-6, "sigmoid error {e_sig}");
        assert!(e_tanh <= 2e-6, "tanh error {e_tanh}");
        // Exactly odd, saturated at the ends, signed zero kept, NaN kept.
        let y = unary(&k, ActKind::Tanh, &[0.3, -0.3, 50.0, -50.0, -0.0, f32::NAN]);
        assert_eq!(y[0], -y[1]);
        assert_eq!((y[2], y[3]), (1.0, -1.0));
        assert!(y[4] == 0.0 && y[4].is_sign_negative());
        assert!(y[5].is_nan());
        let y = unary(&k, ActKind::Sigmoid, &[-200.0, 200.0, 0.0, f32::NAN]);
        assert_eq!(&y[..3], &[0.0, 1.0, 0.5]);
        assert!(y[3].is_nan());
    }

    /// `exp` on [-80, 0] through softmax over the pair `(t, 0)`: `e^t / (e^t + 1)`, which is `e^t` itself
    /// (one exact rounding) once `t < -17.3`; on [0, 80] through `sigmoid(-t) = 1 / (1 + e^t)`, which is
    /// `1 / e^t` (one rounding) once `t > 16.7`.
    #[test]
    fn exp_matches_f64_over_minus_80_to_80() {
        let k = Kernels::compile(&[KernelId::Softmax, KernelId::Unary(ActKind::Sigmoid)]).unwrap();
        let t = sweep(-80.0, 0.0, 3);
        let n = t.len();
        // [outer 1, len 2, inner n]: row 0 the arguments, row 1 zeros.
        let mut x = t.clone();
        x.extend(vec![0.0; n]);
        let mut y = guarded(&vec![0.0; 2 * n]);
        k.call(
            KernelId::Softmax,
            &[ptr(&mut x), ptr(&mut y), 1, 2, n as i64],
        );
        check_guard(&y);
        let want: Vec<f64> = t.iter().map(|&v| sigmoid(v as f64)).collect();
        let e_neg = max_err(&y[..n], &want, 1e-30);
        let exact: Vec<(f32, f64)> = t
            .iter()
            .zip(&y)
            .filter(|(&v, _)| v < -17.5)
            .map(|(&v, &g)| (g, (v as f64).exp()))
            .collect();
        let e_neg_exact = exact
            .iter()
            .map(|&(g, w)| err(g, w, 0.0))
            .fold(0.0, f64::max);
        let t = sweep(0.0, 80.0, 4);
        let neg: Vec<f32> = t.iter().map(|v| -v).collect();
        let got = unary(&k, ActKind::Sigmoid, &neg);
        let want: Vec<f64> = t.iter().map(|&v| 1.0 / (1.0 + (v as f64).exp())).collect();
        let e_pos = max_err(&got, &want, 1e-30);
        println!(
            "max relative error of exp: [-80, 0] {e_neg:.3e} (isolated below -17.5: {e_neg_exact:.3e}), \
             [0, 80] {e_pos:.3e}"
        );
        assert!(exact.len() > 10_000);
        assert!(e_neg <= 2e-6 && e_neg_exact <= 2e-6 && e_pos <= 2e-6);
    }

    /// `log` through LRN with one channel, `k = 0`, `alpha = size = 1`, `beta = 1/2`:
    /// `y = x e^(-log(x^2) / 2) = 1` for `x > 0`, so `y - 1` is half the absolute error of `log(x^2)` (plus
    /// the rounding of `x^2` and exp's error); with `beta = -1`, `k = 1`: `y = x (1 + x^2)`.
    #[test]
    fn log_is_accurate_through_lrn() {
        let k = Kernels::compile(&[KernelId::Lrn]).unwrap();
        let run = |x: &[f32], beta: f32, kk: f32| {
            let mut xs = x.to_vec();
            let mut y = guarded(&vec![0.0; x.len()]);
            let args = [ptr(&mut xs), ptr(&mut y), 1, x.len() as i64, 1];
            let args = [&args[..], &[fbits(1.0), fbits(beta), fbits(kk)]].concat();
            k.call(KernelId::Lrn, &args);
            check_guard(&y);
            y.pop();
            y
        };
        let mut rng = Rng::new(5);
        let x: Vec<f32> = (0..30_001)
            .map(|_| rng.uniform_in(-15.0, 15.0).exp() as f32)
            .collect();
        let e_one = max_err(&run(&x, 0.5, 0.0), &vec![1.0; x.len()], 0.0);
        let x = sweep(0.0, 100.0, 6);
        let want: Vec<f64> = x
            .iter()
            .map(|&v| v as f64 * (1.0 + (v as f64).powi(2)))
            .collect();
        let e_cube = max_err(&run(&x, -1.0, 1.0), &want, 1e-30);
        println!("log through LRN: |x e^(-log(x^2)/2) - 1| {e_one:.3e}, x (1 + x^2) {e_cube:.3e}");
        assert!(e_one <= 2e-6 && e_cube <= 2e-6);
    }
}
