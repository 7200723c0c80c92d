//! The GEMM macro-kernel in 256-bit AVX2 + FMA, written in Rust with `std::arch` and compiled into nnc.
//!
//! Why it exists: Cranelift's x64 backend lowers only 128-bit vectors, so its kernel (`gemm.rs`, a `4 x 8`
//! tile in eight F32X4 accumulators) has eight independent FMA chains. On a CPU whose FMA latency is 5
//! cycles with two pipes (Zen 1), ten chains are needed to keep the pipes busy, so that kernel is
//! latency-bound. This one holds an `8 x 8` tile of C in eight ymm accumulators (sixteen 128-bit chains):
//! per k, one load of B's row and a broadcast of each of the 8 A values (two 4-row panels, so the packing
//! layouts stay those of `pack.rs`) feed eight fused multiply-adds. A leftover panel uses a `4 x 8` tile.
//!
//! That tile spends one `vbroadcastss` per FMA, and on Zen 1 a ymm broadcast from memory also takes an FP
//! pipe, which caps it near 32 GFLOP/s. So the kernel also takes two B panels per call (9 to 16 columns,
//! the 14th argument `b_next_bytes`; what the runtime sends when [`Table::gemm_cols`](super::Table::gemm_cols)
//! says so) and runs them as `4 x 16` tiles: per k, two loads of B, four broadcasts of A each feeding two
//! FMAs, eight ymm accumulators (15 of the 16 ymm registers in use).
//!
//! It computes exactly [`KernelId::Gemm`](super::KernelId::Gemm): per element one FMA per k in ascending
//! order, then the same epilogue operations in the same order as the Cranelift kernel (`v + old`, then
//! `fma(v, row_scale, row_shift) + col_shift`, then the activation), so both give the same bits. Edge
//! tiles are computed whole in registers (A's rows are zero-padded to the panel, B's rows have 8 readable
//! values) and loaded and stored through lane masks, so only C's existing elements are read or written.
//! Sigmoid and Tanh epilogues are not implemented here: those kernels stay Cranelift's (see [`entry`]).
//!
//! Safety: the entry points are `unsafe extern "C" fn(*const i64)`, entered through `call.rs`'s table
//! under its contract (every address valid and sized per the kernel's documented arguments). [`entry`]
//! hands them out only when the CPU has AVX2 and FMA, so the `target_feature` code never runs elsewhere.

use super::ActKind;

/// A kernel entry point, as `call.rs` stores it.
pub type KernelFn = unsafe extern "C" fn(*const i64);

/// Whether this CPU runs the AVX2 + FMA kernels.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The AVX2 macro-kernel with epilogue `act`, or `None` when this CPU lacks AVX2 or FMA, or for the
/// activations implemented only by the Cranelift kernel (Sigmoid, Tanh).
pub fn entry(act: ActKind) -> Option<KernelFn> {
    if !supported() {
        return None;
    }
    imp::entry(act)
}

/// `KernelId::PackPatches` in AVX2, or `None` when this CPU lacks AVX2 or FMA. The Rust GEMM sets use it
/// with their kernels (see [`pack_patches`](imp::pack_patches)).
pub fn patches_entry() -> Option<KernelFn> {
    if !supported() {
        return None;
    }
    imp::patches_entry()
}

/// `KernelId::MaxPool` (`max`) or `KernelId::AvgPool` in AVX2, or `None` when this CPU lacks AVX2 or FMA.
/// The Rust GEMM sets use them (see [`pool`](imp::pool)).
pub fn pool_entry(max: bool) -> Option<KernelFn> {
    if !supported() {
        return None;
    }
    imp::pool_entry(max)
}

