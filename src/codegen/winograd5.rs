//! The transforms of Winograd's F(2x2, 5x5) convolution in AVX2: each 2x2 block of outputs of a 5x5
//! filter from a 6x6 tile of inputs, 36 multiplications per input and output channel instead of 100.
//! With the interpolation points of F(4x4, 3x3) (0, ±1, ±2, ∞), `Bᵀ` is F(4x4, 3x3)'s (`winograd4.rs`,
//! whose `bt` this file calls), `Aᵀ` the rows of powers 0 and 1, and `G` (`WinogradKind::g`) rows
//! `c_i (1, p_i, .., p_i⁴)`:
//!
//! ```text
//! Aᵀ = [1 1  1 1  1 0]    G = [ 1/4     0    0     0    0]
//!      [0 1 -1 2 -2 1]        [-1/6  -1/6 -1/6  -1/6 -1/6]
//!                             [-1/6   1/6 -1/6   1/6 -1/6]
//!                             [1/24  1/12  1/6   1/3  2/3]
//!                             [1/24 -1/12  1/6  -1/3  2/3]
//!                             [   0     0    0     0    1]
//! ```
//!
//! [`KernelId::Winograd5In`](super::KernelId) takes each tile `d` (stride 2, zero padding 2, or 0 for a
//! valid convolution) to `V = Bᵀ d B`, [`KernelId::Winograd5Out`](super::KernelId) each tile of
//! products `M` to `Y = Aᵀ M A` with the layer's epilogue; between them the runtime multiplies the 36
//! matrices as one GEMM, as for the 3x3 kinds. Eight tiles of a tile row per vector: lane `t` of a
//! tile column `j` is input `2 t + j`, so the columns are a transformed row's even and odd values
//! (`shufps` and a lane permute, as F(2x2, 3x3)'s twins) and those shifted by one and two tiles
//! (`vpalignr` of the evens of values 0 to 15 with those of 8 to 23). The outputs of eight tiles are
//! interleaved back into two runs of 8 per output row (`unpcklps`/`unpckhps`, a 128-bit permute).
//! Values outside the plane are masked (`vmaskmovps` neither reads, writes nor faults on masked lanes).
//!
//! There are no Cranelift or AVX-512 transforms: F(2x2, 5x5) is chosen by the machine (AVX2 and FMA,
//! `codegen::winograd4_by_default`) and these run with every GEMM implementation, so every one gives
//! the same bits. Their error against the direct convolution is about F(4x4, 3x3)'s (the same `Bᵀ`);
//! the tests check them against the transforms in f64.
//!
//! Safety: as `twins.rs` (entered through `call.rs`'s table under its contract; handed out only when the
//! CPU has AVX2 and FMA).

use super::avx2::KernelFn;
use super::ActKind;

