//! Executable steps: what kernel runs on which addresses, split into independent tasks that threads share.
//! Addresses are symbolic here (a region and an element offset) and resolved against the program's memory
//! when it runs. Every task writes memory no other task of its step touches, and computes each value with
//! the same operations in the same order whichever thread runs it, so results are bitwise identical for
//! any thread count.

use crate::codegen::{KernelId, Table, WinogradKind, TILE_M, TILE_N};

use super::tasks;

/// Where memory lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Arena,
    /// Memory the program owns: packed weights, folded batch-norm factors, window tables, RNN state.
    Owned(usize),
    Input(usize),
    Output(usize),
    /// The running thread's scratch memory.
    Scratch,
}

/// An address: `offset` elements (f32 or i32) into a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr {
    pub region: Region,
    pub offset: u64,
}

impl Addr {
    pub fn at(self, elements: u64) -> Addr {
        Addr {
            region: self.region,
            offset: self.offset + elements,
        }
    }
}

/// One argument of a simple kernel call, for task `(image, chunk)`.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// `addr + image * image_stride + chunk * chunk_stride` elements.
    Ptr {
        addr: Addr,
        image_stride: u64,
        chunk_stride: u64,
    },
    /// The size of this chunk: `min(chunk, total - index * chunk)`.
    Len {
        total: u64,
        chunk: u64,
    },
    /// Where this chunk starts: `index * chunk`.
    Start {
        chunk: u64,
    },
    Int(i64),
}

impl Arg {
    pub fn ptr(addr: Addr) -> Arg {
        Arg::Ptr {
            addr,
            image_stride: 0,
            chunk_stride: 0,
        }
    }
}

/// A kernel called once per task, tasks being `images x chunks`.
#[derive(Clone, Debug)]
pub struct Simple {
    pub kernel: KernelId,
    /// f32 elements of scratch a task needs (`Arg::Ptr` into [`Region::Scratch`]).
    pub scratch: u64,
    pub images: u64,
    pub chunks: u64,
    pub args: Vec<Arg>,
}

/// A matrix product with its epilogue, `C = act(A . B * row_scale + row_shift + col_shift)`, in one of two
/// forms. `Conv`: A is the packed weight (rows: output channels), B the patches of one image's input
/// (columns: output pixels), per image and group. `Dense`: A is the input (rows: samples), packed at run
/// time, and B the packed weight (columns: units).
#[derive(Clone, Debug)]
pub struct Gemm {
    pub act: crate::codegen::ActKind,
    pub slope: f32,
    /// C holds values (a residual) that the product adds to, from the first k block on.
    pub accumulate: bool,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    /// The k block: [`KC`], for a convolution whole input channels (a multiple of the taps), for a dense
    /// product that streams its weights all of k (`lower::products::dense_kblock`).
    pub kblock: u64,
    pub form: Form,
    /// Packed A (Conv) or packed B (Dense), one per group.
    pub weights: Addr,
    pub group_weight_stride: u64,
    pub row_scale: Addr,
    pub row_shift: Addr,
    pub col_shift: Addr,
    /// Where the rows of C go: one segment for a layer, one per member for merged sibling convolutions.
    pub outs: Vec<Segment>,
    /// Elements between rows of C.
    pub ldc: u64,
    pub groups: u64,
    pub images: u64,
    /// Panels of 8 columns per task, and row blocks per column block.
    pub panels_per_task: u64,
    pub row_splits: u64,
    /// Tasks numbered by row share first (share `s` is tasks `s T / S ..`), so each thread's own range
    /// is one share of the rows of every group and column block. The staged Winograd products: a
    /// thread then writes the rows of `M` (filters) that its range of the output transform (tasks by
    /// filters) reads next, from its own L2 (ResNet-50, in-process A/B: its 14x14 layers 3% faster at
    /// batches 1 and 8). Otherwise the share is the innermost number.
    pub shares_first: bool,
    /// Column panels one macro-kernel call takes at most ([`crate::codegen::GemmImpl::panels_per_call`]):
    /// a convolution packs that many panels side by side (interleaved rows) before a call.
    pub call_panels: u64,
}

/// Rows `first..first + rows` of a product's C and where they are written: row `first + i` of image `n` at
/// `out + n * image_stride + i * ldc`. A merged product's members start at multiples of `TILE_M` (rows
/// between them are zero padding of A and are not written).
#[derive(Clone, Debug)]
pub struct Segment {
    pub first: u64,
    pub rows: u64,
    pub out: Addr,
    pub image_stride: u64,
}

