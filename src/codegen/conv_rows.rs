//! [`KernelId::ConvRows`](super::KernelId): a band of output rows of a convolution with few input
//! channels (a network's first layer: 3 channels, 7x7 stride 2 or 11x11 stride 4, ...), computed
//! directly, in AVX2 with FMA, with no patches packed. As a GEMM such a layer packs `3 k²` taps per
//! output pixel (a fifth to a third of its time); here the filters are the vector lanes instead: a
//! `16 filters x P pixels` register tile (`P` 5 or 6 pixels along an output row, 2P accumulators) takes,
//! for each tap, two vectors of 16 filters' weights (packed `[tap][16]` per block of 16 filters at
//! compile time) and one broadcast input value per pixel, read where it lies in a zero-padded copy of
//! the band's input rows (the task's scratch). The input stride is a const parameter (1, 2 or 4), so
//! the pixels' offsets are immediates.
//!
//! Every output gets the GEMM's operations in the GEMM's order (one FMA per tap from zero, taps in
//! the packed patches' order: channel, row, column; each k block's sum added to the blocks' before;
//! then `v * scale + shift` as one FMA and the activation), so the bits are those of the GEMM path (`tests/jit.rs` checks them against the
//! interpreter and across GEMMs and threads). The tile's 16 x P values go out through a small
//! buffer, one run of P pixels per filter.
//!
//! Safety: as `twins.rs` (entered through `call.rs`'s table under its contract; handed out only when the
//! CPU has AVX2 and FMA).

use super::avx2::KernelFn;
use super::ActKind;

/// Filters per block (the vector lanes of two AVX2 registers).
pub const FILTERS: usize = 16;

/// The input strides the kernel takes.
pub const STRIDES: [u64; 3] = [1, 2, 4];

/// Pixels per register tile for an output row of `ow` pixels: 6 (12 accumulators), or 5 where 6
/// would compute more than 5% more pixels than the row keeps and 5 fewer (AlexNet's 55: 60 against 55).
pub fn tile_pixels(ow: u64) -> u64 {
    let waste = |p: u64| ow.div_ceil(p) * p - ow;
    if 20 * waste(6) > ow && waste(5) < waste(6) {
        5
    } else {
        6
    }
}

