//! Front-end compile time: parse, lower (with shape inference), verify and run the passes, per zoo model.
//! The later JIT stages add to this; TVM/XLA take seconds to minutes for the same models.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

fn frontend(c: &mut Criterion) {
    let mut group = c.benchmark_group("frontend");
    for name in [
        "lenet5",
        "resnet50",
        "resnet152",
        "googlenet",
        "inception_v3",
        "inception_resnet_v2",
        "vgg16",
        "lstm",
    ] {
        let path = format!("models/{name}.nn");
        let text = std::fs::read_to_string(&path).expect("zoo model is readable");
        group.bench_function(name, |b| {
            b.iter(|| {
                let c = nnc::compile_text(Path::new(&path), text.clone(), &nnc::Options::default());
                assert!(c.graph.is_some());
                c
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
