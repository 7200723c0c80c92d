//! Weights and arrays on disk, and initialization: safetensors round trips by parameter name, every way a
//! weights file can fail to fit a model (each offending tensor named), .npy/.npz round trips, and
//! initializers that are seeded, reproducible and follow PyTorch's fan rules and defaults.

mod common;

use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use nnc::tensor::{self, FileError, LoadOptions, Tensor};
use safetensors::Dtype;

thread_local! {
    /// This test's files: a directory per test thread, removed when the test ends.
    static DIR: tempfile::TempDir = tempfile::Builder::new().prefix("nnc-test-").tempdir().expect("temp dir");
}

fn temp(name: &str) -> PathBuf {
    DIR.with(|d| d.path().join(name))
}

fn lenet() -> nnc::ir::Graph {
    common::model(Path::new("models/lenet5.nn"))
}

/// Writes a safetensors file from `(name, dtype, shape, bytes)` entries.
fn write_raw(path: &Path, entries: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views = entries.iter().map(|(n, d, s, b)| {
        (
            n.clone(),
            safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("valid view"),
        )
    });
    std::fs::write(
        path,
        safetensors::tensor::serialize(views, None).expect("serializes"),
    )
    .expect("writes");
}

/// The model's weights as raw f32 entries.
fn entries(w: &tensor::Weights) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    w.iter()
        .map(|(n, a)| {
            (
                n.clone(),
                Dtype::F32,
                a.shape().to_vec(),
                a.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
            )
        })
        .collect()
}

