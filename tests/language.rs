//! Language semantics on small inline models: naming rules, seq numbering, loops and conditions, blocks,
//! imports, operators, padding and shape rules, and how parameter options are resolved.

mod common;

use std::path::Path;

use nnc::ir::train::{Init, Regularizer};
use nnc::ir::{Graph, Op};
use nnc::{compile_text, diag, Options};

fn graph(src: &str) -> Graph {
    let c = compile_text(
        Path::new("tests/inline.nn"),
        src.to_string(),
        &Options::default(),
    );
    assert!(
        !c.has_errors(),
        "{}",
        diag::render(&c.sources, &c.diags, false)
    );
    c.graph.expect("no errors")
}

fn errors(src: &str) -> Vec<&'static str> {
    common::error_codes("tests/inline.nn", src)
}

/// `(path, shape)` of every parameter, in graph order.
fn params(g: &Graph) -> Vec<(String, Vec<u64>)> {
    g.node_ids()
        .into_iter()
        .filter(|&id| g.node(id).op.is_param())
        .map(|id| (g.node(id).path.clone(), g.node(id).ty.fixed_dims()))
        .collect()
}

fn param_names(g: &Graph) -> Vec<String> {
    params(g).into_iter().map(|(p, _)| p).collect()
}

fn output_shape(g: &Graph) -> Vec<u64> {
    g.node(g.outputs[0].1).ty.shape_at(1)[1..].to_vec()
}

#[test]
fn names_come_from_labels_seq_positions_bindings_then_op_names() {
    let g = graph(
        "block unit(x: tensor) { return x |> conv: dense(4) |> relu }
         model m(x: f32[N, 4]) -> y: f32[N, 4] {
             a = dense(x, 4)
             h = a |> body: seq { dense(4); relu; unit; named: dense(4) }
             h = dense(h, 4)
             h = dense(h, 4, bias=false)
             return h
         }",
    );
    assert_eq!(
        param_names(&g),
        [
            "a.weight",
            "a.bias",
            "body.0.weight",
            "body.0.bias",
            "body.2.conv.weight",
            "body.2.conv.bias",
            "body.named.weight",
            "body.named.bias",
            "h.weight",
            "h.bias",
            "h_1.weight",
        ]
    );
}

#[test]
fn repetition_and_loops_number_seq_items_in_order() {
    let g = graph(
        "model m(x: f32[N, 4]) -> y: f32[N, 2] {
             return x |> stack: seq {
                 dense(8) * 2
                 for i in 0..3 { if i == 1 { dense(4) } else { relu } }
                 dense(2)
             }
         }",
    );
    assert_eq!(
        param_names(&g),
        [
            "stack.0.weight",
            "stack.0.bias",
            "stack.1.weight",
            "stack.1.bias",
            "stack.3.weight",
            "stack.3.bias",
            "stack.5.weight",
            "stack.5.bias"
        ]
    );
    assert_eq!(params(&g)[2].1, [8, 8]);
    assert_eq!(output_shape(&g), [2]);
}

#[test]
fn blocks_take_defaults_keywords_and_conditions() {
    let g = graph(
        "block proj(x: tensor, width: int, project: bool = x.shape[1] != width) {
             return if project { x |> down: dense(width, bias=false) } else { x }
         }
         model m(x: f32[N, 4]) -> y: f32[N, 8] {
             a = proj(x, 4)
             return proj(a, width=8)
         }",
    );
    // `a = proj(x, 4)` projects nothing; the second call is anonymous, so its scope is the block's name.
    assert_eq!(param_names(&g), ["proj.down.weight"]);
}

#[test]
fn compile_time_arithmetic() {
    let g = graph(
        "model m(x: f32[N, 12]) -> y: f32[N, 7] {
             n = x.shape[-1] * 2 - 3 * (5 - 4)   // 21
             q = n / 3 + -7 / 2 + 7 % 3          // 7 + -4 + 1 = 4
             assert q == 4 && !(q > 4) || false, \"arithmetic\"
             return dense(x, q + 3)
         }",
    );
    assert_eq!(output_shape(&g), [7]);
}

