//! The JIT against the reference interpreter: every zoo model with `nnc init` weights, at batch 1 and a
//! larger batch, agrees within 1e-4 (largest error over largest magnitude of each output); results are
//! bitwise identical on one and two threads.

mod agree;
mod common;

use std::path::Path;

use agree::{agree, optimized, same_bits_everywhere, write_model};
use nnc::codegen::GemmImpl;
use nnc::ir::{Graph, Op};
use nnc::runtime::Program;
use nnc::tensor::{self, Rng, Tensor};

/// Every other zoo model, starting at `first`, at batch 1 (two tests, so two cores share the work);
/// the small ones also at batch 3.
fn zoo(first: usize) {
    for path in common::nn_files("models")
        .into_iter()
        .skip(first)
        .step_by(2)
    {
        agree(&path, 1, 2);
        let g = common::model(&path);
        if nnc::passes::count(&g, 1).macs < 50_000_000 {
            agree(&path, 3, 2);
        }
    }
}

#[test]
fn zoo_models_agree_with_the_interpreter_even() {
    zoo(0);
}

#[test]
fn zoo_models_agree_with_the_interpreter_odd() {
    zoo(1);
}

/// Convolutions of every kind the kernels handle: groups, dilation, strides, asymmetric padding, 1x1 in
/// place (b: 7x16 pixels, so rows of whole cache lines) and packed, sizes off the tile; pooling with
/// padding and ceil mode; a dense head.
const ODD_SHAPES: &str = r#"
model odd(x: f32[N, 6, 13, 31]) -> y: f32[N, 7] {
    h = x |> a: conv2d(10, 3, stride=2, padding=1, groups=2)
          |> b: conv2d(12, 1, activation=relu)
          |> c: conv2d(9, [3, 2], dilation=2, padding=[2, 1])
          |> d: conv2d(5, 1, stride=2)
          |> p: maxpool(3, stride=1, padding=1)
          |> q: avgpool(2, stride=1)
          |> flatten
    return h |> out: dense(7)
}
"#;

/// Every fusion rule and the cases where it must not fire: a residual that is also the convolution\'s input
/// (it cannot be overwritten in place), a scale and a leaky ReLU after a residual, an affine-free batch
/// norm, a product whose value is read twice (its `relu` then joins the add after it as an elementwise
/// chain), dense layers with batch norm and a residual.
const FUSION_CASES: &str = r#"
model fusion(x: f32[N, 6, 9, 7]) -> y: f32[N, 5] {
    a = x |> c1: conv2d(6, 3, padding=1) |> b1: batchnorm
    h = relu(a + x)
    s = h |> c2: conv2d(6, 1, bias=false) |> b2: batchnorm(affine=false)
    h2 = leaky_relu(0.5 * s + h, slope=0.2)
    d = h2 |> c3: conv2d(8, 3, stride=2, padding=1) |> b3: batchnorm |> sigmoid
    t = d |> c4: conv2d(8, 1)
    u = t + relu(t)
    f = u |> flatten |> dn: dense(12) |> bn4: batchnorm |> tanh
    g = f |> dn2: dense(12, bias=false) |> bn5: batchnorm
    return relu(g + f) |> out: dense(5)
}
"#;

/// The fusion rules fire where they should, and the fused model agrees with the interpreter.
#[test]
fn fused_layers_agree_with_the_interpreter() {
    let path = write_model("fusion.nn", FUSION_CASES);
    let c = optimized(&path);
    let made: Vec<String> = c
        .decisions
        .iter()
        .map(|d| format!("{} {}", d.rule, d.nodes.join("+")))
        .collect();
    assert_eq!(
        made,
        [
            "fold-bn c1+b1",
            "fold-bn c2+b2",
            "fold-bn c2+scale",
            "fold-bn c3+b3",
            "fold-bn dn+bn4",
            "fold-bn dn2+bn5",
            "fuse-residual c1+add",
            "fuse-residual c2+add_1",
            "fuse-residual dn2+add_2",
            "fuse-activation c1+h",
            "fuse-activation c2+h2",
            "fuse-activation c3+d",
            "fuse-activation dn+f",
            "fuse-activation dn2+relu_1",
            "fuse-elementwise relu+u",
        ]
    );
    for batch in [1, 3] {
        for threads in [1, 2] {
            agree(&path, batch, threads);
        }
    }
}

