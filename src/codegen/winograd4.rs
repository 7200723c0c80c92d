//! The transforms of Winograd's F(4x4, 3x3) convolution in AVX-512 and AVX2 (Lavin and Gray, 2016): each 4x4
//! block of outputs from a 6x6 tile of inputs, 36 multiplications per input and output channel instead
//! of 144 (F(2x2, 3x3) takes 64 for the same 16 outputs). [`KernelId::Winograd4In`] takes each tile `d`
//! (stride 4, zero padding 1) to `V = Bᵀ d B`, [`KernelId::Winograd4Out`] each tile of products `M` to
//! `Y = Aᵀ M A` with the layer's epilogue (with zero padding 0 too: a valid convolution's tiles start at
//! the plane's first row and column); between them the runtime multiplies the 36 matrices as one
//! GEMM (`runtime::lower::winograd`), as for F(2x2, 3x3).
//!
//! ```text
//! Bᵀ = [4  0 -5  0 1 0]    G = [ 1/4     0     0]    Aᵀ = [1 1  1 1  1 0]
//!      [0 -4 -4  1 1 0]        [-1/6  -1/6  -1/6]         [0 1 -1 2 -2 0]
//!      [0  4 -4 -1 1 0]        [-1/6   1/6  -1/6]         [0 1  1 4  4 0]
//!      [0 -2 -1  2 1 0]        [1/24  1/12   1/6]         [0 1 -1 8 -8 1]
//!      [0  2 -1 -2 1 0]        [1/24 -1/12   1/6]
//!      [0  4  0 -5 0 1]        [   0     0     1]
//! ```
//!
//! Sixteen tiles of a tile row per vector. Input columns of a tile step by 4: each transformed row of
//! 66 values is split into its four phases (`x mod 4`, two `vpermt2ps` and a blend each) and the first
//! two shifted by one tile (`valignd`) for the tile's fifth and sixth columns; the 4x4 outputs of sixteen
//! tiles are interleaved back into four runs of 16 output values. Values outside the plane are masked:
//! masked-off lanes of AVX-512 loads and stores are neither read nor written.
//!
//! The AVX2 twins (module `avx2`) take eight tiles per vector: tiles `t` and `t + 4` paired in 128-bit
//! halves (`vperm2f128`), a 4x4 transpose per half (`unpcklps`/`unpckhps`, `shufps`) for the first four
//! columns, a lane rotation and a blend for the last two; the outputs go back the same way. Same
//! operations in the same order, so the same bits (`codegen::winograd` checks them against each other).
//! There are no Cranelift transforms: F(4x4, 3x3) is chosen by the machine (AVX2 and FMA,
//! `codegen::winograd4_by_default`), the AVX2 twins run with the AVX2 GEMM and the AVX-512 kernels with
//! the others where the CPU has them (with `--gemm cranelift` too), so every GEMM implementation still
//! gives the same bits on a given machine. The transforms' constants (4, 5, 2, 8) round more than F(2x2,
//! 3x3)'s additions: a convolution's error against the direct one is about ten times F(2x2)'s (both far
//! below the tests' tolerances); the tests check these kernels against the transforms in f64.
//!
//! Safety: as `twins.rs` (entered through `call.rs`'s table under its contract; handed out only when the
//! CPU has AVX-512F, or AVX2 and FMA for the twins).

use super::avx2::KernelFn;
use super::ActKind;

/// `KernelId::Winograd4In` (`input`) or `KernelId::Winograd4Out(act)`, or `None` when this CPU lacks
/// AVX-512F or for an activation other than identity, ReLU and leaky ReLU.
pub fn entry(input: bool, act: ActKind) -> Option<KernelFn> {
    if !super::avx512::supported() {
        return None;
    }
    imp::entry(input, act)
}

