//! Winograd convolutions (`lower::winograd`) against the reference interpreter and against the same
//! layers computed directly, and bit for bit across GEMM implementations and threads.

mod agree;
mod common;

use agree::{agree, fused_model, randomize_bn, relative_error, same_bits_everywhere, write_model};
use nnc::codegen::WinogradKind;
use nnc::runtime::Program;
use nnc::tensor::{self, Rng};

const WINOGRAD_CASES: &str = r#"
model winograd(x: f32[N, 32, 25, 19], s: f32[N, 40, 8, 8]) -> (y: f32[N, 48, 25, 19], z: f32[N, 40, 8, 8], u: f32[N, 36, 27, 19]) {
    a = x |> c1: conv2d(48, 3, padding=1) |> relu
    b = a |> c2: conv2d(48, 3, padding=1, bias=false) |> b2: batchnorm
    y = relu(b + a)
    z = s |> c3: conv2d(40, 3, padding=1) |> leaky_relu(slope=0.1) |> c4: conv2d(40, 3, padding=1, bias=false)
    u = x |> c5: conv2d(36, 3, padding=[2, 1]) |> relu
    return y, z, u
}
"#;

/// 3x3 stride-1 convolutions computed as Winograd F(2x2, 3x3): odd and even planes (25x19: three blocks of
/// tiles, the last of 2; 8x8; a padding
/// of 2 and 1 stays direct), with bias, batch norm, residual, ReLU and leaky
/// ReLU fused, at batches 1 and 3 on one and two threads, against the interpreter and against the same
/// programs with Winograd off; bit for bit across GEMM implementations and threads.
#[test]
fn winograd_convolutions_agree_with_the_interpreter_and_direct_ones() {
    // F(2x2, 3x3) everywhere: the planes have fewer than 36 tiles of 4.
    check_winograd("winograd.nn", WINOGRAD_CASES, [4, 0, 0], 1e-5);
}

const WINOGRAD4_CASES: &str = r#"
model winograd4(x: f32[N, 32, 36, 70], s: f32[N, 40, 30, 26]) -> (y: f32[N, 48, 36, 70], z: f32[N, 40, 30, 26], v: f32[N, 40, 28, 24]) {
    a = x |> c1: conv2d(48, 3, padding=1) |> relu
    b = a |> c2: conv2d(48, 3, padding=1, bias=false) |> b2: batchnorm
    y = relu(b + a)
    z = s |> c3: conv2d(40, 3, padding=1) |> leaky_relu(slope=0.1) |> c4: conv2d(40, 3, padding=1, bias=false)
    v = s |> c5: conv2d(40, 3) |> relu
    return y, z, v
}
"#;

/// The same as F(4x4, 3x3) on a CPU with its (AVX2 or AVX-512) transforms: a 36x70 plane (tile rows of 18
/// tiles, more than one vector of 16; 162 tiles in three blocks, the last of 34, so blocks start
/// inside tile rows), a 30x26 one (the last tile row and column half outside the plane) and a valid
/// convolution (padding 0: tiles from the first row and column, F(4x4, 3x3) only). Against the
/// direct convolution within 1e-5 of the largest output, as F(2x2, 3x3): its transforms round more
/// (constants up to 8), but a numpy model of them on ResNet-50's layers stays under 1e-5.
#[test]
fn winograd4_convolutions_agree_with_the_interpreter_and_direct_ones() {
    let layers = if nnc::codegen::winograd4_by_default() {
        [0, 5, 0]
    } else {
        [4, 0, 0]
    };
    check_winograd("winograd4.nn", WINOGRAD4_CASES, layers, 1e-5);
}

const WINOGRAD5_CASES: &str = r#"
model winograd5(x: f32[N, 32, 27, 27], s: f32[N, 48, 35, 35]) -> (y: f32[N, 40, 27, 27], z: f32[N, 36, 35, 35], v: f32[N, 40, 23, 23], u: f32[N, 36, 25, 25]) {
    a = x |> c1: conv2d(40, 5, padding=2) |> relu
    b = a |> c2: conv2d(40, 5, padding=2, bias=false) |> b2: batchnorm
    y = relu(b + a)
    z = s |> c3: conv2d(36, 5, padding=2) |> leaky_relu(slope=0.1)
    v = x |> c4: conv2d(40, 5) |> relu
    u = x |> c5: conv2d(36, 5, padding=1)
    return y, z, v, u
}
"#;