/// `KernelId::Winograd5In` (`input`) or `KernelId::Winograd5Out(act)`, or `None` when this CPU lacks
/// AVX2 or FMA, or for an activation other than identity, ReLU and leaky ReLU.
pub fn entry(input: bool, act: ActKind) -> Option<KernelFn> {
    if !super::avx2::supported() {
        return None;
    }
    imp::entry(input, act)
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn entry(_: bool, _: super::ActKind) -> Option<super::KernelFn> {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::super::twins::imp::{evens_of, lanes, odds_of};
    use super::super::winograd::{in_args, out_args, segments};
    use super::super::winograd4::avx2::{bt, products};
    use super::super::winograd_avx2::{finish, inside, span, store};
    use super::{ActKind, KernelFn};

    pub fn entry(input: bool, act: ActKind) -> Option<KernelFn> {
        Some(match (input, act) {
            (true, _) => transform_in,
            (false, ActKind::Identity) => transform_out::<0>,
            (false, ActKind::Relu) => transform_out::<1>,
            (false, ActKind::LeakyRelu) => transform_out::<2>,
            _ => return None,
        })
    }

    /// Lanes `t` of `a` then `t + 4` of `b` shifted down by `N` lanes within each 128-bit half: with `a`
    /// a tile column of eight tiles and `b` the same column four tiles on, the column `N` tiles on.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn on<const BYTES: i32>(a: __m256, b: __m256) -> __m256 {
        let (a, b) = (_mm256_castps_si256(a), _mm256_castps_si256(b));
        _mm256_castsi256_ps(_mm256_alignr_epi8::<BYTES>(b, a))
    }

    /// The six columns of eight tiles from a row of 24 values (only the first 20 used): lane `t` of
    /// column `j` is value `2 t + j`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn columns([r0, r1, r2]: [__m256; 3]) -> [__m256; 6] {
        // Values 2t and 2t + 1, and 8 + 2t and 9 + 2t.
        let (e0, o0) = (evens_of((r0, r1)), odds_of((r0, r1)));
        let (e1, o1) = (evens_of((r1, r2)), odds_of((r1, r2)));
        [
            e0,
            o0,
            on::<4>(e0, e1),
            on::<4>(o0, o1),
            on::<8>(e0, e1),
            on::<8>(o0, o1),
        ]
    }

    /// `Aᵀ m` (F(4x4, 3x3)'s first and last rows without the last one's `4 x` and `8 x`).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn at([m0, m1, m2, m3, m4, m5]: [__m256; 6]) -> [__m256; 2] {
        let (a, b) = (_mm256_add_ps(m1, m2), _mm256_sub_ps(m1, m2));
        let (c, d) = (_mm256_add_ps(m3, m4), _mm256_sub_ps(m3, m4));
        [
            _mm256_add_ps(_mm256_add_ps(m0, a), c),
            _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(2.0), d, b), m5),
        ]
    }

    /// `KernelId::Winograd5In`: `[x, v, channels, h, w, tw, t1, ld, xi_stride, t0, pad]`.
    ///
    /// # Safety
    /// `args` points to the kernel's 11 arguments, whose addresses satisfy `call.rs`'s contract; the CPU
    /// has AVX2 and FMA (guaranteed by [`super::entry`], the only way to get this pointer).
    unsafe extern "C" fn transform_in(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 11 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 11) };
        let (x, out, n) = in_args(v);
        // SAFETY: as above.
        unsafe { tin(x, out, n, v[10] as isize) }
    }

    /// # Safety
    /// As [`transform_in`]: the plane of each channel is readable, `V`'s rows writable.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tin(
        x: *const f32,
        out: *mut f32,
        [channels, h, w, tw, t1, ld, xs, t0]: [usize; 8],
        pad: isize,
    ) {
        let zero = _mm256_setzero_ps();
        for c in 0..channels {
            let xc = x.wrapping_add(c * h * w);
            let vc = out.wrapping_add(c * ld);
            for (ty, tx0, tx1) in segments(tw, t0, t1) {
                let mut tx0 = tx0;
                while tx0 < tx1 {
                    let (full, keep) = (tx1 - tx0 >= 8, lanes((tx1 - tx0).min(8)));
                    let s = 2 * tx0 as isize - pad;
                    // The lanes of each of a row's three vectors inside the plane's columns (of the
                    // last, the four values that columns 2 to 5 of tiles 6 and 7 take).
                    let masks: [__m256i; 3] = std::array::from_fn(|q| {
                        let m = inside(s + 8 * q as isize, w);
                        if q == 2 {
                            _mm256_and_si256(m, lanes(4))
                        } else {
                            m
                        }
                    });
                    // Input rows 2 ty - pad .. 2 ty - pad + 6, columns s .. s + 20 (zero outside).
                    let mut d = [[zero; 3]; 6];
                    for (i, row) in d.iter_mut().enumerate() {
                        let y = 2 * ty as isize - pad + i as isize;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        let p = xc.wrapping_offset(y * w as isize + s);
                        for (q, e) in row.iter_mut().enumerate() {
                            // SAFETY: only lanes inside the row are read (`vmaskmovps` does not
                            // fault on the others).
                            *e = unsafe { _mm256_maskload_ps(p.wrapping_add(8 * q), masks[q]) };
                        }
                    }
                    // Down the columns, then along the rows.
                    let mut a = [[zero; 3]; 6];
                    for q in 0..3 {
                        let col = bt([d[0][q], d[1][q], d[2][q], d[3][q], d[4][q], d[5][q]]);
                        for i in 0..6 {
                            a[i][q] = col[i];
                        }
                    }
                    let mut to = vc.wrapping_add(ty * tw + tx0 - t0);
                    for row in a {
                        for value in bt(columns(row)) {
                            // SAFETY: the segment's tiles of this row of `V` are writable.
                            unsafe { store(to, (full, keep), value) };
                            to = to.wrapping_add(xs);
                        }
                    }
                    tx0 += 8;
                }
            }
        }
    }

    /// `KernelId::Winograd5Out(act)`: `[m, y, channels, h, w, tw, t1, ld, xi_stride, shift, mode,
    /// slope, t0]`, `ACT` 0 identity, 1 ReLU, 2 leaky ReLU.
    ///
    /// # Safety
    /// As [`transform_in`], with 13 arguments.
    unsafe extern "C" fn transform_out<const ACT: u8>(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 13 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 13) };
        let (ptrs, n, add_old, slope) = out_args(v);
        // SAFETY: as above.
        unsafe { tout::<ACT>(ptrs, n, add_old, slope) }
    }

    /// # Safety
    /// As [`transform_out`].
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tout<const ACT: u8>(
        (m, y, shift): (*const f32, *mut f32, *const f32),
        [channels, h, w, tw, t1, ld, xs, t0]: [usize; 8],
        add_old: bool,
        slope: f32,
    ) {
        let zero = _mm256_setzero_ps();
        for c in 0..channels {
            let yc = y.wrapping_add(c * h * w);
            let mc = m.wrapping_add(c * ld);
            // SAFETY: `shift` holds a value per channel.
            let sh = _mm256_set1_ps(unsafe { *shift.add(c) });
            for (ty, tx0, tx1) in segments(tw, t0, t1) {
                let mut tx0 = tx0;
                while tx0 < tx1 {
                    let keep = lanes((tx1 - tx0).min(8));
                    // SAFETY: the segment's tiles of the 36 rows of `M` are readable.
                    let mv = unsafe { products(mc.wrapping_add(ty * tw + tx0 - t0), xs, keep) };
                    let mut u = [[zero; 6]; 2];
                    for j in 0..6 {
                        let [u0, u1] = at([
                            mv[j],
                            mv[6 + j],
                            mv[12 + j],
                            mv[18 + j],
                            mv[24 + j],
                            mv[30 + j],
                        ]);
                        u[0][j] = u0;
                        u[1][j] = u1;
                    }
                    for (i, row) in u.into_iter().enumerate() {
                        let oy = 2 * ty + i;
                        if oy >= h {
                            continue;
                        }
                        let [y0, y1] = at(row);
                        let (lo, hi) = (_mm256_unpacklo_ps(y0, y1), _mm256_unpackhi_ps(y0, y1));
                        let halves = [
                            _mm256_permute2f128_ps::<0x20>(lo, hi),
                            _mm256_permute2f128_ps::<0x31>(lo, hi),
                        ];
                        for (half, v) in halves.into_iter().enumerate() {
                            let start = 2 * tx0 + 8 * half;
                            // Columns of this segment's tiles inside the row.
                            let run = span(start as isize, w.min(2 * tx1));
                            if _mm256_testz_si256(run.1, run.1) == 1 {
                                continue;
                            }
                            let p = yc.wrapping_add(oy * w + start);
                            // SAFETY: lanes inside the row are readable and writable.
                            unsafe { finish::<ACT>(p, run, v, (add_old, sh, slope)) };
                        }
                    }
                    tx0 += 8;
                }
            }
        }
    }
}
