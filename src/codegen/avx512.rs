//! The GEMM macro-kernel in 512-bit AVX-512F, written in Rust with `std::arch` and compiled into nnc: the
//! widest of the three implementations of [`KernelId::Gemm`](super::KernelId::Gemm), chosen at run time
//! on CPUs that have AVX-512F (Intel Skylake-SP and later server cores, AMD Zen 4 and later).
//!
//! Why it exists: a core with two 512-bit FMA pipes (Sapphire Rapids, Emerald Rapids) does twice the
//! work per cycle of the AVX2 kernel's 256-bit FMAs. Measured on a 2-core Emerald Rapids VM with a
//! standalone probe (one core, operands in cache): 256-bit FMAs peak at 83 GFLOP/s, 512-bit ones at 182.
//!
//! A call takes up to four B panels ([`GEMM_WIDEST_N`](super::GEMM_WIDEST_N) = 32 columns; panel `j`'s
//! row `p` at `b + p * b_stride_bytes + j * b_next_bytes`). With 17 to 32 columns, each `8 x 32` tile of
//! C lives in sixteen zmm accumulators: per k, two loads of B's 32 values and eight broadcasts of A (two
//! 4-row panels, the packing layout of `pack.rs`), each feeding two FMAs (the probe's best tile: 178-180
//! GFLOP/s, against 131-175 for 12, 16, 24 or 28 rows by 16 columns). With 5 to 16 columns, `16 x 16`
//! tiles: one load of B, sixteen broadcasts, sixteen FMAs. A leftover panel or three use smaller tiles of
//! the same width. Calls (and column tails) of 2 to 4 columns run `narrow16` (sixteen rows per zmm from
//! four A panels), of one column the AVX2 kernel's `narrow` path (lanes along rows: one xmm FMA per 4 rows
//! and column). When the panels are contiguous (`b_next_bytes` is 32, as the runtime lays them out: in
//! place in a 1x1 convolution's input, side by side in the packing scratch or in a dense layer's packed
//! weights) a row of 16 columns is one load; otherwise it is two 8-value halves. A tile whose columns are
//! all the call's reads and writes with plain loads and stores; an edge tile masks every B and C access
//! to the call's columns, so nothing outside them is read or written (masked-off lanes of AVX-512 loads
//! and stores do not fault). Masks only where needed: a masked load costs an FMA-port micro-op on Golden
//! Cove cores (see `WHOLE`). Each tile prefetches the next tile's A into L2, the next call's C (its rows'
//! next columns) into L1 for writing, and a B read once from memory (a dense layer's weights at batch 1,
//! `mode` bit 2) 2 KiB ahead (see `STREAM`); a call's first tile prefetches the next call's B when B is
//! read in place (`mode` bit 3). Calls of one panel of rows with `mode` bit 4 take up to four 32-column
//! groups of a streaming B and read them side by side, four streams at once (`stream_groups`).
//!
//! It computes exactly [`KernelId::Gemm`](super::KernelId::Gemm): per element one FMA per k in ascending
//! order, then the same epilogue operations in the same order as the Cranelift kernel (`v + old`, then
//! `fma(v, row_scale, row_shift) + col_shift`, then the activation), so all three give the same bits.
//! Sigmoid and Tanh epilogues are not implemented here: those kernels stay Cranelift's (see [`entry`]).
//!
//! Safety: the entry points are `unsafe extern "C" fn(*const i64)`, entered through `call.rs`'s table
//! under its contract (every address valid and sized per the kernel's documented arguments). [`entry`]
//! hands them out only when the CPU has AVX-512F, so the `target_feature` code never runs elsewhere.

use super::avx2::KernelFn;
use super::ActKind;

/// Whether this CPU runs the AVX-512 kernels.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Column tails of 1 to 4 run the AVX2 kernel's narrow path (every AVX-512 CPU has both).
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The AVX-512 macro-kernel with epilogue `act`, or `None` when this CPU lacks AVX-512F, or for the
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
mod imp {
    use std::arch::x86_64::*;

