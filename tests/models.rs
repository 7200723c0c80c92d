//! The model zoo: snapshots of every model's IR dump and summary, and the totals of the reference table
//! (shared/reference/models.md: torchvision, timm and hand-written PyTorch models, batch 1).

mod common;

use std::path::Path;

use common::{model, nn_files, stem};
use nnc::{ir, passes, report};

#[test]
fn dump_snapshots() {
    for path in nn_files("models") {
        let g = model(&path);
        insta::assert_snapshot!(format!("dump_{}", stem(&path)), ir::dump::to_text(&g));
    }
}

/// The IR after the inference optimizations (`nnc dump --after fuse`) of the models whose fusion matters
/// most: bottleneck residuals, Inception branches, factorized convolutions, scaled residuals.
#[test]
fn fused_dump_snapshots() {
    let options = nnc::Options {
        until: Some(passes::FUSE.to_string()),
        ..nnc::Options::default()
    };
    for name in [
        "resnet50",
        "googlenet",
        "inception_v3",
        "inception_resnet_v2",
    ] {
        let path = Path::new("models").join(format!("{name}.nn"));
        let c = nnc::compile(&path, &options);
        let g = c.graph.expect("compiles");
        insta::assert_snapshot!(format!("fused_{name}"), ir::dump::to_text(&g));
    }
}

#[test]
fn summary_snapshots() {
    for path in nn_files("models") {
        let g = model(&path);
        let stats = passes::count(&g, 1);
        insta::assert_snapshot!(
            format!("summary_{}", stem(&path)),
            report::summary_table(&g, &stats)
        );
    }
}