/// 5x5 stride-1 convolutions as F(2x2, 5x5) on a CPU with its (AVX2) transforms: AlexNet's 27x27 plane
/// (196 tiles: the staged form on two threads at batches 1 and 3) with bias, batch norm, residual and
/// ReLU fused, Inception v3's 35x35 (324 tiles in three blocks, the last of 68) with leaky ReLU, a valid
/// convolution (padding 0); padding 1 stays direct. Within 1e-5 of the direct convolutions, as F(4x4,
/// 3x3) (the same `Bᵀ`).
#[test]
fn winograd5_convolutions_agree_with_the_interpreter_and_direct_ones() {
    let layers = if nnc::codegen::winograd4_by_default() {
        [0, 0, 4]
    } else {
        [0, 0, 0]
    };
    check_winograd("winograd5.nn", WINOGRAD5_CASES, layers, 1e-5);
}

const SMALL_CASES: &str = r#"
model small(x: f32[N, 256, 14, 14], s: f32[N, 256, 7, 7]) -> (y: f32[N, 256, 14, 14], z: f32[N, 256, 7, 7], u: f32[N, 32, 7, 7], v: f32[N, 256, 7, 7]) {
    y = x |> c1: conv2d(256, 3, padding=1, bias=false) |> b1: batchnorm |> relu
    z = relu((s |> c2: conv2d(256, 3, padding=1)) + s)
    u = s |> c3: conv2d(32, 3, padding=1)
    v = s |> c4: conv2d(256, 5, padding=2) |> relu
    return y, z, u, v
}
"#;

/// Small planes of many channels, their images' tiles side by side in one product (`lower::winograd`):
/// 14x14 as F(4x4, 3x3) (16 tiles per image, a third more outputs computed than kept), 7x7 as F(2x2,
/// 3x3) at batches 1 to 3 and as F(4x4, 3x3) from batch 4 (4 tiles per image), a 5x5 at 7x7 as F(2x2,
/// 5x5), with batch norm, residual and ReLU fused; 32 filters stay direct. Against the interpreter at batches 1, 3 and 4, the
/// direct convolutions and bit for bit across GEMMs at batch 2.
#[test]
fn small_planes_agree_with_the_interpreter_and_direct_convolutions() {
    let layers = if nnc::codegen::winograd4_by_default() {
        [1, 1, 1]
    } else {
        [0, 0, 0]
    };
    check_winograd("small.nn", SMALL_CASES, layers, 1e-5);
    let path = write_model("small.nn", SMALL_CASES);
    agree(&path, 4, 2);
}

/// The model `text` against the interpreter at batches 1 and 3 on one and two threads; at batch 2 its
/// Winograd convolutions, `layers[0]` of F(2x2, 3x3), `layers[1]` of F(4x4, 3x3) and `layers[2]` of
/// F(2x2, 5x5) (none when this CPU runs no Winograd), against the same program with Winograd off within
/// `tolerance`; bit for bit across GEMM implementations and threads.
fn check_winograd(file: &str, text: &str, layers: [usize; 3], tolerance: f64) {
    let path = write_model(file, text);
    for (batch, threads) in [(1, 1), (1, 2), (3, 2)] {
        agree(&path, batch, threads);
    }
    let g = fused_model(&path);
    let mut weights = tensor::initialize(&g, 1);
    randomize_bn(&g, &mut weights, &mut Rng::new(3));
    let inputs = common::random_inputs(&g, 2, &mut Rng::new(9), 100);
    let run = |winograd: bool| {
        let mut plan = nnc::plan::build(&g, 2);
        plan.winograd = winograd;
        let mut p = Program::compile(&g, &plan, &weights, 2).expect("compiles");
        // Layers with a Winograd exec (one per layer, or two transforms around a GEMM) and their kinds.
        let mut named: Vec<(&str, WinogradKind)> = p
            .steps
            .iter()
            .filter_map(|s| Some((s.layer.as_str(), s.winograd_kind()?)))
            .collect();
        named.dedup();
        let want = if winograd && nnc::codegen::winograd_by_default() {
            layers
        } else {
            [0, 0, 0]
        };
        let count = |kind| named.iter().filter(|l| l.1 == kind).count();
        let kinds = [WinogradKind::F2x3, WinogradKind::F4x3, WinogradKind::F2x5];
        assert_eq!(kinds.map(count), want, "{named:?}");
        p.run(&inputs).expect("runs")
    };
    let (fast, direct) = (run(true), run(false));
    for ((name, a), (_, b)) in fast.iter().zip(&direct) {
        let err = relative_error(a, b);
        assert!(
            err < tolerance,
            "output {name}: Winograd and direct differ by {err:e}"
        );
    }
    same_bits_everywhere(&g, 2, file);
}