    use super::super::avx2::imp::{narrow_tail, store_rows};
    use super::super::avx2::GemmArgs;
    use super::{ActKind, KernelFn};

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

    /// The kernel's arguments (`KernelId::Gemm`, decoded as by `avx2.rs`), and the lanes of the call's
    /// columns in each 16-column half of the tile.
    struct Args {
        g: GemmArgs,
        masks: [__mmask16; 2],
    }

    impl std::ops::Deref for Args {
        type Target = GemmArgs;

        fn deref(&self) -> &GemmArgs {
            &self.g
        }
    }

    /// # Safety
    /// `args` points to the arguments of `KernelId::Gemm` (13, 14 when cols > 8, 15 with `mode` bit 4:
    /// then at most [`STREAM_PANEL_ROWS`](super::super::STREAM_PANEL_ROWS) rows), and their addresses
    /// satisfy `call.rs`'s contract; the CPU has AVX-512F (guaranteed by [`super::entry`], the only way
    /// to get this pointer).
    unsafe extern "C" fn gemm<const ACT: u8>(args: *const i64) {
        let widest = (super::super::GEMM_WIDEST_N, super::super::GEMM_STREAM_N);
        // SAFETY: the caller passes the kernel's arguments (see above).
        let g = unsafe { GemmArgs::decode(args, widest) };
        // SAFETY: AVX-512F is present (see above); the addresses are valid per the contract (with
        // `mode` bit 4, see `stream_groups`).
        unsafe {
            if g.groups {
                stream_groups::<ACT>(&g);
            } else {
                columns::<ACT>(g);
            }
        }
    }

    /// A call of up to [`GEMM_WIDEST_N`](super::super::GEMM_WIDEST_N) columns.
    ///
    /// # Safety
    /// As [`gemm`]'s (`g` decoded from valid arguments).
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn columns<const ACT: u8>(g: GemmArgs) {
        let a = Args {
            masks: masks(g.cols),
            g,
        };
        // Panels follow each other in memory: a row of 16 columns is one load.
        let contiguous = a.cols <= 8 || a.b_next == 32;
        // SAFETY: the caller's contract.
        unsafe {
            match a.cols {
                0 => {}
                1..=4 => narrow16::<ACT>(&a.g),
                5..=16 => rows_by::<1, 4, ACT>(&a, contiguous),
                17..=20 => {
                    // Columns 0..16 as 16 x 16 tiles (the masks of the first half are whole), then
                    // the 1 to 4 left from panel 2 on as a narrow call.
                    rows_by::<1, 4, ACT>(&a, contiguous);
                    let tail = GemmArgs {
                        b: a.b.byte_offset(2 * a.b_next),
                        c: a.c.add(16),
                        col_shift: a.col_shift.add(16),
                        cols: a.cols - 16,
                        ..a.g
                    };
                    narrow16::<ACT>(&tail);
                }
                _ => rows_by::<2, 2, ACT>(&a, contiguous),
            }
        }
    }

