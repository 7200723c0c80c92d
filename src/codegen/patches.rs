//! Rust twins of the Cranelift packing kernels (`pack.rs`), which the Rust GEMM kernel sets use (see
//! `call.rs`). `PackPatches`: in AVX2, one panel per call, eight values per vector; with the AVX-512 set,
//! up to [`WIDE_PANELS`] panels per call, two neighbouring panels whose reads of a tap continue each other
//! copied as one run of sixteen values. `PackRows` ([`rows_entry`]): eight columns of a panel per step,
//! in AVX2 for both sets. The same values as the Cranelift kernels, bit for bit (`codegen::agree`).
//! Safety: as `twins.rs` (entered through `call.rs`'s table under its contract; handed out only when
//! the CPU has the instructions).

use super::avx2::{supported, KernelFn};

/// The most panels one call of the AVX-512 `PackPatches` takes (see `KernelId::PackPatches`).
pub const WIDE_PANELS: usize = 4;

/// `KernelId::PackPatches` in AVX2 (one panel per call) or, with `wide`, in AVX-512 (up to
/// [`WIDE_PANELS`]), with the panels a call takes; `None` when this CPU lacks AVX2 or FMA (or AVX-512F,
/// for `wide`).
pub fn entry(wide: bool) -> Option<(KernelFn, usize)> {
    if !supported() || (wide && !super::avx512::supported()) {
        return None;
    }
    imp::entry(wide)
}

