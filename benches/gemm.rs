//! GEMM throughput: nnc's Cranelift kernel (packing both operands per call, or with B packed once as weights
//! are) beside ndarray's `dot` (the matrixmultiply crate, a tuned
//! pure-Rust SGEMM) in the same run, so the ratio is meaningful on a shared machine. Throughput is set in
//! FLOPs (2 m n k), so criterion reports GFLOP/s as "Gelem/s".

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nnc::codegen::Gemm;

fn gemm(c: &mut Criterion) {
    let kernel = Gemm::new().expect("the host is supported");
    let mut group = c.benchmark_group("gemm");
    for &(m, n, k) in &[
        (64, 64, 64),
        (128, 128, 128),
        (256, 256, 256),
        (512, 512, 512),
        (196, 256, 2304),
        (49, 512, 4608),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let label = format!("{m}x{n}x{k}");
        group.bench_with_input(BenchmarkId::new("nnc", &label), &(), |bench, _| {
            bench.iter(|| kernel.run(&a, &b, &mut out, m, n, k))
        });
        // B packed once, as weights are at compile time.
        let b_packed = nnc::codegen::pack::pack_b(&b, k, n);
        group.bench_with_input(BenchmarkId::new("nnc_packed_b", &label), &(), |bench, _| {
            bench.iter(|| {
                kernel.run_packed(
                    &nnc::codegen::pack::pack_a(&a, m, k),
                    &b_packed,
                    &mut out,
                    m,
                    n,
                    k,
                )
            })
        });
        let a2 = ndarray::Array2::from_shape_vec((m, k), a.clone()).expect("shape");
        let b2 = ndarray::Array2::from_shape_vec((k, n), b.clone()).expect("shape");
        group.bench_with_input(BenchmarkId::new("ndarray", &label), &(), |bench, _| {
            bench.iter(|| a2.dot(&b2))
        });
    }
    group.finish();
}

criterion_group!(benches, gemm);
criterion_main!(benches);