#[derive(Clone, Debug)]
pub enum Form {
    Conv {
        input: Addr,
        in_image_stride: u64,
        /// Input elements per group (channels per group x plane).
        in_group_stride: u64,
        plane: u64,
        taps: u64,
        /// Patterns of i32 offsets per tap and column (`PackPatches` tables, `taps * 8` each), relative
        /// to a panel's base offset; panels with the same pattern (the same position in rows with the
        /// same padding) share it.
        table: Addr,
        /// Per pattern and tap, how `PackPatches` reads the tap ([`TAP_READ`] i32 each).
        runs: Addr,
        /// Per column panel: its pattern and base offset into the input plane.
        panels: std::sync::Arc<[(u32, i32)]>,
        direct: bool,
        /// The products of a Winograd convolution (`lower::winograd`): B holds transformed inputs.
        winograd: bool,
    },
    Dense {
        input: Addr,
        /// Elements between input rows.
        ld: u64,
        /// Columns per group of the packed weights ([`dense_b_width`]).
        b_width: u64,
    },
}

impl Gemm {
    /// Values from one group's output (rows of C) to the next: `m` rows of `ldc`, or a Winograd
    /// product's matrices of `M` ([`winograd_matrix_stride`]).
    pub(super) fn out_group_stride(&self) -> u64 {
        match self.form {
            Form::Conv { winograd: true, .. } => winograd_matrix_stride(self.m, self.ldc),
            _ => self.m * self.ldc,
        }
    }

    pub(super) fn col_panels(&self) -> u64 {
        self.n.div_ceil(TILE_N as u64)
    }

    pub(super) fn col_blocks(&self) -> u64 {
        self.col_panels().div_ceil(self.panels_per_task)
    }

    pub fn tasks(&self) -> u64 {
        self.images * self.groups * self.col_blocks() * self.row_splits
    }

    /// f32 elements of scratch one task needs.
    pub fn scratch(&self) -> u64 {
        match self.form {
            Form::Conv { .. } => conv_pack_scratch(self.call_panels, self.kblock),
            Form::Dense { .. } => {
                let panels = self.m.div_ceil(TILE_M as u64);
                panels.div_ceil(self.row_splits) * self.kblock * TILE_M as u64
            }
        }
    }
}

/// A stride-1 convolution as Winograd F(2x2, 3x3), F(4x4, 3x3) or F(2x2, 5x5) (`lower::winograd`), block
/// by block of tiles: a task takes one block of one image through the input transform, the 16 or 36 products and
/// the output transform, with the block's transformed inputs `V` and products `M` in its thread's
/// scratch (after the products' packing area), so they stay in L2 from one stage to the next.
#[derive(Clone, Debug)]
pub struct Winograd {
    pub x: Addr,
    pub x_image_stride: u64,
    pub y: Addr,
    pub y_image_stride: u64,
    pub channels: u64,
    pub filters: u64,
    /// The output plane.
    pub h: u64,
    pub w: u64,
    /// The input plane and its zero padding (the output's size: 1 for 3x3 filters, 2 for 5x5; or 0, a
    /// valid convolution: not F(2x2, 3x3)).
    pub in_hw: (u64, u64),
    pub pad: u64,
    pub kind: WinogradKind,
    /// Tiles per block (in row-major tile order).
    pub block: u64,
    /// Per filter, added after the output transform (bias and batch-norm shift).
    pub shift: Addr,
    pub act: crate::codegen::ActKind,
    pub slope: f32,
    /// The output holds a residual to add.
    pub accumulate: bool,
    pub images: u64,
    /// The 16 (or 36) products of a whole block and of the last one (fewer tiles): one group each, `V`
    /// and `M` in scratch at [`Winograd::v_at`] and [`Winograd::m_at`].
    pub full: Gemm,
    pub last: Gemm,
}

impl Winograd {
    pub fn tile_rows(&self) -> u64 {
        self.h.div_ceil(self.kind.out())
    }

    pub fn tile_cols(&self) -> u64 {
        self.w.div_ceil(self.kind.out())
    }

    /// Transformed values per tile: 16 or 36, the products' groups.
    pub fn values(&self) -> u64 {
        self.kind.values()
    }

