//! The runtime room: a kernel plan and weights in, a program out that runs the model on native code.
//! `lower.rs` turns plan steps into execs (kernel, addresses, tasks) and packs weights once; `exec.rs`
//! runs them on a thread pool. The program owns all its memory (arena, inputs, outputs, packed weights,
//! scratch) and only generated kernels touch it while it runs.

mod cache;
mod exec;
mod gemm;
mod lower;
mod tasks;
mod windows;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};

use crate::codegen::{CodegenError, GemmImpl, KernelId, Kernels, WinogradKind};
use crate::interp::RunError;
use crate::ir::{Graph, Op};
use crate::plan::KernelPlan;
use crate::tensor::{Params, Tensor};

pub use cache::{Compiled, Failure};
use exec::{Addr, Bases, Exec, Mem, Region, Scratch};
pub use gemm::{MatMul, MatMulOptions};

/// Why a program could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error("`{layer}` ({op}): the JIT does not support {what} yet; use `--backend interp`")]
    Unsupported {
        layer: String,
        op: &'static str,
        what: String,
    },
    #[error("parameter `{0}` has no value")]
    MissingWeight(String),
    #[error("parameter `{name}` has shape {found:?}, the model expects {expected:?}")]
    WeightShape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(transparent)]
    Weights(#[from] crate::tensor::FileError),
    #[error("could not start {threads} threads: {message}")]
    Threads { threads: usize, message: String },
}

/// One exec and where it came from, for profiles.
pub struct Kernel {
    pub layer: String,
    pub op: &'static str,
    /// Multiply-accumulates of the step this exec belongs to (0 for the step's later execs).
    pub macs: u64,
    exec: Exec,
}

impl Kernel {
    pub fn kernel_name(&self) -> String {
        match &self.exec {
            Exec::Simple(s) => format!("{:?}", s.kernel),
            Exec::Gemm(g) => match g.form {
                exec::Form::Conv { winograd: true, .. } => "Gemm(winograd)".into(),
                exec::Form::Conv { direct: true, .. } => "Gemm(conv 1x1, in place)".into(),
                exec::Form::Conv { .. } => "Gemm(conv, packed patches)".into(),
                exec::Form::Dense { .. } => "Gemm(dense)".into(),
            },
            Exec::Winograd(w) => format!("Winograd {}", w.kind),
            Exec::Recurrent(r) => format!("{:?}", r.cell),
        }
    }

    pub fn tasks(&self) -> u64 {
        self.exec.tasks()
    }

    /// Whether this is a convolution with few input channels computed directly (`KernelId::ConvRows`).
    pub fn is_conv_rows(&self) -> bool {
        matches!(&self.exec, Exec::Simple(s) if matches!(s.kernel, KernelId::ConvRows(_)))
    }

    /// The algorithm of a Winograd convolution's exec: the blocked exec, or the transforms of the
    /// staged form (not its products, which are a GEMM).
    pub fn winograd_kind(&self) -> Option<WinogradKind> {
        match &self.exec {
            Exec::Winograd(w) => Some(w.kind),
            Exec::Simple(s) => WinogradKind::of(s.kernel),
            _ => None,
        }
    }
}

/// Input bindings: name, shape, whether it holds integer indices (and their bound).
struct Binding {
    name: String,
    dims: Vec<usize>,
    /// For integer inputs: the largest valid index + 1 and the layer that reads it.
    vocab: Option<(u64, String)>,
    mem: Mem,
}

/// A compiled model at one batch size.
pub struct Program {
    pub batch: u64,
    kernels: Kernels,
    pub steps: Vec<Kernel>,
    owned: Vec<Mem>,
    arena: Mem,
    inputs: Vec<Binding>,
    outputs: Vec<(String, Vec<usize>, Addr)>,
    output_mem: Vec<Mem>,
    pool: Option<rayon::ThreadPool>,
    scratch: Scratch,
    pub threads: usize,
    /// Time spent lowering (packing weights) and generating plus compiling code.
    pub lower_time: Duration,
    pub jit_time: Duration,
    pub arena_bytes: u64,
    pub owned_bytes: u64,
    /// See [`Program::idle`].
    idle: Vec<Duration>,
}

