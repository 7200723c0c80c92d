//! A matrix product on slices, `c = a . b`, through the same execs and kernels as a dense layer (`b`
//! packed once, like weights; `a` packed panel by panel at run time). For benchmarks and tests of the
//! GEMM path on its own.

use crate::codegen::{pack_b, CodegenError, KernelId, Kernels, KC, TILE_N};

use super::exec::{self, Addr, Bases, Exec, Form, Gemm, Mem, Region};

/// `c [m x n] = a [m x k] . b [k x n]` with `b` fixed.
pub struct MatMul {
    kernels: Kernels,
    exec: Exec,
    owned: Vec<Mem>,
    pool: Option<rayon::ThreadPool>,
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
        assert!(b.len() >= k * n, "matmul: b is shorter than k x n");
        let kernels = Kernels::compile(&[
            KernelId::Gemm(crate::codegen::ActKind::Identity),
            KernelId::PackRows,
        ])?;
        let owned = vec![
            Mem::from_vec(pack_b(b, k, n, KC)),
            Mem::from_vec(vec![1.0; m + TILE_N]),
            Mem::zeros((m.max(n) + TILE_N) as u64),
        ];
        let at = |i: usize| Addr {
            region: Region::Owned(i),
            offset: 0,
        };
        let (mu, nu, ku) = (m as u64, n as u64, k as u64);
        let panels = nu.div_ceil(TILE_N as u64);
        let exec = Exec::Gemm(Box::new(Gemm {
            act: crate::codegen::ActKind::Identity,
            slope: 0.0,
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
        }));
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
            owned: self.owned.iter_mut().map(Mem::ptr).collect(),
            inputs: vec![a.as_ptr() as i64],
            outputs: vec![c.as_mut_ptr() as i64],
        };
        exec::run(&self.exec, self.kernels.table(), &bases, self.pool.as_ref());
    }
}

#[cfg(test)]
mod probe {
    use crate::codegen::{ActKind, KernelId, Kernels};

    /// The macro-kernel alone on cache-resident operands (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn macro_kernel_rate() {
        let k = Kernels::compile(&[KernelId::Gemm(ActKind::Identity)]).unwrap();
        for (m, kc) in [(64usize, 256usize), (256, 256), (256, 64), (64, 576)] {
            let a = vec![0.5f32; m.div_ceil(crate::codegen::TILE_M) * crate::codegen::TILE_M * kc];
            let b = vec![0.25f32; kc * 8];
            let mut c = vec![0.0f32; m * 8];
            let ones = vec![1.0f32; m + 8];
            let zeros = vec![0.0f32; m + 8];
            let args = [
                a.as_ptr() as i64,
                b.as_ptr() as i64,
                32,
                c.as_mut_ptr() as i64,
                32,
                m as i64,
                8,
                kc as i64,
                2,
                ones.as_ptr() as i64,
                zeros.as_ptr() as i64,
                zeros.as_ptr() as i64,
                0,
            ];
            let reps = 20000 * 64 * 256 / (m * kc);
            let t = std::time::Instant::now();
            for _ in 0..reps {
                k.call(KernelId::Gemm(ActKind::Identity), &args);
            }
            let s = t.elapsed().as_secs_f64();
            eprintln!(
                "m={m} kc={kc}: {:.1} GFLOP/s",
                2.0 * (m * kc * 8 * reps) as f64 / s / 1e9
            );
        }
    }
}
