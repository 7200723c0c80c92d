//! GEMM throughput: nnc's macro-kernels (Cranelift's, and the AVX2 one where the CPU has it) through the
//! dense-layer path (B packed once, as weights are; A packed panel by panel at run time), on one thread and
//! on two, beside ndarray's `dot` (the
//! matrixmultiply crate, a tuned pure-Rust SGEMM, one thread) in the same run, so the ratio is meaningful
//! on a shared machine. Throughput is set in FLOPs (2 m n k), so criterion reports GFLOP/s as "Gelem/s".

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nnc::codegen::GemmImpl;
use nnc::runtime::{MatMul, MatMulOptions};

fn gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    for &(m, n, k) in &[
        (64, 64, 64),
        (128, 128, 128),
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (3136, 64, 576),
        (784, 128, 1152),
        (196, 256, 2304),
        (49, 512, 4608),
        (3136, 256, 64),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let label = format!("{m}x{n}x{k}");
        for gemm in [GemmImpl::Cranelift, GemmImpl::Avx2, GemmImpl::Avx512] {
            if !gemm.available() {
                continue;
            }
            for threads in [1, 2] {
                let o = MatMulOptions {
                    gemm,
                    ..MatMulOptions::new(threads)
                };
                let mut mm = MatMul::with_options(&b, m, n, k, &o).expect("the host is supported");
                group.bench_with_input(
                    BenchmarkId::new(format!("nnc_{}_{threads}t", gemm.name()), &label),
                    &(),
                    |bench, _| bench.iter(|| mm.run(&a, &mut out)),
                );
            }
        }
        let a2 = ndarray::Array2::from_shape_vec((m, k), a.clone()).expect("shape");
        let b2 = ndarray::Array2::from_shape_vec((k, n), b.clone()).expect("shape");
        group.bench_with_input(BenchmarkId::new("ndarray_1t", &label), &(), |bench, _| {
            bench.iter(|| a2.dot(&b2))
        });
    }
    group.finish();
}

criterion_group!(benches, gemm);
criterion_main!(benches);
