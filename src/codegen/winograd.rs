//! The transforms of Winograd's F(2x2, 3x3) convolution (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016) in Cranelift IR, value by value: [`KernelId::WinogradIn`] takes
//! each 4x4 input tile `d` (stride 2, zero padding 1) to `V = Bᵀ d B`, [`KernelId::WinogradOut`] each
//! 4x4 tile of products `M` to the 2x2 outputs `Y = Aᵀ M A` with the layer's epilogue. Between them the
//! runtime multiplies, for each of the 16 positions of a tile, the transformed weights `U = G g Gᵀ` by
//! `V` as one GEMM (`runtime::lower::winograd`). The AVX-512 twins (`winograd_avx512.rs`) do the same
//! operations in the same order on sixteen tiles at once, so both give the same bits.
//!
//! `Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]` and `Aᵀ = [1 1 1 0; 0 1 -1 -1]` take additions only.
//! Each transform runs down the tile's columns first, then along its rows:
//! - in: `a_i = (Bᵀ d)_i` per column (`d0 - d2`, `d1 + d2`, `d2 - d1`, `d1 - d3`), then `V_i = a_i B`
//!   along the row (the same four forms on `a_i0 .. a_i3`), `V[4 i + j]`;
//! - out: `u_0 = (M_0 + M_1) + M_2`, `u_1 = (M_1 - M_2) - M_3` per column, then the same along each
//!   row; then `+ old` (a residual, `mode` bit 0), `+ shift[c]`, the activation.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::F32;
use cranelift_codegen::ir::{Function, InstBuilder, MemFlagsData, Value};
use cranelift_codegen::isa::TargetFrontendConfig;

use super::builder::{Draft, Kb, Lanes};
use super::{math, ActKind};

/// `KernelId::WinogradIn` or `KernelId::WinogradOut(act)`.
pub fn build(input: bool, act: ActKind, config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| {
        if input {
            transform_in(kb)
        } else {
            transform_out(kb, act)
        }
    })
}

/// The four column forms of `Bᵀ` on `d0 .. d3`.
fn bt(kb: &mut Kb, [d0, d1, d2, d3]: [Value; 4]) -> [Value; 4] {
    let i = kb.b.ins();
    let a0 = i.fsub(d0, d2);
    let a1 = kb.b.ins().fadd(d1, d2);
    let a2 = kb.b.ins().fsub(d2, d1);
    let a3 = kb.b.ins().fsub(d1, d3);
    [a0, a1, a2, a3]
}

/// The two forms of `Aᵀ` on `m0 .. m3`.
fn at(kb: &mut Kb, [m0, m1, m2, m3]: [Value; 4]) -> [Value; 2] {
    let s = kb.b.ins().fadd(m0, m1);
    let u0 = kb.b.ins().fadd(s, m2);
    let t = kb.b.ins().fsub(m1, m2);
    let u1 = kb.b.ins().fsub(t, m3);
    [u0, u1]
}