    pub fn tiles(&self) -> u64 {
        self.tile_rows() * self.tile_cols()
    }

    fn blocks(&self) -> u64 {
        self.tiles().div_ceil(self.block)
    }

    /// Values per row of a block's `V` and `M`: its tiles, rounded up to whole cache lines.
    pub fn block_ld(&self) -> u64 {
        self.block.next_multiple_of(16)
    }

    /// Values from one matrix of the block's `V` to the next.
    pub fn v_stride(&self) -> u64 {
        winograd_matrix_stride(self.channels, self.block_ld())
    }

    /// Values from one matrix of the block's `M` to the next.
    pub fn m_stride(&self) -> u64 {
        winograd_matrix_stride(self.filters, self.block_ld())
    }

    /// Where `V` and `M` start in a task's scratch, for products whose calls take `call_panels` panels
    /// (k blocks of `KC`) and whose `V` takes `v_len` values: after the products' packing area, on a
    /// cache line, one after the other.
    pub fn scratch_at(call_panels: u64, v_len: u64) -> (u64, u64) {
        let v = conv_pack_scratch(call_panels, crate::codegen::KC as u64).next_multiple_of(16);
        (v, v + v_len)
    }

    pub fn v_at(&self) -> u64 {
        Self::scratch_at(self.full.call_panels, self.values() * self.v_stride()).0
    }

    pub fn m_at(&self) -> u64 {
        Self::scratch_at(self.full.call_panels, self.values() * self.v_stride()).1
    }

    fn scratch(&self) -> u64 {
        self.m_at() + self.values() * self.m_stride()
    }
}

/// Values between consecutive matrices of a Winograd convolution's `V` (or `M`) beyond their `rows`
/// rows of `ld`: one cache line more, so that the 16 or 36 values of a tile (one in each matrix), which
/// a transform writes (or reads) together, fall in 16 or 36 different L1 sets. Without it a matrix of
/// 64 channels by 64 tiles is 16 KiB, and all of a tile's values share one set of 12 ways.
pub fn winograd_matrix_stride(rows: u64, ld: u64) -> u64 {
    rows * ld + 16
}

/// f32 elements of scratch a convolution's task packs B's panels into: one call's panels (`call_panels`
/// of 8 columns), `kblock` rows.
pub fn conv_pack_scratch(call_panels: u64, kblock: u64) -> u64 {
    call_panels.max(1) * kblock * TILE_N as u64
}

/// A recurrent layer over a sequence, run by one thread step after step.
#[derive(Clone, Debug)]
pub struct Recurrent {
    pub cell: KernelId,
    /// Input projection of all steps (`[N*T, G*H]`), then the per-step recurrent product.
    pub project: Gemm,
    pub recur: Gemm,
    pub gates: Addr,
    pub recur_out: Addr,
    pub state_h: Addr,
    pub state_c: Addr,
    pub batch: u64,
    pub steps: u64,
    pub hidden: u64,
    pub out: Addr,
    pub out_image_stride: u64,
    pub return_sequences: bool,
}

#[derive(Clone, Debug)]
pub enum Exec {
    Simple(Simple),
    Gemm(Box<Gemm>),
    Winograd(Box<Winograd>),
    Recurrent(Box<Recurrent>),
}

impl Exec {
    pub fn tasks(&self) -> u64 {
        match self {
            Exec::Simple(s) => s.images * s.chunks,
            Exec::Gemm(g) => g.tasks(),
            Exec::Winograd(w) => w.images * w.blocks(),
            Exec::Recurrent(_) => 1,
        }
    }

    /// Rough work: multiply-accumulates of a product, elements of an elementwise kernel.
    pub fn work(&self) -> u64 {
        match self {
            // Kernels split into chunks are lowered with chunks of about 16K elements (or channels of
            // that many); a single chunk is at most that, its `Len` (if any) counting its elements.
            Exec::Simple(s) if s.chunks > 1 => s.images * s.chunks * (1 << 14),
            Exec::Simple(s) => {
                let len = s.args.iter().find_map(|a| match a {
                    Arg::Len { total, .. } => Some(*total),
                    _ => None,
                });
                s.images * len.unwrap_or(1 << 14)
            }
            Exec::Gemm(g) => g.images * g.groups * g.m * g.n * g.k,
            Exec::Winograd(w) => {
                w.images * w.h * w.w * w.channels * w.filters * w.kind.taps().pow(2)
            }
            Exec::Recurrent(r) => r.project.m * r.project.n * r.project.k,
        }
    }