/// `KernelId::PackRows` in AVX2, or `None` when this CPU lacks AVX2 or FMA.
pub fn rows_entry() -> Option<KernelFn> {
    if !supported() {
        return None;
    }
    imp::rows_entry()
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn entry(_: bool) -> Option<(super::KernelFn, usize)> {
        None
    }

    pub fn rows_entry() -> Option<super::KernelFn> {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::super::twins::imp::{evens, evens16, lanes, lanes16};
    use super::super::TAP_READ;
    use super::{KernelFn, WIDE_PANELS};

    pub fn entry(wide: bool) -> Option<(KernelFn, usize)> {
        Some(if wide {
            (pack_patches16, WIDE_PANELS)
        } else {
            (pack_patches, 1)
        })
    }

    pub fn rows_entry() -> Option<KernelFn> {
        Some(pack_rows)
    }

    /// `KernelId::PackRows`: `[x, out, rows, k0, k1, ld]`, for row `r < 4` and `p` in `k0..k1`,
    /// `out[(p - k0) * 4 + r] = r < rows ? x[r * ld + p] : 0`, the values the Cranelift kernel
    /// (`pack.rs`) writes. Eight columns per step: the panel's rows as four ymm (zeros for rows past
    /// `rows`, which are not read), transposed into eight columns of four in registers and stored as
    /// four ymm (the Cranelift kernel moves four columns per step in 128-bit vectors, and its panels
    /// of fewer than 4 rows value by value). The last 1 to 7 columns are read through lane masks and
    /// stored column by column. Each cache line of the panel's columns also prefetches the same line
    /// of the next panel's four rows, which the runtime packs next (`runtime::tasks`): a panel's rows
    /// are short runs (`kc` values) that the hardware prefetchers hardly learn, and packing waits on
    /// reading them (without the prefetch this twin was no faster than the Cranelift kernel: `perf` put
    /// it at 3.4% of a one-thread 256³ product against 2.9%). With it 2.0-2.2%, and the product's median
    /// run 84.0-85.1 -> 85.4-85.9 GFLOP/s (five alternating pairs of 3000 runs, one thread, Zen 4).
    ///
    /// # Safety
    /// `args` points to the kernel's 6 arguments, whose addresses satisfy `call.rs`'s contract (rows
    /// `0 .. rows` of `x` have columns `k0 .. k1` readable, `out` has `4 (k1 - k0)` values); the CPU has
    /// AVX2 (guaranteed by [`super::rows_entry`], the only way to get this pointer).
    unsafe extern "C" fn pack_rows(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 6 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 6) };
        let (rows, k0, k1, ld) = (v[2].clamp(0, 4) as usize, v[3], v[4], v[5] as isize);
        let x = (v[0] as *const f32).wrapping_offset(k0 as isize);
        let out = v[1] as *mut f32;
        let n = (k1 - k0).max(0) as usize;
        // SAFETY: as above; the CPU has AVX2.
        unsafe { pack_rows_avx2(x, out, rows, n, ld) }
    }

    /// [`pack_rows`] on `n` columns from `x` (column `k0` of row 0).
    ///
    /// # Safety
    /// Rows `0 .. rows` (at most 4) of `x`, `ld` values apart, have `n` readable values; `out` has `4 n`
    /// writable values; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn pack_rows_avx2(x: *const f32, out: *mut f32, rows: usize, n: usize, ld: isize) {
        let row = |r: usize| x.wrapping_offset(r as isize * ld);
        let mut i = 0;
        // SAFETY: columns i .. i + 8 < n of rows below `rows` are readable, and out's 32 values from
        // 4 i are writable.
        unsafe {
            while i + 8 <= n {
                if i % 16 == 0 {
                    // The next panel's rows (a prefetch never faults, past x's end included).
                    for r in 4..8 {
                        _mm_prefetch::<_MM_HINT_T0>(row(r).wrapping_add(i) as *const i8);
                    }
                }
                let r: [__m256; 4] = std::array::from_fn(|r| {
                    if r < rows {
                        _mm256_loadu_ps(row(r).add(i))
                    } else {
                        _mm256_setzero_ps()
                    }
                });
                let cols = transpose(r);
                for (j, c) in cols.iter().enumerate() {
                    _mm256_storeu_ps(out.add(4 * i + 8 * j), *c);
                }
                i += 8;
            }
        }
        if i < n {
            let left = n - i;
            let mask = lanes(left);
            // SAFETY: the mask reads columns i .. n of rows below `rows` only; out's 4 (n - i) values
            // from 4 i are written, column by column.
            unsafe {
                let r: [__m256; 4] = std::array::from_fn(|r| {
                    if r < rows {
                        _mm256_maskload_ps(row(r).add(i), mask)
                    } else {
                        _mm256_setzero_ps()
                    }
                });
                let cols = transpose(r);
                for c in 0..left {
                    let pair = cols[c / 2];
                    let half = if c % 2 == 0 {
                        _mm256_castps256_ps128(pair)
                    } else {
                        _mm256_extractf128_ps::<1>(pair)
                    };
                    _mm_storeu_ps(out.add(4 * (i + c)), half);
                }
            }
        }
    }

    /// Four rows of eight values as eight columns of four: `[c0 c1]`, `[c2 c3]`, `[c4 c5]`, `[c6 c7]`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn transpose([a, b, c, d]: [__m256; 4]) -> [__m256; 4] {
        // [a0 b0 a1 b1 | a4 b4 a5 b5], [a2 b2 a3 b3 | a6 b6 a7 b7], and the same of c and d.
        let (ab_lo, ab_hi) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
        let (cd_lo, cd_hi) = (_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
        // Columns 0 | 4, 1 | 5, 2 | 6 and 3 | 7.
        let c04 = _mm256_shuffle_ps::<0b01_00_01_00>(ab_lo, cd_lo);
        let c15 = _mm256_shuffle_ps::<0b11_10_11_10>(ab_lo, cd_lo);
        let c26 = _mm256_shuffle_ps::<0b01_00_01_00>(ab_hi, cd_hi);
        let c37 = _mm256_shuffle_ps::<0b11_10_11_10>(ab_hi, cd_hi);
        [
            _mm256_permute2f128_ps::<0x20>(c04, c15),
            _mm256_permute2f128_ps::<0x20>(c26, c37),
            _mm256_permute2f128_ps::<0x31>(c04, c15),
            _mm256_permute2f128_ps::<0x31>(c26, c37),
        ]
    }

    /// `KernelId::PackPatches`: `[x, out, taps, table, ci0, ci1, plane, runs, ld]`, the same values as
    /// the Cranelift kernel (`pack.rs`) writes, which it checks against bit for bit (`codegen::agree`).
    /// Tap by tap: a tap's kind is the same for every input channel, so each tap runs one loop over the
    /// channels without branches (the Cranelift kernel tests the kind per channel and tap), and 8 values
    /// are one ymm load and store.
    ///
    /// # Safety
    /// `args` points to the kernel's 9 arguments, whose addresses satisfy `call.rs`'s contract: `runs`
    /// and `table` describe reads inside each channel's plane (or -1 offsets), as `lower` builds them;
    /// the CPU has AVX2 (guaranteed by [`super::entry`], the only way to get this pointer).
    unsafe extern "C" fn pack_patches(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 9 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 9) };
        let x = v[0] as *const f32;
        let out = v[1] as *mut f32;
        let taps = v[2].max(0) as usize;
        let table = v[3] as *const i32;
        let (ci0, ci1) = (v[4].max(0) as usize, v[5].max(0) as usize);
        let plane = v[6].max(0) as usize;
        let runs = v[7] as *const i32;
        let ld = v[8].max(0) as usize;
        // SAFETY: AVX2 is present (see above); the addresses are valid per the contract.
        unsafe {
            for t in 0..taps {
                let r = runs.add(t * TAP_READ);
                let to = out.add(t * ld);
                let row = taps * ld;
                patches_tap(
                    (x.add(ci0 * plane), plane),
                    (to, row),
                    ci1.saturating_sub(ci0),
                    r,
                    table.add(t * 8),
                );
            }
        }
    }

    /// One tap of `PackPatches` for `channels` channels: channel `c` reads from `x + c * plane` and
    /// writes 8 values at `out + c * row`.
    #[target_feature(enable = "avx2")]
    unsafe fn patches_tap(
        (x, plane): (*const f32, usize),
        (out, row): (*mut f32, usize),
        channels: usize,
        r: *const i32,
        table: *const i32,
    ) {
        // SAFETY: `r` holds the tap's TAP_READ i32 and `table` its 8 offsets; every read below is one
        // the kind allows inside the plane (see `KernelId::PackPatches`), every write one of the 8
        // values of a channel's row of `out`.
        unsafe {
            let (a1, a2) = (*r.add(1) as isize, *r.add(2) as isize);
            let mask = |at: usize| _mm256_castsi256_ps(_mm256_loadu_si256(r.add(at) as *const _));
            // Kinds 2 and 3: two runs, read with stride 1 or 2, each kept under its lane mask (a generic
            // function, so each kind's read is inlined into its loop).
            #[target_feature(enable = "avx2")]
            #[inline]
            unsafe fn runs(
                read: impl Fn(*const f32) -> __m256,
                (x, plane, a1, a2): (*const f32, usize, isize, isize),
                (out, row, channels): (*mut f32, usize, usize),
                (m1, m2): (__m256, __m256),
            ) {
                // One run (`a1 == a2`, as `lower` writes a tap whose columns continue one start) is
                // one read under both masks, `(v & m1) | (v & m2)`, and no mask when they keep every
                // lane (a stride-2 panel inside the plane).
                let m1 = _mm256_or_ps(m1, if a1 == a2 { m2 } else { _mm256_setzero_ps() });
                let whole = _mm256_movemask_ps(m1) == 0xff;
                match (a1 == a2, whole) {
                    (true, true) => {
                        for c in 0..channels {
                            // SAFETY: as `patches_tap`'s reads and writes.
                            unsafe {
                                let v = read(x.add(c * plane).offset(a1));
                                _mm256_storeu_ps(out.add(c * row), v);
                            }
                        }
                    }
                    (true, false) => {
                        for c in 0..channels {
                            // SAFETY: as `patches_tap`'s reads and writes.
                            unsafe {
                                let v = _mm256_and_ps(read(x.add(c * plane).offset(a1)), m1);
                                _mm256_storeu_ps(out.add(c * row), v);
                            }
                        }
                    }
                    (false, _) => {
                        for c in 0..channels {
                            // SAFETY: as `patches_tap`'s reads and writes.
                            unsafe {
                                let xc = x.add(c * plane);
                                let v1 = _mm256_and_ps(read(xc.offset(a1)), m1);
                                let v2 = _mm256_and_ps(read(xc.offset(a2)), m2);
                                _mm256_storeu_ps(out.add(c * row), _mm256_or_ps(v1, v2));
                            }
                        }
                    }
                }
            }
            let at = (x, plane, a1, a2);
            let to = (out, row, channels);
            match *r {
                1 => {
                    let first = *table as isize;
                    for c in 0..channels {
                        let v = _mm256_loadu_ps(x.add(c * plane).offset(first));
                        _mm256_storeu_ps(out.add(c * row), v);
                    }
                }
                2 => runs(|p| _mm256_loadu_ps(p), at, to, (mask(4), mask(12))),
                3 => runs(|p| evens(p), at, to, (mask(4), mask(12))),
                _ => {
                    // The offsets read once, not per channel (the compiler cannot tell that the
                    // stores to `out` leave `table` alone).
                    let offsets: [i32; 8] = std::array::from_fn(|j| *table.add(j));
                    for c in 0..channels {
                        let xc = x.add(c * plane);
                        for (j, &o) in offsets.iter().enumerate() {
                            *out.add(c * row + j) = if o < 0 { 0.0 } else { *xc.add(o as usize) };
                        }
                    }
                }
            }
        }
    }

    /// `KernelId::PackPatches` with up to [`WIDE_PANELS`] panels per call: `[x, out, taps, table, ci0,
    /// ci1, plane, runs, ld, n]`, then `[x, table, runs]` for each panel `1 .. n`; panel `j`'s columns go
    /// to `out + 8 j`. Tap by tap, panels `j` and `j + 1` (`j` even) whose reads are one run each (kind 1,
    /// or kinds 2 and 3 with `a1 == a2`) with the same step, the second starting where the first ends,
    /// are one run of 16 values per channel: one zmm load (two for stride 2, then one `vpermt2ps`) and
    /// one store, its lanes kept under the panels' masks. The other panels go as in [`pack_patches`].
    /// Each value is the one a call per panel writes (`codegen::agree`).
    ///
    /// # Safety
    /// As [`pack_patches`], for each panel; `args` holds `10 + 3 (n - 1)` arguments; the CPU has AVX-512F
    /// (guaranteed by [`super::entry`]).
    unsafe extern "C" fn pack_patches16(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's first 10 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 10) };
        let n = (v[9].max(1) as usize).min(WIDE_PANELS);
        // SAFETY: and to 3 more per panel after the first.
        let more = unsafe { std::slice::from_raw_parts(args.add(10), 3 * (n - 1)) };
        let (out, taps) = (v[1] as *mut f32, v[2].max(0) as usize);
        let (ci0, ci1) = (v[4].max(0) as usize, v[5].max(0) as usize);
        let (plane, ld) = (v[6].max(0) as usize, v[8].max(0) as usize);
        let channels = ci1.saturating_sub(ci0);
        let mut panels = [(v[0], v[3], v[7]); WIDE_PANELS];
        for (j, p) in more.chunks_exact(3).enumerate() {
            panels[j + 1] = (p[0], p[1], p[2]);
        }
        // SAFETY: the arguments as described above; the CPU has AVX-512F (see above).
        unsafe {
            pack16(
                (&panels[..n], ci0, plane),
                (out, taps * ld, ld),
                taps,
                channels,
            )
        }
    }

    /// The taps of `panels` (input, offsets and reads of each, first channel `ci0`) into the call's rows
    /// of `row` values from `out`, tap `t` at `out + t * ld`.
    ///
    /// # Safety
    /// As [`pack_patches16`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack16(
        (panels, ci0, plane): (&[(i64, i64, i64)], usize, usize),
        (out, row, ld): (*mut f32, usize, usize),
        taps: usize,
        channels: usize,
    ) {
        let n = panels.len();
        // Panel `j`'s first channel, runs and offsets of tap `t`.
        let tap = |j: usize, t: usize| {
            let (x, table, runs) = panels[j];
            let x = (x as *const f32).wrapping_add(ci0 * plane);
            let r = (runs as *const i32).wrapping_add(t * TAP_READ);
            (x, r, (table as *const i32).wrapping_add(t * 8))
        };
        for t in 0..taps {
            let to = out.wrapping_add(t * ld);
            let mut j = 0;
            while j < n {
                let (x, r, table) = tap(j, t);
                // SAFETY: `r` and `table` hold the tap's TAP_READ and 8 i32 (as for panel j + 1 below).
                let first = unsafe { one_run(x, r, table) };
                if let (Some((p, step, m)), true) = (first, j + 1 < n) {
                    let (x2, r2, table2) = tap(j + 1, t);
                    // SAFETY: as above.
                    if let Some((p2, step2, m2)) = unsafe { one_run(x2, r2, table2) } {
                        if step == step2 && p2 == p.wrapping_add(8 * step) {
                            let mask = m | (m2 << 8);
                            // SAFETY: the 16 (stride 2: 32) values from `p` are the two panels' reads,
                            // which their kinds keep inside each channel's plane; the writes are both
                            // panels' 8 columns of each channel's row.
                            unsafe {
                                run16((p, plane), (to.add(8 * j), row), channels, step, mask)
                            };
                            j += 2;
                            continue;
                        }
                    }
                }
                // SAFETY: as `pack_patches`, for panel `j` alone (`r` holds the tap's TAP_READ i32).
                unsafe {
                    match *r {
                        kind @ (4 | 5) => {
                            let at = (to.add(8 * j), row, channels);
                            strided8((x, plane), at, kind as usize - 1, r)
                        }
                        _ => patches_tap((x, plane), (to.add(8 * j), row), channels, r, table),
                    }
                };
                j += 1;
            }
        }
    }

    /// A tap read as one run: its first value, its step (1 or 2) and the lanes it keeps (bit `j`: column
    /// `j`), or `None` for two runs or value by value. The address is only computed, not read.
    ///
    /// # Safety
    /// `r` holds the tap's [`TAP_READ`] i32 and `table` its 8 offsets.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn one_run(
        x: *const f32,
        r: *const i32,
        table: *const i32,
    ) -> Option<(*const f32, usize, u16)> {
        // SAFETY: see above.
        unsafe {
            match *r {
                1 => Some((x.wrapping_offset(*table as isize), 1, 0xff)),
                kind @ (2 | 3) if *r.add(1) == *r.add(2) => {
                    let m1 = _mm256_loadu_si256(r.add(4) as *const __m256i);
                    let m2 = _mm256_loadu_si256(r.add(12) as *const __m256i);
                    let either = _mm256_castsi256_ps(_mm256_or_si256(m1, m2));
                    let keep = _mm256_movemask_ps(either) as u16;
                    Some((
                        x.wrapping_offset(*r.add(1) as isize),
                        kind as usize - 1,
                        keep,
                    ))
                }
                _ => None,
            }
        }
    }

    /// A tap of kind 4 or 5 (`step` 3 or 4): channel `c`'s columns `j` read `x + c * plane + a + step * j`
    /// for the start `a` of their run (`a1` under `mask1`, `a2` under `mask2`, else +0.0), each run as
    /// two vector loads (`8 step` values) and one `vpermt2ps`.
    ///
    /// # Safety
    /// `r` holds the tap's [`TAP_READ`] i32, whose runs' `8 step` values lie in each channel's plane;
    /// `out + c * row` has 8 writable values per channel.
    #[target_feature(enable = "avx512f")]
    unsafe fn strided8(
        (x, plane): (*const f32, usize),
        (out, row, channels): (*mut f32, usize, usize),
        step: usize,
        r: *const i32,
    ) {
        // Lanes j < 8 of the run: 3 j, or 4 j (step 3 or 4).
        const INDEX: [[i32; 16]; 2] = [
            [0, 3, 6, 9, 12, 15, 18, 21, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        // SAFETY: 16 i32 of a constant.
        let index = unsafe { _mm512_loadu_si512(INDEX[(step == 4) as usize].as_ptr() as *const _) };
        let high = lanes16(8 * step - 16);
        // SAFETY: see above; the loads read `8 step` values from each run's start.
        unsafe {
            let (a1, a2) = (*r.add(1) as isize, *r.add(2) as isize);
            let keep = |at: usize| {
                let m = _mm256_loadu_si256(r.add(at) as *const __m256i);
                _mm256_movemask_ps(_mm256_castsi256_ps(m)) as __mmask16
            };
            let (m1, m2) = (keep(4), keep(12));
            let read = |p: *const f32| {
                let (lo, hi) = (_mm512_loadu_ps(p), _mm512_maskz_loadu_ps(high, p.add(16)));
                _mm512_permutex2var_ps(lo, index, hi)
            };
            for c in 0..channels {
                let xc = x.add(c * plane);
                let mut v =
                    _mm512_maskz_mov_ps(if a1 == a2 { m1 | m2 } else { m1 }, read(xc.offset(a1)));
                if a2 != a1 {
                    v = _mm512_mask_mov_ps(v, m2, read(xc.offset(a2)));
                }
                _mm256_storeu_ps(out.add(c * row), _mm512_castps512_ps256(v));
            }
        }
    }

    /// Two panels' tap as one run: channel `c` reads 16 values from `x + c * plane` (every second of 32
    /// with `step` 2), keeps the lanes of `mask` (the others +0.0) and writes them at `out + c * row`.
    ///
    /// # Safety
    /// The reads (16 or 32 values per channel) are readable and the writes writable.
    #[target_feature(enable = "avx512f")]
    unsafe fn run16(
        (x, plane): (*const f32, usize),
        (out, row): (*mut f32, usize),
        channels: usize,
        step: usize,
        mask: u16,
    ) {
        // SAFETY: see above.
        unsafe {
            match (step, mask) {
                (1, 0xffff) => {
                    for c in 0..channels {
                        let v = _mm512_loadu_ps(x.add(c * plane));
                        // The next call's read of this tap (32 columns on): each channel's run is in
                        // another page, too many streams for the hardware prefetchers. 64 -> 64 3x3 at
                        // 56x56 alone (one thread, median of 300 paired runs) 3.7% faster, at 28x28 1%;
                        // ResNet-18 on two threads (medians) 2.3%. A prefetch never faults.
                        _mm_prefetch::<_MM_HINT_T0>(x.wrapping_add(c * plane + 32) as *const i8);
                        _mm512_storeu_ps(out.add(c * row), v);
                    }
                }
                (1, _) => {
                    for c in 0..channels {
                        let v = _mm512_maskz_loadu_ps(mask, x.add(c * plane));
                        _mm512_storeu_ps(out.add(c * row), v);
                    }
                }
                _ => {
                    for c in 0..channels {
                        let xc = x.add(c * plane);
                        let v = evens16((_mm512_loadu_ps(xc), _mm512_loadu_ps(xc.add(16))));
                        _mm512_storeu_ps(out.add(c * row), _mm512_maskz_mov_ps(mask, v));
                    }
                }
            }
        }
    }
}