/// (file, input shape, output shape, trainable, BN running stats, MACs at batch 1); shapes without batch.
type Row = (&'static str, &'static [u64], &'static [u64], u64, u64, u64);
const REFERENCE: &[Row] = &[
    ("mlp_binary", &[8], &[1], 289, 0, 264),
    ("mlp_iris", &[4], &[3], 83, 0, 70),
    ("mlp_regression", &[8], &[1], 187, 0, 168),
    ("cnn_catdog", &[3, 64, 64], &[1], 1_058_977, 0, 14_024_832),
    ("lenet5", &[1, 28, 28], &[10], 44_426, 0, 281_640),
    ("lenet5_classic", &[1, 32, 32], &[10], 61_706, 0, 416_520),
    (
        "alexnet",
        &[3, 224, 224],
        &[1000],
        61_100_840,
        0,
        714_188_480,
    ),
    (
        "alexnet_paper",
        &[3, 227, 227],
        &[1000],
        62_378_344,
        0,
        1_135_256_096,
    ),
    (
        "vgg16",
        &[3, 224, 224],
        &[1000],
        138_357_544,
        0,
        15_470_264_320,
    ),
    (
        "vgg19",
        &[3, 224, 224],
        &[1000],
        143_667_240,
        0,
        19_632_062_464,
    ),
    (
        "resnet18",
        &[3, 224, 224],
        &[1000],
        11_689_512,
        9_600,
        1_814_073_344,
    ),
    (
        "resnet34",
        &[3, 224, 224],
        &[1000],
        21_797_672,
        17_024,
        3_663_761_408,
    ),
    (
        "resnet50",
        &[3, 224, 224],
        &[1000],
        25_557_032,
        53_120,
        4_089_184_256,
    ),
    (
        "resnet101",
        &[3, 224, 224],
        &[1000],
        44_549_160,
        105_344,
        7_801_405_440,
    ),
    (
        "resnet152",
        &[3, 224, 224],
        &[1000],
        60_192_808,
        151_424,
        11_513_626_624,
    ),
    (
        "googlenet",
        &[3, 224, 224],
        &[1000],
        6_624_904,
        14_560,
        1_498_376_192,
    ),
    (
        "inception_v3",
        &[3, 299, 299],
        &[1000],
        23_834_568,
        34_432,
        5_713_216_096,
    ),
    (
        "inception_v4",
        &[3, 299, 299],
        &[1000],
        42_679_816,
        63_168,
        12_253_974_624,
    ),
    (
        "inception_resnet_v1",
        &[3, 299, 299],
        &[1000],
        22_756_328,
        27_040,
        6_206_361_696,
    ),
    (
        "inception_resnet_v2",
        &[3, 299, 299],
        &[1000],
        55_843_464,
        60_544,
        13_155_794_016,
    ),
    ("simple_rnn", &[10, 32], &[10, 64], 6_272, 0, 61_440),
    ("lstm", &[10, 32], &[10, 64], 25_088, 0, 245_760),
    ("gru", &[10, 32], &[10, 64], 18_816, 0, 184_320),
];

#[test]
fn totals_match_the_reference_table() {
    let mut failures = Vec::new();
    for &(name, input, output, trainable, bn, macs) in REFERENCE {
        let g = model(Path::new(&format!("models/{name}.nn")));
        let s = passes::count(&g, 1);
        let got_in = g.node(g.inputs[0].1).ty.shape_at(1)[1..].to_vec();
        let got_out = g.node(g.outputs[0].1).ty.shape_at(1)[1..].to_vec();
        let got = (
            got_in.as_slice(),
            got_out.as_slice(),
            s.trainable,
            s.non_trainable,
            s.macs,
        );
        let want = (input, output, trainable, bn, macs);
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "models off the reference table:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_reference_model_exists_and_examples_compile() {
    let files: Vec<String> = nn_files("models").iter().map(|p| stem(p)).collect();
    for &(name, ..) in REFERENCE {
        assert!(
            files.contains(&name.to_string()),
            "models/{name}.nn is missing"
        );
    }
    for example in ["text_classifier", "autoencoder"] {
        assert!(
            files.contains(&example.to_string()),
            "example models/{example}.nn is missing"
        );
    }
}

#[test]
fn resnet50_per_stage_shapes_and_batch_scaling() {
    let g = model(Path::new("models/resnet50.nn"));
    let s1 = passes::count(&g, 1);
    let shape_of = |path: &str| {
        s1.layers
            .iter()
            .rev()
            .find(|l| l.path.starts_with(path))
            .map(|l| l.shape[1..].to_vec())
    };
    assert_eq!(shape_of("conv1"), Some(vec![64, 112, 112]));
    assert_eq!(shape_of("maxpool"), Some(vec![64, 56, 56]));
    assert_eq!(shape_of("layer1."), Some(vec![256, 56, 56]));
    assert_eq!(shape_of("layer2."), Some(vec![512, 28, 28]));
    assert_eq!(shape_of("layer3."), Some(vec![1024, 14, 14]));
    assert_eq!(shape_of("layer4."), Some(vec![2048, 7, 7]));
    assert_eq!(shape_of("avgpool"), Some(vec![2048, 1, 1]));
    assert_eq!(shape_of("fc"), Some(vec![1000]));
    // MACs and activation memory scale with the batch; parameters do not.
    let s8 = passes::count(&g, 8);
    assert_eq!(s8.macs, 8 * s1.macs);
    assert_eq!(s8.activation_bytes, 8 * s1.activation_bytes);
    assert_eq!(
        (s8.trainable, s8.non_trainable, s8.weight_bytes),
        (s1.trainable, s1.non_trainable, s1.weight_bytes)
    );
    assert_eq!(s1.weight_bytes, 4 * (25_557_032 + 53_120));
}

#[test]
fn lenet5_per_layer_parameters() {
    let g = model(Path::new("models/lenet5.nn"));
    let s = passes::count(&g, 1);
    let rows: Vec<(Vec<u64>, u64)> = s
        .layers
        .iter()
        .filter(|l| l.params > 0)
        .map(|l| (l.shape[1..].to_vec(), l.params))
        .collect();
    assert_eq!(
        rows,
        vec![
            (vec![6, 24, 24], 156),
            (vec![16, 8, 8], 2_416),
            (vec![120], 30_840),
            (vec![84], 10_164),
            (vec![10], 850)
        ]
    );
}