fn check_weights(g: &Graph, weights: &dyn Params) -> Result<(), CompileError> {
    for id in g.node_ids() {
        let node = g.node(id);
        if !node.op.is_param() {
            continue;
        }
        let dims = weights
            .dims(&node.path)
            .ok_or_else(|| CompileError::MissingWeight(node.path.clone()))?;
        let want: Vec<usize> = node.ty.fixed_dims().iter().map(|&d| d as usize).collect();
        if dims != want {
            return Err(CompileError::WeightShape {
                name: node.path.clone(),
                found: dims,
                expected: want,
            });
        }
    }
    Ok(())
}

/// The machine's cores, the default thread count.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Program {
    /// Compiles the plan of `g` (at `plan.batch`) with `weights`, to run on `threads` threads, with the
    /// GEMM kernel this CPU runs fastest.
    pub fn compile(
        g: &Graph,
        plan: &KernelPlan,
        weights: &dyn Params,
        threads: usize,
    ) -> Result<Program, CompileError> {
        Program::compile_with(g, plan, weights, threads, GemmImpl::detect())
    }

    /// [`Program::compile`] with the GEMM implementation `gemm` (an error if the CPU cannot run it).
    pub fn compile_with(
        g: &Graph,
        plan: &KernelPlan,
        weights: &dyn Params,
        threads: usize,
        gemm: GemmImpl,
    ) -> Result<Program, CompileError> {
        check_weights(g, weights)?;
        let start = Instant::now();
        let longest = plan
            .steps
            .iter()
            .flat_map(|s| {
                s.output
                    .dims
                    .iter()
                    .chain(s.inputs.iter().flat_map(|v| &v.dims))
            })
            .copied()
            .max()
            .unwrap_or(1)
            .max(plan.batch * 64);
        let mut lw = lower::Lower::new(plan, weights, longest, threads, gemm);
        let mut steps = Vec::new();
        let mut at = 0;
        while at < plan.steps.len() {
            let step = &plan.steps[at];
            // A group of sibling products (scheduled together by the plan) is one exec.
            let group = crate::plan::group_of(&step.op);
            let len = plan.steps[at..]
                .iter()
                .take_while(|s| group.is_some() && crate::plan::group_of(&s.op) == group)
                .count()
                .max(1);
            let members = &plan.steps[at..at + len];
            let macs = members.iter().map(step_macs).sum();
            let (layer, execs) = if len > 1 {
                let layer = format!("{} (+{} merged)", step.path, len - 1);
                (layer, vec![Exec::Gemm(Box::new(lw.merged(members)?))])
            } else {
                (step.path.clone(), lw.step(step)?)
            };
            // The step's multiply-accumulates go to its product (or its first exec).
            let main = execs
                .iter()
                .position(|e| matches!(e, Exec::Gemm(_) | Exec::Winograd(_) | Exec::Recurrent(_)))
                .unwrap_or(0);
            for (i, exec) in execs.into_iter().enumerate() {
                steps.push(Kernel {
                    layer: layer.clone(),
                    op: step.op.name(),
                    macs: if i == main { macs } else { 0 },
                    exec,
                });
            }
            at += len;
        }
        let mut vocab: BTreeMap<String, (u64, String)> = BTreeMap::new();
        for id in g.node_ids() {
            if let Op::Embedding { vocab: v, .. } = g.node(id).op {
                if let Op::Input { index } = g.node(g.inputs(id)[0]).op {
                    vocab.insert(g.inputs[index].0.clone(), (v, g.node(id).path.clone()));
                }
            }
        }
        let mut outputs = Vec::new();
        let mut output_mem = Vec::new();
        for (name, v) in &plan.outputs {
            let a = lw.addr(v)?;
            outputs.push((
                name.clone(),
                v.dims.iter().map(|&d| d as usize).collect(),
                a,
            ));
            output_mem.push(Mem::zeros(v.elements()));
        }
        let lower_time = start.elapsed();
        let start = Instant::now();
        let mut ids: Vec<KernelId> = vec![KernelId::Fill, KernelId::Copy];
        for s in &steps {
            match &s.exec {
                Exec::Simple(x) => ids.push(x.kernel),
                Exec::Winograd(w) => {
                    ids.extend(w.kind.kernels(w.act));
                    ids.extend([
                        KernelId::Gemm(crate::codegen::ActKind::Identity),
                        KernelId::PackPatches,
                    ]);
                }
                Exec::Gemm(gm) => ids.extend([
                    KernelId::Gemm(gm.act),
                    KernelId::PackPatches,
                    KernelId::PackRows,
                ]),
                Exec::Recurrent(r) => {
                    ids.extend([r.cell, KernelId::Gemm(r.project.act), KernelId::PackRows])
                }
            }
        }
        let kernels = Kernels::compile_with(&ids, gemm)?;
        let jit_time = start.elapsed();
        let owned: Vec<Mem> = std::mem::take(&mut lw.owned)
            .into_iter()
            .map(Mem::from_vec)
            .collect();
        let owned_bytes = owned.iter().map(Mem::bytes).sum();
        let inputs = plan
            .inputs
            .iter()
            .map(|(name, v)| Binding {
                name: name.clone(),
                dims: v.dims.iter().map(|&d| d as usize).collect(),
                vocab: vocab.get(name).cloned(),
                mem: Mem::zeros(v.elements()),
            })
            .collect();
        let pool = exec::pool(threads).map_err(|e| CompileError::Threads {
            threads,
            message: e.to_string(),
        })?;
        let scratch_elements = steps.iter().map(|k| k.exec.scratch()).max().unwrap_or(0);
        let scratch = Scratch::new(
            pool.as_ref().map_or(0, |p| p.current_num_threads()),
            scratch_elements,
        );
        Ok(Program {
            batch: plan.batch,
            kernels,
            steps,
            owned,
            arena: Mem::zeros(plan.arena_bytes / 4),
            inputs,
            outputs,
            output_mem,
            pool,
            scratch,
            threads: threads.max(1),
            lower_time,
            jit_time,
            arena_bytes: plan.arena_bytes,
            owned_bytes,
            idle: Vec::new(),
        })
    }

    /// The most scratch memory one task uses, in bytes (each thread holds that much while it runs).
    pub fn scratch_bytes(&self) -> u64 {
        4 * self
            .steps
            .iter()
            .map(|k| k.exec.scratch())
            .max()
            .unwrap_or(0)
    }

    pub fn kernel_ids(&self) -> Vec<KernelId> {
        self.kernels.ids().collect()
    }

    /// The GEMM implementation the program uses.
    pub fn gemm(&self) -> GemmImpl {
        self.kernels.gemm
    }

    /// Kernels compiled and Cranelift instructions generated.
    pub fn kernel_count(&self) -> (usize, usize) {
        (self.kernels.ids().count(), self.kernels.instructions)
    }

    /// Copies `inputs` in (checking names, shapes and index ranges).
    pub fn set_inputs(&mut self, inputs: &[(String, Tensor)]) -> Result<(), RunError> {
        for (name, _) in inputs {
            if !self.inputs.iter().any(|b| &b.name == name) {
                return Err(RunError::UnknownInput(name.clone()));
            }
        }
        for b in &mut self.inputs {
            let (_, t) = inputs
                .iter()
                .find(|(n, _)| *n == b.name)
                .ok_or_else(|| RunError::MissingInput(b.name.clone()))?;
            if t.shape() != b.dims.as_slice() {
                return Err(RunError::InputShape {
                    name: b.name.clone(),
                    found: t.shape().to_vec(),
                    expected: format!("{:?}", b.dims),
                });
            }
            match (t, &b.vocab) {
                (Tensor::F(a), None) => {
                    for (m, &v) in b.mem.values_mut().iter_mut().zip(a.iter()) {
                        *m = v as f32;
                    }
                }
                (Tensor::I(a), Some((vocab, layer))) => {
                    for (m, &v) in b.mem.values_mut().iter_mut().zip(a.iter()) {
                        if v < 0 || v as u64 >= *vocab {
                            return Err(RunError::IndexOutOfRange {
                                layer: layer.clone(),
                                index: v,
                                vocab: *vocab,
                            });
                        }
                        *m = f32::from_bits(v as u32);
                    }
                }
                (t, _) => {
                    return Err(RunError::InputKind {
                        name: b.name.clone(),
                        found: t.kind(),
                        expected: if b.vocab.is_some() {
                            "integer"
                        } else {
                            "float"
                        },
                    })
                }
            }
        }
        Ok(())
    }

    fn bases(&mut self) -> Bases {
        Bases {
            arena: self.arena.ptr(),
            owned: self.owned.iter_mut().map(Mem::ptr).collect(),
            inputs: self.inputs.iter_mut().map(|b| b.mem.ptr()).collect(),
            outputs: self.output_mem.iter_mut().map(Mem::ptr).collect(),
            scratch: self.scratch.ptrs(),
        }
    }

    /// Runs every kernel once on the current inputs; `each` sees each kernel's index and time.
    pub fn execute(&mut self, mut each: impl FnMut(usize, Duration)) {
        let bases = self.bases();
        let execs: Vec<&exec::Exec> = self.steps.iter().map(|s| &s.exec).collect();
        let mut times = vec![Duration::ZERO; execs.len()];
        self.idle.resize(execs.len(), Duration::ZERO);
        let table = self.kernels.table();
        exec::run_all(
            &execs,
            table,
            &bases,
            self.pool.as_ref(),
            (&mut times, &mut self.idle),
        );
        for (i, d) in times.into_iter().enumerate() {
            each(i, d);
        }
    }

    /// Per kernel, in the last run: how long the first thread done with it waited for the last before
    /// the next kernel could start (load imbalance, or a thread the host paused; zero on one thread).
    pub fn idle(&self) -> &[Duration] {
        &self.idle
    }

    /// The outputs of the last run, by name.
    pub fn outputs(&self) -> Vec<(String, Tensor)> {
        self.outputs
            .iter()
            .map(|(name, dims, a)| {
                let mem = match a.region {
                    Region::Arena => &self.arena,
                    Region::Owned(i) => &self.owned[i],
                    Region::Input(i) => &self.inputs[i].mem,
                    Region::Output(i) => &self.output_mem[i],
                    Region::Scratch => unreachable!("outputs are not scratch"),
                };
                let n: usize = dims.iter().product();
                let o = a.offset as usize;
                let values: Vec<f64> = mem.values()[o..o + n].iter().map(|&v| v as f64).collect();
                let arr = ArrayD::from_shape_vec(IxDyn(dims), values).expect("sizes match");
                (name.clone(), Tensor::F(arr))
            })
            .collect()
    }

    /// Sets every arena value (tests fill it with a pattern to see what kernels write).
    pub fn fill_arena(&mut self, value: f32) {
        self.arena.values_mut().fill(value);
    }

    /// The arena's values.
    pub fn arena_values(&self) -> Vec<f32> {
        self.arena.values().to_vec()
    }

    /// Sets the inputs, runs, and returns the outputs.
    pub fn run(&mut self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, RunError> {
        self.set_inputs(inputs)?;
        self.execute(|_, _| {});
        Ok(self.outputs())
    }
}

/// Multiply-accumulates of a step's op at its shapes.
fn step_macs(step: &crate::plan::Step) -> u64 {
    let out: u64 = step.output.dims.iter().product();
    let op = match &step.op {
        Op::Fused(f) => &f.core,
        op => op,
    };
    match op {
        Op::Conv2d { kernel, groups, .. } => {
            out * step.inputs[0].dims[1] / groups * kernel[0] * kernel[1]
        }
        Op::Dense { .. } => out * step.inputs[0].dims.last().copied().unwrap_or(1),
        _ => 0,
    }
}