    /// A call, or a column tail, of 1 to 4 columns. Two to four: sixteen rows per zmm, from four 4-row
    /// panels of A (one load and three inserts per k), one FMA per column. The AVX2 kernel's `narrow`
    /// path (one xmm FMA per four rows and column) spends four FMAs where this spends one, plus three
    /// inserts on the shuffle port (an FMA port too): two to four columns cost 5-7 of those
    /// micro-ops per sixteen rows and k, against 8-16. One column stays on `narrow` (4 against 4), as
    /// do the last 1 to 3 panels of A.
    ///
    /// # Safety
    /// As [`gemm`]'s (`g` decoded from valid arguments, at most 4 columns); the CPU has AVX-512F, AVX2
    /// and FMA.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn narrow16<const ACT: u8>(g: &GemmArgs) {
        // SAFETY: the caller's contract (see above).
        unsafe {
            match g.cols {
                2 => narrow16_rows::<2, 4, ACT>(g),
                3 => narrow16_rows::<3, 3, ACT>(g),
                4 => narrow16_rows::<4, 2, ACT>(g),
                _ => narrow_tail::<ACT>(g),
            }
        }
    }

    /// Every row of the call as tiles of `Q` groups of sixteen rows by `C` columns (`Q C` accumulators,
    /// at least eight, the FMAs in flight for two pipes of latency 4), then single groups, then the
    /// panels left by `narrow`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn narrow16_rows<const C: usize, const Q: usize, const ACT: u8>(g: &GemmArgs) {
        let panels = g.rows.div_ceil(4);
        let mut p = 0;
        // SAFETY: panels p .. p + 4 Q (or p + 4) exist (packed, zero-padded), rows 4p.. are C's rows;
        // the rest is a call of the rows from 4p on, with A, C and the row vectors from there.
        unsafe {
            while p + 4 * Q <= panels {
                narrow16_tile::<C, Q, ACT>(g, p);
                p += 4 * Q;
            }
            while p + 4 <= panels {
                narrow16_tile::<C, 1, ACT>(g, p);
                p += 4;
            }
            if p < panels {
                let row = 4 * p;
                let rest = GemmArgs {
                    a: g.a.add(p * g.kc * 4),
                    c: g.c.byte_offset(row as isize * g.ldc),
                    rows: g.rows - row,
                    row_scale: g.row_scale.wrapping_add(row),
                    row_shift: g.row_shift.wrapping_add(row),
                    ..*g
                };
                narrow_tail::<ACT>(&rest);
            }
        }
    }

    /// Rows `4 p0 .. 4 p0 + 16 Q` (panels `p0 .. p0 + 4 Q`) by the call's `C` columns: the k loop, then
    /// per four rows and column the accumulate, epilogue and store of `narrow` (the same operations).
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn narrow16_tile<const C: usize, const Q: usize, const ACT: u8>(
        g: &GemmArgs,
        p0: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; Q];
        let panel = g.kc * 4;
        // SAFETY: panels p0 .. p0 + 4Q hold kc * 4 values each; B's kc rows have C <= cols readable
        // values.
        unsafe {
            let ap = g.a.add(p0 * panel);
            let mut bp = g.b;
            for k in 0..g.kc {
                let mut bv = [_mm512_setzero_ps(); C];
                for (c, bv) in bv.iter_mut().enumerate() {
                    *bv = _mm512_set1_ps(*bp.add(c));
                }
                #[allow(clippy::needless_range_loop)]
                for q in 0..Q {
                    let x = ap.add(4 * q * panel + k * 4);
                    let mut v = _mm512_castps128_ps512(_mm_loadu_ps(x));
                    v = _mm512_insertf32x4::<1>(v, _mm_loadu_ps(x.add(panel)));
                    v = _mm512_insertf32x4::<2>(v, _mm_loadu_ps(x.add(2 * panel)));
                    v = _mm512_insertf32x4::<3>(v, _mm_loadu_ps(x.add(3 * panel)));
                    for c in 0..C {
                        acc[q][c] = _mm512_fmadd_ps(v, bv[c], acc[q][c]);
                    }
                }
                bp = bp.byte_offset(g.b_stride);
            }
        }
        #[allow(clippy::needless_range_loop)]
        for q in 0..Q {
            for i in 0..4 {
                let row0 = (p0 + 4 * q + i) * 4;
                if row0 >= g.rows {
                    break;
                }
                let rows = (g.rows - row0).min(4);
                for c in 0..C {
                    let v = match i {
                        0 => _mm512_extractf32x4_ps::<0>(acc[q][c]),
                        1 => _mm512_extractf32x4_ps::<1>(acc[q][c]),
                        2 => _mm512_extractf32x4_ps::<2>(acc[q][c]),
                        _ => _mm512_extractf32x4_ps::<3>(acc[q][c]),
                    };
                    // SAFETY: rows row0 .. row0 + rows are C's, and column c < cols.
                    unsafe { store_rows::<ACT>(g, row0, rows, c, v) };
                }
            }
        }
    }

    /// A call with `mode` bit 4: one panel of A (1 to 4 rows) by up to four groups of 32 columns, group
    /// `i`'s B at `b + i * b_group`. The groups' rows are read side by side in one k loop: four streams
    /// from memory at once instead of one call's, each prefetched [`STREAM_AHEAD`] bytes ahead into L2.
    /// A dense layer at batch 1 reads its weights once per run, from L3 or memory, and is bound by how
    /// many lines are in flight. Groups of panels apart (`b_next` not 32 bytes) run as a call each.
    ///
    /// # Safety
    /// As [`gemm`]'s, with `g.rows` at most 4 and `g.b_group` the groups' distance.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn stream_groups<const ACT: u8>(g: &GemmArgs) {
        let groups = g.cols.div_ceil(32);
        // The groups `i0 .. i0 + G` as a call of their own.
        let part = |i0: usize, n: usize| GemmArgs {
            b: g.b.wrapping_byte_offset(i0 as isize * g.b_group),
            c: g.c.wrapping_add(32 * i0),
            col_shift: g.col_shift.wrapping_add(32 * i0),
            cols: (g.cols - 32 * i0).min(32 * n),
            ..*g
        };
        // SAFETY: each part is a call of the caller's rows and some of its groups' columns.
        unsafe {
            if g.cols > 8 && g.b_next != 32 {
                for i in 0..groups {
                    columns::<ACT>(part(i, 1));
                }
                return;
            }
            match (g.rows, groups) {
                (0, _) | (_, 0) => {}
                (1, 1) => stream_tile::<1, 1, ACT>(g),
                (1, 2) => stream_tile::<1, 2, ACT>(g),
                (1, 3) => stream_tile::<1, 3, ACT>(g),
                (1, _) => stream_tile::<1, 4, ACT>(g),
                (2, 1) => stream_tile::<2, 1, ACT>(g),
                (2, 2) => stream_tile::<2, 2, ACT>(g),
                (2, 3) => stream_tile::<2, 3, ACT>(g),
                (2, _) => stream_tile::<2, 4, ACT>(g),
                (3, 1) => stream_tile::<3, 1, ACT>(g),
                (3, 2) => stream_tile::<3, 2, ACT>(g),
                (3, 3) => stream_tile::<3, 3, ACT>(g),
                (3, _) => stream_tile::<3, 4, ACT>(g),
                // Four rows by four groups would take all 32 registers as accumulators: two calls of
                // two groups (or one and one, or two and one).
                (_, 1) => stream_tile::<4, 1, ACT>(g),
                (_, 2) => stream_tile::<4, 2, ACT>(g),
                (_, n) => {
                    stream_tile::<4, 2, ACT>(&part(0, 2));
                    if n == 3 {
                        stream_tile::<4, 1, ACT>(&part(2, 1));
                    } else {
                        stream_tile::<4, 2, ACT>(&part(2, 2));
                    }
                }
            }
        }
    }

    /// The lanes of a call's `cols` columns in each 16-column half of 32.
    fn masks(cols: usize) -> [__mmask16; 2] {
        let half = |h: usize| -> __mmask16 {
            let n = cols.saturating_sub(16 * h).min(16);
            ((1u32 << n) - 1) as __mmask16
        };
        [half(0), half(1)]
    }

    /// `R` rows (A's first panel) by `G` groups of 32 columns (B contiguous within a group, groups
    /// `b_group` bytes apart): the k loop, then per group the store of [`tile`] (the same operations).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn stream_tile<const R: usize, const G: usize, const ACT: u8>(g: &GemmArgs) {
        let mut acc = [[[_mm512_setzero_ps(); 2]; G]; R];
        let mask: [[__mmask16; 2]; G] = std::array::from_fn(|i| masks(g.cols - 32 * i));
        // SAFETY: A's panel holds kc * 4 values; group i's kc rows of B have the lanes of its mask
        // readable (its columns, panels side by side); masked-off lanes are not read.
        unsafe {
            for k in 0..g.kc {
                let x = g.a.add(k * 4);
                let s: [__m512; R] = std::array::from_fn(|r| _mm512_set1_ps(*x.add(r)));
                let row = g.b.byte_offset(k as isize * g.b_stride);
                for i in 0..G {
                    let bp = row.byte_offset(i as isize * g.b_group);
                    for h in 0..2 {
                        let ahead = bp.wrapping_byte_offset(STREAM_AHEAD + 64 * h as isize);
                        _mm_prefetch::<_MM_HINT_T1>(ahead as *const i8);
                        let b = _mm512_maskz_loadu_ps(mask[i][h], bp.add(16 * h));
                        for r in 0..R {
                            acc[r][i][h] = _mm512_fmadd_ps(s[r], b, acc[r][i][h]);
                        }
                    }
                }
            }
        }
        for i in 0..G {
            let cols = (g.cols - 32 * i).min(32);
            let a = Args {
                masks: mask[i],
                g: GemmArgs {
                    c: g.c.wrapping_add(32 * i),
                    col_shift: g.col_shift.wrapping_add(32 * i),
                    cols,
                    ..*g
                },
            };
            let whole = cols == 32;
            #[allow(clippy::needless_range_loop)]
            for r in 0..R {
                for h in 0..2 {
                    if 16 * h < cols {
                        // SAFETY: row r < rows of C, masked to group i's columns.
                        unsafe { store::<ACT>(&a, r, h, acc[r][i][h], whole) };
                    }
                }
            }
        }
    }

    /// How a tile reads a row of B's 16 columns: from panels that follow each other in memory
    /// (`b_next` 32 bytes), or from two 8-column panels apart; all 16 lanes, or masked to the call's
    /// columns. A masked load costs one more micro-op than a plain one, on a port the FMAs use (on
    /// Golden Cove cores: `macro_kernel_rate`'s 32-column calls went from 140-160 to 169-183 GFLOP/s
    /// with plain loads), so whole rows of columns use plain loads.
    const WHOLE: u8 = 0;
    const MASKED: u8 = 1;
    const APART_WHOLE: u8 = 2;
    const APART_MASKED: u8 = 3;
    /// `WHOLE`, with B streaming from memory (`GemmArgs::stream`: a dense layer's packed weights at
    /// batch 1, read once): each k step prefetches the row [`STREAM_AHEAD`] bytes ahead.
    const STREAM: u8 = 4;

    /// How far ahead a streaming B is prefetched: 16 rows of 32 columns. The hardware prefetchers stop at
    /// each 4 KiB page and a task's weights are 32 KiB runs 4 MiB apart. A 25088 -> 4096 dense layer
    /// (VGG16's first, 411 MB of weights) at batch 1, two threads, best per-layer median of 4 runs:
    /// 22.3 ms without, 19.8 with 1 KiB, 16.3 with 2 KiB, 18.0 with 4 KiB.
    const STREAM_AHEAD: isize = 2048;

    /// [`rows`] with B read by plain loads when the tile's `16 H` columns are all the call's.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_by<const H: usize, const P: usize, const ACT: u8>(a: &Args, contiguous: bool) {
        let whole = a.masks[..H].iter().all(|&m| m == 0xffff);
        // SAFETY: the caller's contract (see `gemm`).
        unsafe {
            match (contiguous, whole) {
                (true, true) if a.stream => rows::<H, P, STREAM, ACT>(a),
                (true, true) => rows::<H, P, WHOLE, ACT>(a),
                (true, false) => rows::<H, P, MASKED, ACT>(a),
                (false, true) => rows::<H, P, APART_WHOLE, ACT>(a),
                (false, false) => rows::<H, P, APART_MASKED, ACT>(a),
            }
        }
    }

    /// Every row of the block as tiles of `P` 4-row panels by `16 H` columns, then the panels left over
    /// in one smaller tile.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const H: usize, const P: usize, const LOAD: u8, const ACT: u8>(a: &Args) {
        let panels = a.rows.div_ceil(4);
        let mut p = 0;
        while p + P <= panels {
            // SAFETY: panels p .. p + P exist (packed, zero-padded), rows 4p.. are C's rows.
            unsafe { tile::<H, P, LOAD, ACT>(a, p) };
            p += P;
        }
        // SAFETY: as above, for the panels left (fewer than P).
        unsafe {
            match panels - p {
                3 => tile::<H, 3, LOAD, ACT>(a, p),
                2 => tile::<H, 2, LOAD, ACT>(a, p),
                1 => tile::<H, 1, LOAD, ACT>(a, p),
                _ => {}
            }
        }
    }

    /// Columns `16 h .. 16 h + 16` of B's row at `bp` (the row's address in the first panel), zero in
    /// the lanes past the call's columns.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_b<const LOAD: u8>(a: &Args, bp: *const f32, h: usize) -> __m512 {
        let mask = a.masks[h];
        // SAFETY: the lanes of `mask` are columns of existing panels, whose rows have 8 readable values
        // each (contiguous: panel j's row starts 8 j values after the first's); masked-off lanes are
        // neither read nor able to fault, so the high half's base may lie before any allocation. The
        // whole loads read only when every lane is a column of the call (see `rows_by`).
        unsafe {
            match LOAD {
                WHOLE | STREAM => _mm512_loadu_ps(bp.add(16 * h)),
                MASKED => _mm512_maskz_loadu_ps(mask, bp.add(16 * h)),
                APART_WHOLE => {
                    let lo = _mm256_loadu_ps(bp.byte_offset(2 * h as isize * a.b_next));
                    let hi = _mm256_loadu_ps(bp.byte_offset((2 * h as isize + 1) * a.b_next));
                    let v = _mm512_castpd256_pd512(_mm256_castps_pd(lo));
                    _mm512_castpd_ps(_mm512_insertf64x4::<1>(v, _mm256_castps_pd(hi)))
                }
                _ => {
                    let lo = _mm512_maskz_loadu_ps(
                        mask & 0xff,
                        bp.byte_offset(2 * h as isize * a.b_next),
                    );
                    let hi = bp
                        .wrapping_byte_offset((2 * h as isize + 1) * a.b_next)
                        .wrapping_sub(8);
                    _mm512_mask_loadu_ps(lo, mask & 0xff00, hi)
                }
            }
        }
    }

    /// The `4P x 16H` tile of panels `p0 .. p0 + P`: the k loop, then the store.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const H: usize, const P: usize, const LOAD: u8, const ACT: u8>(
        a: &Args,
        p0: usize,
    ) {
        let mut acc = [[[_mm512_setzero_ps(); H]; 4]; P];
        let panel = a.kc * 4;
        let ahead = a.ahead && p0 == 0;
        // SAFETY: panel p0 + q holds kc * 4 values for q < P, and B's kc rows are read within the
        // call's columns (see `load_b`).
        unsafe {
            let ap = a.a.add(p0 * panel);
            let k_at = |k: usize| a.b.byte_offset(k as isize * a.b_stride);
            let at = (ap, panel, p0);
            // The first `4 P H` k steps prefetch C, and every second one the next tile's A: the steps
            // after the first ones go in pairs, so that neither needs a branch per step (each compare
            // and branch takes front-end slots that a step of 16 FMAs and 10 loads nearly fills).
            // Against one loop with those branches in every step, both in one process, alternating
            // (median of paired ratios): 256 -> 64 1x1 at 56x56 alone, one thread, 6-11% faster;
            // 512 -> 512 3x3 at 7x7 8%; 64 -> 256 1x1 even; ResNet-50 one thread 5%, two threads 5-8%;
            // GoogLeNet 4%, Inception v3 7% (two threads).
            let first = (4 * P * H).min(a.kc);
            for k in 0..first {
                let b = k_at(k);
                match (ahead, k % 2 == 0) {
                    (true, true) => kstep::<H, P, LOAD, true, true, true>(a, at, k, b, &mut acc),
                    (true, false) => kstep::<H, P, LOAD, true, true, false>(a, at, k, b, &mut acc),
                    (false, true) => kstep::<H, P, LOAD, true, false, true>(a, at, k, b, &mut acc),
                    (false, false) => {
                        kstep::<H, P, LOAD, true, false, false>(a, at, k, b, &mut acc)
                    }
                }
            }
            let mut k = first;
            if ahead {
                while k + 2 <= a.kc {
                    kstep::<H, P, LOAD, false, true, true>(a, at, k, k_at(k), &mut acc);
                    kstep::<H, P, LOAD, false, true, false>(a, at, k + 1, k_at(k + 1), &mut acc);
                    k += 2;
                }
            } else {
                while k + 2 <= a.kc {
                    kstep::<H, P, LOAD, false, false, true>(a, at, k, k_at(k), &mut acc);
                    kstep::<H, P, LOAD, false, false, false>(a, at, k + 1, k_at(k + 1), &mut acc);
                    k += 2;
                }
            }
            if k < a.kc {
                // `first` is even, so a last single step has an even k.
                kstep::<H, P, LOAD, false, false, true>(a, at, k, k_at(k), &mut acc);
            }
        }
        let row0 = p0 * 4;
        let rows = a.rows.min(row0 + 4 * P) - row0;
        #[allow(clippy::needless_range_loop)]
        for q in 0..P {
            for r in 0..4 {
                if 4 * q + r < rows {
                    for h in 0..H {
                        // SAFETY: row row0 + 4q + r < rows of C, masked to the call's columns.
                        unsafe {
                            store::<ACT>(
                                a,
                                row0 + 4 * q + r,
                                h,
                                acc[q][r][h],
                                LOAD == WHOLE || LOAD == APART_WHOLE || LOAD == STREAM,
                            )
                        };
                    }
                }
            }
        }
    }

    /// k step `k` of [`tile`] (B's row at `bp`, A's panels from `ap`, `panel` values apart, the tile's
    /// first panel `p0`), with the prefetches its constants ask for: `CPF` the next call's C, `AHEAD`
    /// the next call's B, `APF` the next tile's A.
    ///
    /// # Safety
    /// As [`tile`]'s, for step `k < kc`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn kstep<
        const H: usize,
        const P: usize,
        const LOAD: u8,
        const CPF: bool,
        const AHEAD: bool,
        const APF: bool,
    >(
        a: &Args,
        (ap, panel, p0): (*const f32, usize, usize),
        k: usize,
        bp: *const f32,
        acc: &mut [[[__m512; H]; 4]; P],
    ) {
        // SAFETY: the caller's (see above).
        unsafe {
            let mut bv = [_mm512_setzero_ps(); H];
            for (h, bv) in bv.iter_mut().enumerate() {
                *bv = load_b::<LOAD>(a, bp, h);
            }
            // Constant indices (the loops unroll) keep the accumulators in registers.
            #[allow(clippy::needless_range_loop)]
            for q in 0..P {
                let x = ap.add(q * panel + k * 4);
                for r in 0..4 {
                    let s = _mm512_set1_ps(*x.add(r));
                    for h in 0..H {
                        acc[q][r][h] = _mm512_fmadd_ps(s, bv[h], acc[q][r][h]);
                    }
                }
            }
            if CPF {
                // The next call's C (the same rows, the columns after these) into L1 for writing,
                // one line per k step: a convolution's rows of C are planes apart, so each call
                // writes a line or two in each of up to hundreds of pages, too many streams for
                // the hardware prefetchers, and on 56x56 planes the output (3.2 MB for 256
                // channels) is not in L2: every line's first write waited for memory. ResNet-50,
                // one thread, both variants in one process (per-layer minimums of 30 runs): its
                // 64 -> 256 1x1 layers at 56x56 0.78-0.83 -> 0.65-0.67 ms, the 256 -> 64 ones
                // 0.76-0.77 -> 0.73-0.75, the downsample 0.81 -> 0.72; the layer sum -1.2 to
                // -1.6%; on two threads medians 1.9% lower (ResNet-18 2.4%); GoogLeNet and
                // Inception v3 within the noise (-0.6 to +1%). The last tile of a call prefetches
                // past C's columns; a prefetch never faults.
                let (row, h) = (p0 * 4 + k / H, k % H);
                let line =
                    a.c.wrapping_byte_offset(row as isize * a.ldc)
                        .wrapping_add(a.cols + 16 * h);
                _mm_prefetch::<_MM_HINT_ET0>(line as *const i8);
            }
            if AHEAD {
                // B in place (`mode` bit 3): the next call's B row (this row's next columns) into
                // L1, from the call's first tile. A 1x1 convolution's rows of B are planes apart,
                // as many pages as k steps, too many streams for the hardware prefetchers, and on
                // 56x56 planes its input is not in L2. ResNet-50's in-place 1x1 layers alone (one
                // thread, both variants in one process, median of 300 paired runs): 256 -> 64 at
                // 56x56 11% faster, 256 -> 128 5%, 64 -> 256 3%, 512 -> 128 at 28x28 3.5%; in the
                // model (per-layer minimums of 30) 3-10%.
                for h in 0..H {
                    let next = bp.wrapping_add(a.cols + 16 * h);
                    _mm_prefetch::<_MM_HINT_T0>(next as *const i8);
                }
            }
            if LOAD == STREAM {
                // A row of B is 64 H bytes: one prefetch per 64.
                for h in 0..H {
                    let ahead = bp.wrapping_byte_offset(STREAM_AHEAD + 64 * h as isize);
                    _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                }
            }
            if APF {
                // The next tile's A (the P panels after these, 16 P bytes per k step) into L2:
                // the weights of a layer come from L3 or memory once, and the hardware
                // prefetchers restart at each 4 KiB page. ResNet-50 on one thread: best of 10
                // 63.3-64.3 -> 61.6-62.2 ms. A prefetch never faults, so the last tile's may
                // point past A.
                let next = ap.wrapping_add(P * panel + k * 2 * P);
                _mm_prefetch::<_MM_HINT_T1>(next as *const i8);
            }
        }
    }

    /// Finishes row `row`, columns `16 h ..` of the tile (accumulate, epilogue) and stores the lanes of
    /// the call's columns to C; `whole` when all 16 lanes are (plain loads and store, see [`WHOLE`]).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store<const ACT: u8>(a: &Args, row: usize, h: usize, mut v: __m512, whole: bool) {
        let mask = a.masks[h];
        // SAFETY: row < rows and the mask's lanes are columns 16h.. below a.cols (all 16 when
        // `whole`), so every access is inside C's, the row vectors' and the column vector's valid
        // elements.
        unsafe {
            let load = |p: *const f32| {
                if whole {
                    _mm512_loadu_ps(p)
                } else {
                    _mm512_maskz_loadu_ps(mask, p)
                }
            };
            let c = a.c.byte_offset(row as isize * a.ldc).add(16 * h);
            if a.add {
                v = _mm512_add_ps(v, load(c));
            }
            if a.last {
                let s = _mm512_set1_ps(*a.row_scale.add(row));
                let t = _mm512_set1_ps(*a.row_shift.add(row));
                v = _mm512_fmadd_ps(v, s, t);
                if a.shift_cols {
                    v = _mm512_add_ps(v, load(a.col_shift.add(16 * h)));
                }
                v = act::<ACT>(v, a.slope);
            }
            if whole {
                _mm512_storeu_ps(c, v);
            } else {
                _mm512_mask_storeu_ps(c, mask, v);
            }
        }
    }

    /// The activation, with the Cranelift kernel's semantics (`math::act`): Relu is `v < 0 ? 0 : v`
    /// (`max(0, v)` returns its second operand for NaN and for -0), LeakyRelu `v < 0 ? v * slope : v`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn act<const ACT: u8>(v: __m512, slope: f32) -> __m512 {
        let zero = _mm512_setzero_ps();
        match ACT {
            RELU => _mm512_max_ps(zero, v),
            LEAKY => {
                let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero);
                _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(slope))
            }
            _ => v,
        }
    }
}
