//! The tensor room: values the interpreter computes with, weights and their files (safetensors), input and
//! output arrays (.npy/.npz), and parameter initialization. Float data is held in f64 (the oracle's
//! precision) and stored as f32, as PyTorch checkpoints are.

mod files;
mod init;
mod rng;

pub use files::{
    read_arrays, read_tensors, read_weights, write_arrays, write_weights, FileError, LoadOptions,
    WeightFile,
};
pub use init::{initialize, initialize_some, random_inputs};
pub use rng::Rng;

use std::collections::BTreeMap;

use ndarray::ArrayD;

/// A tensor value: floating-point (held in f64) or integer (token ids, class labels).
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F(ArrayD<f64>),
    I(ArrayD<i64>),
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F(a) => a.shape(),
            Tensor::I(a) => a.shape(),
        }
    }

    /// The float data; integer tensors are converted.
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            Tensor::F(a) => a.clone(),
            Tensor::I(a) => a.mapv(|v| v as f64),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Tensor::F(_) => "float",
            Tensor::I(_) => "integer",
        }
    }
}

/// Parameter values by full name (`layer1.0.conv1.weight`), batch-norm running statistics included.
pub type Weights = BTreeMap<String, ArrayD<f64>>;

/// Parameters by name as compiled code reads them: one tensor at a time, in f32, so that a source need not
/// hold every tensor at once (a [`WeightFile`] reads each from disk when asked).
pub trait Params {
    /// The parameter's dimensions; None when the source lacks it.
    fn dims(&self, name: &str) -> Option<Vec<usize>>;
    /// Replaces `out`'s contents by the parameter's values in row-major order (so one buffer can serve
    /// every read); None when the source lacks it.
    fn read_into(&self, name: &str, out: &mut Vec<f32>) -> Option<Result<(), FileError>>;

    /// The parameter's values in f64 where the source holds them so, to read without converting.
    fn f64_values(&self, _name: &str) -> Option<&[f64]> {
        None
    }

    /// The parameter's values in a new vector; None when the source lacks it.
    fn values(&self, name: &str) -> Option<Result<Vec<f32>, FileError>> {
        let mut v = Vec::new();
        self.read_into(name, &mut v).map(|r| r.map(|()| v))
    }
}

impl Params for Weights {
    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).map(|a| a.shape().to_vec())
    }

    fn f64_values(&self, name: &str) -> Option<&[f64]> {
        self.get(name)?.as_slice()
    }

    fn read_into(&self, name: &str, out: &mut Vec<f32>) -> Option<Result<(), FileError>> {
        let w = self.get(name)?;
        out.clear();
        // Through a slice when the array is contiguous: iterating a dynamic-rank array is much slower.
        match w.as_slice() {
            Some(s) => out.extend(s.iter().map(|&v| v as f32)),
            None => out.extend(w.iter().map(|&v| v as f32)),
        }
        Some(Ok(()))
    }
}
