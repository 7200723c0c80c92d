//! Finite-difference checks of every gradient, in f64: for each op (on random shapes, including odd sizes),
//! each loss and regularizer, and small whole models, the autodiff graph's gradients equal central
//! differences `(f(w + h) - f(w - h)) / 2h` of the objective, within 1e-4 relative.

mod common;

use std::path::Path;

use nnc::autodiff::{backward, Objective};
use nnc::interp::{self, Mode, RunOptions};
use nnc::ir::{Graph, Op};
use nnc::tensor::{self, Rng, Tensor, Weights};
use nnc::{compile_text, diag, Options};

fn graph(src: &str) -> Graph {
    let c = compile_text(
        Path::new("tests/gradcheck.nn"),
        src.to_string(),
        &Options::default(),
    );
    assert!(
        !c.has_errors(),
        "{}\n{src}",
        diag::render(&c.sources, &c.diags, false)
    );
    c.graph.expect("compiles")
}

/// The scalar the gradients are of: the loss, or `sum(output * d.output)`.
fn objective_value(
    training: &Graph,
    forward: &Graph,
    w: &Weights,
    inputs: &[(String, Tensor)],
    mode: Mode,
    loss: bool,
) -> f64 {
    if loss {
        let out = interp::run(training, w, inputs, RunOptions { mode, seed: 3 }).expect("runs");
        return out.outputs[0]
            .1
            .to_f64()
            .iter()
            .next()
            .copied()
            .expect("scalar loss");
    }
    let out = interp::run(
        forward,
        w,
        &inputs
            .iter()
            .filter(|(n, _)| !n.starts_with("d."))
            .cloned()
            .collect::<Vec<_>>(),
        RunOptions { mode, seed: 3 },
    )
    .expect("runs");
    out.outputs
        .iter()
        .map(|(name, t)| {
            let d = &inputs
                .iter()
                .find(|(n, _)| *n == format!("d.{name}"))
                .expect("upstream gradient")
                .1;
            (t.to_f64() * d.to_f64()).sum()
        })
        .sum()
}

/// Checks every gradient the training graph outputs against central differences on up to `per_tensor`
/// elements of each tensor. Returns the worst relative error.
fn check(
    src: &str,
    mode: Mode,
    objective: Objective,
    batch: usize,
    per_tensor: usize,
    seed: u64,
) -> f64 {
    let forward = graph(src);
    let loss = matches!(objective, Objective::Loss(_));
    let training = backward(&forward, &objective).expect("differentiable");
    nnc::passes::verify(&training).expect("backward graph verifies");
    let mut rng = Rng::new(seed);
    let mut w = tensor::initialize(&forward, seed);
    // Perturb batch-norm statistics and affine parameters away from their identity defaults.
    for (name, a) in w.iter_mut() {
        if name.ends_with("running_var") {
            a.mapv_inplace(|_| rng.uniform_in(0.5, 1.5));
        } else if name.ends_with("running_mean") || name.contains("bn") {
            a.mapv_inplace(|v| v + rng.uniform_in(-0.3, 0.3));
        }
    }
    let classes = match &training.inputs.iter().find(|(n, _)| n == "target") {
        Some((_, id)) if !training.node(*id).ty.dtype.is_float() => {
            let out = &forward.node(forward.outputs[0].1).ty;
            out.size(out.rank() - 1).expect("class axis") as i64
        }
        _ => 20,
    };
    let mut inputs = common::random_inputs(&training, batch, &mut rng, classes);
    // Targets of probability losses must be in [0, 1].
    for (name, t) in inputs.iter_mut() {
        if name == "target" {
            if let Tensor::F(a) = t {
                a.mapv_inplace(|v| (v + 1.0) / 2.0);
            }
        }
    }
    let analytic = interp::run(&training, &w, &inputs, RunOptions { mode, seed: 3 })
        .expect("runs")
        .outputs;
    let h = 1e-6;
    let mut worst = 0.0f64;
    let mut checked = 0;
    for (name, grad) in analytic.iter().filter(|(n, _)| n.starts_with("grad.")) {
        let target = &name["grad.".len()..];
        let grad = grad.to_f64();
        let scale = grad.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        let n = grad.len();
        for k in 0..per_tensor.min(n) {
            let flat = if n <= per_tensor {
                k
            } else {
                (rng.next_u64() % n as u64) as usize
            };
            let eval = |delta: f64| {
                let mut w2 = w.clone();
                let mut in2 = inputs.clone();
                if let Some(a) = w2.get_mut(target) {
                    a.as_slice_mut().expect("contiguous")[flat] += delta;
                } else {
                    let (_, t) = in2
                        .iter_mut()
                        .find(|(n, _)| n == target)
                        .expect("a parameter or an input");
                    let Tensor::F(a) = t else {
                        unreachable!("float input")
                    };
                    a.as_slice_mut().expect("contiguous")[flat] += delta;
                }
                objective_value(&training, &forward, &w2, &in2, mode, loss)
            };
            let numeric = (eval(h) - eval(-h)) / (2.0 * h);
            let exact = grad.as_slice().expect("contiguous")[flat];
            let err = (numeric - exact).abs() / (exact.abs() + 1e-4 * scale);
            assert!(err < 1e-4, "{name}[{flat}]: autodiff {exact:.9e}, finite difference {numeric:.9e} (rel {err:.2e})\n{src}");
            worst = worst.max(err);
            checked += 1;
        }
    }
    assert!(checked > 0, "no gradient was checked for\n{src}");
    worst
}

