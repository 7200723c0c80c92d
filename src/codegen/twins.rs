//! Rust twins of the Cranelift pooling kernels (`MaxPool`, `AvgPool`, `MaxPool3`, `AvgPool3`), in AVX2
//! and AVX-512 with `std::arch`, which the Rust GEMM kernel sets use (see `call.rs`), and the lane helpers
//! they share with `patches.rs` (the `PackPatches` twins). Same arguments as their
//! [`KernelId`](super::KernelId)s and the same operations per output in the same order, so the same bits
//! (`codegen::agree`, `tests/jit.rs`), eight or sixteen lanes wide where the Cranelift kernels have four.
//! Safety: as `avx2.rs` (entered through `call.rs`'s table under its contract; handed out only when the
//! CPU has the instructions).

use super::avx2::{supported, KernelFn};

/// `KernelId::MaxPool` (`max`) or `KernelId::AvgPool` in AVX2, or with `wide` in AVX-512, or `None` when
/// this CPU lacks AVX2 or FMA (or AVX-512F, for `wide`). The Rust GEMM sets use them (see
/// [`pool`](imp::pool)).
pub fn pool_entry(max: bool, wide: bool) -> Option<KernelFn> {
    if !supported() || (wide && !super::avx512::supported()) {
        return None;
    }
    imp::pool_entry(max, wide)
}

