//! Training configuration carried by the IR: initializers, regularizers, loss, optimizer and schedule.
//! Plain data, validated by the lowering room; executed by a later training room.

use std::fmt;

/// How a parameter is initialized. `Default` is PyTorch's default for the layer that owns it.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    Default,
    Zeros,
    Ones,
    Constant { value: f64 },
    RandomNormal { mean: f64, std: f64 },
    RandomUniform { min: f64, max: f64 },
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Default => f.write_str("default"),
            Init::Zeros => f.write_str("zeros"),
            Init::Ones => f.write_str("ones"),
            Init::Constant { value } => write!(f, "constant({value})"),
            Init::RandomNormal { mean, std } => write!(f, "random_normal({mean}, {std})"),
            Init::RandomUniform { min, max } => write!(f, "random_uniform({min}, {max})"),
            Init::GlorotNormal => f.write_str("glorot_normal"),
            Init::GlorotUniform => f.write_str("glorot_uniform"),
            Init::HeNormal => f.write_str("he_normal"),
            Init::HeUniform => f.write_str("he_uniform"),
        }
    }
}

/// A penalty added to the loss for one parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Regularizer {
    None,
    L1(f64),
    L2(f64),
    L1L2 { l1: f64, l2: f64 },
}

impl fmt::Display for Regularizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Regularizer::None => f.write_str("none"),
            Regularizer::L1(x) => write!(f, "l1({x})"),
            Regularizer::L2(x) => write!(f, "l2({x})"),
            Regularizer::L1L2 { l1, l2 } => write!(f, "l1_l2({l1}, {l2})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Loss {
    Mae,
    Mse,
    Rmse,
    BinaryCrossentropy {
        from_logits: bool,
    },
    CategoricalCrossentropy {
        from_logits: bool,
        label_smoothing: f64,
    },
    SparseCategoricalCrossentropy {
        from_logits: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    Sgd {
        lr: f64,
        momentum: f64,
        nesterov: bool,
        dampening: f64,
        weight_decay: f64,
    },
    Adagrad {
        lr: f64,
        lr_decay: f64,
        initial_accumulator_value: f64,
        eps: f64,
        weight_decay: f64,
    },
    Adadelta {
        lr: f64,
        rho: f64,
        eps: f64,
        weight_decay: f64,
    },
    RmsProp {
        lr: f64,
        alpha: f64,
        eps: f64,
        momentum: f64,
        centered: bool,
        weight_decay: f64,
    },
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        amsgrad: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    TopKAccuracy { k: u64 },
    Mae,
    Mse,
    Rmse,
}

/// The validated train section. Per-parameter settings (init, regularizer, trainable) are not here: they
/// are resolved onto the parameter nodes of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub batch_size: u64,
    pub epochs: u64,
    pub metrics: Vec<Metric>,
    pub seed: u64,
}