const SIBLING_CASES: &str = r#"
model siblings(x: f32[N, 10, 5, 7]) -> (y: f32[N, 33, 5, 7], z: f32[N, 7, 5, 7], w: f32[N, 10, 5, 7], v: f32[N, 4, 3, 4]) {
    a = x |> s1: conv2d(5, 1) |> relu
    b = x |> s2: conv2d(7, 1, bias=false) |> bn2: batchnorm |> relu
    c = x |> s3: conv2d(16, 1) |> relu |> k3: conv2d(8, 3, padding=1)
    d = x |> s4: conv2d(6, 1) |> tanh
    e = x |> s5: conv2d(4, 3, padding=1) |> relu
    f = x |> s6: conv2d(3, 1) |> tanh
    r = x |> s7: conv2d(10, 1)
    g = x |> s8: conv2d(7, 1, stride=2) |> relu |> up: conv2d(4, 1)
    return concat(a, c, e, d, f, b), b, relu(r + x), g
}
"#;

/// Sibling 1x1 convolutions with one activation are computed as one product: member filter counts off
/// the row tile, a member read by a 3x3 convolution, members written into a concat and a model output
/// (and one value both), two groups of one input; not a 3x3 or strided sibling, nor one with a residual.
#[test]
fn merged_siblings_agree_with_the_interpreter() {
    let path = write_model("siblings.nn", SIBLING_CASES);
    let c = optimized(&path);
    let merged: Vec<String> = c
        .decisions
        .iter()
        .filter(|d| d.rule == "merge-siblings")
        .map(|d| format!("{} -> {}", d.nodes.join("+"), d.result))
        .collect();
    assert_eq!(
        merged,
        [
            "s1+s2+s3 -> 3 1x1 conv2d as one GEMM of 28 rows",
            "s4+s6 -> 2 1x1 conv2d as one GEMM of 9 rows",
        ]
    );
    let g = c.graph.as_ref().expect("compiles");
    for batch in [1, 3] {
        // The plan computes a group at its first step: the members are adjacent and their outputs live
        // from there, apart from each other and from the input they share.
        let plan = nnc::plan::build(g, batch);
        let groups: Vec<Vec<usize>> = ["s1", "s4"]
            .iter()
            .map(|leader| {
                let at = plan
                    .steps
                    .iter()
                    .position(|s| s.path == *leader)
                    .expect("a step");
                let group = nnc::plan::group_of(&plan.steps[at].op).expect("grouped");
                (at..plan.steps.len())
                    .take_while(|&i| nnc::plan::group_of(&plan.steps[i].op) == Some(group))
                    .collect()
            })
            .collect();
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2]);
        for members in &groups {
            let first = members[0];
            for &i in members {
                let b = &plan.buffers[plan.steps[i].output.buffer];
                if let Some(live) = b.live {
                    assert!(live.0 <= first, "{}: live {live:?}", plan.steps[i].path);
                }
            }
        }
        for threads in [1, 2] {
            agree(&path, batch as usize, threads);
        }
    }
}

/// Elementwise runs (`fuse-elementwise`): activations after a pool and after each other, a product and a
/// sum of gates, a three-input sum, a scale; values read twice or returned stay apart.
const CHAINS: &str = "model chains(x: f32[N, 4, 7, 13], z: f32[N, 4, 7, 13]) -> (a: f32[N, 4, 7, 13], b: f32[N, 4, 7, 13], c: f32[N, 4, 7, 13]) {
    p = x |> maxpool(3, stride=1, padding=1) |> tanh |> leaky_relu(slope=0.1)
    g = (p * z + x) |> sigmoid
    s = add(g, p, z) |> scale(factor=0.5) |> relu
    return g, (g * p) |> relu, s
}
";

