//! The plan room: a graph at a fixed batch size in, a kernel plan out — which kernel runs in which order on
//! which memory. Plain data with no code-generation types, so it can be printed, tested and handed to any
//! backend. Memory is planned statically (`memory.rs`): one arena with offsets, dead buffers reused,
//! elementwise ops in place where legal, reshapes as views, and concat inputs written straight into their
//! slice of the concatenated buffer.

mod memory;

use std::fmt::Write;

use crate::ir::{Graph, NodeId, Op};

pub use memory::{group_of, plan_memory};

/// Where a buffer lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A region of the activation arena.
    Arena { offset: u64 },
    /// A parameter (weights are held apart from the arena, packed once at compile time by a backend).
    Weight { name: String },
    /// A model input, provided by the caller.
    Input { name: String },
    /// A model output, returned to the caller.
    Output { name: String },
}

/// A block of memory, in bytes (elements are f32).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub storage: Storage,
    pub bytes: u64,
    /// Steps (by index) from the first write to the last read; `None` for buffers outside the arena.
    pub live: Option<(usize, usize)>,
}

/// A tensor seen through a buffer: element offset, dimensions and strides in elements. A concat input's
/// view is a strided slice of the concat output's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub buffer: usize,
    pub offset: u64,
    pub dims: Vec<u64>,
    pub strides: Vec<u64>,
}

impl View {
    /// Row-major strides for `dims`.
    pub fn dense(buffer: usize, offset: u64, dims: Vec<u64>) -> View {
        let mut strides = vec![1; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * dims[i + 1];
        }
        View {
            buffer,
            offset,
            dims,
            strides,
        }
    }

    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn is_contiguous(&self) -> bool {
        *self == View::dense(self.buffer, self.offset, self.dims.clone())
    }
}

/// One kernel invocation: the op it computes, its input views (data and parameters, in slot order) and the
/// view it writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub node: NodeId,
    pub path: String,
    pub op: Op,
    pub inputs: Vec<View>,
    pub output: View,
    /// The output overwrites its first input's memory.
    pub in_place: bool,
}

/// The whole plan for one batch size.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelPlan {
    pub batch: u64,
    pub buffers: Vec<Buffer>,
    pub steps: Vec<Step>,
    pub inputs: Vec<(String, View)>,
    pub outputs: Vec<(String, View)>,
    /// Bytes of the activation arena.
    pub arena_bytes: u64,
    /// Bytes of all intermediate tensors if each had its own (equally aligned) buffer.
    pub naive_bytes: u64,
    pub weight_bytes: u64,
    /// Bytes of the largest single activation.
    pub largest_activation: u64,
    /// Whether the runtime may compute 3x3 and 5x5 stride-1 convolutions as Winograd F(2x2, 3x3), F(4x4,
    /// 3x3) or F(2x2, 5x5) (true from [`build`]; `--no-winograd` clears it). It does so on CPUs with AVX2
    /// and FMA.
    pub winograd: bool,
    /// Whether the runtime may compute convolutions with few input channels directly, filters as vector
    /// lanes (`KernelId::ConvRows`, CPUs with AVX2 and FMA; true from [`build`]). The same bits as their
    /// GEMM; tests clear it to compare.
    pub conv_rows: bool,
}

/// Builds the plan of a verified graph at `batch`.
pub fn build(g: &Graph, batch: u64) -> KernelPlan {
    plan_memory(g, batch)
}

/// Whether a node is computed by a step (inputs and parameters are not; reshapes are views).
pub(crate) fn is_computed(op: &Op) -> bool {
    !matches!(
        op,
        Op::Input { .. } | Op::Param(_) | Op::Flatten | Op::Reshape { .. }
    )
}

/// A readable listing: buffers, then steps with their views, then the memory report.
pub fn to_text(p: &KernelPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan batch={} steps={} buffers={}",
        p.batch,
        p.steps.len(),
        p.buffers.len()
    );
    for (i, b) in p.buffers.iter().enumerate() {
        let place = match &b.storage {
            Storage::Arena { offset } => format!("arena+{offset}"),
            Storage::Weight { name } => format!("weight {name}"),
            Storage::Input { name } => format!("input {name}"),
            Storage::Output { name } => format!("output {name}"),
        };
        let live = b
            .live
            .map_or(String::new(), |(a, z)| format!(" live={a}..{z}"));
        let _ = writeln!(out, "b{i} {place} bytes={}{live}", b.bytes);
    }
    let view = |v: &View| {
        let strided = if v.is_contiguous() {
            String::new()
        } else {
            format!(" strides={:?}", v.strides)
        };
        format!("b{}+{}{:?}{strided}", v.buffer, v.offset, v.dims)
    };
    for (i, s) in p.steps.iter().enumerate() {
        let ins: Vec<String> = s.inputs.iter().map(view).collect();
        let inplace = if s.in_place { " in-place" } else { "" };
        let _ = writeln!(
            out,
            "s{i} {} {} <- {}{inplace}  # {}",
            s.op.name(),
            view(&s.output),
            ins.join(", "),
            s.path
        );
    }
    let _ = writeln!(
        out,
        "arena {} bytes (naive {} bytes, {:.1}x smaller), weights {} bytes, largest activation {} bytes",
        p.arena_bytes,
        p.naive_bytes,
        p.naive_bytes as f64 / p.arena_bytes.max(1) as f64,
        p.weight_bytes,
        p.largest_activation
    );
    out
}
