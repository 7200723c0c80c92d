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
//! says so) and ran them as `4 x 16` tiles: per k, two loads of B, four broadcasts of A each feeding two
//! FMAs, eight ymm accumulators. On Zen 4 (two 256-bit FMA pipes of 4 cycles' latency) eight chains
//! leave the pipes no slack, so those calls now run `6 x 16` tiles (twelve accumulators, 15 of the 16
//! ymm registers; see `wide`).
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

/// The arguments of [`KernelId::Gemm`](super::KernelId::Gemm), decoded: what the Rust kernels (`avx2.rs`,
/// `avx512.rs`) read.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(super) struct GemmArgs {
    pub a: *const f32,
    pub b: *const f32,
    pub b_stride: isize,
    /// Bytes from a row of a B panel to the same row of the next (read only when cols > 8).
    pub b_next: isize,
    pub c: *mut f32,
    pub ldc: isize,
    pub rows: usize,
    /// At most the kernel's widest call.
    pub cols: usize,
    pub kc: usize,
    pub add: bool,
    pub last: bool,
    /// B is read once, from memory (`mode` bit 2): a kernel may prefetch it ahead.
    pub stream: bool,
    /// B is read in place and the next call reads its rows further on (`mode` bit 3): a kernel may
    /// prefetch them.
    pub ahead: bool,
    /// A's rows come from L3 or memory rather than L2 (`mode` bit 6): a kernel may prefetch them.
    pub a_far: bool,
    /// The epilogue adds the column shifts (`mode` bit 5 clear; a convolution's are all zero).
    pub shift_cols: bool,
    /// Columns in groups of [`super::GEMM_WIDEST_N`] (`mode` bit 4, see `KernelId::Gemm`).
    pub groups: bool,
    /// Bytes from a group of [`super::GEMM_WIDEST_N`] columns' B to the next's, when the call has
    /// `mode` bit 4 (read only then; see `KernelId::Gemm`), else 0.
    pub b_group: isize,
    pub row_scale: *const f32,
    pub row_shift: *const f32,
    pub col_shift: *const f32,
    pub slope: f32,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl GemmArgs {
    /// Decodes the arguments at `args`, columns clamped to the kernel's widest call (`widest.0`, or
    /// `widest.1` with `mode` bit 4).
    ///
    /// # Safety
    /// `args` points to the kernel's 13 arguments, to a 14th when the call has more than 8 columns, and
    /// to a 15th when `mode` has bit 4.
    pub(super) unsafe fn decode(args: *const i64, widest: (usize, usize)) -> GemmArgs {
        // SAFETY: the caller passes a pointer to the kernel's 13 arguments (see above).
        let v = unsafe { std::slice::from_raw_parts(args, 13) };
        let groups = v[8] & 16 != 0;
        let widest = if groups { widest.1 } else { widest.0 };
        let cols = v[6].clamp(0, widest as i64) as usize;
        // SAFETY: with `mode` bit 4 the caller passes the 15th argument (see above).
        let b_group = if groups { unsafe { *args.add(14) } } else { 0 };
        // SAFETY: with more than 8 columns the caller passes the 14th argument (see above).
        let b_next = if cols > 8 {
            unsafe { *args.add(13) }
        } else {
            0
        };
        GemmArgs {
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
            stream: v[8] & 4 != 0,
            ahead: v[8] & 8 != 0,
            a_far: v[8] & 64 != 0,
            shift_cols: v[8] & 32 == 0,
            groups,
            b_group: b_group as isize,
            row_scale: v[9] as *const f32,
            row_shift: v[10] as *const f32,
            col_shift: v[11] as *const f32,
            slope: f32::from_bits(v[12] as u32),
        }
    }
}

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

/// The columns the AVX2 kernel takes in a call with `mode` bit 4 (`Table::stream_cols`): three groups
/// of 32, as one row's accumulators for them fill twelve of the sixteen ymm registers.
pub const STREAM_N: usize = 3 * super::GEMM_WIDEST_N;