/// Chains compute what the layers compute one by one: the interpreter's values (within 1e-4), and the
/// unfused kernels' bits.
#[test]
fn elementwise_chains_agree_with_the_interpreter_and_the_unfused_kernels() {
    let path = write_model("chains.nn", CHAINS);
    let c = optimized(&path);
    let chains: Vec<String> = c
        .decisions
        .iter()
        .filter(|d| d.rule == "fuse-elementwise")
        .map(|d| format!("{} -> {}", d.nodes.join("+"), d.result))
        .collect();
    assert_eq!(
        chains,
        [
            "tanh+p -> chain of tanh+leaky_relu",
            "mul+add -> chain of mul+add",
            "add+g -> chain of mul+add+sigmoid",
            "add_1+scale -> chain of add+add+scale",
            "scale+s -> chain of add+add+scale+relu",
            "mul_1+relu -> chain of mul+relu",
        ]
    );
    let g = c.graph.as_ref().expect("compiles");
    let kinds: Vec<String> = g
        .node_ids()
        .into_iter()
        .filter_map(|id| match &g.node(id).op {
            Op::Chain(ch) => Some(ch.kind()),
            _ => None,
        })
        .collect();
    let mut kinds = kinds;
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "add+add+scale+relu",
            "mul+add+sigmoid",
            "mul+relu",
            "tanh+leaky_relu"
        ]
    );
    for (batch, threads) in [(1, 1), (3, 2)] {
        agree(&path, batch, threads);
    }
    let written = common::model(&path);
    let inputs = common::random_inputs(&written, 2, &mut Rng::new(9), 1);
    let weights = tensor::initialize(&written, 1);
    let run = |g: &Graph| {
        let plan = nnc::plan::build(g, 2);
        let mut p = Program::compile(g, &plan, &weights, 1).expect("compiles");
        p.run(&inputs).expect("runs")
    };
    let bits = |t: &Tensor| t.to_f64().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for ((name, a), (_, b)) in run(&written).iter().zip(&run(g)) {
        assert!(
            bits(a) == bits(b),
            "output {name}: fused and unfused differ"
        );
    }
}

#[test]
fn odd_convolutions_and_pools_agree_at_several_batches() {
    let path = write_model("odd.nn", ODD_SHAPES);
    for batch in [1, 2, 5] {
        for threads in [1, 2] {
            agree(&path, batch, threads);
        }
    }
}

/// 3x3 stride-1 pools that keep the plane's size (the whole-plane kernel): max, and average with and without
/// the padding counted, on planes from 2x2 up, sizes off the vector width, with NaN-free random inputs.
#[test]
fn same_size_3x3_pools_agree_with_the_interpreter() {
    for (h, w) in [(2, 2), (2, 7), (7, 2), (5, 9), (14, 14), (3, 17)] {
        let text = format!(
            "model pools(x: f32[N, 5, {h}, {w}]) -> (a: f32[N, 5, {h}, {w}], b: f32[N, 5, {h}, {w}], c: f32[N, 5, {h}, {w}]) {{\n    return maxpool(x, 3, stride=1, padding=1), avgpool(x, 3, stride=1, padding=1), avgpool(x, 3, stride=1, padding=1, count_include_pad=false)\n}}\n"
        );
        let path = write_model(&format!("pool3_{h}x{w}.nn"), &text);
        for (batch, threads) in [(1, 1), (3, 2)] {
            agree(&path, batch, threads);
        }
        same_bits_everywhere(&common::model(&path), 2, &format!("pool3_{h}x{w}"));
    }
}

/// Stride-2 pools (windows two columns apart, reduced several output columns at a time): 3x3 and 2x2 max
/// and average windows, with padding and ceil mode, on rows of 3 to 37 outputs (whole vectors and masked
/// remainders, rows shorter than one vector; rows of up to 64 values pool in registers with AVX-512, the
/// 75-wide one through a row buffer), from planes whose sizes are off the vector width.
#[test]
fn stride_two_pools_agree_with_the_interpreter() {
    for (h, w) in [(11u64, 17u64), (19, 46), (8, 33), (9, 14), (15, 7), (7, 75)] {
        let text = format!(
            "model pools(x: f32[N, 3, {h}, {w}]) -> (a: f32[N, 3, {oh3}, {ow3}], b: f32[N, 3, {oh3}, {ow3}], c: f32[N, 3, {oh2}, {ow2}], d: f32[N, 3, {ohp}, {owp}]) {{\n    return maxpool(x, 3, stride=2, ceil_mode=true), avgpool(x, 3, stride=2, ceil_mode=true), maxpool(x, 2, stride=2), avgpool(x, 3, stride=2, padding=1, count_include_pad=false)\n}}\n",
            oh3 = (h - 3).div_ceil(2) + 1,
            ow3 = (w - 3).div_ceil(2) + 1,
            oh2 = h / 2,
            ow2 = w / 2,
            ohp = (h - 1) / 2 + 1,
            owp = (w - 1) / 2 + 1,
        );
        let path = write_model(&format!("pool_s2_{h}x{w}.nn"), &text);
        for (batch, threads) in [(1, 1), (2, 2)] {
            agree(&path, batch, threads);
        }
        same_bits_everywhere(&common::model(&path), 2, &format!("pool_s2_{h}x{w}"));
    }
}

