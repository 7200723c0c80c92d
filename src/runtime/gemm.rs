//! A matrix product on slices, `c = a . b`, through the same execs and kernels as a dense layer (`b`
//! packed once, like weights; `a` packed panel by panel at run time). For benchmarks and tests of the
//! GEMM path on its own.

use crate::codegen::{
    pack_b, ActKind, CodegenError, GemmImpl, KernelId, Kernels, KC, TILE_M, TILE_N,
};

use super::exec::{self, Addr, Bases, Exec, Form, Gemm, Mem, Region, Scratch, Segment};

/// How a [`MatMul`] is computed and finished: threads, GEMM implementation and the dense layer's epilogue
/// `c[i][j] = act(v * row_scale[i] + row_shift[i] + col_shift[j])` (empty vectors mean 1, 0 and 0).
#[derive(Clone, Debug)]
pub struct MatMulOptions {
    pub threads: usize,
    pub gemm: GemmImpl,
    pub act: ActKind,
    /// LeakyRelu's slope.
    pub slope: f32,
    pub row_scale: Vec<f32>,
    pub row_shift: Vec<f32>,
    pub col_shift: Vec<f32>,
}

impl MatMulOptions {
    /// A plain product on `threads` threads with the GEMM this CPU runs fastest.
    pub fn new(threads: usize) -> MatMulOptions {
        MatMulOptions {
            threads,
            gemm: GemmImpl::detect(),
            act: ActKind::Identity,
            slope: 0.0,
            row_scale: Vec::new(),
            row_shift: Vec::new(),
            col_shift: Vec::new(),
        }
    }
}

/// Rows of A per task when rows are shared between threads: fewer would leave the kernel short row runs
/// per B panel.
const MIN_SHARE: u64 = 32;

/// How a product's work splits: column panels per task, and row shares.
///
/// Rows are split first, into shares of at most [`super::lower::dense_row_splits`]'s size, a multiple of
/// `threads` of them, each share running every column: then A is packed once in all (each task packs its
/// own rows). Only when there are too few rows for every thread does the product split columns, one block
/// per thread, each task then packing the same rows of A.
fn split(m: u64, panels: u64, threads: u64, call: u64) -> (u64, u64) {
    let splits = super::lower::dense_row_splits(m);
    let row_panels = m.div_ceil(TILE_M as u64);
    if threads <= 1 || m >= threads * MIN_SHARE {
        let splits = splits.next_multiple_of(threads.max(1)).min(row_panels);
        return (super::lower::whole_calls(panels, panels, call), splits);
    }
    let per_task = super::lower::whole_calls(panels, panels.div_ceil(threads), call);
    (per_task, splits)
}

/// `c [m x n] = a [m x k] . b [k x n]` with `b` fixed.
pub struct MatMul {
    kernels: Kernels,
    exec: Exec,
    owned: Vec<Mem>,
    pool: Option<rayon::ThreadPool>,
    scratch: Scratch,
    m: usize,
    n: usize,
    k: usize,
}

impl MatMul {
    /// Packs `b [k x n]` for products with `m`-row matrices on `threads` threads.
    ///
    /// # Panics
    /// If `b` is shorter than `k * n`.
    pub fn new(
        b: &[f32],
        m: usize,
        n: usize,
        k: usize,
        threads: usize,
    ) -> Result<MatMul, CodegenError> {
        MatMul::with_options(b, m, n, k, &MatMulOptions::new(threads))
    }

    /// [`MatMul::new`] with the GEMM implementation and epilogue of `o`.
    ///
    /// # Errors
    /// If the CPU cannot run `o.gemm`.
    ///
    /// # Panics
    /// If `b` is shorter than `k * n`, or a non-empty row vector shorter than `m` or column one than `n`.
    pub fn with_options(
        b: &[f32],
        m: usize,
        n: usize,
        k: usize,
        o: &MatMulOptions,
    ) -> Result<MatMul, CodegenError> {
        assert!(b.len() >= k * n, "matmul: b is shorter than k x n");
        let threads = o.threads;
        let kernels = Kernels::compile_with(&[KernelId::Gemm(o.act), KernelId::PackRows], o.gemm)?;
        // Padded by a tile: kernels may read a whole tile's row and column factors.
        let width = exec::dense_b_width(o.gemm.panels_per_call() as u64, m as u64) as usize;
        let factor = |v: &[f32], len: usize, default: f32| {
            assert!(
                v.is_empty() || v.len() >= len,
                "matmul: short epilogue vector"
            );
            let mut f: Vec<f32> = v.iter().copied().take(len).collect();
            f.resize(len + TILE_N, default);
            Mem::from_vec(f)
        };
        let owned = vec![
            Mem::from_vec(pack_b(b, k, n, KC, width)),
            factor(&o.row_scale, m, 1.0),
            factor(&o.row_shift, m, 0.0),
            factor(&o.col_shift, n, 0.0),
        ];
        let at = |i: usize| Addr {
            region: Region::Owned(i),
            offset: 0,
        };
        let (mu, nu, ku) = (m as u64, n as u64, k as u64);
        let call = o.gemm.panels_per_call() as u64;
        let (panels_per_task, row_splits) =
            split(mu, nu.div_ceil(TILE_N as u64), threads as u64, call);
        let exec = Exec::Gemm(Box::new(Gemm {
            act: o.act,
            slope: o.slope,
            accumulate: false,
            m: mu,
            n: nu,
            k: ku,
            kblock: KC as u64,
            form: Form::Dense {
                input: Addr {
                    region: Region::Input(0),
                    offset: 0,
                },
                ld: ku,
                b_width: width as u64,
            },
            weights: at(0),
            group_weight_stride: 0,
            row_scale: at(1),
            row_shift: at(2),
            col_shift: at(3),
            outs: vec![Segment {
                first: 0,
                rows: mu,
                out: Addr {
                    region: Region::Output(0),
                    offset: 0,
                },
                image_stride: 0,
            }],
            ldc: nu,
            groups: 1,
            images: 1,
            panels_per_task,
            row_splits,
            shares_first: false,
            call_panels: call,
        }));
        let pool = exec::pool(threads).ok().flatten();
        let scratch = Scratch::new(
            pool.as_ref().map_or(0, |p| p.current_num_threads()),
            exec.scratch(),
        );
        Ok(MatMul {
            kernels,
            exec,
            owned,
            pool,
            scratch,
            m,
            n,
            k,
        })
    }

