//! The `nnc` binary as users run it: exit codes, silence on success, the documented JSON keys, and
//! usage errors.

use std::process::{Command, Output};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .output()
        .expect("nnc runs")
}

/// `nnc args` (a command with `--json`), which must succeed: its standard output as JSON.
fn json(args: &[&str]) -> serde_json::Value {
    let out = nnc(args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_is_silent_on_a_good_model() {
    let out = nnc(&["check", "models/resnet50.nn"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        (String::new(), String::new())
    );
}

#[test]
fn check_accepts_a_block_library() {
    let out = nnc(&["check", "models/lib/inception.nn"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn model_errors_exit_1_with_rendered_diagnostics() {
    let out = nnc(&[
        "check",
        "--color",
        "never",
        "tests/diagnostics/E0101_unknown_layer.nn",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error[E0101]: unknown layer or block `maxpol`"),
        "{err}"
    );
    assert!(
        err.contains(" --> tests/diagnostics/E0101_unknown_layer.nn:2:17"),
        "{err}"
    );
    assert!(err.contains("= help: did you mean `maxpool`?"), "{err}");
}

#[test]
fn warnings_do_not_fail() {
    let out = nnc(&[
        "check",
        "--color",
        "never",
        "tests/diagnostics/W0001_unused.nn",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).starts_with("warning[W0001]"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["summary"][..],
        &["summary", "models/resnet50.nn", "--batch", "0"],
        &["summary", "models/resnet50.nn", "--batch", "-3"],
        &["frobnicate"],
        &["dump", "models/resnet50.nn", "--after", "nope"],
        &["dump", "models/resnet50.nn", "--format", "svg"],
        &["check", "no/such/file.nn"],
        &["check", "models"],
    ] {
        let out = nnc(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn summary_json_has_the_documented_keys() {
    let v = json(&["summary", "models/resnet50.nn", "--json", "--batch", "8"]);
    assert_eq!(v["model"], "resnet50");
    assert_eq!(v["batch"], 8);
    assert_eq!(v["params"]["trainable"], 25_557_032);
    assert_eq!(v["params"]["non_trainable"], 53_120);
    assert_eq!(v["params"]["total"], 25_610_152);
    assert_eq!(v["macs"], 8 * 4_089_184_256u64);
    assert_eq!(v["flops"], 16 * 4_089_184_256u64);
    assert_eq!(v["output_shapes"]["logits"], serde_json::json!([8, 1000]));
    assert_eq!(v["input_shapes"]["x"], serde_json::json!([8, 3, 224, 224]));
    assert_eq!(v["memory"]["weight_bytes"], 4 * 25_610_152u64);
    let fc = v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["path"] == "fc")
        .expect("fc row");
    assert_eq!(
        (
            fc["op"].as_str(),
            fc["params"].as_u64(),
            fc["macs"].as_u64()
        ),
        (Some("dense"), Some(2_049_000), Some(8 * 2_048_000))
    );
}

#[test]
fn dump_after_lower_keeps_dead_layers_and_dce_removes_them() {
    let lowered = text(
        &nnc(&[
            "dump",
            "tests/diagnostics/W0001_unused.nn",
            "--after",
            "lower",
        ])
        .stdout,
    );
    let full = text(&nnc(&["dump", "tests/diagnostics/W0001_unused.nn"]).stdout);
    assert!(
        lowered.contains("# probe.weight") && lowered.contains("# probe\n"),
        "{lowered}"
    );
    assert!(!full.contains("probe"), "{full}");
}

#[test]
fn dump_dot_is_a_digraph() {
    let out = nnc(&["dump", "models/lenet5.nn", "--format", "dot"]);
    assert_eq!(out.status.code(), Some(0));
    let dot = text(&out.stdout);
    assert!(
        dot.starts_with("digraph \"lenet5\" {") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    assert!(dot.contains("->"));
}

thread_local! {
    /// This test's files: a directory per test thread, removed when the test ends.
    static DIR: tempfile::TempDir = tempfile::Builder::new().prefix("nnc-cli-").tempdir().expect("temp dir");
}

fn temp(name: &str) -> String {
    DIR.with(|d| d.path().join(name).display().to_string())
}

/// A float32 .npy file of the given shape (values 0, 0.01, 0.02, ...).
fn npy(name: &str, shape: &[usize]) -> String {
    let path = temp(name);
    let a = ndarray::ArrayD::from_shape_fn(shape.to_vec(), |ix| {
        use ndarray::Dimension;
        ix.as_array_view().iter().sum::<usize>() as f64 * 0.01
    });
    nnc::tensor::write_arrays(
        std::path::Path::new(&path),
        &[("x".into(), nnc::tensor::Tensor::F(a))],
    )
    .expect("writes");
    path
}

#[test]
fn init_then_run_writes_outputs() {
    let weights = temp("lenet.safetensors");
    let out = nnc(&["init", "models/lenet5.nn", "-o", &weights, "--seed", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("wrote 10 tensors (44426 values)"));
    let x = npy("x.npy", &[3, 1, 28, 28]);
    let y = temp("y.npy");
    let out = nnc(&[
        "run",
        "models/lenet5.nn",
        "--weights",
        &weights,
        "--input",
        &x,
        "--output",
        &y,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let back = nnc::tensor::read_arrays(std::path::Path::new(&y)).expect("output file");
    assert_eq!(back[0].1.shape(), &[3, 10]);
    // Softmax rows sum to one.
    for row in back[0].1.to_f64().outer_iter() {
        assert!((row.sum() - 1.0).abs() < 1e-5);
    }
    // Without --output: the shape and each row's top classes.
    let out = nnc(&[
        "run",
        "models/lenet5.nn",
        "--weights",
        &weights,
        "--input",
        &x,
    ]);
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("probs: float [3, 10]\n  row 0: argmax "),
        "{shown}"
    );
}

#[test]
fn run_refuses_inputs_and_weights_that_do_not_fit() {
    let wrong = npy("wrong.npy", &[2, 1, 27, 28]);
    let out = nnc(&["run", "models/lenet5.nn", "--input", &wrong]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("input `x` has shape [2, 1, 27, 28], the model expects f32[N, 1, 28, 28]"),
        "{}",
        text(&out.stderr)
    );
    let x = npy("x2.npy", &[1, 1, 28, 28]);
    let weights = temp("mlp.safetensors");
    assert_eq!(
        nnc(&["init", "models/mlp_iris.nn", "-o", &weights])
            .status
            .code(),
        Some(0)
    );
    let out = nnc(&[
        "run",
        "models/lenet5.nn",
        "--weights",
        &weights,
        "--input",
        &x,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("`c1.weight` is missing") && err.contains("is not a parameter of this model"),
        "{err}"
    );
    let corrupt = temp("corrupt.safetensors");
    std::fs::write(&corrupt, b"not a safetensors file").expect("writes");
    let out = nnc(&[
        "run",
        "models/lenet5.nn",
        "--weights",
        &corrupt,
        "--input",
        &x,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not a valid safetensors file"));
    let out = nnc(&["run", "models/lenet5.nn", "--input", "/no/such/input.npy"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn compile_reports_every_stage_kernels_and_memory() {
    let out = nnc(&[
        "compile",
        "models/lenet5.nn",
        "--batch",
        "4",
        "--threads",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for needle in [
        "compiled lenet5 at batch 4 for 1 thread(s)",
        "parse",
        "plan (schedule, memory)",
        "lower (pack weights, tables)",
        "jit (Cranelift)",
        "total (parse to native code)",
        "kernels: ",
        "memory: arena ",
        "program: ",
        "params: 44426 trainable, 0 non-trainable; MACs: 1126560",
    ] {
        assert!(report.contains(needle), "missing `{needle}` in:\n{report}");
    }
}

/// The compile report lists the fusion decisions; `--no-fuse` and `--disable-pass` turn rules off; `dump
/// --after` shows the graph after any of them.
#[test]
fn fusion_is_reported_and_can_be_switched_off() {
    let report = |extra: &[&str]| {
        let mut args = vec!["compile", "models/resnet18.nn", "--threads", "1"];
        args.extend(extra);
        let out = nnc(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let all = report(&[]);
    assert!(
        all.contains("fusion: 45 decisions (fold-bn 20, fuse-residual 8, fuse-activation 17)"),
        "{all}"
    );
    assert!(
        all.contains("  fuse-residual    layer1.0.conv2 + layer1.0.add -> conv2d+bn+add"),
        "{all}"
    );
    assert!(report(&["--no-fuse"]).contains("fusion: 0 decisions\n"));
    let some = report(&["--disable-pass", "fuse-residual", "--disable-pass", "cse"]);
    // Without fuse-residual, each residual add and the ReLU after it become one elementwise chain.
    assert!(
        some.contains("fusion: 37 decisions (fold-bn 20, fuse-activation 9, fuse-elementwise 8)"),
        "{some}"
    );
    assert!(
        some.contains("  fuse-elementwise layer1.0.add + layer1.0.relu -> chain of add+relu"),
        "{some}"
    );
    let dump = |after: &str| {
        let out = nnc(&["dump", "models/resnet18.nn", "--after", after]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(!dump("dce").contains("fused"));
    let folded = dump("fold-bn");
    assert!(folded.contains("of=conv2d+bn filters=64") && !folded.contains("+relu"));
    let fused = dump("fuse");
    assert!(fused.contains("of=conv2d+bn+add+relu") && !fused.contains("batchnorm"));
}

#[test]
fn compile_emits_the_plan_cranelift_ir_and_machine_code() {
    let plan = text(&nnc(&["compile", "models/mlp_iris.nn", "--emit", "plan"]).stdout);
    assert!(plan.starts_with("plan batch=1 steps="), "{plan}");
    let clif = text(&nnc(&["compile", "models/mlp_iris.nn", "--emit", "clif"]).stdout);
    assert!(
        clif.contains("; kernel Gemm(Identity)") && clif.contains("fma"),
        "{clif}"
    );
    let asm = text(&nnc(&["compile", "models/mlp_iris.nn", "--emit", "asm"]).stdout);
    assert!(asm.contains("vfmadd"), "{asm}");
    let ir = text(&nnc(&["compile", "models/mlp_iris.nn", "--emit", "ir"]).stdout);
    assert!(ir.contains("dense"), "{ir}");
}

#[test]
fn bench_json_has_the_documented_keys() {
    let v = json(&[
        "bench",
        "models/lenet5.nn",
        "--iters",
        "3",
        "--batch",
        "2",
        "--json",
    ]);
    assert_eq!(v["batch"], 2);
    assert_eq!(v["iters"], 3);
    for key in ["median", "min"] {
        let ms = v["latency_ms"][key].as_f64().expect("a number");
        assert!(ms > 0.0 && ms < 10_000.0, "latency_ms.{key} = {ms}");
    }
    // Every timed run, in order: three, the smallest of them the minimum, the middle one the median.
    let mut runs: Vec<f64> = v["runs_ms"]
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r.as_f64().expect("a number"))
        .collect();
    assert_eq!(runs.len(), 3);
    runs.sort_by(f64::total_cmp);
    assert_eq!(runs[0], v["latency_ms"]["min"].as_f64().unwrap());
    assert_eq!(runs[1], v["latency_ms"]["median"].as_f64().unwrap());
    assert!(v["compile_ms"].as_f64().expect("a number") > 0.0);
    let kernels = v["kernels"].as_array().expect("an array");
    for k in kernels {
        let (mean, min) = (
            k["ms"].as_f64().expect("ms"),
            k["min_ms"].as_f64().expect("min_ms"),
        );
        assert!(min >= 0.0 && min <= mean, "{k}");
        // A thread waits at the barrier after a kernel for part of the kernel's time at most.
        let idle = k["idle_ms"].as_f64().expect("idle_ms");
        assert!(idle >= 0.0 && idle <= mean, "{k}");
    }
    let idle: f64 = kernels.iter().map(|k| k["idle_ms"].as_f64().unwrap()).sum();
    let total = v["idle_ms"].as_f64().expect("idle_ms");
    assert!(
        (idle - total).abs() <= 1e-9 * total.max(1.0),
        "{idle} vs {total}"
    );
    // LeNet-5 fused: 2 convolutions and 2 dense layers with their tanh, 2 pools, a dense layer, a softmax.
    let mut ops: Vec<&str> = kernels
        .iter()
        .map(|k| k["op"].as_str().expect("op"))
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        ["dense", "fused", "fused", "fused", "fused", "maxpool", "maxpool", "softmax"],
        "{kernels:?}"
    );
    for k in kernels {
        for key in ["layer", "op", "kernel", "ms", "share", "gflops", "tasks"] {
            assert!(!k[key].is_null(), "kernel without `{key}`: {k}");
        }
    }
    // On one thread nobody waits.
    let one = json(&[
        "bench",
        "models/lenet5.nn",
        "--iters",
        "2",
        "--threads",
        "1",
        "--json",
    ]);
    assert_eq!(one["idle_ms"].as_f64(), Some(0.0));
    // Nor when no kernel is worth sharing (the Iris MLP): the calling thread runs them all, two threads
    // or not (it used to hand each kernel to the pool, whose other thread waited at every barrier).
    let mlp = json(&[
        "bench",
        "models/mlp_iris.nn",
        "--iters",
        "3",
        "--threads",
        "2",
        "--json",
    ]);
    assert_eq!(mlp["threads"], 2);
    assert_eq!(mlp["idle_ms"].as_f64(), Some(0.0));
    // LeNet-5 has 281,640 MACs per sample (tests/models.rs); batch 2 doubles them.
    assert_eq!(v["macs"], 2 * 281_640);
    let gemm = v["gemm"].as_str().expect("a string");
    assert!(
        ["avx512", "avx2", "cranelift"].contains(&gemm),
        "gemm = {gemm}"
    );
}

#[test]
fn gemm_flag_chooses_the_kernel_and_refuses_what_the_cpu_lacks() {
    let out = nnc(&["compile", "models/lenet5.nn", "--gemm", "cranelift"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("gemm: cranelift"));
    for (name, lacks) in [("avx2", "lacks AVX2"), ("avx512", "lacks AVX-512F")] {
        let out = nnc(&["compile", "models/lenet5.nn", "--gemm", name]);
        let stdout = text(&out.stdout);
        // Either the CPU has the instructions, or the choice is a usage error (never a crash).
        match out.status.code() {
            Some(0) => assert!(stdout.contains(&format!("gemm: {name}")), "{stdout}"),
            code => {
                assert_eq!(code, Some(2), "{}", text(&out.stderr));
                assert!(text(&out.stderr).contains(lacks));
            }
        }
    }
    let out = nnc(&[
        "bench",
        "models/lenet5.nn",
        "--iters",
        "1",
        "--gemm",
        "cranelift",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("gemm cranelift"));
}

#[test]
fn jit_commands_refuse_bad_arguments_with_exit_code_2() {
    for args in [
        &["bench", "models/lenet5.nn", "--threads", "0"][..],
        &["bench", "models/lenet5.nn", "--iters", "0"],
        &["compile", "models/lenet5.nn", "--emit", "exe"],
        &["compile", "models/lenet5.nn", "--batch", "0"],
        &[
            "run",
            "models/lenet5.nn",
            "--input",
            "x.npy",
            "--backend",
            "gpu",
        ],
        &["compile", "no/such/file.nn"],
        &[
            "compile",
            "models/lenet5.nn",
            "--disable-pass",
            "fuse-everything",
        ],
        &["dump", "models/lenet5.nn", "--after", "fusion"],
        &["compile", "models/lenet5.nn", "--gemm", "sse"],
    ] {
        let out = nnc(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("error"), "{args:?}");
    }
}

/// `--no-winograd` runs 3x3 stride-1 convolutions directly; by default they are Winograd's on a CPU with
/// AVX2 and FMA (`nnc bench`'s profile names the kernels, `nnc compile`'s report the layers).
#[test]
fn no_winograd_runs_3x3_convolutions_directly() {
    let kernels = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "models/resnet18.nn",
            "--iters",
            "1",
            "--json",
            "--threads",
            "2",
        ];
        args.extend(extra);
        let v = json(&args);
        // Layers with a Winograd kernel (one exec per layer, or three on small planes).
        let mut layers: Vec<&str> = v["kernels"]
            .as_array()
            .expect("an array")
            .iter()
            .filter(|k| k["kernel"].as_str().expect("kernel").contains("inograd"))
            .map(|k| k["layer"].as_str().expect("layer"))
            .collect();
        layers.sort();
        layers.dedup();
        layers.len()
    };
    // ResNet-18's 3x3 stride-1 convolutions: two per block, less the three strided ones.
    let by_default = if nnc::codegen::winograd_by_default() {
        13
    } else {
        0
    };
    assert_eq!(kernels(&[]), by_default);
    assert_eq!(kernels(&["--no-winograd"]), 0);
    // `nnc compile`'s report lists them.
    let report = |extra: &[&str]| {
        let mut args = vec!["compile", "models/resnet18.nn", "--threads", "2"];
        args.extend(extra);
        let out = nnc(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // With F(4x4, 3x3)'s transforms (AVX2), the seven at 56x56 and 28x28 and the three at 14x14 (a small plane: 16 tiles of 4, 31% more outputs than kept, 256 channels) are of
    // tiles of 4; the three at 7x7 (16 tiles of 2) are F(2x2, 3x3).
    let lines: &[&str] = if nnc::codegen::winograd4_by_default() {
        &[
            "winograd F(4x4, 3x3): 10 convolutions (--no-winograd: direct): layer1.0.conv1, ",
            "winograd F(2x2, 3x3): 3 convolutions (--no-winograd: direct): layer4.0.conv2, ",
        ]
    } else {
        &["winograd F(2x2, 3x3): 13 convolutions (--no-winograd: direct): layer1.0.conv1, "]
    };
    let all = report(&[]);
    for line in lines {
        assert_eq!(all.contains(line), by_default > 0, "{all}");
    }
    // The stem (3 channels) runs directly where the CPU has AVX2.
    let stem = "direct, filters as vector lanes (few input channels): 1 convolution: conv1\n";
    assert_eq!(
        all.contains(stem),
        nnc::codegen::conv_rows_by_default(),
        "{all}"
    );
    assert!(!report(&["--no-winograd"]).contains("winograd"));
}
