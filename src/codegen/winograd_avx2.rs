//! AVX2 twins of the Winograd F(2x2, 3x3) transforms (`winograd.rs`), for CPUs without AVX-512: eight
//! tiles of a tile row per vector, the same operations in the same order as the Cranelift kernels
//! (`codegen::winograd` checks the bits). As the AVX-512 twins (`winograd_avx512.rs`), with 8-lane
//! shuffles: a row's even and odd input values by `shufps` and a lane permute, the values two further on
//! reloaded from a copy on the stack, outputs interleaved by `unpcklps`/`unpckhps` and a 128-bit permute.
//! Values outside the plane are masked (`vmaskmovps` neither reads, writes nor faults on masked lanes).
//! Safety: as `twins.rs` (entered through `call.rs`'s table under its contract; handed out only when the
//! CPU has AVX2 and FMA).

use super::avx2::KernelFn;
use super::ActKind;

/// `KernelId::WinogradIn` (`input`) or `KernelId::WinogradOut(act)` in AVX2, or `None` when this CPU
/// lacks AVX2 or FMA, or for an activation other than identity, ReLU and leaky ReLU.
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
pub(super) use imp::{act, finish, inside, span, store};

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::super::twins::imp::{evens_of, lanes, odds_of};
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

    /// Lanes `l < 8` with `0 <= start + l < len`, as a `vmaskmovps` mask.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) fn inside(start: isize, len: usize) -> __m256i {
        let lo = (-start).clamp(0, 8) as i32;
        let hi = (len as isize - start).clamp(0, 8) as i32;
        let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let below = _mm256_cmpgt_epi32(_mm256_set1_epi32(lo), index);
        _mm256_andnot_si256(below, _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), index))
    }

    /// [`inside`]'s mask, and whether it has all lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) fn span(start: isize, len: usize) -> (bool, __m256i) {
        (start >= 0 && start + 8 <= len as isize, inside(start, len))
    }

    /// An output transform's run of outputs `v` to `p` (the lanes of `mask`, all of them when `full`):
    /// plus the old outputs when `add_old`, plus the channel's shift `sh`, through the activation.
    ///
    /// # Safety
    /// The lanes of `mask` at `p` are readable and writable.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) unsafe fn finish<const ACT: u8>(
        p: *mut f32,
        (full, mask): (bool, __m256i),
        mut v: __m256,
        (add_old, sh, slope): (bool, __m256, f32),
    ) {
        if add_old {
            // SAFETY: the lanes of `mask` are readable (see above).
            v = _mm256_add_ps(v, unsafe { _mm256_maskload_ps(p, mask) });
        }
        let v = act::<ACT>(_mm256_add_ps(v, sh), slope);
        // SAFETY: and writable.
        unsafe { store(p, (full, mask), v) };
    }

    /// `v` to `p`: all lanes when `full`, else those of `mask` (`vmaskmovps`, whose stores are many
    /// times slower than plain ones on AMD's cores).
    ///
    /// # Safety
    /// The lanes written are writable.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) unsafe fn store(p: *mut f32, (full, mask): (bool, __m256i), v: __m256) {
        if full {
            // SAFETY: all lanes are writable (see above).
            unsafe { _mm256_storeu_ps(p, v) }
        } else {
            // SAFETY: the lanes of `mask` are (see above).
            unsafe { _mm256_maskstore_ps(p, mask, v) }
        }
    }

    /// The four forms of `Bᵀ` (see `winograd.rs`).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn bt([d0, d1, d2, d3]: [__m256; 4]) -> [__m256; 4] {
        [
            _mm256_sub_ps(d0, d2),
            _mm256_add_ps(d1, d2),
            _mm256_sub_ps(d2, d1),
            _mm256_sub_ps(d1, d3),
        ]
    }

    /// The two forms of `Aᵀ`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn at([m0, m1, m2, m3]: [__m256; 4]) -> [__m256; 2] {
        [
            _mm256_add_ps(_mm256_add_ps(m0, m1), m2),
            _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3),
        ]
    }

    /// `KernelId::WinogradIn`: `[x, v, channels, h, w, tw, t1, ld, xi_stride, t0]`.
    ///
    /// # Safety
    /// `args` points to the kernel's 10 arguments, whose addresses satisfy `call.rs`'s contract; the CPU
    /// has AVX2 (guaranteed by [`super::entry`], the only way to get this pointer).
    unsafe extern "C" fn transform_in(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 10 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 10) };
        let (x, out, n) = in_args(v);
        // SAFETY: as above.
        unsafe { tin(x, out, n) }
    }

    /// # Safety
    /// As [`transform_in`]: the plane of each channel is readable, `V`'s rows writable.
    #[target_feature(enable = "avx2")]
    unsafe fn tin(x: *const f32, out: *mut f32, [channels, h, w, tw, t1, ld, xs, t0]: [usize; 8]) {
        let zero = _mm256_setzero_ps();
        for c in 0..channels {
            let xc = x.wrapping_add(c * h * w);
            let vc = out.wrapping_add(c * ld);
            for (ty, tx0, tx1) in segments(tw, t0, t1) {
                let mut tx0 = tx0;
                while tx0 < tx1 {
                    let keep = (tx1 - tx0 >= 8, lanes((tx1 - tx0).min(8)));
                    let s = 2 * tx0 as isize - 1;
                    // Input rows 2 ty - 1 .. 2 ty + 3, columns s .. s + 18 (zero outside).
                    let mut d = [[zero; 3]; 4];
                    for (i, row) in d.iter_mut().enumerate() {
                        let y = 2 * ty as isize - 1 + i as isize;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        let p = xc.wrapping_offset(y * w as isize);
                        for (q, e) in row.iter_mut().enumerate() {
                            let start = s + 8 * q as isize;
                            let mut m = inside(start, w);
                            if q == 2 {
                                m = _mm256_and_si256(m, lanes(2));
                            }
                            // SAFETY: only lanes inside the row are read (masked-off lanes do not
                            // fault).
                            *e = unsafe { _mm256_maskload_ps(p.wrapping_offset(start), m) };
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
                        // The row's values from its third on, through a copy.
                        let mut row = [0.0f32; 24];
                        // SAFETY: `row` holds 24 values; the loads read 16 of them from the third.
                        let (b1, b2) = unsafe {
                            _mm256_storeu_ps(row.as_mut_ptr(), a0);
                            _mm256_storeu_ps(row.as_mut_ptr().add(8), a1);
                            _mm256_storeu_ps(row.as_mut_ptr().add(16), a2);
                            (
                                _mm256_loadu_ps(row.as_ptr().add(2)),
                                _mm256_loadu_ps(row.as_ptr().add(10)),
                            )
                        };
                        let col0 = evens_of((a0, a1));
                        let col1 = odds_of((a0, a1));
                        let col2 = evens_of((b1, b2));
                        let col3 = odds_of((b1, b2));
                        for (j, value) in bt([col0, col1, col2, col3]).into_iter().enumerate() {
                            let to = vc.wrapping_add((4 * i + j) * xs + t);
                            // SAFETY: the segment's tiles of row `4 i + j` of `V` are writable.
                            unsafe { store(to, keep, value) };
                        }
                    }
                    tx0 += 8;
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
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) fn act<const ACT: u8>(v: __m256, slope: f32) -> __m256 {
        let zero = _mm256_setzero_ps();
        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, zero);
        match ACT {
            1 => _mm256_blendv_ps(v, zero, neg),
            2 => _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(slope)), neg),
            _ => v,
        }
    }

    /// # Safety
    /// As [`transform_out`].
    #[target_feature(enable = "avx2")]
    unsafe fn tout<const ACT: u8>(
        (m, y, shift): (*const f32, *mut f32, *const f32),
        [channels, h, w, tw, t1, ld, xs, t0]: [usize; 8],
        add_old: bool,
        slope: f32,
    ) {
        for c in 0..channels {
            let yc = y.wrapping_add(c * h * w);
            let mc = m.wrapping_add(c * ld);
            // SAFETY: `shift` holds a value per channel.
            let sh = _mm256_set1_ps(unsafe { *shift.add(c) });
            for (ty, tx0, tx1) in segments(tw, t0, t1) {
                let mut tx0 = tx0;
                while tx0 < tx1 {
                    let keep = lanes((tx1 - tx0).min(8));
                    let t = ty * tw + tx0 - t0;
                    let mut mv = [_mm256_setzero_ps(); 16];
                    for (k, e) in mv.iter_mut().enumerate() {
                        // SAFETY: the segment's tiles of row `k` of `M` are readable.
                        *e = unsafe { _mm256_maskload_ps(mc.wrapping_add(k * xs + t), keep) };
                    }
                    let mut u = [[_mm256_setzero_ps(); 4]; 2];
                    for j in 0..4 {
                        let [u0, u1] = at([mv[j], mv[4 + j], mv[8 + j], mv[12 + j]]);
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