    /// The GEMM implementation in use.
    pub fn gemm(&self) -> GemmImpl {
        self.kernels.gemm
    }

    /// `c = a . b`.
    ///
    /// # Panics
    /// If `a` or `c` is shorter than its matrix.
    pub fn run(&mut self, a: &[f32], c: &mut [f32]) {
        assert!(
            a.len() >= self.m * self.k && c.len() >= self.m * self.n,
            "matmul: a matrix is larger than its slice"
        );
        if self.m == 0 || self.n == 0 {
            return;
        }
        let bases = Bases {
            arena: 0,
            owned: self.owned.iter_mut().map(Mem::ptr).collect(),
            inputs: vec![a.as_ptr() as i64],
            outputs: vec![c.as_mut_ptr() as i64],
            scratch: self.scratch.ptrs(),
        };
        let mut times = [std::time::Duration::ZERO; 1];
        let mut idle = times;
        exec::run_all(
            &[&self.exec],
            self.kernels.table(),
            &bases,
            self.pool.as_ref(),
            (&mut times, &mut idle),
        );
    }
}

#[cfg(test)]
mod probe {
    use crate::codegen::{ActKind, GemmImpl, KernelId, Kernels};

    /// The macro-kernel alone on cache-resident operands, per implementation the CPU runs (run with
    /// `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn macro_kernel_rate() {
        for gemm in [GemmImpl::Cranelift, GemmImpl::Avx2, GemmImpl::Avx512] {
            if !gemm.available() {
                eprintln!("{}: not available on this CPU", gemm.name());
                continue;
            }
            let k = Kernels::compile_with(&[KernelId::Gemm(ActKind::Identity)], gemm).unwrap();
            // Columns per call: the Rust kernels also take two or four B panels at once.
            let widths: &[usize] = match gemm {
                GemmImpl::Avx512 => &[8, 16, 32],
                GemmImpl::Avx2 => &[8, 16],
                GemmImpl::Cranelift => &[8],
            };
            for &n in widths {
                for (m, kc) in [
                    (24usize, 128usize),
                    (64, 256),
                    (256, 256),
                    (128, 256),
                    (256, 64),
                    (64, 576),
                ] {
                    let a = vec![
                        0.5f32;
                        m.div_ceil(crate::codegen::TILE_M) * crate::codegen::TILE_M * kc
                    ];
                    // Up to four packed panels side by side (rows of 32 values).
                    let b = vec![0.25f32; kc * 32];
                    let mut c = vec![0.0f32; m * n];
                    let ones = vec![1.0f32; m + 16];
                    let zeros = vec![0.0f32; m + 16];
                    let args = [
                        a.as_ptr() as i64,
                        b.as_ptr() as i64,
                        4 * n as i64,
                        c.as_mut_ptr() as i64,
                        4 * n as i64,
                        m as i64,
                        n as i64,
                        kc as i64,
                        2,
                        ones.as_ptr() as i64,
                        zeros.as_ptr() as i64,
                        zeros.as_ptr() as i64,
                        0,
                        32,
                    ];
                    // The best of several short trials: the machine may be shared.
                    let reps = 2000 * 64 * 256 * 8 / (m * kc * n);
                    let best = (0..10)
                        .map(|_| {
                            let t = std::time::Instant::now();
                            for _ in 0..reps {
                                k.call(KernelId::Gemm(ActKind::Identity), &args);
                            }
                            t.elapsed().as_secs_f64()
                        })
                        .fold(f64::INFINITY, f64::min);
                    eprintln!(
                        "{:<9} {m}x{n} kc={kc}: {:.1} GFLOP/s",
                        gemm.name(),
                        2.0 * (m * kc * n * reps) as f64 / best / 1e9
                    );
                }
            }
        }
    }
}
