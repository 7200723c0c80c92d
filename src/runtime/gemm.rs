//! A matrix product on slices, `c = a . b`, through the same execs and kernels as a dense layer (`b`
//! packed once, like weights; `a` packed panel by panel at run time). For benchmarks and tests of the
//! GEMM path on its own.

use crate::codegen::{pack_b, CodegenError, KernelId, Kernels, KC, TILE_N};

use super::exec::{self, Addr, Bases, Exec, Form, Gemm, Line, Region};

/// `c [m x n] = a [m x k] . b [k x n]` with `b` fixed.
pub struct MatMul {
    kernels: Kernels,
    exec: Exec,
    owned: Vec<Vec<Line>>,
    pool: Option<rayon::ThreadPool>,
    m: usize,
    n: usize,
    k: usize,
}

fn to_lines(v: &[f32]) -> Vec<Line> {
    let mut m = exec::lines(v.len() as u64);
    for (i, &x) in v.iter().enumerate() {
        m[i / 16].0[i % 16] = x;
    }
    m
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
        assert!(b.len() >= k * n, "matmul: b is shorter than k x n");
        let kernels = Kernels::compile(&[
            KernelId::Gemm(crate::codegen::ActKind::Identity),
            KernelId::PackRows,
        ])?;
        let owned = vec![
            to_lines(&pack_b(b, k, n, KC)),
            to_lines(&vec![1.0; m + TILE_N]),
            to_lines(&vec![0.0; m.max(n) + TILE_N]),
        ];
        let at = |i: usize| Addr {
            region: Region::Owned(i),
            offset: 0,
        };
        let (mu, nu, ku) = (m as u64, n as u64, k as u64);
        let panels = nu.div_ceil(TILE_N as u64);
        let exec = Exec::Gemm(Gemm {
            act: crate::codegen::ActKind::Identity,
            slope: 0.0,
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
            },
            weights: at(0),
            group_weight_stride: 0,
            row_scale: at(1),
            row_shift: at(2),
            col_shift: at(2),
            out: Addr {
                region: Region::Output(0),
                offset: 0,
            },
            out_image_stride: 0,
            ldc: nu,
            groups: 1,
            images: 1,
            panels_per_task: panels.div_ceil(2 * threads as u64).clamp(1, 16),
            row_splits: 1,
        });
        let pool = (threads > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .ok()
            })
            .flatten();
        Ok(MatMul {
            kernels,
            exec,
            owned,
            pool,
            m,
            n,
            k,
        })
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
            owned: self
                .owned
                .iter_mut()
                .map(|m| m.as_mut_ptr() as i64)
                .collect(),
            inputs: vec![a.as_ptr() as i64],
            outputs: vec![c.as_mut_ptr() as i64],
        };
        exec::run(&self.exec, self.kernels.table(), &bases, self.pool.as_ref());
    }
}