fn upstream(src: &str, mode: Mode, seed: u64) {
    check(src, mode, Objective::Upstream, 3, 12, seed);
}

/// Random sizes per op, including sizes that are not multiples of any vector width.
fn sizes(seed: u64, lo: u64, hi: u64, n: usize) -> Vec<u64> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| lo + r.next_u64() % (hi - lo + 1)).collect()
}

#[test]
fn dense_and_shape_ops() {
    for seed in 0..3 {
        let s = sizes(seed, 1, 7, 3);
        upstream(&format!("model m(x: f32[N, {}]) -> y: f32[N, {}] {{ return x |> dense({}) |> tanh |> dense({}, bias=false) }}", s[0], s[2], s[1], s[2]), Mode::Eval, seed);
        upstream(&format!("model m(x: f32[N, 2, {}, 3]) -> y: f32[N, {}] {{ return x |> reshape([3, -1, 2]) |> flatten |> dense({}) }}", 2 * s[0], s[1], s[1]), Mode::Eval, seed);
    }
    upstream(
        "model m(x: f32[N, 3, 5]) -> y: f32[N, 3, 4] { return dense(x, 4) }",
        Mode::Eval,
        9,
    );
}

#[test]
fn convolutions() {
    let cases = [
        "conv2d(5, 3)",
        "conv2d(4, [2, 3], stride=2, padding=1)",
        "conv2d(6, 3, groups=3, dilation=2, padding=[1, 0, 2, 1])",
        "conv2d(3, 1, bias=false)",
        "conv2d(5, 3, stride=[2, 1], padding=same)",
    ];
    for (i, layer) in cases.iter().enumerate() {
        let s = sizes(i as u64, 6, 9, 2);
        upstream(&format!("model m(x: f32[N, 3, {}, {}]) -> y: f32[N, 2] {{ return x |> {layer} |> flatten |> dense(2) }}", s[0], s[1]), Mode::Eval, i as u64);
    }
}

#[test]
fn pooling_and_padding() {
    let cases = [
        "maxpool(2)",
        "maxpool(3, stride=2, padding=1, ceil_mode=true)",
        "maxpool(2, dilation=2)",
        "avgpool(3, stride=2, padding=1)",
        "avgpool(3, stride=2, padding=1, count_include_pad=false, ceil_mode=true)",
        "avgpool(2, ceil_mode=true)",
        "adaptive_avgpool([3, 2])",
        "global_avgpool",
        "global_avgpool(keepdims=false)",
        "zeropad([1, 0, 2, 3])",
    ];
    for (i, layer) in cases.iter().enumerate() {
        let s = sizes(10 + i as u64, 5, 8, 2);
        upstream(&format!("model m(x: f32[N, 2, {}, {}]) -> y: f32[N, 3] {{ return x |> {layer} |> flatten |> dense(3) }}", s[0], s[1]), Mode::Eval, i as u64);
    }
}

#[test]
fn normalization_dropout_and_lrn() {
    for mode in [Mode::Eval, Mode::Train] {
        upstream("model m(x: f32[N, 3, 4, 5]) -> y: f32[N, 3, 4, 5] { return x |> bn: batchnorm |> sigmoid }", mode, 1);
        upstream("model m(x: f32[N, 6]) -> y: f32[N, 6] { return x |> bn: batchnorm(affine=false) |> tanh }", mode, 2);
        upstream("model m(x: f32[N, 4, 7]) -> y: f32[N, 4, 7] { return x |> bn: batchnorm(eps=0.001) |> tanh }", mode, 3);
        upstream(
            "model m(x: f32[N, 9]) -> y: f32[N, 9] { return x |> dropout(0.4) |> tanh }",
            mode,
            4,
        );
    }
    for size in [1, 2, 3, 4, 5] {
        upstream(&format!("model m(x: f32[N, 7, 3, 2]) -> y: f32[N, 7, 3, 2] {{ return lrn(x, {size}, alpha=0.3, beta=0.75, k=1.5) }}"), Mode::Eval, size);
    }
}

#[test]
fn activations_and_elementwise() {
    for act in [
        "relu",
        "sigmoid",
        "tanh",
        "identity",
        "leaky_relu(0.1)",
        "softmax",
        "softmax(axis=1)",
    ] {
        upstream(
            &format!("model m(x: f32[N, 4, 5]) -> y: f32[N, 4, 5] {{ return x |> {act} }}"),
            Mode::Eval,
            5,
        );
    }
    upstream(
        "model m(x: f32[N, 5], z: f32[N, 5]) -> (y: f32[N, 5], u: f32[N, 9]) {
             a = dense(x, 5)
             y = 0.5 * (a + z) * a + x
             return y, concat(a, dense(z, 4))
         }",
        Mode::Eval,
        6,
    );
}