/// Convolutions with strides 3 and 4 along rows (AlexNet's first layer is 11x11 stride 4): their taps
/// are read as strided runs (kinds 4 and 5, vectors with AVX-512, value by value elsewhere), with padding
/// and panels that cross output rows, against the interpreter and bit for bit across implementations.
#[test]
fn stride_three_and_four_convolutions_agree() {
    let text = "model strided(x: f32[N, 3, 23, 61]) -> (a: f32[N, 5, 5, 14], b: f32[N, 4, 8, 21], c: f32[N, 2, 5, 15]) {\n    return conv2d(x, 5, 11, stride=4, padding=2), conv2d(x, 4, 3, stride=3, padding=1), conv2d(x, 2, 5, stride=[4, 4])\n}\n";
    let path = write_model("strided.nn", text);
    for (batch, threads) in [(1, 1), (2, 2)] {
        agree(&path, batch, threads);
    }
    same_bits_everywhere(&common::model(&path), 2, "strided");
}

const FEW_CHANNELS: &str = r#"
model few(x: f32[N, 3, 37, 61], s: f32[N, 1, 20, 20]) -> (a: f32[N, 16, 19, 30], b: f32[N, 32, 8, 14], c: f32[N, 16, 37, 61], d: f32[N, 16, 18, 18], e: f32[N, 16, 4, 4], f: f32[N, 20, 18, 30]) {
    a = x |> c1: conv2d(16, 7, stride=2, padding=[3, 2], bias=false) |> b1: batchnorm |> relu
    b = x |> c2: conv2d(32, 11, stride=4, padding=2) |> relu
    c = x |> c3: conv2d(16, 3, padding=1) |> leaky_relu(slope=0.1)
    d = s |> c4: conv2d(16, 3)
    e = s |> c5: conv2d(16, 5, stride=4)
    f = x |> c6: conv2d(20, 3, stride=2)
    return a, b, c, d, e, f
}
"#;

/// Convolutions with few input channels run directly (`KernelId::ConvRows`, filters as vector lanes) on
/// CPUs with AVX2: strides 1, 2 and 4, tiles of 6 pixels (rows of 30 and 18) and of 5 (61, 14, 4: rows
/// shorter than a vector), uneven padding, batch norm, ReLU and leaky ReLU fused; 20 filters stay a
/// GEMM. Against the interpreter, bit for bit across GEMMs and threads, and bit for bit the GEMM path's
/// results (`KernelPlan::conv_rows` off).
#[test]
fn few_channel_convolutions_run_directly_with_the_gemms_bits() {
    let path = write_model("few.nn", FEW_CHANNELS);
    for (batch, threads) in [(1, 1), (3, 2)] {
        agree(&path, batch, threads);
    }
    same_bits_everywhere(&common::model(&path), 2, "few");
    let g = agree::fused_model(&path);
    let mut weights = tensor::initialize(&g, 5);
    agree::randomize_bn(&g, &mut weights, &mut Rng::new(6));
    let inputs = common::random_inputs(&g, 2, &mut Rng::new(4), 100);
    let run = |direct: bool| {
        let mut plan = nnc::plan::build(&g, 2);
        plan.conv_rows = direct;
        let mut p = Program::compile(&g, &plan, &weights, 2).expect("compiles");
        let rows = p
            .steps
            .iter()
            .filter(|s| s.kernel_name().starts_with("ConvRows"));
        let want = if direct && nnc::codegen::conv_rows_by_default() {
            5
        } else {
            0
        };
        assert_eq!(rows.count(), want);
        p.run(&inputs).expect("runs")
    };
    for ((name, a), (_, b)) in run(true).iter().zip(&run(false)) {
        let same = a
            .to_f64()
            .iter()
            .zip(b.to_f64().iter())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "output {name}: the direct kernel and the GEMM differ");
    }
}