/// `KernelId::ConvRows(act)`, or `None` when this CPU lacks AVX2 or FMA, or for an activation other than
/// identity, ReLU and leaky ReLU.
pub fn entry(act: ActKind) -> Option<KernelFn> {
    if !super::avx2::supported() {
        return None;
    }
    imp::entry(act)
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn entry(_: super::ActKind) -> Option<super::KernelFn> {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::super::winograd_avx2::act;
    use super::{band_shape, tile_pixels, ActKind, KernelFn, FILTERS};

    pub fn entry(act: ActKind) -> Option<KernelFn> {
        Some(match act {
            ActKind::Identity => rows::<0>,
            ActKind::Relu => rows::<1>,
            ActKind::LeakyRelu => rows::<2>,
            _ => return None,
        })
    }

    /// A convolution's geometry, as the kernel's arguments give it.
    struct Geometry {
        channels: usize,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: (usize, usize),
        oh: usize,
        ow: usize,
        filters: usize,
        /// Input channels per k block (the GEMM's: each block's sum from zero, added to the last).
        block: usize,
    }

    /// `KernelId::ConvRows(act)`: `[x, y, weights, scale, shift, band, channels, h, w, kh, kw, stride,
    /// pad_top, pad_left, oh, ow, filters, oy0, rows, slope, block]`, `ACT` 0 identity, 1 ReLU, 2 leaky
    /// ReLU.
    ///
    /// # Safety
    /// `args` points to the kernel's 21 arguments, whose addresses satisfy `call.rs`'s contract; the CPU
    /// has AVX2 and FMA (guaranteed by [`super::entry`], the only way to get this pointer).
    unsafe extern "C" fn rows<const ACT: u8>(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 21 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 21) };
        let n = |i: usize| v[i].max(0) as usize;
        let g = Geometry {
            channels: n(6),
            h: n(7),
            w: n(8),
            kh: n(9),
            kw: n(10),
            stride: n(11),
            pad: (n(12), n(13)),
            oh: n(14),
            ow: n(15),
            filters: n(16),
            block: n(20).max(1),
        };
        let ptrs = (
            v[0] as *const f32,
            v[1] as *mut f32,
            v[2] as *const f32,
            v[3] as *const f32,
            v[4] as *const f32,
            v[5] as *mut f32,
        );
        let (oy0, count) = (n(17), n(18));
        let slope = f32::from_bits(v[19] as u32);
        // SAFETY: as above.
        unsafe {
            match (g.stride, tile_pixels(g.ow as u64)) {
                (1, 5) => band::<1, 5, ACT>(ptrs, &g, (oy0, count), slope),
                (1, _) => band::<1, 6, ACT>(ptrs, &g, (oy0, count), slope),
                (2, 5) => band::<2, 5, ACT>(ptrs, &g, (oy0, count), slope),
                (2, _) => band::<2, 6, ACT>(ptrs, &g, (oy0, count), slope),
                (_, 5) => band::<4, 5, ACT>(ptrs, &g, (oy0, count), slope),
                _ => band::<4, 6, ACT>(ptrs, &g, (oy0, count), slope),
            }
        }
    }

    /// # Safety
    /// As [`rows`]: `x` holds the image's input planes, `y` its output planes, `weights` the packed
    /// filters, `scale` and `shift` a value per filter, `buf` [`band_shape`]'s values per channel.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn band<const S: usize, const P: usize, const ACT: u8>(
        (x, y, weights, scale, shift, buf): (
            *const f32,
            *mut f32,
            *const f32,
            *const f32,
            *const f32,
            *mut f32,
        ),
        g: &Geometry,
        (oy0, count): (usize, usize),
        slope: f32,
    ) {
        let (rows, width) = band_shape((g.kh, g.kw, S), (g.ow, P), count);
        let plane = rows * width;
        // The input rows of the band, zero outside the image: band column `col` is input column
        // `col - pad_left`, those of `lo .. hi` inside it.
        let lo = g.pad.1.min(width);
        let hi = (g.pad.1 + g.w).min(width).max(lo);
        for c in 0..g.channels {
            for r in 0..rows {
                let iy = (oy0 * S + r).checked_sub(g.pad.0).filter(|&iy| iy < g.h);
                // SAFETY: `buf` holds the band (see above); the row read is inside plane `c`.
                unsafe {
                    let to = std::slice::from_raw_parts_mut(buf.add(c * plane + r * width), width);
                    match iy {
                        Some(iy) => {
                            let from = x.add((c * g.h + iy) * g.w);
                            to[..lo].fill(0.0);
                            to[lo..hi].copy_from_slice(std::slice::from_raw_parts(from, hi - lo));
                            to[hi..].fill(0.0);
                        }
                        None => to.fill(0.0),
                    }
                }
            }
        }
        let taps = g.channels * g.kh * g.kw;
        for r in 0..count {
            let oy = oy0 + r;
            for fb in 0..g.filters / FILTERS {
                let f0 = fb * FILTERS;
                let w = weights.wrapping_add(fb * taps * FILTERS);
                // SAFETY: `scale` and `shift` hold a value per filter.
                let (sc, sh) = unsafe {
                    (
                        [
                            _mm256_loadu_ps(scale.add(f0)),
                            _mm256_loadu_ps(scale.add(f0 + 8)),
                        ],
                        [
                            _mm256_loadu_ps(shift.add(f0)),
                            _mm256_loadu_ps(shift.add(f0 + 8)),
                        ],
                    )
                };
                let mut ox0 = 0;
                while ox0 < g.ow {
                    let at = buf.wrapping_add(r * S * width + ox0 * S);
                    // SAFETY: the tile's taps lie inside the band (see `band_shape`), its weights
                    // inside the packed filters.
                    let acc = unsafe { tile::<S, P>(at, w, g, (plane, width)) };
                    let n = P.min(g.ow - ox0);
                    for h in 0..2 {
                        let mut m = [_mm256_setzero_ps(); 8];
                        for (j, a) in acc.iter().enumerate() {
                            m[j] = act::<ACT>(_mm256_fmadd_ps(a[h], sc[h], sh[h]), slope);
                        }
                        // Rows of filters, lanes of pixels.
                        let t = transpose(m);
                        let to = y.wrapping_add((f0 + 8 * h) * g.oh * g.ow + oy * g.ow + ox0);
                        for (lane, v) in t.into_iter().enumerate() {
                            let to = to.wrapping_add(lane * g.oh * g.ow);
                            if ox0 + 8 <= g.ow {
                                // Pixels `P ..` are the next tile's, which it writes after.
                                // SAFETY: the row holds 8 values from `ox0`.
                                unsafe { _mm256_storeu_ps(to, v) };
                            } else {
                                let mut o = [0.0f32; 8];
                                // SAFETY: `o` holds 8 values; the row `n` from `ox0`.
                                unsafe {
                                    _mm256_storeu_ps(o.as_mut_ptr(), v);
                                    std::ptr::copy_nonoverlapping(o.as_ptr(), to, n);
                                }
                            }
                        }
                    }
                    ox0 += P;
                }
            }
        }
    }

    /// The 8x8 transpose of `m`: lane `i` of vector `j` to lane `j` of vector `i`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn transpose(m: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(m[0], m[1]);
        let t1 = _mm256_unpackhi_ps(m[0], m[1]);
        let t2 = _mm256_unpacklo_ps(m[2], m[3]);
        let t3 = _mm256_unpackhi_ps(m[2], m[3]);
        let t4 = _mm256_unpacklo_ps(m[4], m[5]);
        let t5 = _mm256_unpackhi_ps(m[4], m[5]);
        let t6 = _mm256_unpacklo_ps(m[6], m[7]);
        let t7 = _mm256_unpackhi_ps(m[6], m[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// The `16 x P` tile at band position `at` (its first pixel's first tap), filters `w`: the sum of
    /// each k block of `g.block` channels from zero, added to the sum of those before.
    ///
    /// # Safety
    /// Every tap of the tile's pixels is readable at `at` plus its offset, and `w` holds `taps x 16`
    /// weights.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const S: usize, const P: usize>(
        at: *const f32,
        mut w: *const f32,
        g: &Geometry,
        (plane, width): (usize, usize),
    ) -> [[__m256; 2]; P] {
        let mut total = [[_mm256_setzero_ps(); 2]; P];
        for c0 in (0..g.channels).step_by(g.block) {
            let mut acc = [[_mm256_setzero_ps(); 2]; P];
            for c in c0..(c0 + g.block).min(g.channels) {
                for r in 0..g.kh {
                    let row = at.wrapping_add(c * plane + r * width);
                    for q in 0..g.kw {
                        // SAFETY: see above.
                        unsafe {
                            let (w0, w1) = (_mm256_loadu_ps(w), _mm256_loadu_ps(w.add(8)));
                            for (j, a) in acc.iter_mut().enumerate() {
                                let b = _mm256_broadcast_ss(&*row.add(j * S + q));
                                a[0] = _mm256_fmadd_ps(w0, b, a[0]);
                                a[1] = _mm256_fmadd_ps(w1, b, a[1]);
                            }
                        }
                        w = w.wrapping_add(FILTERS);
                    }
                }
            }
            if c0 == 0 {
                total = acc;
            } else {
                for (t, a) in total.iter_mut().zip(acc) {
                    t[0] = _mm256_add_ps(a[0], t[0]);
                    t[1] = _mm256_add_ps(a[1], t[1]);
                }
            }
        }
        total
    }
}

/// The padded input rows of a band of `count` output rows: `rows x width` per channel, `width`
/// covering every whole tile of `p` pixels of a row (`(ceil(ow / p) p - 1) stride + kw` columns).
fn band_shape(
    (kh, kw, stride): (usize, usize, usize),
    (ow, p): (usize, usize),
    count: usize,
) -> (usize, usize) {
    (
        (count.max(1) - 1) * stride + kh,
        (ow.div_ceil(p) * p - 1) * stride + kw,
    )
}

/// Values of scratch a task of `count` output rows needs (its band, every channel).
pub fn band_len((channels, kh, kw, stride): (u64, u64, u64, u64), ow: u64, count: u64) -> u64 {
    let p = tile_pixels(ow) as usize;
    let (rows, width) = band_shape(
        (kh as usize, kw as usize, stride as usize),
        (ow as usize, p),
        count as usize,
    );
    channels * (rows * width) as u64
}
