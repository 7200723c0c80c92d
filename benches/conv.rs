//! Each distinct convolution of ResNet-50 (torchvision v1.5: stride on the 3x3) at batch 1 on two threads,
//! as a one-layer model through the whole JIT path (implicit GEMM, or plain GEMM for 1x1 stride 1).
//! Throughput is set in FLOPs (2 x MACs), so criterion reports GFLOP/s as "Gelem/s".

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nnc::runtime::Program;
use nnc::tensor::{self, Rng, Tensor};

/// `(input channels, output channels, kernel, stride, input size)` of each distinct layer.
const LAYERS: &[(u64, u64, u64, u64, u64)] = &[
    (3, 64, 7, 2, 224),
    (64, 64, 1, 1, 56),
    (64, 64, 3, 1, 56),
    (64, 256, 1, 1, 56),
    (256, 64, 1, 1, 56),
    (256, 128, 1, 1, 56),
    (128, 128, 3, 2, 56),
    (128, 512, 1, 1, 28),
    (256, 512, 1, 2, 56),
    (512, 128, 1, 1, 28),
    (128, 128, 3, 1, 28),
    (512, 256, 1, 1, 28),
    (256, 256, 3, 2, 28),
    (256, 1024, 1, 1, 14),
    (512, 1024, 1, 2, 28),
    (1024, 256, 1, 1, 14),
    (256, 256, 3, 1, 14),
    (1024, 512, 1, 1, 14),
    (512, 512, 3, 2, 14),
    (512, 2048, 1, 1, 7),
    (1024, 2048, 1, 2, 14),
    (2048, 512, 1, 1, 7),
    (512, 512, 3, 1, 7),
];

fn conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("resnet50_conv");
    group.sample_size(20);
    for &(cin, cout, k, s, hw) in LAYERS {
        let pad = k / 2;
        let o = (hw + 2 * pad - k) / s + 1;
        let text = format!(
            "model conv_layer(x: f32[N, {cin}, {hw}, {hw}]) -> y: f32[N, {cout}, {o}, {o}] {{\n    return x |> conv: conv2d({cout}, {k}, stride={s}, padding={pad}, bias=false)\n}}\n"
        );
        let c = nnc::compile_text(Path::new("layer.nn"), text, &nnc::Options::default());
        let g = c.graph.expect("the layer compiles");
        let weights = tensor::initialize(&g, 0);
        let plan = nnc::plan::build(&g, 1);
        let mut p = Program::compile(&g, &plan, &weights, 2).expect("compiles");
        let mut rng = Rng::new(1);
        let x =
            ndarray::ArrayD::from_shape_fn(vec![1, cin as usize, hw as usize, hw as usize], |_| {
                rng.uniform_in(-1.0, 1.0)
            });
        p.set_inputs(&[("x".to_string(), Tensor::F(x))])
            .expect("fits");
        let macs = nnc::passes::count(&g, 1).macs;
        group.throughput(Throughput::Elements(2 * macs));
        let label = format!("{cin}to{cout}_k{k}s{s}_{hw}");
        group.bench_with_input(BenchmarkId::from_parameter(label), &(), |b, _| {
            b.iter(|| p.execute(|_, _| {}))
        });
    }
    group.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