#[test]
fn operators_build_add_mul_and_scale() {
    let g = graph(
        "model m(x: f32[N, 4]) -> y: f32[N, 4] {
             a = relu(x)
             return 0.5 * (a + x) * x
         }",
    );
    let ops: Vec<&str> = g
        .node_ids()
        .into_iter()
        .map(|id| g.node(id).op.name())
        .collect();
    assert_eq!(ops, ["input", "relu", "add", "scale", "mul"]);
    let scale = g.node_ids().into_iter().find_map(|id| {
        if let Op::Scale { factor } = g.node(id).op {
            Some(factor)
        } else {
            None
        }
    });
    assert_eq!(scale, Some(0.5));
}

#[test]
fn imports_bring_blocks_into_scope() {
    let g = graph(
        "import \"../models/lib/inception.nn\" { conv_bn }
         model m(x: f32[N, 3, 32, 32]) -> y: f32[N, 8, 32, 32] { return x |> stem: conv_bn(8, 3, padding=1) }",
    );
    assert_eq!(
        param_names(&g),
        [
            "stem.conv.weight",
            "stem.bn.weight",
            "stem.bn.bias",
            "stem.bn.running_mean",
            "stem.bn.running_var"
        ]
    );
    assert_eq!(errors("import \"../models/lib/inception.nn\" { conv_bn }\nmodel m(x: f32[N, 4]) -> y: f32[N, 4] { return reduction_a(x) }"), ["E0101"]);
}

#[test]
fn same_padding_follows_tensorflow_and_pooling_ceil_mode_follows_pytorch() {
    let g = graph(
        "model m(x: f32[N, 3, 7, 7]) -> y: f32[N, 8, 2, 2] {
             h = conv2d(x, 8, 3, stride=2, padding=same)   // ceil(7/2) = 4
             return maxpool(h, 3, stride=2, ceil_mode=true) // ceil((4-3)/2)+1 = 2
         }",
    );
    let conv = g.node_ids().into_iter().find_map(|id| {
        if let Op::Conv2d { pad, .. } = g.node(id).op {
            Some(pad)
        } else {
            None
        }
    });
    assert_eq!(conv, Some([1, 1, 1, 1]));
    let g = graph("model m(x: f32[N, 3, 8, 8]) -> y: f32[N, 3, 4, 4] { return conv2d(x, 3, 2, stride=2, padding=same) }");
    let conv = g.node_ids().into_iter().find_map(|id| {
        if let Op::Conv2d { pad, .. } = g.node(id).op {
            Some(pad)
        } else {
            None
        }
    });
    assert_eq!(conv, Some([0, 0, 0, 0]));
    // GoogLeNet's first pool: 112 -> 56 with ceil mode; a window may not start in the padding.
    graph("model m(x: f32[N, 1, 112, 112]) -> y: f32[N, 1, 56, 56] { return maxpool(x, 3, stride=2, ceil_mode=true) }");
    graph("model m(x: f32[N, 1, 5, 5]) -> y: f32[N, 1, 3, 3] { return maxpool(x, 2, stride=2, padding=1, ceil_mode=true) }");
}

#[test]
fn convolution_shapes_with_groups_dilation_and_asymmetric_padding() {
    let g = graph(
        "model m(x: f32[N, 8, 17, 17]) -> y: f32[N, 16, 13, 19] {
             return conv2d(x, 16, [3, 1], dilation=2, groups=4, padding=[0, 0, 1, 1])
         }",
    );
    assert_eq!(params(&g)[0].1, [16, 2, 3, 1]);
}