fn problems(r: Result<(tensor::Weights, Vec<String>), FileError>) -> Vec<String> {
    match r {
        Err(FileError::Mismatch { problems, .. }) => problems,
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn weights_round_trip_as_f32_by_parameter_name() {
    let g = lenet();
    let w = tensor::initialize(&g, 5);
    let path = temp("roundtrip.safetensors");
    tensor::write_weights(&path, &w).expect("writes");
    let (back, missing) = tensor::read_weights(&path, &g, LoadOptions::default()).expect("reads");
    assert!(missing.is_empty());
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>()
    );
    for (name, a) in &w {
        assert_eq!(back[name], a.mapv(|v| v as f32 as f64), "{name}");
    }
    // No temporary file is left next to the result.
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn each_offending_tensor_is_named() {
    let g = lenet();
    let mut raw = entries(&tensor::initialize(&g, 1));
    raw.retain(|(n, ..)| n != "out.bias" && !n.ends_with("c1.bias"));
    let wrong = raw
        .iter_mut()
        .find(|(n, ..)| n.ends_with("c3.weight"))
        .expect("c3 exists");
    wrong.2 = vec![16, 6, 5, 4];
    wrong.3.truncate(16 * 6 * 5 * 4 * 4);
    raw.push(("head.weight".into(), Dtype::F32, vec![2], vec![0; 8]));
    raw.push((
        "c1.num_batches_tracked".into(),
        Dtype::I64,
        vec![],
        vec![0; 8],
    ));
    let path = temp("bad.safetensors");
    write_raw(&path, &raw);
    let names: Vec<String> = g
        .node_ids()
        .into_iter()
        .filter(|&i| g.node(i).op.is_param())
        .map(|i| g.node(i).path.clone())
        .collect();
    assert!(
        names.contains(&"out.bias".to_string()) && names.iter().any(|n| n.ends_with("c3.weight")),
        "lenet5 names: {names:?}"
    );
    let p = problems(tensor::read_weights(&path, &g, LoadOptions::default()));
    let text = p.join("\n");
    assert!(text.contains("`out.bias` is missing"), "{text}");
    assert!(text.contains("c1.bias` is missing"), "{text}");
    assert!(
        text.contains("c3.weight` has shape [16, 6, 5, 4], the model expects [16, 6, 5, 5]"),
        "{text}"
    );
    assert!(
        text.contains("`head.weight` is not a parameter of this model"),
        "{text}"
    );
    assert!(
        !text.contains("num_batches_tracked"),
        "PyTorch's step counters are accepted: {text}"
    );
    assert_eq!(p.len(), 4, "{text}");
    // Allowing missing and extra tensors leaves only the shape error.
    let p = problems(tensor::read_weights(
        &path,
        &g,
        LoadOptions {
            allow_missing: true,
            allow_extra: true,
        },
    ));
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn allow_missing_reports_what_to_initialize() {
    let g = lenet();
    let mut raw = entries(&tensor::initialize(&g, 1));
    raw.retain(|(n, ..)| n != "out.bias");
    let path = temp("missing.safetensors");
    write_raw(&path, &raw);
    let (w, missing) = tensor::read_weights(
        &path,
        &g,
        LoadOptions {
            allow_missing: true,
            allow_extra: false,
        },
    )
    .expect("accepted");
    assert_eq!(missing, ["out.bias"]);
    assert!(!w.contains_key("out.bias"));
}

#[test]
fn corrupt_and_mistyped_files_are_errors() {
    let g = lenet();
    let path = temp("corrupt.safetensors");
    for bytes in [
        &b""[..],
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}\x00\x00\x00\x00\x00\x00",
        &[0xff; 64],
    ] {
        std::fs::write(&path, bytes).expect("writes");
        assert!(matches!(
            tensor::read_weights(&path, &g, LoadOptions::default()),
            Err(FileError::Corrupt { .. })
        ));
    }
    let mut raw = entries(&tensor::initialize(&g, 1));
    let t = raw
        .iter_mut()
        .find(|(n, ..)| n == "out.bias")
        .expect("exists");
    t.1 = Dtype::I32;
    let path = temp("mistyped.safetensors");
    write_raw(&path, &raw);
    let p = problems(tensor::read_weights(&path, &g, LoadOptions::default()));
    assert_eq!(
        p,
        ["`out.bias` has element type I32; expected a float type"]
    );
    assert!(matches!(
        tensor::read_weights(Path::new("/no/such/file"), &g, LoadOptions::default()),
        Err(FileError::Read { .. })
    ));
}

#[test]
fn arrays_round_trip_through_npy_and_npz() {
    let a = Tensor::F(ArrayD::from_shape_fn(vec![2, 3], |ix| {
        ix[0] as f64 * 10.0 + ix[1] as f64 + 0.5
    }));
    let b = Tensor::I(ArrayD::from_shape_fn(vec![4], |ix| ix[0] as i64 - 1));
    let npy = temp("one.npy");
    tensor::write_arrays(&npy, &[("a".into(), a.clone())]).expect("writes");
    assert_eq!(
        tensor::read_arrays(&npy).expect("reads"),
        vec![(None, a.clone())]
    );
    let npz = temp("two.npz");
    tensor::write_arrays(&npz, &[("a".into(), a.clone()), ("b".into(), b.clone())])
        .expect("writes");
    let back = tensor::read_arrays(&npz).expect("reads");
    assert_eq!(back, vec![(Some("a".into()), a), (Some("b".into()), b)]);
    std::fs::write(&npy, b"\x93NUMPY garbage").expect("writes");
    assert!(matches!(
        tensor::read_arrays(&npy),
        Err(FileError::Corrupt { .. })
    ));
    // A header that declares far more data than the file holds is refused before anything is allocated.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1152921504606846975,), }";
    let mut bomb = b"\x93NUMPY\x01\x00".to_vec();
    bomb.extend((header.len() as u16 + 1).to_le_bytes());
    bomb.extend(header.bytes().chain(std::iter::once(b'\n')));
    bomb.extend([0u8; 16]);
    std::fs::write(&npy, &bomb).expect("writes");
    match tensor::read_arrays(&npy) {
        Err(FileError::Corrupt { reason, .. }) => assert!(reason.contains("declares"), "{reason}"),
        other => panic!("expected a corrupt-file error, got {other:?}"),
    }
}

fn stats(a: &ArrayD<f64>) -> (f64, f64, f64, f64) {
    let n = a.len() as f64;
    let mean = a.sum() / n;
    let std = (a.mapv(|v| (v - mean).powi(2)).sum() / n).sqrt();
    (
        mean,
        std,
        a.fold(f64::INFINITY, |m, &v| m.min(v)),
        a.fold(f64::NEG_INFINITY, |m, &v| m.max(v)),
    )
}

#[test]
fn initializers_follow_their_definitions() {
    let g = common::model(Path::new("tests/fixtures/init.nn"));
    let w = tensor::initialize(&g, 7);
    let (fan_in, fan_out) = (256.0f64, 512.0f64);
    let close = |a: f64, b: f64| (a - b).abs() <= 0.03 * b.abs().max(1e-3);
    let (m, s, ..) = stats(&w["he_n.weight"]);
    assert!(
        m.abs() < 0.01 && close(s, (2.0 / fan_in).sqrt()),
        "he_normal mean {m} std {s}"
    );
    let (_, _, lo, hi) = stats(&w["he_u.weight"]);
    let limit = (6.0 / fan_in).sqrt();
    assert!(
        lo >= -limit && hi <= limit && hi > 0.98 * limit,
        "he_uniform in ±{limit}: {lo}..{hi}"
    );
    let (_, s, ..) = stats(&w["glorot_n.weight"]);
    assert!(
        close(s, (2.0 / (fan_in + fan_out)).sqrt()),
        "glorot_normal std {s}"
    );
    let (_, _, lo, hi) = stats(&w["glorot_u.weight"]);
    let limit = (6.0 / (fan_in + fan_out)).sqrt();
    assert!(
        lo >= -limit && hi <= limit && hi > 0.98 * limit,
        "glorot_uniform {lo}..{hi}"
    );
    let (m, s, ..) = stats(&w["normal.weight"]);
    assert!(
        close(m, 0.5) && close(s, 0.1),
        "random_normal mean {m} std {s}"
    );
    let (_, _, lo, hi) = stats(&w["uniform.weight"]);
    assert!(
        lo >= -0.2 && hi < 0.3 && hi > 0.29,
        "random_uniform {lo}..{hi}"
    );
    assert!(
        w["constant.weight"].iter().all(|&v| v == 0.25)
            && w["constant.bias"].iter().all(|&v| v == 1.0)
    );
    assert!(w["zeros.weight"].iter().all(|&v| v == 0.0));
    // PyTorch defaults: dense weight and bias U(±1/sqrt(fan_in)); conv fan_in = in/groups * kh * kw.
    for (name, bound) in [
        ("default.weight", 1.0 / fan_in.sqrt()),
        ("default.bias", 1.0 / fan_in.sqrt()),
        ("conv.weight", 1.0 / 18f64.sqrt()),
        ("conv.bias", 1.0 / 18f64.sqrt()),
    ] {
        let (_, _, lo, hi) = stats(&w[name]);
        // Only large tensors are expected to come close to the bound.
        let reaches = w[name].len() < 100 || hi > 0.9 * bound;
        assert!(
            lo >= -bound && hi <= bound && lo < hi && reaches,
            "{name} in ±{bound}: {lo}..{hi}"
        );
    }
    assert!(w["bn.weight"].iter().all(|&v| v == 1.0) && w["bn.bias"].iter().all(|&v| v == 0.0));
    assert!(
        w["bn.running_mean"].iter().all(|&v| v == 0.0)
            && w["bn.running_var"].iter().all(|&v| v == 1.0)
    );
    let (_, _, lo, hi) = stats(&w["rnn.weight_hh_l0"]);
    assert!(
        lo >= -0.25 && hi <= 0.25 && hi > 0.2,
        "LSTM U(±1/sqrt(16)): {lo}..{hi}"
    );
    let (m, s, ..) = stats(&w["emb.weight"]);
    assert!(
        m.abs() < 0.05 && close(s, 1.0),
        "embedding N(0, 1): {m} {s}"
    );
}

#[test]
fn initialization_is_seeded_and_per_parameter() {
    let g = common::model(Path::new("tests/fixtures/init.nn"));
    let (a, b, c) = (
        tensor::initialize(&g, 7),
        tensor::initialize(&g, 7),
        tensor::initialize(&g, 8),
    );
    assert_eq!(a, b);
    assert_ne!(a["he_n.weight"], c["he_n.weight"]);
    // Removing other layers does not change a parameter's initial values: streams come from names.
    let small = common::model(Path::new("tests/fixtures/init_small.nn"));
    assert_eq!(
        tensor::initialize(&small, 7)["he_n.weight"],
        a["he_n.weight"]
    );
}

#[test]
fn weight_file_reads_tensor_by_tensor_what_read_weights_reads() {
    use nnc::tensor::Params;
    let g = lenet();
    let w = tensor::initialize(&g, 3);
    let mut raw = entries(&w);
    // One tensor stored as f64 and one as bf16; `f5.weight` (30720 values) spans two read blocks.
    for (n, d, _, b) in raw.iter_mut() {
        if n == "out.weight" {
            *d = Dtype::F64;
            *b = w[n.as_str()]
                .iter()
                .flat_map(|&v| v.to_le_bytes())
                .collect();
        } else if n == "c1.bias" {
            *d = Dtype::BF16;
            *b = w[n.as_str()]
                .iter()
                .flat_map(|&v| (((v as f32).to_bits() >> 16) as u16).to_le_bytes())
                .collect();
        }
    }
    assert!(raw
        .iter()
        .any(|(n, _, s, _)| n == "f5.weight" && s.iter().product::<usize>() * 4 > 1 << 16));
    raw.retain(|(n, ..)| n != "out.bias");
    let path = temp("streamed.safetensors");
    write_raw(&path, &raw);
    let options = LoadOptions {
        allow_missing: true,
        allow_extra: false,
    };
    let (whole, missing) = tensor::read_weights(&path, &g, options).expect("reads");
    let (mut file, missing2) = tensor::WeightFile::open(&path, &g, options).expect("opens");
    assert_eq!(missing, ["out.bias"]);
    assert_eq!(missing2, missing);
    assert_eq!(file.dims("out.bias"), None);
    let fill = tensor::initialize_some(&g, 3, |n| n == "out.bias");
    assert_eq!(fill.keys().collect::<Vec<_>>(), ["out.bias"]);
    assert_eq!(fill["out.bias"], w["out.bias"]);
    file.fill(fill);
    for (name, a) in &w {
        let expected: Vec<f32> = match whole.get(name) {
            Some(v) => v.iter().map(|&x| x as f32).collect(),
            None => a.iter().map(|&x| x as f32).collect(),
        };
        assert_eq!(file.dims(name).as_deref(), Some(a.shape()), "{name}");
        let values = file.values(name).expect("present").expect("reads");
        assert_eq!(values, expected, "{name}");
    }
    // bf16 keeps 8 bits of mantissa; f64 and f32 entries are exact.
    let c1 = file.values("c1.bias").expect("present").expect("reads");
    assert!(c1
        .iter()
        .zip(w["c1.bias"].iter())
        .all(|(&a, &b)| (a as f64 - b).abs() <= b.abs() / 128.0));
    assert_eq!(
        file.values("out.weight").expect("present").expect("reads"),
        w["out.weight"]
            .iter()
            .map(|&v| v as f32)
            .collect::<Vec<_>>()
    );
    assert!(file.values("no.such").is_none());

    // Compiled from the file or from the weights in memory, the program computes the same values.
    let mut whole = whole;
    whole.insert("out.bias".into(), w["out.bias"].clone());
    let plan = nnc::plan::build(&g, 2);
    let inputs = tensor::random_inputs(&g, 2, &mut tensor::Rng::new(9), 10);
    let mut from_file = nnc::runtime::Program::compile(&g, &plan, &file, 1).expect("compiles");
    let mut from_memory = nnc::runtime::Program::compile(&g, &plan, &whole, 1).expect("compiles");
    assert_eq!(
        from_file.run(&inputs).expect("runs"),
        from_memory.run(&inputs).expect("runs")
    );
}

#[test]
fn truncated_weight_files_are_corrupt() {
    let g = lenet();
    let path = temp("whole.safetensors");
    write_raw(&path, &entries(&tensor::initialize(&g, 1)));
    let bytes = std::fs::read(&path).expect("reads");
    let cut = temp("cut.safetensors");
    // Data shorter than the header declares; a header longer than the file; under 8 bytes.
    let mut long_header = bytes.clone();
    long_header[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    for (case, b) in [
        ("data", bytes[..bytes.len() - 4].to_vec()),
        ("header", long_header),
        ("short", bytes[..5].to_vec()),
    ] {
        std::fs::write(&cut, &b).expect("writes");
        for r in [
            tensor::read_weights(&cut, &g, LoadOptions::default()).map(|_| ()),
            tensor::WeightFile::open(&cut, &g, LoadOptions::default()).map(|_| ()),
        ] {
            match r {
                Err(FileError::Corrupt { reason, .. }) => {
                    let want = if case == "short" {
                        "shorter"
                    } else {
                        "declares"
                    };
                    assert!(reason.contains(want), "{case}: {reason}");
                }
                other => panic!("{case}: expected a corrupt-file error, got {other:?}"),
            }
        }
    }
}
