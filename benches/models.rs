//! Whole models on the JIT, fused as the commands compile them: inference latency of LeNet-5, ResNet-18 and ResNet-50 at batch 1 and 8 on two
//! threads, and compile time (text to native code, weights packed) of every zoo model. Weights come from
//! the models' initializers; inputs are uniform in [-1, 1).

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nnc::runtime::Program;
use nnc::tensor::{self, Rng};

/// What `nnc compile`, `nnc run` and `nnc bench` compile: the graph after the inference optimizations.
fn options() -> nnc::Options {
    nnc::Options {
        optimize: true,
        ..nnc::Options::default()
    }
}

fn graph(path: &str) -> nnc::ir::Graph {
    nnc::compile(Path::new(path), &options())
        .graph
        .expect("zoo models compile")
}

fn latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("latency");
    group.sample_size(10);
    for name in ["lenet5", "resnet18", "resnet50"] {
        let g = graph(&format!("models/{name}.nn"));
        let weights = tensor::initialize(&g, 0);
        for batch in [1, 8] {
            let plan = nnc::plan::build(&g, batch);
            let mut p = Program::compile(&g, &plan, &weights, 2).expect("compiles");
            p.set_inputs(&tensor::random_inputs(&g, batch, &mut Rng::new(1), 1))
                .expect("inputs fit");
            group.bench_with_input(
                BenchmarkId::new(name, format!("batch{batch}")),
                &(),
                |b, _| b.iter(|| p.execute(|_, _| {})),
            );
        }
    }
    group.finish();
}

fn compile_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    let mut files: Vec<_> = std::fs::read_dir("models")
        .expect("models/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .collect();
    files.sort();
    for path in files {
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("readable");
        let g = graph(&path.to_string_lossy());
        let weights = tensor::initialize(&g, 0);
        group.bench_function(&name, |b| {
            b.iter(|| {
                let c = nnc::compile_text(&path, text.clone(), &options());
                let g = c.graph.expect("compiles");
                let plan = nnc::plan::build(&g, 1);
                Program::compile(&g, &plan, &weights, 2).expect("compiles")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, latency, compile_time);
criterion_main!(benches);