#[test]
fn reshape_flatten_embedding_and_recurrent_shapes() {
    let g = graph(
        "model m(x: f32[N, 784]) -> y: f32[N, 16, 7, 7] { return x |> reshape([16, -1, 7]) }",
    );
    assert_eq!(output_shape(&g), [16, 7, 7]);
    let g = graph(
        "model m(t: i32[N, 12]) -> y: f32[N, 5] {
             h = t |> embedding(100, 8) |> gru(6, return_sequences=true) |> simple_rnn(5, activation=relu)
             return h
         }",
    );
    assert_eq!(
        params(&g),
        [
            ("embedding.weight".to_string(), vec![100, 8]),
            ("gru.weight_ih_l0".to_string(), vec![18, 8]),
            ("gru.weight_hh_l0".to_string(), vec![18, 6]),
            ("gru.bias_ih_l0".to_string(), vec![18]),
            ("gru.bias_hh_l0".to_string(), vec![18]),
            ("h.weight_ih_l0".to_string(), vec![5, 6]),
            ("h.weight_hh_l0".to_string(), vec![5, 5]),
            ("h.bias_ih_l0".to_string(), vec![5]),
            ("h.bias_hh_l0".to_string(), vec![5]),
        ]
    );
}

#[test]
fn activation_argument_adds_a_named_activation_layer() {
    let g = graph(
        "model m(x: f32[N, 4]) -> y: f32[N, 3] { return x |> fc: dense(3, activation=softmax) }",
    );
    let last = g.node(g.outputs[0].1);
    assert_eq!(
        (last.op.clone(), last.path.as_str()),
        (Op::Softmax { axis: 1 }, "fc.activation")
    );
}

/// The parameter settings of the layer at `path`: (init, regularizer, trainable) of its weight.
fn weight_settings(g: &Graph, path: &str) -> (Init, Regularizer, bool) {
    let id = g
        .node_ids()
        .into_iter()
        .find(|&id| g.node(id).path == format!("{path}.weight"))
        .expect("weight exists");
    match &g.node(id).op {
        Op::Param(p) => (p.init.clone(), p.regularizer.clone(), p.trainable),
        _ => unreachable!("a weight is a parameter"),
    }
}

#[test]
fn call_site_options_win_over_rules_which_win_over_defaults() {
    let g = graph(
        "model m(x: f32[N, 4]) -> y: f32[N, 2] {
             h = x |> a: dense(4) |> b: dense(4, init=zeros, trainable=true) |> c: dense(4)
             return h |> d: dense(2, regularizer=l1(0.5))
         }
         train {
             loss = mse
             init = he_uniform
             regularizer = l2(0.01)
             layer \"b\" { init = ones; trainable = false }
             layer \"c*\" { trainable = false; regularizer = none }
         }",
    );
    assert_eq!(
        weight_settings(&g, "a"),
        (Init::HeUniform, Regularizer::L2(0.01), true)
    );
    assert_eq!(
        weight_settings(&g, "b"),
        (Init::Zeros, Regularizer::L2(0.01), true)
    );
    assert_eq!(
        weight_settings(&g, "c"),
        (Init::HeUniform, Regularizer::None, false)
    );
    assert_eq!(
        weight_settings(&g, "d"),
        (Init::HeUniform, Regularizer::L1(0.5), true)
    );
}

#[test]
fn frozen_layers_count_as_non_trainable() {
    let g = graph(
        "model m(x: f32[N, 4]) -> y: f32[N, 2] { return x |> a: dense(3) |> b: dense(2, trainable=false) }
         train { loss = mse }",
    );
    let s = nnc::passes::count(&g, 1);
    assert_eq!((s.trainable, s.non_trainable), (15, 8));
}

#[test]
fn train_section_is_validated_into_a_config() {
    use nnc::ir::train::{Loss, Metric, Optimizer};
    let g = graph(
        "model m(x: f32[N, 4]) -> y: f32[N, 3] { return dense(x, 3) }
         train {
             loss = categorical_crossentropy(from_logits=true)
             optimizer = rmsprop(lr=1e-3, centered=true)
             batch_size = 16
             epochs = 3
             metrics = [accuracy, top_k_accuracy(k=2)]
             seed = 9
         }",
    );
    let t = g.train.expect("a train config");
    assert_eq!(
        t.loss,
        Loss::CategoricalCrossentropy {
            from_logits: true,
            label_smoothing: 0.0
        }
    );
    assert_eq!(
        t.optimizer,
        Optimizer::RmsProp {
            lr: 1e-3,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            centered: true,
            weight_decay: 0.0
        }
    );
    assert_eq!((t.batch_size, t.epochs, t.seed), (16, 3, 9));
    assert_eq!(t.metrics, [Metric::Accuracy, Metric::TopKAccuracy { k: 2 }]);
}

