//! AVX-512 twins of the Winograd F(2x2, 3x3) transforms (`winograd.rs`): sixteen tiles of a tile row
//! per vector, the same operations in the same order as the Cranelift kernels (`codegen::agree` checks
//! the bits). Input columns of a tile step by 2, so each row of 34 input values is split into its even
//! and odd values (`vpermt2ps`) and shifted by two (`valignd`) for the tile's third and fourth columns;
//! the 2x2 outputs of sixteen tiles are interleaved back into two runs of 32 output values. Values
//! outside the plane are masked: masked-off lanes of AVX-512 loads and stores are neither read nor
//! written. Safety: as `twins.rs` (entered through `call.rs`'s table under its contract; handed out only
//! when the CPU has AVX-512F).

use super::avx2::KernelFn;
use super::ActKind;

/// `KernelId::WinogradIn` (`input`) or `KernelId::WinogradOut(act)` in AVX-512, or `None` when this CPU
/// lacks AVX-512F or for an activation other than identity, ReLU and leaky ReLU.
pub fn entry(input: bool, act: ActKind) -> Option<KernelFn> {
    if !super::avx512::supported() {
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
pub(super) use imp::{act, inside};

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::super::winograd::{in_args, out_args, segments};
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

    /// Lanes `l < 16` with `0 <= start + l < len`.
    pub(in crate::codegen) fn inside(start: isize, len: usize) -> __mmask16 {
        let lo = (-start).clamp(0, 16) as u32;
        let hi = (len as isize - start).clamp(0, 16) as u32;
        if hi <= lo {
            return 0;
        }
        let upto = |n: u32| ((1u32 << n) - 1) as u16;
        upto(hi) & !upto(lo)
    }

    /// The four forms of `Bᵀ` (see `winograd.rs`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn bt([d0, d1, d2, d3]: [__m512; 4]) -> [__m512; 4] {
        [
            _mm512_sub_ps(d0, d2),
            _mm512_add_ps(d1, d2),
            _mm512_sub_ps(d2, d1),
            _mm512_sub_ps(d1, d3),
        ]
    }

    /// The two forms of `Aᵀ`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn at([m0, m1, m2, m3]: [__m512; 4]) -> [__m512; 2] {
        [
            _mm512_add_ps(_mm512_add_ps(m0, m1), m2),
            _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3),
        ]
    }

    /// `KernelId::WinogradIn`: `[x, v, channels, h, w, tw, t1, ld, xi_stride, t0]`.
    ///
    /// # Safety
    /// `args` points to the kernel's 10 arguments, whose addresses satisfy `call.rs`'s contract; the CPU
    /// has AVX-512F (guaranteed by [`super::entry`], the only way to get this pointer).
    unsafe extern "C" fn transform_in(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 10 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 10) };
        let (x, out, n) = in_args(v);
        // SAFETY: as above.
        unsafe { tin(x, out, n) }
    }

    /// # Safety
    /// As [`transform_in`]: the plane of each channel is readable, `V`'s rows writable.
    #[target_feature(enable = "avx512f")]
    unsafe fn tin(x: *const f32, out: *mut f32, [channels, h, w, tw, t1, ld, xs, t0]: [usize; 8]) {
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let zero = _mm512_setzero_ps();
        for c in 0..channels {
            let xc = x.wrapping_add(c * h * w);
            let vc = out.wrapping_add(c * ld);
            for (ty, tx0, tx1) in segments(tw, t0, t1) {
                let mut tx0 = tx0;
                while tx0 < tx1 {
                    let keep = ((1u32 << (tx1 - tx0).min(16)) - 1) as __mmask16;
                    let s = 2 * tx0 as isize - 1;
                    // The lanes of each of a row's three vectors inside the plane's columns.
                    let masks: [__mmask16; 3] = std::array::from_fn(|q| {
                        inside(s + 16 * q as isize, w) & if q == 2 { 0b11 } else { 0xffff }
                    });
                    // Input rows 2 ty - 1 .. 2 ty + 3, columns s .. s + 34 (zero outside).
                    let mut d = [[zero; 3]; 4];
                    for (i, row) in d.iter_mut().enumerate() {
                        let y = 2 * ty as isize - 1 + i as isize;
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
                    let mut a = [[zero; 3]; 4];
                    for q in 0..3 {
                        let col = bt([d[0][q], d[1][q], d[2][q], d[3][q]]);
                        for i in 0..4 {
                            a[i][q] = col[i];
                        }
                    }
                    let t = ty * tw + tx0 - t0;
                    for (i, [a0, a1, a2]) in a.into_iter().enumerate() {
                        let (i0, i1, i2) = (
                            _mm512_castps_si512(a0),
                            _mm512_castps_si512(a1),
                            _mm512_castps_si512(a2),
                        );
                        let b1 = _mm512_alignr_epi32::<2>(i1, i0);
                        let b2 = _mm512_alignr_epi32::<2>(i2, i1);
                        let col0 = _mm512_permutex2var_ps(a0, evens, a1);
                        let col1 = _mm512_permutex2var_ps(a0, odds, a1);
                        let (b1, b2) = (_mm512_castsi512_ps(b1), _mm512_castsi512_ps(b2));
                        let col2 = _mm512_permutex2var_ps(b1, evens, b2);
                        let col3 = _mm512_permutex2var_ps(b1, odds, b2);
                        for (j, value) in bt([col0, col1, col2, col3]).into_iter().enumerate() {
                            let to = vc.wrapping_add((4 * i + j) * xs + t);
                            // SAFETY: the segment's tiles of row `4 i + j` of `V` are writable.
                            unsafe { _mm512_mask_storeu_ps(to, keep, value) };
                        }
                    }
                    tx0 += 16;
                }
            }
        }
    }

    /// `KernelId::WinogradOut(act)`: `[m, y, channels, h, w, tw, t1, ld, xi_stride, shift, mode,
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

    /// The activation of the Cranelift kernels (`math::act`): `v < 0 ? 0 (or v slope) : v`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::codegen) fn act<const ACT: u8>(v: __m512, slope: f32) -> __m512 {
        let zero = _mm512_setzero_ps();
        let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero);
        match ACT {
            1 => _mm512_mask_blend_ps(neg, v, zero),
            2 => _mm512_mask_blend_ps(neg, v, _mm512_mul_ps(v, _mm512_set1_ps(slope))),
            _ => v,
        }
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
        let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi_idx =
            _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
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
                    let mut mv = [_mm512_setzero_ps(); 16];
                    for (k, e) in mv.iter_mut().enumerate() {
                        // SAFETY: the segment's tiles of row `k` of `M` are readable.
                        *e = unsafe { _mm512_maskz_loadu_ps(keep, mc.wrapping_add(k * xs + t)) };
                    }
                    let mut u = [[_mm512_setzero_ps(); 4]; 2];
                    for j in 0..4 {
                        let [u0, u1] = at([mv[j], mv[4 + j], mv[8 + j], mv[12 + j]]);
                        u[0][j] = u0;
                        u[1][j] = u1;
                    }
                    // Columns of this segment's tiles inside the row, per run of 16 (later tiles
                    // of the row may be another call's).
                    let x0 = 2 * tx0;
                    let masks: [__mmask16; 2] = std::array::from_fn(|half| {
                        inside((x0 + 16 * half) as isize, w.min(2 * tx1))
                    });
                    for (i, row) in u.into_iter().enumerate() {
                        let oy = 2 * ty + i;
                        if oy >= h {
                            continue;
                        }
                        let [y0, y1] = at(row);
                        for (half, idx) in [lo_idx, hi_idx].into_iter().enumerate() {
                            let mask = masks[half];
                            if mask == 0 {
                                continue;
                            }
                            let p = yc.wrapping_add(oy * w + x0 + 16 * half);
                            let mut v = _mm512_permutex2var_ps(y0, idx, y1);
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