/// Max pools propagate NaN as PyTorch does, and every implementation keeps the same bits: a NaN in a
/// window wins (the last one in the window's order when there are several), and of equal zeros the first
/// stays. Inputs hold NaNs of two payloads, zeros of both signs and infinities among random values, for
/// the general kernel (strides 1 and 2, padding, row tails; rows that fit in registers and longer ones)
/// and the whole-plane 3x3 one.
#[test]
fn max_pools_keep_nans_and_zero_signs_the_same_everywhere() {
    for w in [21u64, 70] {
        max_pools_keep_nans(w);
    }
}

fn max_pools_keep_nans(w: u64) {
    let text = format!(
        "model pools(x: f32[N, 3, 13, {w}]) -> (a: f32[N, 3, 7, {a}], b: f32[N, 3, 13, {w}], c: f32[N, 3, 6, {c}], d: f32[N, 3, 12, {d}]) {{\n    return maxpool(x, 3, stride=2, padding=1), maxpool(x, 3, stride=1, padding=1), maxpool(x, 2, stride=2), maxpool(x, 2, stride=1)\n}}\n",
        a = (w - 1) / 2 + 1,
        c = w / 2,
        d = w - 1,
    );
    let path = write_model(&format!("pool_nan_{w}.nn"), &text);
    let g = common::model(&path);
    let mut inputs = common::random_inputs(&g, 2, &mut Rng::new(9), 50);
    let mut rng = Rng::new(10);
    // f64 NaNs whose f32 conversions have distinct payloads.
    let nan = |p: u64| f64::from_bits(0x7ff8_0000_0000_0000 | (p << 29));
    let specials = [
        nan(1),
        nan(2),
        0.0,
        -0.0,
        -0.0,
        0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let Tensor::F(x) = &mut inputs[0].1 else {
        panic!("a float input")
    };
    for v in x.iter_mut() {
        let r = rng.uniform_in(0.0, 1.0);
        if r < 0.3 {
            *v = specials[(r / 0.3 * specials.len() as f64) as usize % specials.len()];
        }
    }
    let plan = nnc::plan::build(&g, 2);
    let weights = tensor::initialize(&g, 3);
    let bits = |t: &Tensor| {
        t.to_f64()
            .iter()
            .map(|v| (v.is_nan(), v.to_bits()))
            .collect::<Vec<_>>()
    };
    let mut want = None;
    for gemm in [GemmImpl::Cranelift, GemmImpl::Avx2, GemmImpl::Avx512] {
        if !gemm.available() {
            continue;
        }
        for threads in [1, 2] {
            let mut p =
                Program::compile_with(&g, &plan, &weights, threads, gemm).expect("compiles");
            let got: Vec<_> = p
                .run(&inputs)
                .expect("runs")
                .iter()
                .map(|(_, t)| bits(t))
                .collect();
            let nans: usize = got.iter().flatten().filter(|(n, _)| *n).count();
            assert!(nans > 0, "the inputs put NaNs in some windows");
            match &want {
                None => want = Some(got),
                Some(w) => assert!(w == &got, "{gemm:?} on {threads} threads differs"),
            }
        }
    }
}

/// Random layer geometries, each as a small model run at a random batch on one or two threads.
#[test]
fn random_layers_agree_with_the_interpreter() {
    let mut rng = Rng::new(11);
    let mut pick = |n: u64| rng.next_u64() % n;
    for case in 0..60 {
        let groups = [1, 1, 2, 3][pick(4) as usize];
        let cin = groups * (1 + pick(5));
        let cout = groups * (1 + pick(6));
        let (kh, kw) = (1 + pick(4), 1 + pick(4));
        let (sh, sw) = (1 + pick(3), 1 + pick(2));
        let (dh, dw) = (1 + pick(2), 1 + pick(2));
        let (ph, pw) = (pick(kh), pick(kw));
        let (h, w) = (dh * (kh - 1) + 1 + pick(12), dw * (kw - 1) + 1 + pick(12));
        let act = ["relu", "sigmoid", "tanh", "leaky_relu", "identity"][pick(5) as usize];
        let oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
        let ow = (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
        let (tail, out) = match pick(5) {
            0 => (
                "|> batchnorm |> maxpool(2, stride=1, padding=1)",
                format!("{cout}, {}, {}", oh + 1, ow + 1),
            ),
            1 => (
                "|> avgpool(2, stride=1, padding=1, count_include_pad=false)",
                format!("{cout}, {}, {}", oh + 1, ow + 1),
            ),
            2 => ("|> lrn(3) |> global_avgpool |> flatten", format!("{cout}")),
            // Strided windows: the pooling kernel's strided run.
            3 if case % 2 == 0 => (
                "|> maxpool(3, stride=2, padding=1)",
                format!("{cout}, {}, {}", (oh - 1) / 2 + 1, (ow - 1) / 2 + 1),
            ),
            3 => (
                "|> avgpool(3, stride=2, padding=1, count_include_pad=false)",
                format!("{cout}, {}, {}", (oh - 1) / 2 + 1, (ow - 1) / 2 + 1),
            ),
            _ => ("|> batchnorm", format!("{cout}, {oh}, {ow}")),
        };
        let text = format!(
            "model case(x: f32[N, {cin}, {h}, {w}]) -> y: f32[N, {out}] {{\n    return x |> c: conv2d({cout}, [{kh}, {kw}], stride=[{sh}, {sw}], padding=[{ph}, {pw}], dilation=[{dh}, {dw}], groups={groups}) |> {act} {tail}\n}}\n"
        );
        let path = write_model(&format!("case{case}.nn"), &text);
        agree(&path, 1 + pick(3) as usize, 1 + pick(2) as usize);
    }
}

/// Random dense stacks (with softmax heads) and recurrent layers of every cell, sizes off the tile.
#[test]
fn random_dense_and_recurrent_layers_agree_with_the_interpreter() {
    let mut rng = Rng::new(12);
    let mut pick = |n: u64| rng.next_u64() % n;
    for case in 0..30 {
        let (f, t, h, u) = (1 + pick(40), 1 + pick(9), 1 + pick(37), 1 + pick(300));
        let text = match case % 4 {
            0 => format!(
                "model case(x: f32[N, {f}]) -> y: f32[N, 7] {{\n    return x |> dense({u}, activation=tanh) |> dense({h}, bias=false) |> relu |> dense(7, activation=softmax)\n}}\n"
            ),
            1 => format!(
                "model case(x: f32[N, {t}, {f}]) -> y: f32[N, {t}, {h}] {{\n    return lstm(x, {h}, true)\n}}\n"
            ),
            2 => format!(
                "model case(x: f32[N, {t}, {f}]) -> y: f32[N, {h}] {{\n    return gru(x, {h}, false, bias={})\n}}\n",
                pick(2) == 0
            ),
            _ => format!(
                "model case(x: f32[N, {t}, {f}]) -> y: f32[N, {t}, {h}] {{\n    return simple_rnn(x, {h}, true, activation={})\n}}\n",
                ["tanh", "relu"][pick(2) as usize]
            ),
        };
        let path = write_model(&format!("dense{case}.nn"), &text);
        agree(&path, 1 + pick(5) as usize, 1 + pick(2) as usize);
    }
}

/// Dense products of at most 8 rows run in one k block of all of k (they stream their weights), larger
/// ones in blocks of `KC`: both agree with the interpreter, and with every GEMM implementation bit for
/// bit, with k several blocks deep and sizes off the tile. Larger ones on two threads run in a few column
/// blocks per row share, and 300 rows in two row shares (`lower::products::dense_panels_per_task`).
#[test]
fn deep_dense_layers_agree_in_one_k_block_and_in_many() {
    let text = "model deep(x: f32[N, 700]) -> y: f32[N, 37] {\n    return x |> dense(300, activation=relu) |> dense(37)\n}\n";
    let path = write_model("deep_dense.nn", text);
    for (batch, threads) in [(1, 1), (2, 2), (8, 2), (9, 2), (20, 1), (20, 2), (300, 2)] {
        agree(&path, batch, threads);
    }
    let g = common::model(&path);
    for batch in [1, 9, 300] {
        same_bits_everywhere(&g, batch, "deep_dense.nn");
    }
}

#[test]
fn results_are_bitwise_identical_for_any_threads_and_gemm() {
    // ResNet-18 at batch 4 on two threads runs its stride-2 convolutions with 1 MiB of weights or more
    // one image per task (`lower::products::split`), GoogLeNet at batch 1 its largest ones in row shares.
    for (model, batch) in [
        ("models/resnet18.nn", 4),
        ("models/googlenet.nn", 1),
        ("models/lstm.nn", 3),
    ] {
        same_bits_everywhere(&common::model(Path::new(model)), batch, model);
    }
}

/// Kernels write only inside their buffers: every arena buffer is moved apart from the others with a
/// guard gap of NaN-patterned memory around it, and after a run every gap must be intact.
#[test]
fn kernels_never_write_outside_their_buffers() {
    const GUARD: u64 = 256;
    for model in [
        "models/googlenet.nn",
        "models/lenet5.nn",
        "models/text_classifier.nn",
    ] {
        let g = common::model(Path::new(model));
        let weights = tensor::initialize(&g, 3);
        let inputs = common::random_inputs(&g, 2, &mut Rng::new(5), 50);
        let mut plan = nnc::plan::build(&g, 2);
        // Each arena buffer gets its own place (buffers the plan overlapped may share one only if they
        // had the same offset, which keeps in-place ops in place), followed by a guard gap.
        let mut size = std::collections::BTreeMap::new();
        for b in &plan.buffers {
            if let nnc::plan::Storage::Arena { offset } = b.storage {
                let e = size.entry(offset).or_insert(0);
                *e = (*e).max(b.bytes.div_ceil(64) * 64);
            }
        }
        let mut end = GUARD;
        let mut gaps = vec![(0, GUARD)];
        let mut moved = std::collections::HashMap::new();
        for (&offset, &bytes) in &size {
            moved.insert(offset, end);
            end += bytes + GUARD;
            gaps.push((end - GUARD, end));
        }
        for b in plan.buffers.iter_mut() {
            if let nnc::plan::Storage::Arena { offset } = &mut b.storage {
                *offset = moved[offset];
            }
        }
        plan.arena_bytes = end;
        let mut p = Program::compile(&g, &plan, &weights, 2).expect("compiles");
        p.fill_arena(f32::from_bits(0x7fc0_dead));
        p.run(&inputs).expect("runs");
        let arena = p.arena_values();
        for (a, z) in gaps {
            for i in a / 4..z / 4 {
                assert_eq!(
                    arena[i as usize].to_bits(),
                    0x7fc0_dead,
                    "{model}: arena byte {} was written",
                    4 * i
                );
            }
        }
    }
}

#[test]
fn lenet5_agrees() {
    agree(Path::new("models/lenet5.nn"), 3, 1);
}

#[test]
fn a_new_batch_size_compiles_a_new_program_and_known_ones_are_reused() {
    let g = common::model(Path::new("models/mlp_iris.nn"));
    let weights = tensor::initialize(&g, 1);
    let mut compiled = nnc::runtime::Compiled::new(&g, &weights, 2);
    let mut rng = Rng::new(3);
    let one = common::random_inputs(&g, 1, &mut rng, 10);
    let three = common::random_inputs(&g, 3, &mut rng, 10);
    let first = compiled.run(&one).expect("runs");
    compiled.run(&three).expect("runs");
    assert_eq!(compiled.batches(), vec![1, 3]);
    let again = compiled.run(&one).expect("runs");
    assert_eq!(compiled.batches(), vec![1, 3]);
    assert_eq!(first[0].1.to_f64(), again[0].1.to_f64());
    // Inputs that do not fit are refused before anything is compiled.
    let wrong = common::random_inputs(
        &common::model(Path::new("models/lenet5.nn")),
        2,
        &mut rng,
        10,
    );
    assert!(compiled.run(&wrong).is_err());
    assert_eq!(compiled.batches(), vec![1, 3]);
}