#[test]
fn bad_hyper_parameters_are_rejected() {
    let m = "model m(x: f32[N, 4]) -> y: f32[N, 3] { return dense(x, 3) }\n";
    assert_eq!(
        errors(&format!(
            "{m}train {{ loss = mse; optimizer = adam(lr=0) }}"
        )),
        ["E0402"]
    );
    assert_eq!(
        errors(&format!(
            "{m}train {{ loss = mse; optimizer = adam(beta2=1.0) }}"
        )),
        ["E0402"]
    );
    assert_eq!(
        errors(&format!("{m}train {{ loss = mse; regularizer = l2(-1) }}")),
        ["E0402"]
    );
    assert_eq!(
        errors(&format!("{m}train {{ loss = mse; init = he_normall }}")),
        ["E0401"]
    );
    assert_eq!(
        errors(&format!("{m}train {{ optimizer = sgd }}")),
        ["E0403"]
    );
    assert_eq!(
        errors(&format!("{m}train {{ loss = mse; loss = mae }}")),
        ["E0403"]
    );
    assert_eq!(
        errors(&format!("{m}train {{ loss = mse; batch_size = 0 }}")),
        ["E0402"]
    );
}

#[test]
fn error_recovery_keeps_going_after_a_failed_layer() {
    // The failed conv poisons `h`, so its later uses report nothing more, but the unrelated error does.
    let src = "model m(x: f32[N, 3, 8, 8]) -> y: f32[N, 10] {
                   h = conv2d(x, 8, 9)
                   h = h |> relu |> flatten |> dense(10)
                   g = dense(x, 0)
                   return h
               }";
    assert_eq!(errors(src), ["E0304", "E0305"]);
}

#[test]
fn integer_token_ids_can_be_flattened_and_concatenated() {
    use nnc::interp::{self, Mode, RunOptions};
    use nnc::tensor::Tensor;
    let g = graph(
        "model m(a: i64[N, 2, 3], b: i64[N, 4]) -> y: f32[N, 10, 2] {
             t = concat(a |> flatten, b)
             return t |> embedding(50, 2, init=constant(0.5))
         }",
    );
    let a = Tensor::I(ndarray::ArrayD::from_shape_fn(vec![1, 2, 3], |ix| {
        (ix[1] * 3 + ix[2]) as i64
    }));
    let b = Tensor::I(ndarray::ArrayD::from_elem(vec![1, 4], 7));
    let w = nnc::tensor::initialize(&g, 0);
    let out = interp::run(
        &g,
        &w,
        &[("a".into(), a), ("b".into(), b)],
        RunOptions {
            mode: Mode::Eval,
            seed: 0,
        },
    )
    .expect("runs");
    assert_eq!(out.outputs[0].1.shape(), &[1, 10, 2]);
}

#[test]
fn a_value_used_twice_by_one_node_stays_alive() {
    use nnc::interp::{self, Mode, RunOptions};
    use nnc::tensor::Tensor;
    let g = graph(
        "model m(x: f32[N, 4]) -> y: f32[N, 8] { h = relu(x)\n return concat(h * h + h, h) }",
    );
    let x = Tensor::F(ndarray::ArrayD::from_elem(vec![2, 4], 2.0));
    let out = interp::run(
        &g,
        &nnc::tensor::Weights::new(),
        &[("x".into(), x)],
        RunOptions {
            mode: Mode::Eval,
            seed: 0,
        },
    )
    .expect("runs");
    let y = out.outputs[0].1.to_f64();
    assert_eq!(
        y.iter().copied().collect::<Vec<_>>(),
        [6.0, 6.0, 6.0, 6.0, 2.0, 2.0, 2.0, 2.0, 6.0, 6.0, 6.0, 6.0, 2.0, 2.0, 2.0, 2.0]
    );
}