/// The AVX2 twins of [`entry`]'s kernels (eight tiles per vector, the same operations in the same
/// order, so the same bits), or `None` when this CPU lacks AVX2 or FMA.
pub fn entry_avx2(input: bool, act: ActKind) -> Option<KernelFn> {
    if !super::avx2::supported() {
        return None;
    }
    avx2::entry(input, act)
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn entry(_: bool, _: super::ActKind) -> Option<super::KernelFn> {
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    pub fn entry(_: bool, _: super::ActKind) -> Option<super::KernelFn> {
        None
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    use super::super::twins::imp::lanes;
    use super::super::winograd::{in_args, out_args, segments};
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

    /// `Bᵀ d`, as the AVX-512 kernel's.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(in crate::codegen) fn bt([d0, d1, d2, d3, d4, d5]: [__m256; 6]) -> [__m256; 6] {
        let (two, four, five) = (
            _mm256_set1_ps(2.0),
            _mm256_set1_ps(4.0),
            _mm256_set1_ps(5.0),
        );
        let v0 = _mm256_fnmadd_ps(five, d2, _mm256_fmadd_ps(four, d0, d4));
        let v1 = _mm256_fnmadd_ps(four, _mm256_add_ps(d1, d2), _mm256_add_ps(d3, d4));
        let v2 = _mm256_fmadd_ps(four, _mm256_sub_ps(d1, d2), _mm256_sub_ps(d4, d3));
        let (p, q) = (_mm256_sub_ps(d4, d2), _mm256_sub_ps(d3, d1));
        let v3 = _mm256_fmadd_ps(two, q, p);
        let v4 = _mm256_fnmadd_ps(two, q, p);
        let v5 = _mm256_fnmadd_ps(five, d3, _mm256_fmadd_ps(four, d1, d5));
        [v0, v1, v2, v3, v4, v5]
    }

    /// `Aᵀ m`, as the AVX-512 kernel's.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn at([m0, m1, m2, m3, m4, m5]: [__m256; 6]) -> [__m256; 4] {
        let (a, b) = (_mm256_add_ps(m1, m2), _mm256_sub_ps(m1, m2));
        let (c, d) = (_mm256_add_ps(m3, m4), _mm256_sub_ps(m3, m4));
        [
            _mm256_add_ps(_mm256_add_ps(m0, a), c),
            _mm256_fmadd_ps(_mm256_set1_ps(2.0), d, b),
            _mm256_fmadd_ps(_mm256_set1_ps(4.0), c, a),
            _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0), d, b), m5),
        ]
    }

    /// The 36 products of the tiles in `keep`'s lanes, from rows of `M` `xs` apart from `from`, each row
    /// prefetched two cache lines on: 36 rows are more streams than the hardware prefetchers follow
    /// when `M` is in L3 (AlexNet's F(2x2, 5x5) layer: 0.55 -> 0.29 ms; one line on 0.37, four 0.33-0.47).
    ///
    /// # Safety
    /// The lanes of `keep` of the 36 rows are readable.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) unsafe fn products(
        mut from: *const f32,
        xs: usize,
        keep: __m256i,
    ) -> [__m256; 36] {
        let mut mv = [_mm256_setzero_ps(); 36];
        for e in mv.iter_mut() {
            // SAFETY: see above (`vmaskmovps` neither reads nor faults on the other lanes).
            *e = unsafe { _mm256_maskload_ps(from, keep) };
            _mm_prefetch::<_MM_HINT_T0>(from.wrapping_add(32) as *const i8);
            from = from.wrapping_add(xs);
        }
        mv
    }

    /// The six columns of eight tiles from a row of 34 values `r` (values `8 q ..` in `r[q]`, only the
    /// first two of `r[4]` used): lane `t` of column `j` is value `4 t + j`. Tiles `t` and `t + 4` pair
    /// up in 128-bit halves (`vperm2f128`), a 4x4 transpose per half gives columns 0 to 3, and columns 4
    /// and 5 are columns 0 and 1 one tile on (a lane rotation, the last lane from `r[4]`).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn columns(r: &[__m256; 5]) -> [__m256; 6] {
        let t04 = _mm256_permute2f128_ps::<0x20>(r[0], r[2]);
        let t15 = _mm256_permute2f128_ps::<0x31>(r[0], r[2]);
        let t26 = _mm256_permute2f128_ps::<0x20>(r[1], r[3]);
        let t37 = _mm256_permute2f128_ps::<0x31>(r[1], r[3]);
        let (u0, u1) = (_mm256_unpacklo_ps(t04, t15), _mm256_unpackhi_ps(t04, t15));
        let (w0, w1) = (_mm256_unpacklo_ps(t26, t37), _mm256_unpackhi_ps(t26, t37));
        let p0 = _mm256_shuffle_ps::<0x44>(u0, w0);
        let p1 = _mm256_shuffle_ps::<0xee>(u0, w0);
        let p2 = _mm256_shuffle_ps::<0x44>(u1, w1);
        let p3 = _mm256_shuffle_ps::<0xee>(u1, w1);
        let rotate = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
        let next = |p: __m256, lane: i32| {
            let last = _mm256_permutevar8x32_ps(r[4], _mm256_set1_epi32(lane));
            _mm256_blend_ps::<0x80>(_mm256_permutevar8x32_ps(p, rotate), last)
        };
        [p0, p1, p2, p3, next(p0, 0), next(p1, 1)]
    }

    /// `KernelId::Winograd4In` (the AVX-512 kernel's arguments).
    ///
    /// # Safety
    /// `args` points to the kernel's 11 arguments, whose addresses satisfy `call.rs`'s contract; the CPU
    /// has AVX2 and FMA (guaranteed by [`super::entry_avx2`], the only way to get this pointer).
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
                    let keep = (tx1 - tx0 >= 8, lanes(tx1 - tx0));
                    let s = 4 * tx0 as isize - pad;
                    // The lanes of each of a row's five vectors inside the plane's columns.
                    let masks: [__m256i; 5] = std::array::from_fn(|q| {
                        let m = inside(s + 8 * q as isize, w);
                        if q == 4 {
                            _mm256_and_si256(m, lanes(2))
                        } else {
                            m
                        }
                    });
                    // Input rows 4 ty - pad .. 4 ty - pad + 6, columns s .. s + 34 (zero outside).
                    let mut d = [[zero; 5]; 6];
                    for (i, row) in d.iter_mut().enumerate() {
                        let y = 4 * ty as isize - pad + i as isize;
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
                    let mut a = [[zero; 5]; 6];
                    for q in 0..5 {
                        let col = bt([d[0][q], d[1][q], d[2][q], d[3][q], d[4][q], d[5][q]]);
                        for i in 0..6 {
                            a[i][q] = col[i];
                        }
                    }
                    let mut to = vc.wrapping_add(ty * tw + tx0 - t0);
                    for row in &a {
                        for value in bt(columns(row)) {
                            // SAFETY: the segment's tiles of this row of `V` are writable.
                            unsafe { store(to, keep, value) };
                            to = to.wrapping_add(xs);
                        }
                    }
                    tx0 += 8;
                }
            }
        }
    }

    /// `KernelId::Winograd4Out(act)` (the AVX-512 kernel's arguments).
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
                    let keep = lanes(tx1 - tx0);
                    // SAFETY: the segment's tiles of the 36 rows of `M` are readable.
                    let mv = unsafe { products(mc.wrapping_add(ty * tw + tx0 - t0), xs, keep) };
                    let mut u = [[zero; 6]; 4];
                    for j in 0..6 {
                        let col = at([
                            mv[j],
                            mv[6 + j],
                            mv[12 + j],
                            mv[18 + j],
                            mv[24 + j],
                            mv[30 + j],
                        ]);
                        for i in 0..4 {
                            u[i][j] = col[i];
                        }
                    }
                    // Columns of this segment's tiles inside the row, per run of 8 (later tiles of
                    // the row may be another call's).
                    let masks: [(bool, __m256i); 4] =
                        std::array::from_fn(|q| span((4 * tx0 + 8 * q) as isize, w.min(4 * tx1)));
                    for (i, row) in u.into_iter().enumerate() {
                        let oy = 4 * ty + i;
                        if oy >= h {
                            continue;
                        }
                        let [y0, y1, y2, y3] = at(row);
                        // Tiles t and t + 4 in the halves of q_t, then two tiles per run.
                        let (u0, u1) = (_mm256_unpacklo_ps(y0, y1), _mm256_unpackhi_ps(y0, y1));
                        let (w0, w1) = (_mm256_unpacklo_ps(y2, y3), _mm256_unpackhi_ps(y2, y3));
                        let q0 = _mm256_shuffle_ps::<0x44>(u0, w0);
                        let q1 = _mm256_shuffle_ps::<0xee>(u0, w0);
                        let q2 = _mm256_shuffle_ps::<0x44>(u1, w1);
                        let q3 = _mm256_shuffle_ps::<0xee>(u1, w1);
                        let runs = [
                            _mm256_permute2f128_ps::<0x20>(q0, q1),
                            _mm256_permute2f128_ps::<0x20>(q2, q3),
                            _mm256_permute2f128_ps::<0x31>(q0, q1),
                            _mm256_permute2f128_ps::<0x31>(q2, q3),
                        ];
                        for (q, v) in runs.into_iter().enumerate() {
                            let mask = masks[q].1;
                            if _mm256_testz_si256(mask, mask) == 1 {
                                continue;
                            }
                            let p = yc.wrapping_add(oy * w + 4 * tx0 + 8 * q);
                            // SAFETY: lanes inside the row are readable and writable.
                            unsafe { finish::<ACT>(p, masks[q], v, (add_old, sh, slope)) };
                        }
                    }
                    tx0 += 8;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::super::winograd::{in_args, out_args, segments};
    use super::super::winograd_avx512::{act, inside};
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

    /// `Bᵀ d` for a column (or row) `d0 .. d5`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn bt([d0, d1, d2, d3, d4, d5]: [__m512; 6]) -> [__m512; 6] {
        let (two, four, five) = (
            _mm512_set1_ps(2.0),
            _mm512_set1_ps(4.0),
            _mm512_set1_ps(5.0),
        );
        // 4 d0 - 5 d2 + d4
        let v0 = _mm512_fnmadd_ps(five, d2, _mm512_fmadd_ps(four, d0, d4));
        // (d3 + d4) - 4 (d1 + d2), (d4 - d3) + 4 (d1 - d2)
        let v1 = _mm512_fnmadd_ps(four, _mm512_add_ps(d1, d2), _mm512_add_ps(d3, d4));
        let v2 = _mm512_fmadd_ps(four, _mm512_sub_ps(d1, d2), _mm512_sub_ps(d4, d3));
        // (d4 - d2) +- 2 (d3 - d1)
        let (p, q) = (_mm512_sub_ps(d4, d2), _mm512_sub_ps(d3, d1));
        let v3 = _mm512_fmadd_ps(two, q, p);
        let v4 = _mm512_fnmadd_ps(two, q, p);
        // 4 d1 - 5 d3 + d5
        let v5 = _mm512_fnmadd_ps(five, d3, _mm512_fmadd_ps(four, d1, d5));
        [v0, v1, v2, v3, v4, v5]
    }

    /// `Aᵀ m` for a column (or row) `m0 .. m5`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn at([m0, m1, m2, m3, m4, m5]: [__m512; 6]) -> [__m512; 4] {
        let (a, b) = (_mm512_add_ps(m1, m2), _mm512_sub_ps(m1, m2));
        let (c, d) = (_mm512_add_ps(m3, m4), _mm512_sub_ps(m3, m4));
        [
            _mm512_add_ps(_mm512_add_ps(m0, a), c),
            _mm512_fmadd_ps(_mm512_set1_ps(2.0), d, b),
            _mm512_fmadd_ps(_mm512_set1_ps(4.0), c, a),
            _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), d, b), m5),
        ]
    }

    /// The six columns of sixteen tiles from a row of 66 values `r` (values `16 q ..` in `r[q]`, only
    /// the first two of `r[4]` used): lane `t` of column `j` is value `4 t + j`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn columns(r: &[__m512; 5]) -> [__m512; 6] {
        let idx = |q: i32| {
            _mm512_setr_epi32(
                q,
                4 + q,
                8 + q,
                12 + q,
                16 + q,
                20 + q,
                24 + q,
                28 + q,
                q,
                4 + q,
                8 + q,
                12 + q,
                16 + q,
                20 + q,
                24 + q,
                28 + q,
            )
        };
        let phase = |q: i32| {
            let lo = _mm512_permutex2var_ps(r[0], idx(q), r[1]);
            let hi = _mm512_permutex2var_ps(r[2], idx(q), r[3]);
            _mm512_mask_blend_ps(0xff00, lo, hi)
        };
        let (p0, p1, p2, p3) = (phase(0), phase(1), phase(2), phase(3));
        let shift = |next: __m512, p: __m512| {
            _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                _mm512_castps_si512(next),
                _mm512_castps_si512(p),
            ))
        };
        // Lane 15 of the fifth and sixth columns: values 64 and 65.
        let r4 = _mm512_castps_si512(r[4]);
        let r4_1 = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(r4, r4));
        [p0, p1, p2, p3, shift(r[4], p0), shift(r4_1, p1)]
    }

    /// `KernelId::Winograd4In`: `[x, v, channels, h, w, tw, t1, ld, xi_stride, t0, pad]`.
    ///
    /// # Safety
    /// `args` points to the kernel's 11 arguments, whose addresses satisfy `call.rs`'s contract; the CPU
    /// has AVX-512F (guaranteed by [`super::entry`], the only way to get this pointer).
    unsafe extern "C" fn transform_in(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 11 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 11) };
        let (x, out, n) = in_args(v);
        // SAFETY: as above.
        unsafe { tin(x, out, n, v[10] as isize) }
    }

    /// # Safety
    /// As [`transform_in`]: the plane of each channel is readable, `V`'s rows writable.
    #[target_feature(enable = "avx512f")]
    unsafe fn tin(
        x: *const f32,
        out: *mut f32,
        [channels, h, w, tw, t1, ld, xs, t0]: [usize; 8],
        pad: isize,
    ) {
        let zero = _mm512_setzero_ps();
        for c in 0..channels {
            let xc = x.wrapping_add(c * h * w);
            let vc = out.wrapping_add(c * ld);
            for (ty, tx0, tx1) in segments(tw, t0, t1) {
                let mut tx0 = tx0;
                while tx0 < tx1 {
                    let keep = ((1u32 << (tx1 - tx0).min(16)) - 1) as __mmask16;
                    let s = 4 * tx0 as isize - pad;
                    // The lanes of each of a row's five vectors inside the plane's columns.
                    let masks: [__mmask16; 5] = std::array::from_fn(|q| {
                        inside(s + 16 * q as isize, w) & if q == 4 { 0b11 } else { 0xffff }
                    });
                    // Input rows 4 ty - pad .. 4 ty - pad + 6, columns s .. s + 66 (zero outside).
                    let mut d = [[zero; 5]; 6];
                    for (i, row) in d.iter_mut().enumerate() {
                        let y = 4 * ty as isize - pad + i as isize;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        let p = xc.wrapping_offset(y * w as isize + s);
                        for (q, e) in row.iter_mut().enumerate() {
                            // SAFETY: only lanes inside the row are read (masked-off lanes do not
                            // fault).
                            *e = unsafe { _mm512_maskz_loadu_ps(masks[q], p.wrapping_add(16 * q)) };
                        }
                    }
                    // Down the columns, then along the rows.
                    let mut a = [[zero; 5]; 6];
                    for q in 0..5 {
                        let col = bt([d[0][q], d[1][q], d[2][q], d[3][q], d[4][q], d[5][q]]);
                        for i in 0..6 {
                            a[i][q] = col[i];
                        }
                    }
                    // Row `6 i + j` of `V` for value `(i, j)`: one pointer stepping by `xs` (36
                    // offsets kept apart would not stay in registers).
                    let mut to = vc.wrapping_add(ty * tw + tx0 - t0);
                    for row in &a {
                        for value in bt(columns(row)) {
                            // SAFETY: the segment's tiles of this row of `V` are writable.
                            unsafe { _mm512_mask_storeu_ps(to, keep, value) };
                            to = to.wrapping_add(xs);
                        }
                    }
                    tx0 += 16;
                }
            }
        }
    }

    /// `KernelId::Winograd4Out(act)`: `[m, y, channels, h, w, tw, t1, ld, xi_stride, shift, mode,
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
    #[target_feature(enable = "avx512f")]
    unsafe fn tout<const ACT: u8>(
        (m, y, shift): (*const f32, *mut f32, *const f32),
        [channels, h, w, tw, t1, ld, xs, t0]: [usize; 8],
        add_old: bool,
        slope: f32,
    ) {
        // Two columns' values of tiles 0..8 (`lo`) or 8..16 (`hi`) interleaved, then two such pairs
        // into runs of four tiles' four outputs.
        let pair_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let pair_hi =
            _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let quad_lo = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
        let quad_hi =
            _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
        let zero = _mm512_setzero_ps();
        for c in 0..channels {
            let yc = y.wrapping_add(c * h * w);
            let mc = m.wrapping_add(c * ld);
            // SAFETY: `shift` holds a value per channel.
            let sh = _mm512_set1_ps(unsafe { *shift.add(c) });
            for (ty, tx0, tx1) in segments(tw, t0, t1) {
                let mut tx0 = tx0;
                while tx0 < tx1 {
                    let keep = ((1u32 << (tx1 - tx0).min(16)) - 1) as __mmask16;
                    let t = ty * tw + tx0 - t0;
                    let mut mv = [zero; 36];
                    let mut from = mc.wrapping_add(t);
                    for e in mv.iter_mut() {
                        // SAFETY: the segment's tiles of this row of `M` are readable.
                        *e = unsafe { _mm512_maskz_loadu_ps(keep, from) };
                        from = from.wrapping_add(xs);
                    }
                    let mut u = [[zero; 6]; 4];
                    for j in 0..6 {
                        let col = at([
                            mv[j],
                            mv[6 + j],
                            mv[12 + j],
                            mv[18 + j],
                            mv[24 + j],
                            mv[30 + j],
                        ]);
                        for i in 0..4 {
                            u[i][j] = col[i];
                        }
                    }
                    // Columns of this segment's tiles inside the row, per run of 16 (later tiles
                    // of the row may be another call's).
                    let masks: [__mmask16; 4] = std::array::from_fn(|q| {
                        inside((4 * tx0 + 16 * q) as isize, w.min(4 * tx1))
                    });
                    for (i, row) in u.into_iter().enumerate() {
                        let oy = 4 * ty + i;
                        if oy >= h {
                            continue;
                        }
                        let [y0, y1, y2, y3] = at(row);
                        let (a_lo, a_hi) = (
                            _mm512_permutex2var_ps(y0, pair_lo, y1),
                            _mm512_permutex2var_ps(y0, pair_hi, y1),
                        );
                        let (b_lo, b_hi) = (
                            _mm512_permutex2var_ps(y2, pair_lo, y3),
                            _mm512_permutex2var_ps(y2, pair_hi, y3),
                        );
                        let runs = [
                            _mm512_permutex2var_ps(a_lo, quad_lo, b_lo),
                            _mm512_permutex2var_ps(a_lo, quad_hi, b_lo),
                            _mm512_permutex2var_ps(a_hi, quad_lo, b_hi),
                            _mm512_permutex2var_ps(a_hi, quad_hi, b_hi),
                        ];
                        for (q, mut v) in runs.into_iter().enumerate() {
                            let mask = masks[q];
                            if mask == 0 {
                                continue;
                            }
                            let p = yc.wrapping_add(oy * w + 4 * tx0 + 16 * q);
                            if add_old {
                                // SAFETY: lanes inside the row are readable.
                                v = _mm512_add_ps(v, unsafe { _mm512_maskz_loadu_ps(mask, p) });
                            }
                            let v = act::<ACT>(_mm512_add_ps(v, sh), slope);
                            // SAFETY: lanes inside the row are writable.
                            unsafe { _mm512_mask_storeu_ps(p, mask, v) };
                        }
                    }
                    tx0 += 16;
                }
            }
        }
    }
}