/// `[x, v, channels, h, w, tw, t1, ld, xi_stride, t0]`: for channel `c < channels` (plane `x + c h w`)
/// and tile `t` in `t0 .. t1` (tile `(ty, tx) = (t / tw, t % tw)`), input rows `2 ty - 1 ..` and columns
/// `2 tx - 1 ..` (zero outside the plane), writes `V[4 i + j]` at `v + (4 i + j) xi_stride + c ld + t -
/// t0`.
fn transform_in(kb: &mut Kb) {
    let [x, v, channels, h, w, tw, t1, ld, xs, t0] =
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(|i| kb.arg(i));
    let plane = kb.b.ins().imul(h, w);
    let zero = kb.fconst(Lanes::One, 0.0);
    kb.for_n(channels, |kb, c| {
        let (co, cl) = (kb_mul(kb, c, plane), kb_mul(kb, c, ld));
        let xc = kb.addr(x, co, 4);
        let vc = kb.addr(v, cl, 4);
        kb.for_range(t0, t1, 1, |kb, tile| {
            let ty = kb.b.ins().sdiv(tile, tw);
            let tx = kb.b.ins().srem(tile, tw);
            // d[i][j]: input (2 ty - 1 + i, 2 tx - 1 + j), zero outside.
            let mut d = [[zero; 4]; 4];
            for (i, row) in d.iter_mut().enumerate() {
                for (j, e) in row.iter_mut().enumerate() {
                    let y = kb.b.ins().imul_imm_s(ty, 2);
                    let y = kb.b.ins().iadd_imm_s(y, i as i64 - 1);
                    let xx = kb.b.ins().imul_imm_s(tx, 2);
                    let xx = kb.b.ins().iadd_imm_s(xx, j as i64 - 1);
                    *e = load_inside(kb, xc, (y, xx), (h, w));
                }
            }
            // Down the columns, then along the rows.
            let mut a = [[zero; 4]; 4];
            for j in 0..4 {
                let col = bt(kb, [d[0][j], d[1][j], d[2][j], d[3][j]]);
                for i in 0..4 {
                    a[i][j] = col[i];
                }
            }
            let t = kb.b.ins().isub(tile, t0);
            for (i, row) in a.iter().enumerate() {
                let out = bt(kb, *row);
                for (j, value) in out.into_iter().enumerate() {
                    let at = kb.b.ins().imul_imm_s(xs, (4 * i + j) as i64);
                    let at = kb.b.ins().iadd(at, t);
                    kb.store(value, vc, at);
                }
            }
        });
    });
}

/// `[m, y, channels, h, w, tw, t1, ld, xi_stride, shift, mode, slope, t0]`: for channel `c <
/// channels` and tile `t` in `t0 .. t1` (`(ty, tx) = (t / tw, t % tw)`), `M[k]` at `m + k xi_stride + c
/// ld + t - t0`; writes the outputs `(2 ty + i, 2 tx
/// + j)` inside the `h x w` plane `y + c h w`: `act(Y + old + shift[c])` (`old`, the value there, only
/// with `mode` bit 0; `slope` the f32 of leaky ReLU).
fn transform_out(kb: &mut Kb, act: ActKind) {
    let [m, y, channels, h, w, tw, t1, ld, xs, shift, mode] =
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(|i| kb.arg(i));
    let slope = kb.arg(11);
    let t0 = kb.arg(12);
    let slope = kb.b.ins().ireduce(cranelift_codegen::ir::types::I32, slope);
    let slope = kb.b.ins().bitcast(F32, MemFlagsData::new(), slope);
    let plane = kb.b.ins().imul(h, w);
    let add_old = kb.b.ins().band_imm_s(mode, 1);
    let add_old = kb.b.ins().icmp_imm_s(IntCC::NotEqual, add_old, 0);
    kb.for_n(channels, |kb, c| {
        let (co, cl) = (kb_mul(kb, c, plane), kb_mul(kb, c, ld));
        let yc = kb.addr(y, co, 4);
        let mc = kb.addr(m, cl, 4);
        let t_shift = kb.load(Lanes::One, shift, c);
        kb.for_range(t0, t1, 1, |kb, tile| {
            let ty = kb.b.ins().sdiv(tile, tw);
            let tx = kb.b.ins().srem(tile, tw);
            let t = kb.b.ins().isub(tile, t0);
            let mut mv = [[t_shift; 4]; 4];
            for (i, row) in mv.iter_mut().enumerate() {
                for (j, e) in row.iter_mut().enumerate() {
                    let at = kb.b.ins().imul_imm_s(xs, (4 * i + j) as i64);
                    let at = kb.b.ins().iadd(at, t);
                    *e = kb.load(Lanes::One, mc, at);
                }
            }
            let mut u = [[t_shift; 4]; 2];
            for j in 0..4 {
                let col = at(kb, [mv[0][j], mv[1][j], mv[2][j], mv[3][j]]);
                u[0][j] = col[0];
                u[1][j] = col[1];
            }
            for (i, row) in u.iter().enumerate() {
                let out = at(kb, *row);
                for (j, value) in out.into_iter().enumerate() {
                    let oy = kb.b.ins().imul_imm_s(ty, 2);
                    let oy = kb.b.ins().iadd_imm_s(oy, i as i64);
                    let ox = kb.b.ins().imul_imm_s(tx, 2);
                    let ox = kb.b.ins().iadd_imm_s(ox, j as i64);
                    let in_y = kb.b.ins().icmp(IntCC::SignedLessThan, oy, h);
                    let in_x = kb.b.ins().icmp(IntCC::SignedLessThan, ox, w);
                    let inside = kb.b.ins().band(in_y, in_x);
                    kb.when(inside, |kb| {
                        let at = kb.b.ins().imul(oy, w);
                        let at = kb.b.ins().iadd(at, ox);
                        let var = kb.var(F32, value);
                        kb.when(add_old, |kb| {
                            let old = kb.load(Lanes::One, yc, at);
                            let cur = kb.b.use_var(var);
                            let sum = kb.b.ins().fadd(cur, old);
                            kb.b.def_var(var, sum);
                        });
                        let cur = kb.b.use_var(var);
                        let v = kb.b.ins().fadd(cur, t_shift);
                        let v = math::act(kb, Lanes::One, act, v, slope);
                        kb.store(v, yc, at);
                    });
                }
            }
        });
    });
}