    /// Whether the exec's tasks are shared between threads: more than one, and enough work that handing
    /// them out pays (otherwise the first thread runs them all).
    pub fn parallel(&self) -> bool {
        self.tasks() > 1 && self.work() >= INLINE_WORK
    }

    pub fn scratch(&self) -> u64 {
        match self {
            Exec::Simple(s) => s.scratch,
            Exec::Gemm(g) => g.scratch(),
            Exec::Winograd(w) => w.scratch(),
            Exec::Recurrent(r) => r.project.scratch().max(r.recur.scratch()),
        }
    }
}

/// Base addresses of the regions for one run.
pub struct Bases {
    pub arena: i64,
    pub owned: Vec<i64>,
    pub inputs: Vec<i64>,
    pub outputs: Vec<i64>,
    /// Scratch of each pool thread, then of the calling thread (see [`Scratch`]).
    pub scratch: Vec<i64>,
}

impl Bases {
    pub(super) fn resolve(&self, a: Addr, scratch: i64) -> i64 {
        let base = match a.region {
            Region::Arena => self.arena,
            Region::Owned(i) => self.owned[i],
            Region::Input(i) => self.inputs[i],
            Region::Output(i) => self.outputs[i],
            Region::Scratch => scratch,
        };
        base + 4 * a.offset as i64
    }
}

/// f32 memory the program owns, its first value on a cache line when it was allocated here.
pub struct Mem {
    v: Vec<f32>,
    off: usize,
    len: usize,
}

impl Mem {
    /// `len` zeros (from the allocator's zeroed pages, so untouched memory costs nothing).
    pub fn zeros(len: u64) -> Mem {
        let len = len as usize;
        let v = vec![0.0f32; len + 16];
        let off = (64 - v.as_ptr() as usize % 64) % 64 / 4;
        Mem { v, off, len }
    }

    /// Takes `v` as it is.
    pub fn from_vec(v: Vec<f32>) -> Mem {
        let len = v.len();
        Mem { v, off: 0, len }
    }

    pub fn ptr(&mut self) -> i64 {
        self.v[self.off..].as_mut_ptr() as i64
    }

    pub fn values(&self) -> &[f32] {
        &self.v[self.off..self.off + self.len]
    }

    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.v[self.off..self.off + self.len]
    }

    pub fn bytes(&self) -> u64 {
        4 * self.len as u64
    }
}

/// Per-thread scratch for the packing buffers of tasks: one slot per pool thread and one for the calling
/// thread, each as large as the largest task needs. Allocated with the program, so a run touches no fresh
/// pages (an allocation per exec and thread cost page faults or a memset on every kernel). Packers write
/// every element they hand to a kernel, so slots are never cleared.
pub struct Scratch {
    slots: Vec<Mem>,
}

impl Scratch {
    /// Slots for `threads` pool threads and the caller, `elements` f32 each.
    pub fn new(threads: usize, elements: u64) -> Scratch {
        Scratch {
            slots: (0..=threads).map(|_| Mem::zeros(elements)).collect(),
        }
    }

    pub fn ptrs(&mut self) -> Vec<i64> {
        self.slots.iter_mut().map(Mem::ptr).collect()
    }
}

/// A dense product of at most this many rows (per row share) reads its packed weights once, as a
/// stream from memory: its macro-kernel calls prefetch them ahead (`mode` bit 2), and it runs in one k
/// block (see `lower::products::dense_kblock`).
pub const STREAM_ROWS: u64 = 2 * TILE_M as u64;