/// `KernelId::MaxPool3` (`max`) or `KernelId::AvgPool3` in AVX2, or `None` when this CPU lacks AVX2 or
/// FMA (see [`pool_3x3`](imp::pool_3x3)).
pub fn pool_3x3_entry(max: bool) -> Option<KernelFn> {
    if !supported() {
        return None;
    }
    imp::pool_3x3_entry(max)
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn entry(_: super::ActKind) -> Option<super::KernelFn> {
        None
    }

    pub fn patches_entry() -> Option<super::KernelFn> {
        None
    }

    pub fn pool_entry(_: bool) -> Option<super::KernelFn> {
        None
    }

    pub fn pool_3x3_entry(_: bool) -> Option<super::KernelFn> {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{ActKind, KernelFn};

    /// 4-row panels per tile.
    const PANELS: usize = 2;

    const IDENTITY: u8 = 0;
    const RELU: u8 = 1;
    const LEAKY: u8 = 2;

    pub fn entry(act: ActKind) -> Option<KernelFn> {
        match act {
            ActKind::Identity => Some(gemm::<IDENTITY>),
            ActKind::Relu => Some(gemm::<RELU>),
            ActKind::LeakyRelu => Some(gemm::<LEAKY>),
            ActKind::Sigmoid | ActKind::Tanh => None,
        }
    }

    pub fn patches_entry() -> Option<KernelFn> {
        Some(pack_patches)
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
    /// the CPU has AVX2 (guaranteed by [`super::patches_entry`], the only way to get this pointer).
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
                let r = runs.add(t * super::super::TAP_READ);
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
            // The even lanes of the 16 values at `p`, in order.
            let evens = |p: *const f32| {
                let (lo, hi) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                let e = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)))
            };
            match *r {
                1 => {
                    let first = *table as isize;
                    for c in 0..channels {
                        let v = _mm256_loadu_ps(x.add(c * plane).offset(first));
                        _mm256_storeu_ps(out.add(c * row), v);
                    }
                }
                2 => {
                    let (m1, m2) = (mask(4), mask(12));
                    for c in 0..channels {
                        let xc = x.add(c * plane);
                        let v1 = _mm256_and_ps(_mm256_loadu_ps(xc.offset(a1)), m1);
                        let v2 = _mm256_and_ps(_mm256_loadu_ps(xc.offset(a2)), m2);
                        _mm256_storeu_ps(out.add(c * row), _mm256_or_ps(v1, v2));
                    }
                }
                3 => {
                    let (m1, m2) = (mask(4), mask(12));
                    for c in 0..channels {
                        let xc = x.add(c * plane);
                        let v1 = _mm256_and_ps(evens(xc.offset(a1)), m1);
                        let v2 = _mm256_and_ps(evens(xc.offset(a2)), m2);
                        _mm256_storeu_ps(out.add(c * row), _mm256_or_ps(v1, v2));
                    }
                }
                _ => {
                    for c in 0..channels {
                        let xc = x.add(c * plane);
                        for j in 0..8 {
                            let o = *table.add(j);
                            *out.add(c * row + j) = if o < 0 { 0.0 } else { *xc.add(o as usize) };
                        }
                    }
                }
            }
        }
    }

    pub fn pool_entry(max: bool) -> Option<KernelFn> {
        Some(if max { pool::<true> } else { pool::<false> })
    }

    pub fn pool_3x3_entry(max: bool) -> Option<KernelFn> {
        Some(if max {
            pool_3x3::<true>
        } else {
            pool_3x3::<false>
        })
    }

    /// `KernelId::MaxPool3` (`MAX`) or `AvgPool3`: `[x, y, hw, w, planes, edges, div, v]`, the Cranelift
    /// kernel's two passes (`pool.rs`) with the same operations in the same order, eight lanes wide.
    ///
    /// # Safety
    /// `args` points to the kernel's 8 arguments, whose addresses satisfy `call.rs`'s contract (`v`
    /// scratch for `hw + 8` values, `edges` four i32 arrays of `hw`, `div` `hw` values, `h, w >= 2`); the
    /// CPU has AVX2 (guaranteed by [`super::pool_3x3_entry`], the only way to get this pointer).
    unsafe extern "C" fn pool_3x3<const MAX: bool>(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 8 arguments (see above).
        let a = unsafe { std::slice::from_raw_parts(args, 8) };
        let n = |i: usize| a[i].max(0) as usize;
        let (x, y) = (a[0] as *const f32, a[1] as *mut f32);
        let (hw, w, planes) = (n(2), n(3), n(4));
        let (edges, div) = (a[5] as *const f32, a[6] as *const f32);
        // SAFETY: AVX2 is present and the addresses are valid (see above); `v` has four values of room
        // on each side.
        unsafe {
            let v = (a[7] as *mut f32).add(4);
            pool_3x3_planes::<MAX>((x, y), (hw, w, planes), edges, div, v)
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn pool_3x3_planes<const MAX: bool>(
        (x, y): (*const f32, *mut f32),
        (hw, w, planes): (usize, usize, usize),
        edges: *const f32,
        div: *const f32,
        v: *mut f32,
    ) {
        let init = if MAX { f32::NEG_INFINITY } else { 0.0 };
        // SAFETY: reads stay inside a plane of `x`, `v[-1 ..= hw]`, `edges` and `div`; writes inside
        // `v[0..hw]` and a plane of `y` (see `pool_3x3`).
        unsafe {
            for q in 0..planes {
                let (xq, yq) = (x.add(q * hw), y.add(q * hw));
                // Columns: rows y-1, y, y+1 where they exist, in that order.
                for (from, to, up, down) in [
                    (0, w, false, true),
                    (w, hw - w, true, true),
                    (hw - w, hw, true, false),
                ] {
                    let mut i = from;
                    while i + 8 <= to {
                        let mut acc = _mm256_set1_ps(init);
                        if up {
                            acc = combine8::<MAX>(acc, _mm256_loadu_ps(xq.add(i - w)));
                        }
                        acc = combine8::<MAX>(acc, _mm256_loadu_ps(xq.add(i)));
                        if down {
                            acc = combine8::<MAX>(acc, _mm256_loadu_ps(xq.add(i + w)));
                        }
                        _mm256_storeu_ps(v.add(i), acc);
                        i += 8;
                    }
                    for i in i..to {
                        let mut acc = init;
                        if up {
                            acc = combine1::<MAX>(acc, *xq.add(i - w));
                        }
                        acc = combine1::<MAX>(acc, *xq.add(i));
                        if down {
                            acc = combine1::<MAX>(acc, *xq.add(i + w));
                        }
                        *v.add(i) = acc;
                    }
                }
                // Rows: left, centre, right neighbours, masked at row edges: `(t & mask) | fill`.
                let edge = |k: usize| edges.add(k * hw);
                let mut i = 0;
                while i + 8 <= hw {
                    let mut acc = _mm256_set1_ps(init);
                    for (d, k) in [(-1isize, Some(0)), (0, None), (1, Some(2))] {
                        let mut t = _mm256_loadu_ps(v.offset(i as isize + d));
                        if let Some(k) = k {
                            let m = _mm256_loadu_ps(edge(k).add(i));
                            let f = _mm256_loadu_ps(edge(k + 1).add(i));
                            t = _mm256_or_ps(_mm256_and_ps(t, m), f);
                        }
                        acc = combine8::<MAX>(acc, t);
                    }
                    if !MAX {
                        acc = _mm256_div_ps(acc, _mm256_loadu_ps(div.add(i)));
                    }
                    _mm256_storeu_ps(yq.add(i), acc);
                    i += 8;
                }
                for i in i..hw {
                    let mut acc = init;
                    for (d, k) in [(-1isize, Some(0)), (0, None), (1, Some(2))] {
                        let mut t = *v.offset(i as isize + d);
                        if let Some(k) = k {
                            let m = (*edge(k).add(i)).to_bits();
                            let f = (*edge(k + 1).add(i)).to_bits();
                            t = f32::from_bits((t.to_bits() & m) | f);
                        }
                        acc = combine1::<MAX>(acc, t);
                    }
                    if !MAX {
                        acc /= *div.add(i);
                    }
                    *yq.add(i) = acc;
                }
            }
        }
    }

    /// `KernelId::MaxPool` / `AvgPool`'s arguments, decoded.
    struct Pool {
        x: *const f32,
        y: *mut f32,
        oh: usize,
        ow: usize,
        iw: usize,
        rows: *const i32,
        cols: *const i32,
        div: *const f32,
        planes: usize,
        in_plane: usize,
        row: *mut f32,
        /// `[v_lo, v_hi, v_start, v_count, v_step, v_stride]`.
        vector: [usize; 6],
    }

    /// `KernelId::MaxPool` (`MAX`) or `AvgPool`: the Cranelift kernel's two passes (`pool.rs`) with the
    /// same operations on every output in the same order, so the same bits (`codegen::agree`), eight
    /// lanes wide: per output row the window's input rows reduced into `row`, then each output column's
    /// entries of `row`, eight columns at a time where windows are whole and one or two columns apart.
    ///
    /// # Safety
    /// `args` points to the kernel's 17 arguments, whose addresses satisfy `call.rs`'s contract with
    /// window tables as `lower` builds them (every window inside the plane, `row` holding `iw` values);
    /// the CPU has AVX2 (guaranteed by [`super::pool_entry`], the only way to get this pointer).
    unsafe extern "C" fn pool<const MAX: bool>(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 17 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 17) };
        let n = |i: usize| v[i].max(0) as usize;
        let p = Pool {
            x: v[0] as *const f32,
            y: v[1] as *mut f32,
            oh: n(2),
            ow: n(3),
            iw: n(4),
            rows: v[5] as *const i32,
            cols: v[6] as *const i32,
            div: v[7] as *const f32,
            planes: n(8),
            in_plane: n(9),
            row: v[10] as *mut f32,
            vector: [n(11), n(12), n(13), n(14), n(15), n(16)],
        };
        // SAFETY: AVX2 is present and the addresses are valid (see above).
        unsafe { pool_planes::<MAX>(&p) }
    }

    /// `acc` combined with `v` as `pool.rs`'s `combine`: the maximum (`v` wins when greater or NaN) or
    /// the sum.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn combine8<const MAX: bool>(acc: __m256, v: __m256) -> __m256 {
        if MAX {
            let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(v, acc);
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
            _mm256_blendv_ps(acc, v, _mm256_or_ps(gt, nan))
        } else {
            _mm256_add_ps(acc, v)
        }
    }

    /// [`combine8`] on one value.
    #[inline]
    fn combine1<const MAX: bool>(acc: f32, v: f32) -> f32 {
        if MAX {
            if v > acc || v.is_nan() {
                v
            } else {
                acc
            }
        } else {
            acc + v
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn pool_planes<const MAX: bool>(p: &Pool) {
        let init = if MAX { f32::NEG_INFINITY } else { 0.0 };
        let [v_lo, v_hi, v_start, v_count, v_step, v_stride] = p.vector;
        // SAFETY: every read is inside a plane of `x` (whole windows from the tables) or the first
        // `iw` values of `row`, every write inside `row` or a plane of `y` (see `pool`).
        unsafe {
            let triple = |t: *const i32, i: usize| {
                let e = t.add(3 * i);
                (*e as usize, (*e.add(1)).max(0) as usize, *e.add(2) as usize)
            };
            // The reduction of `count` values `at(j)`, ascending `j`.
            let reduce1 = |count: usize, at: &dyn Fn(usize) -> f32| {
                (0..count).fold(init, |acc, j| combine1::<MAX>(acc, at(j)))
            };
            for q in 0..p.planes {
                let xq = p.x.add(q * p.in_plane);
                let yq = p.y.add(q * p.oh * p.ow);
                for r in 0..p.oh {
                    let (hs, hc, hstep) = triple(p.rows, r);
                    // Pass 1: the window's rows reduced into `row`, column by column.
                    let src = |j: usize, c: usize| xq.add((hs + j * hstep) * p.iw + c);
                    let mut c = 0;
                    while c + 8 <= p.iw {
                        let mut acc = _mm256_set1_ps(init);
                        for j in 0..hc {
                            acc = combine8::<MAX>(acc, _mm256_loadu_ps(src(j, c)));
                        }
                        _mm256_storeu_ps(p.row.add(c), acc);
                        c += 8;
                    }
                    for c in c..p.iw {
                        *p.row.add(c) = reduce1(hc, &|j| *src(j, c));
                    }
                    // Pass 2: each output column from its entries of `row`.
                    let yr = yq.add(r * p.ow);
                    let rdiv = *p.div.add(r);
                    let finish1 = |c: usize, v: f32| {
                        *yr.add(c) = if MAX {
                            v
                        } else {
                            v / (rdiv * *p.div.add(p.oh + c))
                        };
                    };
                    let finish8 = |c: usize, v: __m256| {
                        let v = if MAX {
                            v
                        } else {
                            let d = _mm256_loadu_ps(p.div.add(p.oh + c));
                            _mm256_div_ps(v, _mm256_mul_ps(_mm256_set1_ps(rdiv), d))
                        };
                        _mm256_storeu_ps(yr.add(c), v);
                    };
                    let table_column = |c: usize| {
                        let (ws, wc, wstep) = triple(p.cols, c);
                        finish1(c, reduce1(wc, &|j| *p.row.add(ws + j * wstep)));
                    };
                    (0..v_lo.min(p.ow)).for_each(table_column);
                    (v_hi.max(v_lo)..p.ow).for_each(table_column);
                    // Columns v_lo..v_hi: window c starts at v_start + (c - v_lo) * v_stride.
                    let first = |c: usize| v_start + (c - v_lo) * v_stride;
                    let mut c = v_lo;
                    if v_stride == 1 {
                        while c + 8 <= v_hi {
                            let mut acc = _mm256_set1_ps(init);
                            for j in 0..v_count {
                                let at = p.row.add(first(c) + j * v_step);
                                acc = combine8::<MAX>(acc, _mm256_loadu_ps(at));
                            }
                            finish8(c, acc);
                            c += 8;
                        }
                    } else if v_stride == 2 {
                        // Eight columns read 16 positions from their first; whole groups while
                        // they stay inside the run (c + 8 < v_hi).
                        while c + 8 < v_hi {
                            let mut acc = _mm256_set1_ps(init);
                            for j in 0..v_count {
                                let at = p.row.add(first(c) + j * v_step);
                                let (lo, hi) = (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8)));
                                let e = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
                                let e = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e));
                                acc = combine8::<MAX>(acc, _mm256_castpd_ps(e));
                            }
                            finish8(c, acc);
                            c += 8;
                        }
                    }
                    for c in c..v_hi {
                        finish1(c, reduce1(v_count, &|j| *p.row.add(first(c) + j * v_step)));
                    }
                }
            }
        }
    }

    /// The kernel's arguments (`KernelId::Gemm`), decoded.
    struct Args {
        a: *const f32,
        b: *const f32,
        b_stride: isize,
        /// Bytes from a row of B's first panel to the same row of its second (read only when cols > 8).
        b_next: isize,
        c: *mut f32,
        ldc: isize,
        rows: usize,
        cols: usize,
        kc: usize,
        add: bool,
        last: bool,
        row_scale: *const f32,
        row_shift: *const f32,
        col_shift: *const f32,
        slope: f32,
    }

    /// # Safety
    /// `args` points to the arguments of `KernelId::Gemm` (13, or 14 when cols > 8), and their addresses
    /// satisfy `call.rs`'s contract; the CPU has AVX2 and FMA (guaranteed by [`super::entry`], the only way
    /// to get this pointer).
    unsafe extern "C" fn gemm<const ACT: u8>(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 13 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 13) };
        let cols = v[6].clamp(0, super::super::GEMM_WIDE_N as i64) as usize;
        // SAFETY: with more than 8 columns the caller passes the 14th argument (see above).
        let b_next = if cols > 8 {
            unsafe { *args.add(13) }
        } else {
            0
        };
        let a = Args {
            a: v[0] as *const f32,
            b: v[1] as *const f32,
            b_stride: v[2] as isize,
            b_next: b_next as isize,
            c: v[3] as *mut f32,
            ldc: v[4] as isize,
            rows: v[5].max(0) as usize,
            cols,
            kc: v[7].max(0) as usize,
            add: v[8] & 1 != 0,
            last: v[8] & 2 != 0,
            row_scale: v[9] as *const f32,
            row_shift: v[10] as *const f32,
            col_shift: v[11] as *const f32,
            slope: f32::from_bits(v[12] as u32),
        };
        // SAFETY: AVX2 and FMA are present (see above); the addresses are valid per the contract.
        unsafe {
            match a.cols {
                0 => {}
                1 => narrow::<1, 12, ACT>(&a),
                2 => narrow::<2, 6, ACT>(&a),
                3 => narrow::<3, 4, ACT>(&a),
                4 => narrow::<4, 3, ACT>(&a),
                5..=8 => panels::<ACT>(&a),
                _ => wide::<ACT>(&a),
            }
        }
    }

    /// Every row of the block: pairs of 4-row panels as `8 x 8` tiles, then a last panel as a `4 x 8` tile.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn panels<const ACT: u8>(a: &Args) {
        let panels = a.rows.div_ceil(4);
        let mut p = 0;
        while p + PANELS <= panels {
            // SAFETY: panels p .. p + PANELS exist (packed, zero-padded), rows 4p.. are C's rows.
            unsafe { tile::<PANELS, ACT>(a, p) };
            p += PANELS;
        }
        // SAFETY: as above, for the panels left.
        unsafe {
            match panels - p {
                2 => tile::<2, ACT>(a, p),
                1 => tile::<1, ACT>(a, p),
                _ => {}
            }
        }
    }

    /// The lanes of a half tile's `cols` columns.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn lanes(cols: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(cols as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// The `4P x 8` tile of panels `p0 .. p0 + P`: the k loop, then the store.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const P: usize, const ACT: u8>(a: &Args, p0: usize) {
        let mut acc = [[_mm256_setzero_ps(); 4]; P];
        let panel = a.kc * 4;
        // SAFETY: panel p0 + q holds kc * 4 values for q < P, and B's kc rows have 8 values each.
        unsafe {
            let ap = a.a.add(p0 * panel);
            let mut bp = a.b;
            for k in 0..a.kc {
                let bv = _mm256_loadu_ps(bp);
                for (q, acc) in acc.iter_mut().enumerate() {
                    let x = ap.add(q * panel + k * 4);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*x.add(r)), bv, *acc);
                    }
                }
                bp = bp.byte_offset(a.b_stride);
            }
        }
        let row0 = p0 * 4;
        let rows = a.rows.min(row0 + 4 * P) - row0;
        let mask = lanes(a.cols);
        // Constant indices (the loops unroll) keep the accumulators in registers: an iterator over the
        // array with a run-time length makes LLVM keep it in memory and store it on every k step.
        #[allow(clippy::needless_range_loop)]
        for q in 0..P {
            for r in 0..4 {
                if 4 * q + r < rows {
                    // SAFETY: row row0 + 4q + r < rows of C, masked to its cols columns.
                    unsafe { store::<ACT>(a, row0 + 4 * q + r, 0, a.cols, acc[q][r], mask) };
                }
            }
        }
    }

    /// Every row of a block 9 to 16 columns wide, as `4 x 16` tiles: per k, two loads of B (one per
    /// panel), four broadcasts of A, each feeding two FMAs.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn wide<const ACT: u8>(a: &Args) {
        let panel = a.kc * 4;
        let hi = a.cols - 8;
        let mask = lanes(hi);
        for p in 0..a.rows.div_ceil(4) {
            let mut lo_acc = [_mm256_setzero_ps(); 4];
            let mut hi_acc = [_mm256_setzero_ps(); 4];
            // SAFETY: panel p holds kc * 4 values; both B panels' kc rows have 8 values each.
            unsafe {
                let mut x = a.a.add(p * panel);
                let mut bp = a.b;
                for _ in 0..a.kc {
                    let b0 = _mm256_loadu_ps(bp);
                    let b1 = _mm256_loadu_ps(bp.byte_offset(a.b_next));
                    for r in 0..4 {
                        let s = _mm256_broadcast_ss(&*x.add(r));
                        lo_acc[r] = _mm256_fmadd_ps(s, b0, lo_acc[r]);
                        hi_acc[r] = _mm256_fmadd_ps(s, b1, hi_acc[r]);
                    }
                    x = x.add(4);
                    bp = bp.byte_offset(a.b_stride);
                }
            }
            let row0 = p * 4;
            let full = lanes(8);
            #[allow(clippy::needless_range_loop)]
            for r in 0..4 {
                if row0 + r < a.rows {
                    // SAFETY: row row0 + r < rows of C; columns 0..8 and 8..cols are C's.
                    unsafe {
                        store::<ACT>(a, row0 + r, 0, 8, lo_acc[r], full);
                        store::<ACT>(a, row0 + r, 8, hi, hi_acc[r], mask);
                    }
                }
            }
        }
    }

    /// Every row of a block 1 to 4 columns wide (the last few columns of a row of C, e.g. 49 = 3 x 16 + 1),
    /// with the vector lanes along rows instead of columns: per k and 4-row panel, one 128-bit load of A's
    /// packed column feeds one FMA per column, with B's value broadcast. A `4 x 8` tile would spend four
    /// ymm broadcasts and four ymm FMAs (12 FP pipe slots on Zen 1) on 8 columns of which 1 to 4 exist;
    /// here the same rows take `C` xmm FMAs. `P` panels at a time give `P x C` independent FMA chains.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn narrow<const C: usize, const P: usize, const ACT: u8>(a: &Args) {
        let panels = a.rows.div_ceil(4);
        let mut p = 0;
        while p + P <= panels {
            // SAFETY: panels p .. p + P exist (packed, zero-padded), rows 4p.. are C's rows.
            unsafe { narrow_tile::<C, P, ACT>(a, p) };
            p += P;
        }
        while p + 2 <= panels {
            // SAFETY: as above, for panels p .. p + 2.
            unsafe { narrow_tile::<C, 2, ACT>(a, p) };
            p += 2;
        }
        if p < panels {
            // SAFETY: as above, for panel p.
            unsafe { narrow_tile::<C, 1, ACT>(a, p) };
        }
    }

    /// Panels `p0 .. p0 + P` by `C` columns: the k loop, then per panel and column the accumulate,
    /// epilogue and store of its (up to) four rows.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn narrow_tile<const C: usize, const P: usize, const ACT: u8>(a: &Args, p0: usize) {
        let mut acc = [[_mm_setzero_ps(); C]; P];
        let panel = a.kc * 4;
        // SAFETY: panel p0 + q holds kc * 4 values for q < P, and B's kc rows have C <= 8 readable values.
        unsafe {
            let ap = a.a.add(p0 * panel);
            let mut bp = a.b;
            for k in 0..a.kc {
                let mut bv = [_mm_setzero_ps(); C];
                for (c, bv) in bv.iter_mut().enumerate() {
                    *bv = _mm_broadcast_ss(&*bp.add(c));
                }
                #[allow(clippy::needless_range_loop)]
                for q in 0..P {
                    let x = _mm_loadu_ps(ap.add(q * panel + k * 4));
                    for c in 0..C {
                        acc[q][c] = _mm_fmadd_ps(x, bv[c], acc[q][c]);
                    }
                }
                bp = bp.byte_offset(a.b_stride);
            }
        }
        #[allow(clippy::needless_range_loop)]
        for q in 0..P {
            let row0 = (p0 + q) * 4;
            let rows = a.rows.min(row0 + 4) - row0;
            for c in 0..C {
                // SAFETY: rows row0 .. row0 + rows are C's, and column c < cols.
                unsafe { store_rows::<ACT>(a, row0, rows, c, acc[q][c]) };
            }
        }
    }

    /// Finishes rows `row0 .. row0 + rows` (at most 4, one per lane) of column `col` (accumulate,
    /// epilogue, as [`store`] does per element) and stores them to C.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store_rows<const ACT: u8>(
        a: &Args,
        row0: usize,
        rows: usize,
        col: usize,
        mut v: __m128,
    ) {
        let mut lanes = [0f32; 4];
        // SAFETY: rows row0 .. row0 + rows < a.rows of C and of the row vectors, and col < cols, so
        // every access is inside C's, the row vectors' and the column vector's valid elements.
        unsafe {
            let c = |r: usize| a.c.byte_offset((row0 + r) as isize * a.ldc).add(col);
            if a.add {
                for (r, l) in lanes.iter_mut().enumerate().take(rows) {
                    *l = *c(r);
                }
                v = _mm_add_ps(v, _mm_loadu_ps(lanes.as_ptr()));
            }
            if a.last {
                let (mut s, mut t) = ([0f32; 4], [0f32; 4]);
                for r in 0..rows {
                    s[r] = *a.row_scale.add(row0 + r);
                    t[r] = *a.row_shift.add(row0 + r);
                }
                let cs = _mm_set1_ps(*a.col_shift.add(col));
                let (s, t) = (_mm_loadu_ps(s.as_ptr()), _mm_loadu_ps(t.as_ptr()));
                let w = _mm256_castps128_ps256(_mm_add_ps(_mm_fmadd_ps(v, s, t), cs));
                v = _mm256_castps256_ps128(act::<ACT>(w, a.slope));
            }
            _mm_storeu_ps(lanes.as_mut_ptr(), v);
            for (r, l) in lanes.iter().enumerate().take(rows) {
                *c(r) = *l;
            }
        }
    }

    /// Finishes row `row`, columns `col0 .. col0 + cols` (at most 8) of the tile (accumulate, epilogue)
    /// and stores the lanes of `mask` (the first `cols`) to C.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store<const ACT: u8>(
        a: &Args,
        row: usize,
        col0: usize,
        cols: usize,
        mut v: __m256,
        mask: __m256i,
    ) {
        // SAFETY: row < rows and the mask's lanes are columns col0 .. col0 + cols <= a.cols, so every
        // access is inside C's, the row vectors' and the column vector's valid elements.
        unsafe {
            let c = a.c.byte_offset(row as isize * a.ldc).add(col0);
            let col_shift = a.col_shift.add(col0);
            let full = cols == 8;
            if a.add {
                let old = if full {
                    _mm256_loadu_ps(c)
                } else {
                    _mm256_maskload_ps(c, mask)
                };
                v = _mm256_add_ps(v, old);
            }
            if a.last {
                let s = _mm256_set1_ps(*a.row_scale.add(row));
                let t = _mm256_set1_ps(*a.row_shift.add(row));
                let cs = if full {
                    _mm256_loadu_ps(col_shift)
                } else {
                    _mm256_maskload_ps(col_shift, mask)
                };
                v = act::<ACT>(_mm256_add_ps(_mm256_fmadd_ps(v, s, t), cs), a.slope);
            }
            if full {
                _mm256_storeu_ps(c, v);
            } else {
                _mm256_maskstore_ps(c, mask, v);
            }
        }
    }

    /// The activation, with the Cranelift kernel's semantics (`math::act`): Relu is `v < 0 ? 0 : v`
    /// (`max(0, v)` returns its second operand for NaN and for -0), LeakyRelu `v < 0 ? v * slope : v`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn act<const ACT: u8>(v: __m256, slope: f32) -> __m256 {
        let zero = _mm256_setzero_ps();
        match ACT {
            RELU => _mm256_max_ps(zero, v),
            LEAKY => {
                let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, zero);
                _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(slope)), neg)
            }
            _ => v,
        }
    }
}
