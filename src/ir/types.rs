//! Tensor types: element type and dimensions, with the symbolic batch dimension `N`.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F64,
    I32,
    I64,
}

impl DType {
    pub fn from_name(s: &str) -> Option<DType> {
        Some(match s {
            "f32" => DType::F32,
            "f64" => DType::F64,
            "i32" => DType::I32,
            "i64" => DType::I64,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

/// One dimension: the symbolic batch size, or a fixed size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Batch,
    Fixed(u64),
}

impl Dim {
    /// The size at a concrete batch size.
    pub fn at(self, batch: u64) -> u64 {
        match self {
            Dim::Batch => batch,
            Dim::Fixed(n) => n,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("N"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// The largest element count a tensor may have (2^48): keeps every size product far from u64 overflow.
pub const MAX_ELEMENTS: u64 = 1 << 48;

/// The type of a value in the graph. Activations have `Dim::Batch` first; parameters have no batch dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub dims: Vec<Dim>,
}

impl TensorType {
    pub fn new(dtype: DType, dims: Vec<Dim>) -> TensorType {
        TensorType { dtype, dims }
    }

    /// A parameter's type: fixed dimensions only.
    pub fn fixed(dtype: DType, dims: &[u64]) -> TensorType {
        TensorType {
            dtype,
            dims: dims.iter().map(|&d| Dim::Fixed(d)).collect(),
        }
    }

    /// An activation's type: `[N, dims...]`.
    pub fn batched(dtype: DType, dims: &[u64]) -> TensorType {
        let mut all = vec![Dim::Batch];
        all.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        TensorType { dtype, dims: all }
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    pub fn has_batch(&self) -> bool {
        self.dims.first() == Some(&Dim::Batch)
    }

    /// The fixed size of dimension `i`, or `None` for the batch dimension or out of range.
    pub fn size(&self, i: usize) -> Option<u64> {
        match self.dims.get(i) {
            Some(Dim::Fixed(n)) => Some(*n),
            _ => None,
        }
    }

    /// The fixed dimensions after the batch dimension (or all of them for a parameter).
    pub fn fixed_dims(&self) -> Vec<u64> {
        self.dims
            .iter()
            .filter_map(|d| {
                if let Dim::Fixed(n) = d {
                    Some(*n)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Element count at `batch`. Types are built with bounded sizes, so this cannot overflow for sane batches;
    /// it saturates rather than wrap.
    pub fn elements(&self, batch: u64) -> u64 {
        self.dims
            .iter()
            .fold(1u64, |acc, d| acc.saturating_mul(d.at(batch)))
    }

    pub fn bytes(&self, batch: u64) -> u64 {
        self.elements(batch).saturating_mul(self.dtype.bytes())
    }

    /// Dimensions at a concrete batch size.
    pub fn shape_at(&self, batch: u64) -> Vec<u64> {
        self.dims.iter().map(|d| d.at(batch)).collect()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype.name())?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}