/// Columns per group of a dense product's packed weights (`codegen::pack_b_transposed`) for `rows` rows
/// and a kernel whose calls take `call_panels` panels. The weights of a one-row product (a dense layer
/// at batch 1) come in groups of 32 columns, rows of two whole cache lines: the AVX2 kernel's one-row
/// calls read three such groups per k step (`mode` bit 4); with groups of 16 they read six streams
/// (AlexNet's first classifier layer took 5.8 instead of 4.9 ms in one in-process run, weak evidence on
/// a memory-bound layer, so that layout stays as it was). Every other product's weights come in groups
/// of one call's columns (AVX2: 16, one line per row). In groups of 32 an AVX2 call read every other
/// line: weights that every row tile reads again fell into half the sets of the 8-way L1 and lost lines
/// to A's stream (one thread, both layouts in one process, alternating: 256³ 2.8%, 512³ 4.5%, 1024³ 5.1%
/// faster with 16), and streamed weights of 2 to 12 rows were read twice from memory, once per half of
/// each line (AlexNet's 9216 -> 4096 layer, two threads, `nnc bench` per-layer medians at batch 2, 4, 8
/// and 12: 7.42, 7.01, 10.61 and 11.10 ms with 32, 4.65, 4.38, 6.50 and 10.36 with 16, 4.17 at batch 1;
/// VGG16's 25088 -> 4096 at batch 8 24.4 -> 15.4 ms).
pub fn dense_b_width(call_panels: u64, rows: u64) -> u64 {
    let widest = crate::codegen::GEMM_WIDEST_N as u64;
    if rows <= 1 {
        widest
    } else {
        (TILE_N as u64 * call_panels.max(1)).min(widest)
    }
}

/// Execs with less work than this (multiply-accumulates or elements) run on the calling thread.
const INLINE_WORK: u64 = 1 << 15;

/// Runs `exec`'s tasks in order on the calling thread, with its scratch slot (the last).
fn run_here(exec: &Exec, k: &Table, bases: &Bases) {
    let slot = *bases.scratch.last().expect("a scratch slot for the caller");
    for t in 0..exec.tasks() {
        run_task(exec, k, bases, slot, t);
    }
}

/// Task `t` of `exec`, with the scratch slot at `slot`.
fn run_task(exec: &Exec, k: &Table, bases: &Bases, slot: i64, t: u64) {
    match exec {
        Exec::Simple(x) => tasks::simple(x, k, bases, slot, t),
        Exec::Gemm(g) => tasks::gemm_task(g, k, bases, slot, t),
        Exec::Winograd(w) => tasks::winograd_task(w, k, bases, slot, t),
        Exec::Recurrent(r) => tasks::recurrent(r, k, bases, slot),
    }
}

/// Builds the pool that runs programs on `threads` threads: `threads - 1` workers beside the calling
/// thread, which works too (none for one thread).
pub fn pool(threads: usize) -> Result<Option<rayon::ThreadPool>, rayon::ThreadPoolBuildError> {
    if threads <= 1 {
        return Ok(None);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads - 1)
        .build()
        .map(Some)
}