/// `a * b` (i64 values).
fn kb_mul(kb: &mut Kb, a: Value, b: Value) -> Value {
    kb.b.ins().imul(a, b)
}

/// The value at `(y, x)` of the `h x w` plane at `p`, or +0.0 outside it (the address is clamped into the
/// plane, so nothing outside is read).
fn load_inside(kb: &mut Kb, p: Value, (y, x): (Value, Value), (h, w): (Value, Value)) -> Value {
    let zero_i = kb.iconst(0);
    let y_ok = kb.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, y, zero_i);
    let y_lt = kb.b.ins().icmp(IntCC::SignedLessThan, y, h);
    let x_ok = kb.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, x, zero_i);
    let x_lt = kb.b.ins().icmp(IntCC::SignedLessThan, x, w);
    let a = kb.b.ins().band(y_ok, y_lt);
    let b = kb.b.ins().band(x_ok, x_lt);
    let inside = kb.b.ins().band(a, b);
    let yc = kb.b.ins().select(inside, y, zero_i);
    let xc = kb.b.ins().select(inside, x, zero_i);
    let at = kb.b.ins().imul(yc, w);
    let at = kb.b.ins().iadd(at, xc);
    let v = kb.load(Lanes::One, p, at);
    let zero = kb.fconst(Lanes::One, 0.0);
    kb.b.ins().select(inside, v, zero)
}

/// An input transform's arguments (`KernelId::WinogradIn`, `Winograd4In`) as the vector kernels take
/// them: the plane, `V`, and `[channels, h, w, tw, t1, ld, xi_stride, t0]`.
pub(super) fn in_args(v: &[i64]) -> (*const f32, *mut f32, [usize; 8]) {
    let n = [2, 3, 4, 5, 6, 7, 8, 9].map(|i| v[i].max(0) as usize);
    (v[0] as *const f32, v[1] as *mut f32, n)
}

/// An output transform's arguments (`KernelId::WinogradOut`, `Winograd4Out`): `(M, y, shift)`, `[channels,
/// h, w, tw, t1, ld, xi_stride, t0]`, whether to add the old output (`mode` bit 0), the leaky slope.
pub(super) type OutArgs = ((*const f32, *mut f32, *const f32), [usize; 8], bool, f32);

/// See [`OutArgs`].
pub(super) fn out_args(v: &[i64]) -> OutArgs {
    let ptrs = (v[0] as *const f32, v[1] as *mut f32, v[9] as *const f32);
    let n = [2, 3, 4, 5, 6, 7, 8, 12].map(|i| v[i].max(0) as usize);
    (ptrs, n, v[10] & 1 != 0, f32::from_bits(v[11] as u32))
}