/// The AVX2 macro-kernel with epilogue `act`, or `None` when this CPU lacks AVX2 or FMA, or for the
/// activations implemented only by the Cranelift kernel (Sigmoid, Tanh).
pub fn entry(act: ActKind) -> Option<KernelFn> {
    if !supported() {
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
pub(super) mod imp {
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

    /// The kernel's arguments, decoded (shared with `avx512.rs`).
    type Args = super::GemmArgs;

    /// # Safety
    /// `args` points to the arguments of `KernelId::Gemm` (13, or 14 when cols > 8), and their addresses
    /// satisfy `call.rs`'s contract; the CPU has AVX2 and FMA (guaranteed by [`super::entry`], the only way
    /// to get this pointer).
    unsafe extern "C" fn gemm<const ACT: u8>(args: *const i64) {
        // SAFETY: the caller passes the kernel's arguments (see above).
        let a = unsafe { Args::decode(args, (super::super::GEMM_WIDE_N, super::STREAM_N)) };
        // SAFETY: AVX2 and FMA are present (see above); the addresses are valid per the contract (with
        // `mode` bit 4, see `stream_groups`).
        unsafe {
            if a.groups {
                stream_groups::<ACT>(&a);
            } else {
                columns::<ACT>(&a);
            }
        }
    }

    /// A call of up to [`super::super::GEMM_WIDE_N`] columns.
    ///
    /// # Safety
    /// As [`gemm`]'s (`a` decoded from valid arguments); the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns<const ACT: u8>(a: &Args) {
        // SAFETY: the caller's contract.
        unsafe {
            match a.cols {
                0 => {}
                1..=4 => narrow_tail::<ACT>(a),
                5..=8 => panels::<ACT>(a),
                _ if a.stream => wide::<ACT, true, false>(a),
                _ if a.a_far => wide::<ACT, false, true>(a),
                _ => wide::<ACT, false, false>(a),
            }
        }
    }

    /// A call with `mode` bit 4: up to three groups of 32 columns, group `i`'s B at `b + i * b_group`.
    /// One row (a dense layer at batch 1) with the panels of each group side by side reads the groups'
    /// rows in one k loop (`stream_row`: three streams from memory at once, each prefetched
    /// [`STREAM_AHEAD`] bytes ahead, non-temporal: weights read once per run need not push the next
    /// layers' data out of L3; Zen 4, one program switching the hint between alternating runs, paired
    /// ratios against `T1`: AlexNet 1.016-1.057, VGG16 1.026, ResNet-50 even; `T0` 1.016; at batches 4
    /// and 8 the 16-column calls' prefetch as `NTA` was even); other calls run as two 16-column calls per
    /// group.
    ///
    /// # Safety
    /// As [`gemm`]'s, with `a.rows` at most 4 and `a.b_group` the groups' distance; the CPU has AVX2 and
    /// FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn stream_groups<const ACT: u8>(a: &Args) {
        let groups = a.cols.div_ceil(32);
        // Groups `i0 .. i0 + n`, or 16 columns of group `i0` from column `16 h` on, as a call of
        // their own.
        let part = |i0: usize, n: usize, h: usize| Args {
            b: a.b
                .wrapping_byte_offset(i0 as isize * a.b_group + panel_at(a, 2 * h)),
            c: a.c.wrapping_add(32 * i0 + 16 * h),
            col_shift: a.col_shift.wrapping_add(32 * i0 + 16 * h),
            cols: (a.cols - 32 * i0).saturating_sub(16 * h).min(32 * n),
            ..*a
        };
        // SAFETY: each part is a call of the caller's rows and some of its groups' columns.
        unsafe {
            if a.rows == 1 && (a.cols <= 8 || a.b_next == 32) {
                let mut i = 0;
                while i < groups {
                    match groups - i {
                        1 => stream_row::<1, ACT>(&part(i, 1, 0)),
                        2 => stream_row::<2, ACT>(&part(i, 2, 0)),
                        _ => stream_row::<3, ACT>(&part(i, 3, 0)),
                    }
                    i += 3;
                }
                return;
            }
            for i in 0..groups {
                for h in 0..2 {
                    let half = part(i, 1, h);
                    columns::<ACT>(&Args {
                        cols: half.cols.min(16),
                        ..half
                    });
                }
            }
        }
    }

    /// Bytes from a group's B to its panel `q` (0 to 3) in a call with `mode` bit 4: side by side
    /// (`b_next` 32 bytes) in runs of `b_stride / 32` panels, each run `kc` rows after the previous one,
    /// or `b_next` apart. The runtime's packed weights (`runtime::exec::dense_b_width`) are one run of
    /// four for one-row products, and runs of two for larger ones, whose row share can still be a
    /// single row (541 rows on 16 threads) or up to four (2 to 4 rows, streamed).
    fn panel_at(a: &Args, q: usize) -> isize {
        if a.b_next == 32 {
            let run = (a.b_stride / 32).clamp(1, 4) as usize;
            (q / run) as isize * a.kc as isize * a.b_stride + (q % run) as isize * 32
        } else {
            q as isize * a.b_next
        }
    }

    /// One row by `G` groups of 32 columns (panels side by side within a group, groups `b_group`
    /// bytes apart): per k step one broadcast of A and four loads and FMAs per group, then the store of
    /// the other paths (the same operations).
    ///
    /// # Safety
    /// As [`stream_groups`]'s, with one row and `a.cols` in `32 (G - 1) + 1 ..= 32 G`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn stream_row<const G: usize, const ACT: u8>(a: &Args) {
        let mut acc = [[_mm256_setzero_ps(); 4]; G];
        // Columns of group `i`'s panel `q`.
        let cols = |i: usize, q: usize| (a.cols - 32 * i).saturating_sub(8 * q).min(8);
        let mask: [[__m256i; 4]; G] =
            std::array::from_fn(|i| std::array::from_fn(|q| lanes(cols(i, q))));
        let at: [isize; 4] = std::array::from_fn(|q| panel_at(a, q));
        // SAFETY: A's panel holds kc * 4 values; group i's panels have the lanes of their masks
        // readable in each of their kc rows (its columns); masked-off lanes are not read.
        unsafe {
            for k in 0..a.kc {
                let s = _mm256_broadcast_ss(&*a.a.add(k * 4));
                let row = a.b.byte_offset(k as isize * a.b_stride);
                for i in 0..G {
                    let bp = row.byte_offset(i as isize * a.b_group);
                    // The row's two lines: one run of four panels, or one line in each of two runs.
                    for q in [0, 2] {
                        let ahead = bp.wrapping_byte_offset(at[q] + STREAM_AHEAD);
                        _mm_prefetch::<_MM_HINT_NTA>(ahead as *const i8);
                    }
                    for q in 0..4 {
                        let b = _mm256_maskload_ps(bp.byte_offset(at[q]), mask[i][q]);
                        acc[i][q] = _mm256_fmadd_ps(s, b, acc[i][q]);
                    }
                }
            }
        }
        #[allow(clippy::needless_range_loop)]
        for i in 0..G {
            let group = Args {
                c: a.c.wrapping_add(32 * i),
                col_shift: a.col_shift.wrapping_add(32 * i),
                ..*a
            };
            for q in 0..4 {
                if cols(i, q) > 0 {
                    // SAFETY: row 0 of C, masked to the panel's columns of group i.
                    unsafe { store::<ACT>(&group, 0, 8 * q, cols(i, q), acc[i][q], mask[i][q]) };
                }
            }
        }
    }

    /// How far ahead (in values) a call with `mode` bit 6 prefetches A: 8 KiB, two to eight panels at
    /// the usual depths. A standalone C probe of the `6 x 16` tile streaming A from L3 (4.7 MB per k
    /// block, B in L1; Zen 4, one core): 50 GFLOP/s without, 60 at 4 KiB, 64-65 at 8 and 16 KiB.
    const A_AHEAD: usize = 2048;
    /// How far ahead a streaming B is prefetched (see `avx512.rs`, where it was measured).
    const STREAM_AHEAD: isize = 2048;

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

    /// Every row of a block 9 to 16 columns wide, as `6 x 16` tiles, then `4 x 16` tiles for the last
    /// four or eight padded rows (see [`six_row_tiles`]): per k, two loads of B (one per panel), a
    /// broadcast of A per row, each feeding two FMAs. Twelve accumulators are twelve independent FMA
    /// chains, which keep two pipes of 4-cycle FMAs busy with slack (the `4 x 16` tile's eight leave
    /// none: on Zen 4, a standalone C probe of both tiles on cached operands ran 84 against 89-90
    /// GFLOP/s per core, the core's FMA peak). A 6-row tile reads its rows from two 4-row panels (the
    /// packing stays `pack.rs`'s). With `STREAM` (B read once, from memory: a dense layer's weights at
    /// batch 1) each k step also prefetches B's row [`STREAM_AHEAD`] bytes ahead; with `FAR` (`mode`
    /// bit 6: A's rows come from L3 or memory) A's [`A_AHEAD`] values ahead. Without that prefetch the
    /// tile's two A streams (one per panel) ran slower from L3 than the `4 x 16` tile's one. A call
    /// that adds to C (`mode` bit 0: a residual, or a later k block) prefetches each tile's rows of C
    /// before its k loop: at batch 8 those come from memory (ResNet-50's 14x14 1x1 layers with their
    /// residual 6.5 -> 5.5 ms, the model 6% faster; at batch 1 even). Prefetching C also for calls
    /// that only write it slowed the stem at batch 8 (13.8 -> 14.2 ms).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn wide<const ACT: u8, const STREAM: bool, const FAR: bool>(a: &Args) {
        let padded = 4 * a.rows.div_ceil(4);
        let mut row0 = 0;
        for _ in 0..six_row_tiles(padded) {
            // SAFETY: rows row0 .. row0 + 6 are in packed (zero-padded) panels; C's rows are stored
            // only below a.rows.
            unsafe {
                if row0 % 4 == 0 {
                    wide_tile::<ACT, STREAM, FAR, 6, 0>(a, row0);
                } else {
                    wide_tile::<ACT, STREAM, FAR, 6, 2>(a, row0);
                }
            }
            row0 += 6;
        }
        // SAFETY: as above; the rows left from row0 on, a panel's first row (none, 4 or 8 of them).
        unsafe {
            while row0 < padded {
                wide_tile::<ACT, STREAM, FAR, 4, 0>(a, row0);
                row0 += 4;
            }
        }
    }

    /// How many `6 x 16` tiles [`wide`] runs over `padded` rows (a multiple of 4), the rest going to
    /// `4 x 16` tiles: as many as fit, except that a last 2 rows (`padded` = 6 t + 2) turn the last `6 x
    /// 16` tile and them into two `4 x 16` tiles. A `2 x 16` tile's four FMA chains run at half the
    /// pipes' rate, so it costs two thirds of a `6 x 16` tile for a third of the rows, while the `4 x
    /// 16` tile's eight chains keep the pipes busy without slack (84 against 89 GFLOP/s in
    /// `runtime::gemm`'s probe). A row share of 128 rows (a 256-row product on two threads) ran 21
    /// six-row tiles and a two-row one; it now runs 20 and two four-row ones (the probe's 128 x 16
    /// calls, kc 256, alternating builds: 87.3 / 87.4 / 79.5 before, 88.1 / 88.9 / 85.2 GFLOP/s after).
    pub(super) fn six_row_tiles(padded: usize) -> usize {
        // `padded` is a multiple of 4, so 6 t + 2 rows are at least 8.
        if padded % 6 == 2 {
            (padded - 8) / 6
        } else {
            padded / 6
        }
    }

    /// Rows `row0 .. row0 + R` by up to 16 columns: `row0` is `OFF` rows into its 4-row panel (0 or 2),
    /// and rows past the panel's end come from the next panel, `4 kc` values on.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn wide_tile<
        const ACT: u8,
        const STREAM: bool,
        const FAR: bool,
        const R: usize,
        const OFF: usize,
    >(
        a: &Args,
        row0: usize,
    ) {
        let panel = a.kc * 4;
        let hi = a.cols - 8;
        let mask = lanes(hi);
        let mut lo_acc = [_mm256_setzero_ps(); R];
        let mut hi_acc = [_mm256_setzero_ps(); R];
        // Row i's value at k step 0: in the first panel, or in the next one.
        let at = |i: usize| {
            let r = OFF + i;
            (r / 4) * panel + r % 4
        };
        if a.add {
            // C's lines of the tile, which the store reads (a residual, or an earlier k block's sums):
            // requested before the k loop, so they come from memory while it runs.
            for i in 0..R.min(a.rows.saturating_sub(row0)) {
                let c = a.c.wrapping_byte_offset((row0 + i) as isize * a.ldc);
                _mm_prefetch::<_MM_HINT_T0>(c as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(a.cols - 1) as *const i8);
            }
        }
        // SAFETY: the panels of rows row0 .. row0 + R hold kc * 4 values each; both B panels' kc rows
        // have 8 values each.
        unsafe {
            let mut x = a.a.add((row0 - OFF) * a.kc);
            let mut bp = a.b;
            for _ in 0..a.kc {
                if STREAM {
                    let ahead = bp.wrapping_byte_offset(STREAM_AHEAD);
                    _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                }
                if FAR {
                    // Both panels' streams (prefetches never fault, past A's end included).
                    _mm_prefetch::<_MM_HINT_T0>(x.wrapping_add(at(0) + A_AHEAD) as *const i8);
                    if at(R - 1) >= panel {
                        let next = x.wrapping_add(at(R - 1) + A_AHEAD);
                        _mm_prefetch::<_MM_HINT_T0>(next as *const i8);
                    }
                }
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.byte_offset(a.b_next));
                for i in 0..R {
                    let s = _mm256_broadcast_ss(&*x.add(at(i)));
                    lo_acc[i] = _mm256_fmadd_ps(s, b0, lo_acc[i]);
                    hi_acc[i] = _mm256_fmadd_ps(s, b1, hi_acc[i]);
                }
                x = x.add(4);
                bp = bp.byte_offset(a.b_stride);
            }
        }
        let full = lanes(8);
        #[allow(clippy::needless_range_loop)]
        for i in 0..R {
            let row = row0 + i;
            if row < a.rows {
                // SAFETY: row < rows of C; columns 0..8 and 8..cols are C's.
                unsafe {
                    store::<ACT>(a, row, 0, 8, lo_acc[i], full);
                    store::<ACT>(a, row, 8, hi, hi_acc[i], mask);
                }
            }
        }
    }

    /// Every row of a block 1 to 4 columns wide (the last few columns of a row of C: 196 is 12 x 16 and
    /// 4), with the vector lanes along rows instead of columns: per k and pair of 4-row panels, A's two
    /// packed columns loaded as one ymm (two 128-bit loads and an insert) feed one FMA per column, with
    /// B's value broadcast. A `4 x 8` tile would spend four ymm broadcasts and four ymm FMAs on 8 columns
    /// of which 1 to 4 exist; here eight rows take `C` ymm FMAs. `Q` pairs of panels at a time give `Q x
    /// C` independent FMA chains; a last odd panel runs as a 4-row tile (xmm). With one 4-row panel per
    /// xmm FMA (the previous form) ResNet-50's 14x14 1x1 layers spent 5.6% of their time on their last
    /// 4 of 196 columns.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn narrow<const C: usize, const Q: usize, const ACT: u8>(a: &Args) {
        let panels = a.rows.div_ceil(4);
        let mut p = 0;
        while p + 2 * Q <= panels {
            // SAFETY: panels p .. p + 2Q exist (packed, zero-padded), rows 4p.. are C's rows.
            unsafe { narrow_pairs::<C, Q, ACT>(a, p) };
            p += 2 * Q;
        }
        while p + 2 <= panels {
            // SAFETY: as above, for panels p .. p + 2.
            unsafe { narrow_pairs::<C, 1, ACT>(a, p) };
            p += 2;
        }
        if p < panels {
            // SAFETY: as above, for panel p.
            unsafe { narrow_panel::<C, ACT>(a, p) };
        }
    }

    /// Panels `p0 .. p0 + 2Q` by `C` columns, two panels per ymm: the k loop, then per panel and column
    /// the accumulate, epilogue and store of its (up to) four rows, as [`narrow_panel`]'s.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn narrow_pairs<const C: usize, const Q: usize, const ACT: u8>(a: &Args, p0: usize) {
        let mut acc = [[_mm256_setzero_ps(); C]; Q];
        let panel = a.kc * 4;
        // SAFETY: panels p0 .. p0 + 2Q hold kc * 4 values each, and B's kc rows have C <= 8 readable
        // values.
        unsafe {
            let ap = a.a.add(p0 * panel);
            let mut bp = a.b;
            for k in 0..a.kc {
                let mut bv = [_mm256_setzero_ps(); C];
                for (c, bv) in bv.iter_mut().enumerate() {
                    *bv = _mm256_broadcast_ss(&*bp.add(c));
                }
                #[allow(clippy::needless_range_loop)]
                for q in 0..Q {
                    let lo = ap.add(2 * q * panel + k * 4);
                    let x = _mm256_loadu2_m128(lo.add(panel), lo);
                    for c in 0..C {
                        acc[q][c] = _mm256_fmadd_ps(x, bv[c], acc[q][c]);
                    }
                }
                bp = bp.byte_offset(a.b_stride);
            }
        }
        #[allow(clippy::needless_range_loop)]
        for q in 0..Q {
            for h in 0..2 {
                let row0 = (p0 + 2 * q + h) * 4;
                let rows = a.rows.min(row0 + 4) - row0;
                for c in 0..C {
                    let v = if h == 0 {
                        _mm256_castps256_ps128(acc[q][c])
                    } else {
                        _mm256_extractf128_ps::<1>(acc[q][c])
                    };
                    // SAFETY: rows row0 .. row0 + rows are C's, and column c < cols.
                    unsafe { store_rows::<ACT>(a, row0, rows, c, v) };
                }
            }
        }
    }

    /// A call of 1 to 4 columns (`a.cols`) by [`narrow`]: this kernel's narrow calls, and the AVX-512
    /// kernel's column tails (with the same activation codes: 0 identity, 1 ReLU, 2 leaky ReLU).
    ///
    /// At most 8 panels at a time (`2 Q`): with `kc = 256` packed panels are 4 KiB apart, so the panels'
    /// values of one k step fall in one L1 set (8 ways), and 16 panels at once missed L1 on every load.
    /// Zen 4, one thread, share of the narrow calls in `perf`: ResNet-50's 2048 -> 512 at 7x7 (one
    /// column in 49) 11.2% -> 5.6% of the layer with 8 panels instead of 16, its 1024 -> 256 at 14x14
    /// (four in 196) 3.5-3.8% -> 2.6% with 4 instead of 6. A C probe of the one-column loop: 36-59
    /// cycles per k step and 64 rows with 16 panels, 13-15 with 8, or with 16 panels one line apart
    /// more than 4 KiB. Which panels run together never changes results.
    ///
    /// # Safety
    /// As the kernel's (`a` decoded from valid arguments); the CPU has AVX2 and FMA.
    pub(in crate::codegen) unsafe fn narrow_tail<const ACT: u8>(a: &Args) {
        // SAFETY: as the caller guarantees (see above).
        unsafe {
            match a.cols {
                1 => narrow::<1, 4, ACT>(a),
                2 => narrow::<2, 4, ACT>(a),
                3 => narrow::<3, 3, ACT>(a),
                4 => narrow::<4, 2, ACT>(a),
                _ => {}
            }
        }
    }

    /// Panel `p` by `C` columns, its four rows in the lanes of an xmm (a block's last odd panel): the k
    /// loop, then per column the accumulate, epilogue and store of its (up to) four rows.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn narrow_panel<const C: usize, const ACT: u8>(a: &Args, p: usize) {
        let mut acc = [_mm_setzero_ps(); C];
        let panel = a.kc * 4;
        // SAFETY: panel p holds kc * 4 values, and B's kc rows have C <= 8 readable values.
        unsafe {
            let ap = a.a.add(p * panel);
            let mut bp = a.b;
            for k in 0..a.kc {
                let x = _mm_loadu_ps(ap.add(k * 4));
                for (c, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm_fmadd_ps(x, _mm_broadcast_ss(&*bp.add(c)), *acc);
                }
                bp = bp.byte_offset(a.b_stride);
            }
        }
        let row0 = p * 4;
        let rows = a.rows.min(row0 + 4) - row0;
        for (c, &v) in acc.iter().enumerate() {
            // SAFETY: rows row0 .. row0 + rows are C's, and column c < cols.
            unsafe { store_rows::<ACT>(a, row0, rows, c, v) };
        }
    }

    /// Finishes rows `row0 .. row0 + rows` (at most 4, one per lane) of column `col` (accumulate,
    /// epilogue, as [`store`] does per element) and stores them to C.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(in crate::codegen) unsafe fn store_rows<const ACT: u8>(
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
                let (s, t) = (_mm_loadu_ps(s.as_ptr()), _mm_loadu_ps(t.as_ptr()));
                let mut u = _mm_fmadd_ps(v, s, t);
                if a.shift_cols {
                    u = _mm_add_ps(u, _mm_set1_ps(*a.col_shift.add(col)));
                }
                v = _mm256_castps256_ps128(act::<ACT>(_mm256_castps128_ps256(u), a.slope));
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
            let full = cols == 8;
            let load = |p: *const f32| {
                if full {
                    _mm256_loadu_ps(p)
                } else {
                    _mm256_maskload_ps(p, mask)
                }
            };
            if a.add {
                v = _mm256_add_ps(v, load(c));
            }
            if a.last {
                let s = _mm256_set1_ps(*a.row_scale.add(row));
                let t = _mm256_set1_ps(*a.row_shift.add(row));
                v = _mm256_fmadd_ps(v, s, t);
                if a.shift_cols {
                    v = _mm256_add_ps(v, load(a.col_shift.add(col0)));
                }
                v = act::<ACT>(v, a.slope);
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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::imp::six_row_tiles;

    /// Six-row tiles leave 0, 4 or 8 rows to four-row tiles, never 2.
    #[test]
    fn six_row_tiles_leave_no_two_row_tile() {
        assert_eq!(six_row_tiles(128), 20);
        assert_eq!(six_row_tiles(256), 42);
        assert_eq!(six_row_tiles(8), 0);
        assert_eq!(six_row_tiles(12), 2);
        for padded in (4..=600).step_by(4) {
            let left = padded - 6 * six_row_tiles(padded);
            assert!([0, 4, 8].contains(&left), "{padded} rows leave {left}");
        }
    }
}