/// Runs `execs` in order on the calling thread and every worker of `pool` (see [`pool`]), in one pool
/// job: the threads stay inside it from the first exec to the last, take each exec's tasks from shared
/// counters, and wait for each other between execs at a spinning barrier. Handing every exec to the pool
/// instead puts the pool's threads to sleep between execs and wakes them for the next: three wake-ups per
/// exec, each one a host scheduling decision on a virtual machine. The calling thread is thread 0, so a
/// run wakes the workers once and nobody has to wake the caller at the end. Small execs run on thread 0
/// while the others wait; when every exec is that small (an MLP, a recurrent model) the calling thread
/// runs them all and the pool is not woken: the Iris MLP took 11-30 µs a run on two threads, 1 µs on one.
/// `times[i]` receives exec `i`'s time (from the barrier before it to the one after it), `idle[i]` how
/// long the first thread to reach the barrier after it waited for the last (zero on one thread).
pub fn run_all(
    execs: &[&Exec],
    k: &Table,
    bases: &Bases,
    pool: Option<&rayon::ThreadPool>,
    (times, idle): (&mut [std::time::Duration], &mut [std::time::Duration]),
) {
    let shared = execs.iter().any(|e| e.parallel());
    let Some(pool) = pool.filter(|_| shared) else {
        for (i, e) in execs.iter().enumerate() {
            let t = std::time::Instant::now();
            run_here(e, k, bases);
            times[i] = t.elapsed();
            idle[i] = std::time::Duration::ZERO;
        }
        return;
    };
    use std::sync::atomic::{AtomicU64, Ordering};
    let threads = pool.current_num_threads() as u64 + 1;
    // Per exec, one cursor per thread (exec `i`'s at `i T + t`): thread `t` owns tasks
    // `t n / T .. (t + 1) n / T`.
    let next: Vec<AtomicU64> = execs
        .iter()
        .flat_map(|e| (0..threads).map(move |t| AtomicU64::new(t * e.tasks() / threads)))
        .collect();
    let barrier = SpinBarrier::new(threads as usize);
    // When the barrier after exec `i` opened, in nanoseconds from `start`: taken by the thread that
    // arrives last, before it opens the barrier. Timing each exec on one thread instead (from its
    // passing one barrier to its passing the next) gave the time to the wrong exec whenever that thread
    // lost its core after a barrier: the others took all the next exec's tasks, so that exec seemed
    // to take no time at all (`nnc bench` minimums of 0.000 ms on a shared host).
    let ends: Vec<AtomicU64> = execs.iter().map(|_| AtomicU64::new(0)).collect();
    // When the first thread reached the barrier after exec `i`.
    let firsts: Vec<AtomicU64> = execs.iter().map(|_| AtomicU64::new(u64::MAX)).collect();
    let start = std::time::Instant::now();
    // Thread `me` (0 the caller, worker `w` is `w + 1`) with the scratch slot `slot`.
    let work = |me: u64, slot: i64| {
        // A thread that panics leaves the barrier broken, so the others stop waiting and panic too.
        let _guard = barrier.guard();
        for (i, e) in execs.iter().enumerate() {
            let tasks = e.tasks();
            if e.parallel() {
                // Its own range first, then what is left of the others' (in turn from the next).
                // Tasks are numbered along the output's columns (pixels), so a thread's range covers
                // the same pixels layer after layer: what it reads, it mostly wrote itself, and
                // finds in its own L2 rather than the other core's.
                for o in 0..threads {
                    let owner = (me + o) % threads;
                    let end = (owner + 1) * tasks / threads;
                    loop {
                        let t = next[i * threads as usize + owner as usize]
                            .fetch_add(1, Ordering::Relaxed);
                        if t >= end {
                            break;
                        }
                        run_task(e, k, bases, slot, t);
                    }
                }
            } else if me == 0 {
                (0..tasks).for_each(|t| run_task(e, k, bases, slot, t));
            }
            firsts[i].fetch_min(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            barrier.wait(|| {
                let ns = start.elapsed().as_nanos() as u64;
                ends[i].store(ns, Ordering::Relaxed);
            });
        }
    };
    let caller = *bases.scratch.last().expect("a scratch slot for the caller");
    pool.in_place_scope(|s| {
        s.spawn_broadcast(|_, ctx| work(ctx.index() as u64 + 1, bases.scratch[ctx.index()]));
        work(0, caller);
    });
    let mut t0 = 0;
    for (i, end) in ends.iter().enumerate() {
        let end = end.load(Ordering::Relaxed);
        times[i] = std::time::Duration::from_nanos(end.saturating_sub(t0));
        idle[i] =
            std::time::Duration::from_nanos(end.saturating_sub(firsts[i].load(Ordering::Relaxed)));
        t0 = end;
    }
}

/// A barrier whose waiters spin (then yield): between execs a thread waits microseconds, far less than a
/// sleep and a wake-up cost.
struct SpinBarrier {
    threads: usize,
    arrived: std::sync::atomic::AtomicUsize,
    generation: std::sync::atomic::AtomicUsize,
    /// Set when a thread panicked between barriers: it will not arrive.
    broken: std::sync::atomic::AtomicBool,
}

/// Breaks its barrier if dropped while its thread panics.
struct BreakOnPanic<'a>(&'a SpinBarrier);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .broken
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

impl SpinBarrier {
    fn new(threads: usize) -> SpinBarrier {
        SpinBarrier {
            threads,
            arrived: std::sync::atomic::AtomicUsize::new(0),
            generation: std::sync::atomic::AtomicUsize::new(0),
            broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn guard(&self) -> BreakOnPanic<'_> {
        BreakOnPanic(self)
    }

    /// Returns when every thread has called `wait` as often as this one; the last to arrive calls `last`
    /// before it lets the others go. Release/acquire on the counters order every write before the
    /// barrier (the kernels' too) before every read after it.
    fn wait(&self, last: impl FnOnce()) {
        use std::sync::atomic::Ordering;
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            last();
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            assert!(
                !self.broken.load(Ordering::Acquire),
                "another thread of the program panicked"
            );
            // After about a millisecond of spinning, let another thread have the core (an oversubscribed
            // machine, or more threads than cores).
            if spins < 1 << 16 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}