#[test]
fn embedding_and_recurrent_layers() {
    upstream(
        "model m(t: i64[N, 4]) -> y: f32[N, 4, 3] { return t |> embedding(20, 3) }",
        Mode::Eval,
        7,
    );
    for (i, layer) in [
        "simple_rnn(4)",
        "simple_rnn(3, activation=relu, return_sequences=true)",
        "lstm(4)",
        "lstm(3, return_sequences=true)",
        "gru(4)",
        "gru(3, return_sequences=true, bias=false)",
    ]
    .iter()
    .enumerate()
    {
        upstream(&format!("model m(x: f32[N, 4, 3]) -> y: f32[N, 2] {{ return x |> {layer} |> flatten |> dense(2) }}"), Mode::Eval, i as u64);
    }
}

#[test]
fn losses_and_regularizers() {
    use nnc::ir::train::Loss;
    let losses = [
        (Loss::Mae, "sigmoid", 3),
        (Loss::Mse, "identity", 3),
        (Loss::Rmse, "tanh", 3),
        (
            Loss::BinaryCrossentropy { from_logits: false },
            "sigmoid",
            1,
        ),
        (
            Loss::BinaryCrossentropy { from_logits: true },
            "identity",
            2,
        ),
        (
            Loss::CategoricalCrossentropy {
                from_logits: false,
                label_smoothing: 0.0,
            },
            "softmax",
            4,
        ),
        (
            Loss::CategoricalCrossentropy {
                from_logits: true,
                label_smoothing: 0.1,
            },
            "identity",
            4,
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            "softmax",
            5,
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            "identity",
            5,
        ),
    ];
    for (i, (loss, act, units)) in losses.into_iter().enumerate() {
        let src = format!(
            "model m(x: f32[N, 6]) -> y: f32[N, {units}] {{ return x |> a: dense(5, activation=tanh, regularizer=l2(0.01)) |> b: dense({units}, regularizer=l1_l2(l1=0.02, l2=0.003)) |> {act} }}"
        );
        check(&src, Mode::Eval, Objective::Loss(loss), 4, 12, i as u64);
    }
}

#[test]
fn small_models() {
    let dir = Path::new("models");
    for file in ["mlp_iris.nn", "mlp_binary.nn", "lenet5.nn", "gru.nn"] {
        let src = std::fs::read_to_string(dir.join(file)).expect("zoo model");
        check(&src, Mode::Eval, Objective::Upstream, 2, 4, 11);
    }
    let blocks = "import \"../models/lib/resnet.nn\" { basic_block, bottleneck }\nimport \"../models/lib/inception.nn\" { conv_bn }\n";
    let cases = [
        "model m(x: f32[N, 4, 6, 6]) -> y: f32[N, 8, 3, 3] { return basic_block(x, 8, stride=2) }",
        "model m(x: f32[N, 8, 5, 5]) -> y: f32[N, 8, 5, 5] { return basic_block(x, 8) }",
        "model m(x: f32[N, 6, 5, 5]) -> y: f32[N, 12, 3, 3] { return bottleneck(x, 3, stride=2) }",
        "model m(x: f32[N, 5, 7, 7]) -> y: f32[N, 11, 7, 7] {
             b1 = conv_bn(x, 2, 1)
             b2 = x |> conv_bn(2, 1) |> conv_bn(3, 3, padding=1)
             b3 = x |> conv_bn(2, 1) |> conv_bn(2, [1, 3], padding=[0, 1]) |> conv_bn(2, [3, 1], padding=[1, 0])
             b4 = x |> avgpool(3, stride=1, padding=1) |> conv_bn(4, 1)
             return concat(b1, b2, b3, b4)
         }",
        "model m(x: f32[N, 6, 5]) -> y: f32[N, 6, 4] { return x |> lstm(4, return_sequences=true) }",
    ];
    for (i, case) in cases.iter().enumerate() {
        for mode in [Mode::Eval, Mode::Train] {
            check(
                &format!("{blocks}{case}"),
                mode,
                Objective::Upstream,
                2,
                5,
                20 + i as u64,
            );
        }
    }
}

#[test]
fn frozen_parameters_and_buffers_get_no_gradient() {
    let g = graph("model m(x: f32[N, 4]) -> y: f32[N, 2] { return x |> a: dense(3, trainable=false) |> bn: batchnorm |> b: dense(2) }");
    let t = backward(&g, &Objective::Upstream).expect("differentiable");
    let grads: Vec<&str> = t
        .outputs
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("grad."))
        .collect();
    assert_eq!(
        grads,
        [
            "grad.x",
            "grad.bn.weight",
            "grad.bn.bias",
            "grad.b.weight",
            "grad.b.bias"
        ]
    );
    assert!(t.node_ids().into_iter().all(|id| !matches!(&t.node(id).op, Op::Grad { forward, .. } if matches!(**forward, Op::Grad { .. }))));
}