/// `KernelId::MaxPool3` (`max`) or `KernelId::AvgPool3` in AVX2, or with `wide` in AVX-512, or `None`
/// when this CPU lacks AVX2 or FMA (or AVX-512F, for `wide`; see [`pool_3x3`](imp::pool_3x3)).
pub fn pool_3x3_entry(max: bool, wide: bool) -> Option<KernelFn> {
    if !supported() || (wide && !super::avx512::supported()) {
        return None;
    }
    imp::pool_3x3_entry(max, wide)
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn pool_entry(_: bool, _: bool) -> Option<super::KernelFn> {
        None
    }

    pub fn pool_3x3_entry(_: bool, _: bool) -> Option<super::KernelFn> {
        None
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod imp {
    use std::arch::x86_64::*;

    use super::KernelFn;

    /// The even lanes of the 16 values at `p`, in order.
    ///
    /// # Safety
    /// `p` has 16 readable values; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) unsafe fn evens(p: *const f32) -> __m256 {
        // SAFETY: `p .. p + 16` is readable (see above).
        evens_of(unsafe { (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) })
    }

    /// The even lanes of `lo` then `hi`, in order.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) fn evens_of((lo, hi): (__m256, __m256)) -> __m256 {
        let e = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)))
    }

    /// The odd lanes of `lo` then `hi`, in order.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) fn odds_of((lo, hi): (__m256, __m256)) -> __m256 {
        let o = _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)))
    }

    /// A mask of lanes `0 .. n` (`n <= 8`) for AVX's masked loads and stores, which neither read nor
    /// write (nor fault on) the other lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::codegen) fn lanes(n: usize) -> __m256i {
        let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), index)
    }

    pub fn pool_entry(max: bool, wide: bool) -> Option<KernelFn> {
        Some(match (max, wide) {
            (true, false) => pool::<true, false>,
            (false, false) => pool::<false, false>,
            (true, true) => pool::<true, true>,
            (false, true) => pool::<false, true>,
        })
    }

    pub fn pool_3x3_entry(max: bool, wide: bool) -> Option<KernelFn> {
        Some(match (max, wide) {
            (true, false) => pool_3x3::<true, false>,
            (false, false) => pool_3x3::<false, false>,
            (true, true) => pool_3x3::<true, true>,
            (false, true) => pool_3x3::<false, true>,
        })
    }

    /// `KernelId::MaxPool3` (`MAX`) or `AvgPool3`: `[x, y, hw, w, planes, edges, div, v]`, the Cranelift
    /// kernel's two passes (`pool.rs`) with the same operations in the same order, eight lanes wide, or
    /// sixteen (`WIDE`, AVX-512).
    ///
    /// # Safety
    /// `args` points to the kernel's 8 arguments, whose addresses satisfy `call.rs`'s contract (`v`
    /// scratch for `hw + 8` values, `edges` four i32 arrays of `hw`, `div` `hw` values, `h, w >= 2`); the
    /// CPU has AVX2, and AVX-512F when `WIDE` (guaranteed by [`super::pool_3x3_entry`], the only way to
    /// get this pointer).
    unsafe extern "C" fn pool_3x3<const MAX: bool, const WIDE: bool>(args: *const i64) {
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
            if WIDE {
                pool_3x3_planes16::<MAX>((x, y), (hw, w, planes), edges, div, v)
            } else {
                pool_3x3_planes::<MAX>((x, y), (hw, w, planes), edges, div, v)
            }
        }
    }

    /// The column pass of a whole-plane 3x3 pool over a plane of `hw` values in rows of `w`: positions
    /// `from..to`, with the row above (`up`) and below (`down`) where they exist.
    fn column_passes(w: usize, hw: usize) -> [(usize, usize, bool, bool); 3] {
        [
            (0, w, false, true),
            (w, hw - w, true, true),
            (hw - w, hw, true, false),
        ]
    }

    /// [`pool_3x3_planes`] sixteen lanes wide (masked tails): the same reads and operations per output.
    #[target_feature(enable = "avx512f")]
    unsafe fn pool_3x3_planes16<const MAX: bool>(
        (x, y): (*const f32, *mut f32),
        (hw, w, planes): (usize, usize, usize),
        edges: *const f32,
        div: *const f32,
        v: *mut f32,
    ) {
        let init = if MAX { f32::NEG_INFINITY } else { 0.0 };
        // SAFETY: as `pool_3x3_planes`: reads inside a plane of `x`, `v[-1 ..= hw]`, `edges` and
        // `div`, writes inside `v[0..hw]` and a plane of `y` (masked-off lanes touch nothing).
        unsafe {
            for q in 0..planes {
                let (xq, yq) = (x.add(q * hw), y.add(q * hw));
                for (from, to, up, down) in column_passes(w, hw) {
                    let mut i = from;
                    while i < to {
                        let m = lanes16(to - i);
                        let mut acc = _mm512_set1_ps(init);
                        if up {
                            acc = combine16::<MAX>(acc, _mm512_maskz_loadu_ps(m, xq.add(i - w)));
                        }
                        acc = combine16::<MAX>(acc, _mm512_maskz_loadu_ps(m, xq.add(i)));
                        if down {
                            acc = combine16::<MAX>(acc, _mm512_maskz_loadu_ps(m, xq.add(i + w)));
                        }
                        _mm512_mask_storeu_ps(v.add(i), m, acc);
                        i += 16;
                    }
                }
                let edge = |k: usize| edges.add(k * hw);
                let mut i = 0;
                while i < hw {
                    let m = lanes16(hw - i);
                    let mut acc = _mm512_set1_ps(init);
                    for (d, k) in [(-1isize, Some(0)), (0, None), (1, Some(2))] {
                        let mut t = _mm512_maskz_loadu_ps(m, v.offset(i as isize + d));
                        if let Some(k) = k {
                            let mk = _mm512_maskz_loadu_epi32(m, edge(k).add(i) as *const i32);
                            let f = _mm512_maskz_loadu_epi32(m, edge(k + 1).add(i) as *const i32);
                            let bits = _mm512_and_si512(_mm512_castps_si512(t), mk);
                            t = _mm512_castsi512_ps(_mm512_or_si512(bits, f));
                        }
                        acc = combine16::<MAX>(acc, t);
                    }
                    if !MAX {
                        acc = _mm512_div_ps(acc, _mm512_maskz_loadu_ps(m, div.add(i)));
                    }
                    _mm512_mask_storeu_ps(yq.add(i), m, acc);
                    i += 16;
                }
            }
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
                for (from, to, up, down) in column_passes(w, hw) {
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

    impl Pool {
        /// Entry `i` of a window table (`rows` or `cols`): first position, count and step.
        ///
        /// # Safety
        /// `t` is one of the pool's tables and `i` one of its rows or columns.
        unsafe fn window(t: *const i32, i: usize) -> (usize, usize, usize) {
            // SAFETY: a table holds three i32 per row or column (see above).
            unsafe {
                let e = t.add(3 * i);
                (*e as usize, (*e.add(1)).max(0) as usize, *e.add(2) as usize)
            }
        }

        /// Output column `c` of row `r` (at `yr`) from its `count` entries of `row`, `step` apart from
        /// `start`, value by value: the reduction in ascending order, then the average's division.
        ///
        /// # Safety
        /// `row` holds the row pass's values for those entries; `c` is an output column of the row.
        unsafe fn column1<const MAX: bool>(
            &self,
            (yr, r, c): (*mut f32, usize, usize),
            (start, count, step): (usize, usize, usize),
        ) {
            let init = if MAX { f32::NEG_INFINITY } else { 0.0 };
            // SAFETY: the entries lie in `row`, `c` in the output row, `div` holds `oh + ow` values.
            unsafe {
                let v = (0..count).fold(init, |acc, j| {
                    combine1::<MAX>(acc, *self.row.add(start + j * step))
                });
                *yr.add(c) = if MAX {
                    v
                } else {
                    v / (*self.div.add(r) * *self.div.add(self.oh + c))
                };
            }
        }

        /// The columns of row `r` outside the vector run (`vector[0]..vector[1]`), each from its entry of
        /// the column table.
        ///
        /// # Safety
        /// As [`Pool::column1`], for the row pass of output row `r`.
        unsafe fn edge_columns<const MAX: bool>(&self, yr: *mut f32, r: usize) {
            let [v_lo, v_hi, ..] = self.vector;
            for c in (0..v_lo.min(self.ow)).chain(v_hi.max(v_lo)..self.ow) {
                // SAFETY: `c` is an output column; its window is the table's (see above).
                unsafe { self.column1::<MAX>((yr, r, c), Pool::window(self.cols, c)) };
            }
        }

        /// Where the vector run really ends: past `vector[1]` while the columns' windows go on as the
        /// run's do (whole, evenly spaced).
        ///
        /// # Safety
        /// `cols` holds the table of `ow` columns.
        unsafe fn run_end(&self) -> usize {
            let [v_lo, mut v_hi, v_start, v_count, v_step, v_stride] = self.vector;
            if v_hi <= v_lo {
                return v_hi;
            }
            // SAFETY: `v_hi < ow` is an output column.
            while v_hi < self.ow
                && unsafe { Pool::window(self.cols, v_hi) }
                    == (v_start + (v_hi - v_lo) * v_stride, v_count, v_step)
            {
                v_hi += 1;
            }
            v_hi
        }

        /// Columns `from..vector[1]` of the vector run, value by value.
        ///
        /// # Safety
        /// As [`Pool::column1`], for the row pass of output row `r`.
        unsafe fn run_tail<const MAX: bool>(&self, yr: *mut f32, r: usize, from: usize) {
            let [v_lo, v_hi, v_start, v_count, v_step, v_stride] = self.vector;
            for c in from..v_hi {
                let start = v_start + (c - v_lo) * v_stride;
                // SAFETY: column c of the run reads `v_count` entries from `start` (see above).
                unsafe { self.column1::<MAX>((yr, r, c), (start, v_count, v_step)) };
            }
        }
    }

    /// `KernelId::MaxPool` (`MAX`) or `AvgPool`: the Cranelift kernel's two passes (`pool.rs`) with the
    /// same operations on every output in the same order, so the same bits (`codegen::agree`), eight
    /// lanes wide, or sixteen (`WIDE`, AVX-512): per output row the window's input rows reduced into
    /// `row`, then each output column's entries of `row`, a vector of columns at a time where windows
    /// are whole and one or two columns apart.
    ///
    /// # Safety
    /// `args` points to the kernel's 17 arguments, whose addresses satisfy `call.rs`'s contract with
    /// window tables as `lower` builds them (every window inside the plane, `row` holding `iw` values);
    /// the CPU has AVX2, and AVX-512F when `WIDE` (guaranteed by [`super::pool_entry`], the only way to
    /// get this pointer).
    unsafe extern "C" fn pool<const MAX: bool, const WIDE: bool>(args: *const i64) {
        // SAFETY: the caller passes a pointer to the kernel's 17 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 17) };
        let n = |i: usize| v[i].max(0) as usize;
        let mut p = Pool {
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
        // SAFETY: AVX2 (and AVX-512F when WIDE) is present and the addresses are valid (see above).
        unsafe {
            // `lower` cuts the vector run to a multiple of 4 columns (the Cranelift kernel's width);
            // these kernels mask their last vector, so the run goes on as far as its windows do.
            p.vector[1] = p.run_end();
            if WIDE && p.iw <= SMALL_ROW && p.ow <= SMALL_ROW {
                pool_small16::<MAX>(&p)
            } else if WIDE {
                pool_planes16::<MAX>(&p)
            } else {
                pool_planes::<MAX>(&p)
            }
        }
    }

    /// `KernelId::MaxPool` or `AvgPool` on rows of at most [`SMALL_ROW`] values and outputs, sixteen
    /// lanes wide with nothing in memory between the passes: each output row's window rows reduced into
    /// up to four zmm registers, then every output column (edges included) from its own window's entries
    /// of them, picked by `vpermt2ps` (two and a blend past 32 values), one entry per step in ascending
    /// order under the lanes whose window has that many. Per output the operations and their order are
    /// [`pool_planes16`]'s and [`Pool::column1`]'s, so the same bits; a row buffer in memory instead
    /// costs a failed store forward per row (GoogLeNet's 2x2 pool of 832 planes of 14x14 spent most of
    /// its time there).
    ///
    /// # Safety
    /// As [`pool`], with `iw` and `ow` at most [`SMALL_ROW`].
    #[target_feature(enable = "avx512f")]
    unsafe fn pool_small16<const MAX: bool>(p: &Pool) {
        let init = _mm512_set1_ps(if MAX { f32::NEG_INFINITY } else { 0.0 });
        // Every output column's window (first entry, count, step), lane c % 16 of vector c / 16.
        let (mut first, mut count, mut step) = ([0i32; SMALL_ROW], [0; SMALL_ROW], [0; SMALL_ROW]);
        for c in 0..p.ow {
            // SAFETY: `c` is an output column.
            let (s, n, t) = unsafe { Pool::window(p.cols, c) };
            (first[c], count[c], step[c]) = (s as i32, n as i32, t as i32);
        }
        let most = count.iter().copied().max().unwrap_or(0).max(0) as usize;
        let lanes = |a: &[i32; SMALL_ROW], h: usize| {
            // SAFETY: 16 values of the array from 16 h (h < SMALL_ROW / 16).
            unsafe { _mm512_loadu_si512(a.as_ptr().add(16 * h) as *const _) }
        };
        let chunks = p.iw.div_ceil(16);
        let thirty_two = _mm512_set1_epi32(32);
        // SAFETY: every read is inside a plane of `x` (whole window rows from the tables, at most `iw`
        // values each), inside `div`, or a lane of a register; every write an output of a plane of `y`.
        unsafe {
            for q in 0..p.planes {
                let xq = p.x.add(q * p.in_plane);
                let yq = p.y.add(q * p.oh * p.ow);
                for r in 0..p.oh {
                    let (hs, hc, hstep) = Pool::window(p.rows, r);
                    let mut row = [init; SMALL_ROW / 16];
                    for j in 0..hc {
                        let src = xq.add((hs + j * hstep) * p.iw);
                        for (i, v) in row.iter_mut().enumerate().take(chunks) {
                            let m = lanes16(p.iw - 16 * i);
                            *v = combine16::<MAX>(*v, _mm512_maskz_loadu_ps(m, src.add(16 * i)));
                        }
                    }
                    // Entries `at` of the row (`vpermt2ps` takes an index's low five bits).
                    let pick = |at: __m512i| {
                        let low = _mm512_permutex2var_ps(row[0], at, row[1]);
                        if chunks <= 2 {
                            return low;
                        }
                        let high = _mm512_permutex2var_ps(row[2], at, row[3]);
                        _mm512_mask_mov_ps(low, _mm512_cmpge_epi32_mask(at, thirty_two), high)
                    };
                    let yr = yq.add(r * p.ow);
                    let rdiv = _mm512_set1_ps(*p.div.add(r));
                    for h in 0..p.ow.div_ceil(16) {
                        let (n, t) = (lanes(&count, h), lanes(&step, h));
                        let mut at = lanes(&first, h);
                        let mut acc = init;
                        for j in 0..most {
                            let here = _mm512_cmpgt_epi32_mask(n, _mm512_set1_epi32(j as i32));
                            acc = _mm512_mask_mov_ps(acc, here, combine16::<MAX>(acc, pick(at)));
                            at = _mm512_add_epi32(at, t);
                        }
                        let m = lanes16(p.ow - 16 * h);
                        if !MAX {
                            let d = _mm512_maskz_loadu_ps(m, p.div.add(p.oh + 16 * h));
                            acc = _mm512_div_ps(acc, _mm512_mul_ps(rdiv, d));
                        }
                        _mm512_mask_storeu_ps(yr.add(16 * h), m, acc);
                    }
                }
            }
        }
    }

    /// The longest rows (input and output) [`pool_small16`] takes.
    const SMALL_ROW: usize = 64;

    /// `acc` combined with `v` as `pool.rs`'s `combine`: the maximum (`v` wins when greater or NaN) or
    /// the sum.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn combine8<const MAX: bool>(acc: __m256, v: __m256) -> __m256 {
        if MAX {
            // `vmaxps(v, acc)` is `v > acc ? v : acc` (`acc` when either is NaN): then a NaN `v` wins.
            // Three micro-ops where compare, compare, or and blend took four.
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
            _mm256_blendv_ps(_mm256_max_ps(v, acc), v, nan)
        } else {
            _mm256_add_ps(acc, v)
        }
    }

    /// `init` combined with `load(j)` for `j` in `0 .. n`, in order: windows of 3 rows or columns
    /// (3x3 pools) unrolled, without the loop's counter and branch per value.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn fold8<const MAX: bool>(init: f32, n: usize, load: impl Fn(usize) -> __m256) -> __m256 {
        let mut acc = _mm256_set1_ps(init);
        if n == 3 {
            acc = combine8::<MAX>(acc, load(0));
            acc = combine8::<MAX>(acc, load(1));
            combine8::<MAX>(acc, load(2))
        } else {
            for j in 0..n {
                acc = combine8::<MAX>(acc, load(j));
            }
            acc
        }
    }

    /// [`combine8`], sixteen lanes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn combine16<const MAX: bool>(acc: __m512, v: __m512) -> __m512 {
        if MAX {
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            _mm512_mask_mov_ps(_mm512_max_ps(v, acc), nan, v)
        } else {
            _mm512_add_ps(acc, v)
        }
    }

    /// The even lanes of `lo` then `hi`, in order.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::codegen) fn evens16((lo, hi): (__m512, __m512)) -> __m512 {
        let index = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        _mm512_permutex2var_ps(lo, index, hi)
    }

    /// Lanes `0 .. n` (`n <= 16`).
    #[inline]
    pub(in crate::codegen) fn lanes16(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
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

    /// [`pool_planes`] sixteen lanes wide: the same reads and operations per output, in the same order.
    #[target_feature(enable = "avx512f")]
    unsafe fn pool_planes16<const MAX: bool>(p: &Pool) {
        let init = if MAX { f32::NEG_INFINITY } else { 0.0 };
        let [v_lo, v_hi, v_start, v_count, v_step, v_stride] = p.vector;
        // SAFETY: as `pool_planes`: every read is inside a plane of `x` or the first `iw` values of
        // `row` (masked-off lanes are neither read nor written), every write inside `row` or a plane
        // of `y`.
        unsafe {
            for q in 0..p.planes {
                let xq = p.x.add(q * p.in_plane);
                let yq = p.y.add(q * p.oh * p.ow);
                for r in 0..p.oh {
                    let (hs, hc, hstep) = Pool::window(p.rows, r);
                    // Pass 1: the window's rows reduced into `row`, sixteen columns at a time.
                    let src = |j: usize, c: usize| xq.add((hs + j * hstep) * p.iw + c);
                    let mut c = 0;
                    while c < p.iw {
                        let m = lanes16(p.iw - c);
                        let mut acc = _mm512_set1_ps(init);
                        for j in 0..hc {
                            acc = combine16::<MAX>(acc, _mm512_maskz_loadu_ps(m, src(j, c)));
                        }
                        _mm512_mask_storeu_ps(p.row.add(c), m, acc);
                        c += 16;
                    }
                    // Pass 2: each output column from its entries of `row`.
                    let yr = yq.add(r * p.ow);
                    let rdiv = *p.div.add(r);
                    let finish16 = |c: usize, v: __m512, m: __mmask16| {
                        let v = if MAX {
                            v
                        } else {
                            let d = _mm512_maskz_loadu_ps(m, p.div.add(p.oh + c));
                            _mm512_div_ps(v, _mm512_mul_ps(_mm512_set1_ps(rdiv), d))
                        };
                        _mm512_mask_storeu_ps(yr.add(c), m, v);
                    };
                    p.edge_columns::<MAX>(yr, r);
                    let first = |c: usize| v_start + (c - v_lo) * v_stride;
                    let mut c = v_lo;
                    if v_stride == 1 {
                        while c < v_hi {
                            let m = lanes16(v_hi - c);
                            let mut acc = _mm512_set1_ps(init);
                            for j in 0..v_count {
                                let at = p.row.add(first(c) + j * v_step);
                                acc = combine16::<MAX>(acc, _mm512_maskz_loadu_ps(m, at));
                            }
                            finish16(c, acc, m);
                            c += 16;
                        }
                    } else if v_stride == 2 {
                        // Sixteen columns read 32 positions from their first: all while they stay
                        // inside the run (c + 16 < v_hi), then the first 2n - 1 for the last n.
                        while c < v_hi {
                            let n = (v_hi - c).min(16);
                            let (lo, hi) = if c + 16 < v_hi {
                                (0xffff, 0xffff)
                            } else {
                                (lanes16(2 * n - 1), lanes16((2 * n - 1).saturating_sub(16)))
                            };
                            let mut acc = _mm512_set1_ps(init);
                            for j in 0..v_count {
                                let at = p.row.add(first(c) + j * v_step);
                                let v = (
                                    _mm512_maskz_loadu_ps(lo, at),
                                    _mm512_maskz_loadu_ps(hi, at.add(16)),
                                );
                                acc = combine16::<MAX>(acc, evens16(v));
                            }
                            finish16(c, acc, lanes16(n));
                            c += n;
                        }
                    }
                    p.run_tail::<MAX>(yr, r, c);
                }
            }
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn pool_planes<const MAX: bool>(p: &Pool) {
        let init = if MAX { f32::NEG_INFINITY } else { 0.0 };
        let [v_lo, v_hi, v_start, v_count, v_step, v_stride] = p.vector;
        // SAFETY: every read is inside a plane of `x` (whole windows from the tables) or the first
        // `iw` values of `row`, every write inside `row` or a plane of `y` (see `pool`).
        unsafe {
            for q in 0..p.planes {
                let xq = p.x.add(q * p.in_plane);
                let yq = p.y.add(q * p.oh * p.ow);
                for r in 0..p.oh {
                    let (hs, hc, hstep) = Pool::window(p.rows, r);
                    // Pass 1: the window's rows reduced into `row`, column by column.
                    let src = |j: usize, c: usize| xq.add((hs + j * hstep) * p.iw + c);
                    let mut c = 0;
                    while c + 8 <= p.iw {
                        let acc = fold8::<MAX>(init, hc, |j| _mm256_loadu_ps(src(j, c)));
                        _mm256_storeu_ps(p.row.add(c), acc);
                        c += 8;
                    }
                    if c < p.iw {
                        let m = lanes(p.iw - c);
                        let mut acc = _mm256_set1_ps(init);
                        for j in 0..hc {
                            acc = combine8::<MAX>(acc, _mm256_maskload_ps(src(j, c), m));
                        }
                        _mm256_maskstore_ps(p.row.add(c), m, acc);
                    }
                    // Pass 2: each output column from its entries of `row`.
                    let yr = yq.add(r * p.ow);
                    let rdiv = *p.div.add(r);
                    // Output columns c.. of the lanes of `m`.
                    let finish8 = |c: usize, v: __m256, m: __m256i| {
                        let v = if MAX {
                            v
                        } else {
                            let d = _mm256_maskload_ps(p.div.add(p.oh + c), m);
                            _mm256_div_ps(v, _mm256_mul_ps(_mm256_set1_ps(rdiv), d))
                        };
                        _mm256_maskstore_ps(yr.add(c), m, v);
                    };
                    let all = lanes(8);
                    p.edge_columns::<MAX>(yr, r);
                    // Columns v_lo..v_hi: window c starts at v_start + (c - v_lo) * v_stride.
                    let first = |c: usize| v_start + (c - v_lo) * v_stride;
                    let mut c = v_lo;
                    if v_stride == 1 {
                        while c + 8 <= v_hi {
                            let at = |j: usize| p.row.add(first(c) + j * v_step);
                            let acc = fold8::<MAX>(init, v_count, |j| _mm256_loadu_ps(at(j)));
                            finish8(c, acc, all);
                            c += 8;
                        }
                        if c < v_hi {
                            // The last 1 to 7 columns, masked.
                            let m = lanes(v_hi - c);
                            let mut acc = _mm256_set1_ps(init);
                            for j in 0..v_count {
                                let at = p.row.add(first(c) + j * v_step);
                                acc = combine8::<MAX>(acc, _mm256_maskload_ps(at, m));
                            }
                            finish8(c, acc, m);
                            c = v_hi;
                        }
                    } else if v_stride == 2 {
                        // Eight columns read 16 positions from their first; whole groups while
                        // they stay inside the run (c + 8 < v_hi).
                        while c + 8 < v_hi {
                            let at = |j: usize| p.row.add(first(c) + j * v_step);
                            let acc = fold8::<MAX>(init, v_count, |j| evens(at(j)));
                            finish8(c, acc, all);
                            c += 8;
                        }
                        if c < v_hi {
                            // The last 1 to 8 columns: their windows read the first 2n - 1 of the
                            // 16 positions from their first.
                            let n = v_hi - c;
                            let (lo, hi) = (
                                lanes((2 * n - 1).min(8)),
                                lanes((2 * n - 1).saturating_sub(8)),
                            );
                            let mut acc = _mm256_set1_ps(init);
                            for j in 0..v_count {
                                let at = p.row.add(first(c) + j * v_step);
                                let v = (
                                    _mm256_maskload_ps(at, lo),
                                    _mm256_maskload_ps(at.add(8), hi),
                                );
                                acc = combine8::<MAX>(acc, evens_of(v));
                            }
                            finish8(c, acc, lanes(n));
                            c = v_hi;
                        }
                    }
                    p.run_tail::<MAX>(yr, r, c);
                }
            }
        }
    }
}