/// The tile rows of tiles `t0 .. t1` (rows of `tw`), each as `(ty, tx0, tx1)`: how the vector twins
/// walk a block of tiles.
pub(super) fn segments(
    tw: usize,
    t0: usize,
    t1: usize,
) -> impl Iterator<Item = (usize, usize, usize)> {
    let tw = tw.max(1);
    (t0 / tw..t1.div_ceil(tw)).map(move |ty| {
        let (lo, hi) = (ty * tw, (ty + 1) * tw);
        (ty, t0.max(lo) - lo, t1.min(hi) - lo)
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ActKind, GemmImpl, Kernels, WinogradKind};
    use crate::tensor::Rng;

    /// Tiles of `tile x tile` outputs and `V`/`M` row length of an `h x w` plane.
    fn tiles(h: usize, w: usize, tile: usize) -> (usize, usize, usize) {
        let (th, tw) = (h.div_ceil(tile), w.div_ceil(tile));
        (th, tw, (th * tw).next_multiple_of(16))
    }

    /// The input transform of `kind` of an `h x w` plane with zero padding `pad` (0 not with F(2x2,
    /// 3x3)).
    fn transform_in(
        k: &Kernels,
        x: &[f32],
        c: usize,
        (h, w): (usize, usize),
        (kind, pad): (WinogradKind, usize),
    ) -> Vec<f32> {
        let (tile, r) = (kind.out() as usize, kind.taps() as usize);
        let (th, tw, ld) = tiles(h + 2 * pad + 1 - r, w + 2 * pad + 1 - r, tile);
        let mut v = vec![f32::NAN; kind.values() as usize * c * ld];
        let args = [
            x.as_ptr() as i64,
            v.as_mut_ptr() as i64,
            c as i64,
            h as i64,
            w as i64,
        ];
        let more = [tw as i64, (th * tw) as i64, ld as i64, (c * ld) as i64, 0];
        let id = kind.kernels(ActKind::Identity)[0];
        if kind.takes_pad() {
            k.call(id, &[&args[..], &more[..], &[pad as i64]].concat());
        } else {
            k.call(id, &[&args[..], &more[..]].concat());
        }
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn transform_out(
        k: &Kernels,
        act: ActKind,
        m: &[f32],
        y0: &[f32],
        (c, h, w): (usize, usize, usize),
        shift: &[f32],
        (mode, slope): (i64, f32),
        kind: WinogradKind,
    ) -> Vec<f32> {
        let (th, tw, ld) = tiles(h, w, kind.out() as usize);
        let mut y = y0.to_vec();
        // Guards: the plane starts 16 values into `y` and is followed by 16 more.
        let args = [
            m.as_ptr() as i64,
            y[16..].as_mut_ptr() as i64,
            c as i64,
            h as i64,
            w as i64,
        ];
        let more = [
            tw as i64,
            (th * tw) as i64,
            ld as i64,
            (c * ld) as i64,
            shift.as_ptr() as i64,
        ];
        let last = [mode, slope.to_bits() as i64, 0];
        k.call(
            kind.kernels(act)[1],
            &[&args[..], &more[..], &last[..]].concat(),
        );
        y
    }

    /// `U = G g Gᵀ` of one `r x r` filter, in f64 (`G` rows of `r`).
    fn u_of(g: &[f64], gm: &[&[f64]]) -> Vec<f64> {
        let (n, r) = (gm.len(), gm[0].len());
        let t: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..r)
                    .map(|j| (0..r).map(|k| gm[i][k] * g[k * r + j]).sum())
                    .collect()
            })
            .collect();
        (0..n * n)
            .map(|ij| (0..r).map(|k| t[ij / n][k] * gm[ij % n][k]).sum())
            .collect()
    }

    /// The transforms with the products between them give a 3x3 convolution (stride 1, padding 1) to
    /// within float rounding, on planes of odd and even sides, and the AVX2 and AVX-512 twins the same
    /// bits as the Cranelift kernels, with every mode and activation, writing nothing outside the plane.
    #[test]
    fn transforms_compute_a_3x3_convolution_and_twins_agree_bitwise() {
        let ids = ids(WinogradKind::F2x3);
        let lift = Kernels::compile_with(&ids, GemmImpl::Cranelift).unwrap();
        // The AVX2 and AVX-512 twins (with those GEMM implementations), where this CPU has them.
        let twins: Vec<Kernels> = [GemmImpl::Avx2, GemmImpl::Avx512]
            .into_iter()
            .filter(|g| g.available())
            .map(|g| Kernels::compile_with(&ids, g).unwrap())
            .collect();
        check(&lift, &twins, WinogradKind::F2x3, 1e-5);
    }

    /// F(4x4, 3x3)'s AVX-512 and AVX2 transforms (where this CPU has them) likewise, bit for bit the
    /// same, on planes with partial tiles at the right and bottom and tile rows longer than one vector of
    /// 16 tiles (a 70-wide plane has 18), with padding 1 and 0. Within 2e-5 of the convolution in f64:
    /// their constants round more than F(2x2)'s.
    #[test]
    fn f4_transforms_compute_a_3x3_convolution() {
        let ids = ids(WinogradKind::F4x3);
        if !super::super::winograd4_by_default() {
            return;
        }
        // AVX-512 where the CPU has it (any GEMM but AVX2's), against the AVX2 twins.
        let k = Kernels::compile_with(&ids, GemmImpl::Cranelift).unwrap();
        let twins: Vec<Kernels> = [GemmImpl::Avx2]
            .into_iter()
            .filter(|g| g.available())
            .map(|g| Kernels::compile_with(&ids, g).unwrap())
            .collect();
        check(&k, &twins, WinogradKind::F4x3, 2e-5);
    }

    /// F(2x2, 5x5)'s AVX2 transforms (where this CPU has them) likewise, on the same planes (tile rows
    /// of 35 tiles, four vectors of 8 and a partial one), with padding 2 and 0; within 2e-5 of the
    /// convolution in f64, as F(4x4, 3x3) (the same `Bᵀ`, and 25 taps to sum).
    #[test]
    fn f5_transforms_compute_a_5x5_convolution() {
        if !super::super::winograd4_by_default() {
            return;
        }
        let k = Kernels::compile_with(&ids(WinogradKind::F2x5), GemmImpl::Cranelift).unwrap();
        check(&k, &[], WinogradKind::F2x5, 2e-5);
    }

    /// The transforms of `kind`, with the output transform's three activations.
    fn ids(kind: WinogradKind) -> Vec<super::super::KernelId> {
        let mut ids = vec![kind.kernels(ActKind::Identity)[0]];
        for act in [ActKind::Identity, ActKind::Relu, ActKind::LeakyRelu] {
            ids.push(kind.kernels(act)[1]);
        }
        ids
    }

    /// The transforms of `kind` in `lift`, with the products between them computed in f64, against a
    /// direct `r x r` convolution in f64 (within `tolerance`), writing nothing outside the plane; `twins`
    /// give the same bits.
    fn check(lift: &Kernels, twins: &[Kernels], kind: WinogradKind, tolerance: f64) {
        let half = kind.taps() as usize / 2;
        let pads = if kind.takes_pad() {
            vec![half, 0]
        } else {
            vec![1]
        };
        for pad in pads {
            check_padded(lift, twins, (kind, pad), tolerance);
        }
    }

    /// [`check`] with zero padding `pad` (1: outputs the input's size; 0: a valid convolution).
    fn check_padded(
        lift: &Kernels,
        twins: &[Kernels],
        (kind, pad): (WinogradKind, usize),
        tolerance: f64,
    ) {
        let (gm, tile, r) = (kind.g(), kind.out() as usize, kind.taps() as usize);
        let n2 = gm.len() * gm.len();
        let mut rng = Rng::new(31);
        for (h, w, ci, co) in [
            (1, 1, 1, 1),
            (2, 3, 2, 3),
            (5, 7, 3, 2),
            (7, 7, 4, 5),
            (14, 14, 2, 3),
            (17, 35, 3, 2),
            (6, 40, 1, 2),
            (33, 2, 2, 1),
            (9, 70, 2, 2),
        ] {
            // The output plane (none for a valid convolution of fewer than 3 rows or columns).
            if h + 2 * pad < r || w + 2 * pad < r {
                continue;
            }
            let (oh, ow) = (h + 2 * pad + 1 - r, w + 2 * pad + 1 - r);
            let (th, tw, ld) = tiles(oh, ow, tile);
            let x: Vec<f32> = (0..ci * h * w)
                .map(|_| rng.uniform_in(-1.0, 1.0) as f32)
                .collect();
            let g: Vec<f64> = (0..co * ci * r * r)
                .map(|_| rng.uniform_in(-1.0, 1.0))
                .collect();
            let v = transform_in(lift, &x, ci, (h, w), (kind, pad));
            for wide in twins {
                let v2 = transform_in(wide, &x, ci, (h, w), (kind, pad));
                for (a, b) in v.iter().zip(&v2) {
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "{h}x{w}"
                    );
                }
            }
            // M[k][o][t] = sum over c of U[o][c][k] V[k][c][t].
            let mut m = vec![0.0f32; n2 * co * ld];
            for k in 0..n2 {
                for o in 0..co {
                    for t in 0..th * tw {
                        let s: f64 = (0..ci)
                            .map(|c| {
                                u_of(&g[(o * ci + c) * r * r..][..r * r], gm)[k]
                                    * v[(k * ci + c) * ld + t] as f64
                            })
                            .sum();
                        m[(k * co + o) * ld + t] = s as f32;
                    }
                }
            }
            let shift: Vec<f32> = (0..co).map(|_| rng.uniform_in(-1.0, 1.0) as f32).collect();
            let y0: Vec<f32> = (0..co * oh * ow + 32)
                .map(|_| rng.uniform_in(-1.0, 1.0) as f32)
                .collect();
            for (act, mode, slope) in [
                (ActKind::Identity, 0, 0.0),
                (ActKind::Relu, 1, 0.0),
                (ActKind::LeakyRelu, 1, 0.1),
            ] {
                let y = transform_out(
                    lift,
                    act,
                    &m,
                    &y0,
                    (co, oh, ow),
                    &shift,
                    (mode, slope),
                    kind,
                );
                assert_eq!(&y[..16], &y0[..16], "{h}x{w}: wrote before the plane");
                assert_eq!(
                    &y[16 + co * oh * ow..],
                    &y0[16 + co * oh * ow..],
                    "{h}x{w}: wrote after it"
                );
                for o in 0..co {
                    for (oy, ox) in (0..oh).flat_map(|a| (0..ow).map(move |b| (a, b))) {
                        let mut want = shift[o] as f64;
                        for c in 0..ci {
                            for (kh, kw) in (0..r).flat_map(|a| (0..r).map(move |b| (a, b))) {
                                let (iy, ix) = (
                                    (oy + kh) as isize - pad as isize,
                                    (ox + kw) as isize - pad as isize,
                                );
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let xv = x[c * h * w + iy as usize * w + ix as usize] as f64;
                                    want += g[(o * ci + c) * r * r + kh * r + kw] * xv;
                                }
                            }
                        }
                        let at = 16 + o * oh * ow + oy * ow + ox;
                        if mode == 1 {
                            want += y0[at] as f64;
                        }
                        if act != ActKind::Identity && want < 0.0 {
                            want *= slope as f64;
                        }
                        let got = y[at] as f64;
                        assert!(
                            (got - want).abs() < tolerance,
                            "{h}x{w} padding {pad} {act:?}: {got} against {want}"
                        );
                    }
                }
                for wide in twins {
                    let (plane, mode) = ((co, oh, ow), (mode, slope));
                    let y2 = transform_out(wide, act, &m, &y0, plane, &shift, mode, kind);
                    let same = y.iter().zip(&y2).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{h}x{w} {act:?}: the {:?} twin differs", wide.gemm);
                }
            }
        }
    }
}
