//! From plan steps to execs: which kernel, which addresses, how the work splits into tasks. Weights are
//! packed here, once (convolution weights into A panels, dense weights into B panels), inference batch
//! norm becomes per-channel factors, and pooling windows become tables. Products (convolutions, dense and
//! recurrent layers) are in `products.rs`.

mod products;
mod rows;
mod winograd;

use crate::codegen::{ActKind, ChainCode, ChainOp, GemmImpl, KernelId, CHAIN_LINKS, TILE_N};
use crate::ir::{Act, Op};
use crate::plan::{KernelPlan, Step, Storage, View};
use crate::tensor::Params;

use super::exec::{Addr, Arg, Exec, Region, Simple};
use super::CompileError;
use products::Epilogue;
pub(crate) use products::{dense_row_splits, whole_calls};

/// Elements per task of elementwise kernels: large enough to hide the task's cost, small enough to share.
const CHUNK: u64 = 16384;

/// Lowering state: the program-owned memory being collected.
pub struct Lower<'a> {
    pub plan: &'a KernelPlan,
    pub weights: &'a dyn Params,
    /// Program-owned tensors (f32 values or i32 bit patterns).
    pub owned: Vec<Vec<f32>>,
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
    zeros: Option<Addr>,
    ones: Option<Addr>,
    /// Longest row or column factor vector any GEMM reads.
    longest: u64,
    /// The buffer weights are read into for packing (see [`Lower::weight_to_pack`]).
    reuse: Vec<f32>,
    /// Threads the program runs on (work splits only: results do not depend on it).
    pub threads: u64,
    /// Column panels per call of the GEMM kernel ([`GemmImpl::panels_per_call`]; work splits and
    /// packing layouts only).
    pub call_panels: u64,
    /// Whether 3x3 stride-1 convolutions may run as Winograd F(2x2, 3x3) (`winograd.rs`): on CPUs
    /// whose transforms are vectorized (AVX2 and FMA).
    pub winograd: bool,
    /// Whether they may run as F(4x4, 3x3) on planes that suit it (this CPU has its transforms: AVX2
    /// and FMA).
    pub winograd4: bool,
    /// The buffers of staged Winograd convolutions' transformed inputs and products (`winograd.rs`).
    winograd_mem: Option<(Addr, Addr)>,
    /// Transformed Winograd weights before packing, reused from layer to layer (`winograd.rs`).
    winograd_u: Vec<f64>,
}

/// A weight's values for packing (see [`Lower::weight_to_pack`]).
pub(super) enum ToPack<'a> {
    F64(&'a [f64]),
    F32(Vec<f32>),
}

fn err(step: &Step, what: impl Into<String>) -> CompileError {
    CompileError::Unsupported {
        layer: step.path.clone(),
        op: step.op.name(),
        what: what.into(),
    }
}

impl<'a> Lower<'a> {
    pub fn new(
        plan: &'a KernelPlan,
        weights: &'a dyn Params,
        longest: u64,
        threads: usize,
        gemm: GemmImpl,
    ) -> Lower<'a> {
        let names = |v: &[(String, View)]| v.iter().map(|(n, _)| n.clone()).collect();
        Lower {
            plan,
            weights,
            owned: Vec::new(),
            input_names: names(&plan.inputs),
            output_names: names(&plan.outputs),
            zeros: None,
            ones: None,
            longest: longest + TILE_N as u64,
            reuse: Vec::new(),
            threads: threads.max(1) as u64,
            call_panels: gemm.panels_per_call() as u64,
            winograd: plan.winograd && crate::codegen::winograd_by_default(),
            winograd4: plan.winograd && crate::codegen::winograd4_by_default(),
            winograd_mem: None,
            winograd_u: Vec::new(),
        }
    }

    pub fn own(&mut self, data: Vec<f32>) -> Addr {
        self.owned.push(data);
        Addr {
            region: Region::Owned(self.owned.len() - 1),
            offset: 0,
        }
    }

    fn zeros(&mut self) -> Addr {
        if self.zeros.is_none() {
            self.zeros = Some(self.own(vec![0.0; self.longest as usize]));
        }
        self.zeros.expect("set")
    }

    fn ones(&mut self) -> Addr {
        if self.ones.is_none() {
            self.ones = Some(self.own(vec![1.0; self.longest as usize]));
        }
        self.ones.expect("set")
    }

    /// The start of a view.
    pub fn addr(&mut self, v: &View) -> Result<Addr, CompileError> {
        let buffer = &self.plan.buffers[v.buffer];
        let (region, base) = match &buffer.storage {
            Storage::Arena { offset } => (Region::Arena, offset / 4),
            Storage::Input { name } => (
                Region::Input(
                    self.input_names
                        .iter()
                        .position(|n| n == name)
                        .expect("input"),
                ),
                0,
            ),
            Storage::Output { name } => (
                Region::Output(
                    self.output_names
                        .iter()
                        .position(|n| n == name)
                        .expect("output"),
                ),
                0,
            ),
            Storage::Weight { name } => {
                let data = self.values(name)?;
                return Ok(self.own(data).at(v.offset));
            }
        };
        Ok(Addr {
            region,
            offset: base + v.offset,
        })
    }

    /// Takes program-owned values out of the program (lowering replaces them), leaving an empty slot.
    fn take(&mut self, a: Addr) -> Vec<f32> {
        match a.region {
            Region::Owned(i) if a.offset == 0 => std::mem::take(&mut self.owned[i]),
            _ => unreachable!("taking a whole owned vector"),
        }
    }

    /// `len` program-owned values from `a`.
    fn values_at(&self, a: Addr, len: u64) -> Vec<f32> {
        match a.region {
            Region::Owned(i) => self.owned[i][a.offset as usize..][..len as usize].to_vec(),
            _ => unreachable!("reading program-owned values"),
        }
    }

    /// A parameter's values, read from the weights.
    fn values(&self, name: &str) -> Result<Vec<f32>, CompileError> {
        let mut v = Vec::new();
        self.read(name, &mut v)?;
        Ok(v)
    }

    /// A parameter's values into `out`.
    fn read(&self, name: &str, out: &mut Vec<f32>) -> Result<(), CompileError> {
        self.weights
            .read_into(name, out)
            .ok_or_else(|| CompileError::MissingWeight(name.to_string()))?
            .map_err(CompileError::from)
    }

    /// A parameter's values by its plan view (row-major).
    fn param(&self, step: &Step, slot: usize) -> Result<Vec<f32>, CompileError> {
        let mut v = Vec::new();
        self.param_into(step, slot, &mut v)?;
        Ok(v)
    }

    fn param_into(&self, step: &Step, slot: usize, out: &mut Vec<f32>) -> Result<(), CompileError> {
        match &self.plan.buffers[step.inputs[slot].buffer].storage {
            Storage::Weight { name } => self.read(name, out),
            _ => Err(err(step, "a parameter computed at run time")),
        }
    }

    /// A weight about to be packed: its f64 values in place when the source holds them (weights in
    /// memory), else read into the buffer the previous one used ([`Lower::done_with`] hands it back): a
    /// conversion, or a fresh vector per weight, would touch new pages for every one (ResNet-50: 98 MiB, a
    /// third of the packing time; VGG16's first dense layer alone is 392 MiB).
    fn weight_to_pack(&mut self, step: &Step, slot: usize) -> Result<ToPack<'a>, CompileError> {
        if let Storage::Weight { name } = &self.plan.buffers[step.inputs[slot].buffer].storage {
            if let Some(w) = self.weights.f64_values(name) {
                return Ok(ToPack::F64(w));
            }
        }
        let mut v = std::mem::take(&mut self.reuse);
        self.param_into(step, slot, &mut v)?;
        Ok(ToPack::F32(v))
    }

    fn done_with(&mut self, v: Vec<f32>) {
        if v.capacity() > self.reuse.capacity() {
            self.reuse = v;
        }
    }

    /// A view as one contiguous block per image: start, image stride and elements per image.
    fn image(&mut self, step: &Step, v: &View) -> Result<(Addr, u64, u64), CompileError> {
        let per: u64 = v.dims[1..].iter().product();
        let mut expect = 1;
        for i in (1..v.dims.len()).rev() {
            if v.dims[i] != 1 && v.strides[i] != expect {
                return Err(err(step, "a tensor whose images are not contiguous"));
            }
            expect *= v.dims[i];
        }
        Ok((self.addr(v)?, v.strides[0], per))
    }

    /// An elementwise kernel over the images of `views` (outputs and inputs alike), in chunks.
    fn elementwise(
        &mut self,
        step: &Step,
        kernel: KernelId,
        views: &[&View],
        extra: &[i64],
    ) -> Result<Exec, CompileError> {
        let mut args = Vec::new();
        let mut per = 0;
        for v in views {
            let (a, stride, n) = self.image(step, v)?;
            per = n;
            args.push(Arg::Ptr {
                addr: a,
                image_stride: stride,
                chunk_stride: CHUNK,
            });
        }
        args.push(Arg::Len {
            total: per,
            chunk: CHUNK,
        });
        args.extend(extra.iter().map(|&v| Arg::Int(v)));
        Ok(Exec::Simple(Simple {
            scratch: 0,
            kernel,
            images: self.plan.batch,
            chunks: per.div_ceil(CHUNK).max(1),
            args,
        }))
    }

    /// The execs of one step (none for an in-place identity).
    pub fn step(&mut self, step: &Step) -> Result<Vec<Exec>, CompileError> {
        let out = &step.output;
        let x = step.inputs.first();
        let unary = |kind: ActKind| KernelId::Unary(kind);
        Ok(match &step.op {
            Op::Activation(Act::Identity) | Op::Dropout { .. } => {
                if step.in_place {
                    vec![]
                } else {
                    vec![self.elementwise(
                        step,
                        unary(ActKind::Identity),
                        &[&step.inputs[0], out],
                        &[0],
                    )?]
                }
            }
            Op::Activation(a) => {
                let (kind, slope) = act_kind(*a);
                let xv = x.expect("arity");
                vec![self.elementwise(step, unary(kind), &[xv, out], &[slope.to_bits() as i64])?]
            }
            Op::Chain(c) => {
                let (code, consts) = chain_code(c);
                let mut views: Vec<&View> = step.inputs.iter().collect();
                views.push(out);
                vec![self.elementwise(step, KernelId::Chain(code), &views, &consts)?]
            }
            Op::Add | Op::Mul => {
                let k = if step.op == Op::Add {
                    KernelId::Add
                } else {
                    KernelId::Mul
                };
                let mut v = vec![self.elementwise(
                    step,
                    k,
                    &[&step.inputs[0], &step.inputs[1], out],
                    &[],
                )?];
                for other in &step.inputs[2..] {
                    v.push(self.elementwise(step, k, &[out, other, out], &[])?);
                }
                v
            }
            Op::Scale { factor } => {
                let s = self.own(vec![*factor as f32]);
                let t = self.own(vec![0.0]);
                let (xa, xs, n) = self.image(step, &step.inputs[0])?;
                let (ya, ys, _) = self.image(step, out)?;
                vec![Exec::Simple(Simple {
                    scratch: 0,
                    kernel: KernelId::Affine(ActKind::Identity),
                    images: self.plan.batch,
                    chunks: n.div_ceil(CHUNK).max(1),
                    args: vec![
                        chunked(xa, xs, CHUNK),
                        chunked(ya, ys, CHUNK),
                        Arg::ptr(s),
                        Arg::ptr(t),
                        Arg::Int(1),
                        Arg::Len {
                            total: n,
                            chunk: CHUNK,
                        },
                        Arg::Int(0),
                    ],
                })]
            }
            Op::BatchNorm { eps, affine, .. } => {
                let c = step.inputs[0].dims[1] as usize;
                let (scale, shift) = self.bn_factors(step, 1, *eps, *affine, c)?;
                let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
                let (s, t) = (self.own(f32s(scale)), self.own(f32s(shift)));
                vec![self.per_channel(step, KernelId::Affine(ActKind::Identity), s, t)?]
            }
            Op::Conv2d { .. } | Op::Dense { .. } => {
                let epi = Epilogue::none();
                if let Some(w) = self.winograd(step, &step.op, &epi)? {
                    w
                } else if let Some(r) = self.conv_rows(step, &step.op, &epi)? {
                    vec![r]
                } else {
                    vec![Exec::Gemm(Box::new(self.product(step, &step.op, &epi)?))]
                }
            }
            Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::GlobalAvgPool { .. } => vec![self.pool(step)?],
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => {
                let (xa, xs, _) = self.image(step, &step.inputs[0])?;
                let (ya, ys, _) = self.image(step, out)?;
                let d = &step.inputs[0].dims;
                let plane: u64 = d[2..].iter().product();
                let f = |v: f64| (v as f32).to_bits() as i64;
                vec![Exec::Simple(Simple {
                    scratch: 0,
                    kernel: KernelId::Lrn,
                    images: self.plan.batch,
                    chunks: 1,
                    args: vec![
                        chunked(xa, xs, 0),
                        chunked(ya, ys, 0),
                        Arg::Int(d[1] as i64),
                        Arg::Int(plane as i64),
                        Arg::Int(*size as i64),
                        Arg::Int(f(*alpha)),
                        Arg::Int(f(*beta)),
                        Arg::Int(f(*k)),
                    ],
                })]
            }
            Op::Softmax { axis } => {
                let d = &step.inputs[0].dims;
                if *axis == 0 {
                    return Err(err(step, "softmax over the batch axis"));
                }
                let outer: u64 = d[1..*axis].iter().product();
                let inner: u64 = d[axis + 1..].iter().product();
                let (xa, xs, _) = self.image(step, &step.inputs[0])?;
                let (ya, ys, _) = self.image(step, out)?;
                vec![Exec::Simple(Simple {
                    scratch: 0,
                    kernel: KernelId::Softmax,
                    images: self.plan.batch,
                    chunks: 1,
                    args: vec![
                        chunked(xa, xs, 0),
                        chunked(ya, ys, 0),
                        Arg::Int(outer as i64),
                        Arg::Int(d[*axis] as i64),
                        Arg::Int(inner as i64),
                    ],
                })]
            }
            Op::ZeroPad2d { pad } => {
                let d = &step.inputs[0].dims;
                let (c, h, w) = (d[1], d[2], d[3]);
                let (oh, ow) = (h + pad[0] + pad[1], w + pad[2] + pad[3]);
                let (xa, xs, _) = self.image(step, &step.inputs[0])?;
                let (ya, ys, per) = self.image(step, out)?;
                let fill = Exec::Simple(Simple {
                    scratch: 0,
                    kernel: KernelId::Fill,
                    images: self.plan.batch,
                    chunks: 1,
                    args: vec![chunked(ya, ys, 0), Arg::Int(per as i64), Arg::Int(0)],
                });
                let copy = Exec::Simple(Simple {
                    scratch: 0,
                    kernel: KernelId::Copy,
                    images: self.plan.batch,
                    chunks: c,
                    args: vec![
                        Arg::Ptr {
                            addr: xa,
                            image_stride: xs,
                            chunk_stride: h * w,
                        },
                        Arg::Ptr {
                            addr: ya.at(pad[0] * ow + pad[2]),
                            image_stride: ys,
                            chunk_stride: oh * ow,
                        },
                        Arg::Int(h as i64),
                        Arg::Int(w as i64),
                        Arg::Int(w as i64),
                        Arg::Int(ow as i64),
                    ],
                });
                vec![fill, copy]
            }
            Op::Concat { axis } => self.concat(step, *axis)?,
            Op::Flatten | Op::Reshape { .. } => {
                let (xa, xs, n) = self.image(step, &step.inputs[0])?;
                let (ya, ys, _) = self.image(step, out)?;
                vec![copy_images(self.plan.batch, (xa, xs), (ya, ys), n)]
            }
            Op::Embedding { dim, .. } => {
                let table = self.param(step, 1)?;
                let t = self.own(table);
                let idx = self.addr(&step.inputs[0])?;
                let y = self.addr(out)?;
                let count: u64 = step.inputs[0].dims.iter().product();
                vec![Exec::Simple(Simple {
                    scratch: 0,
                    kernel: KernelId::Embedding,
                    images: 1,
                    chunks: 1,
                    args: vec![
                        Arg::ptr(idx),
                        Arg::ptr(t),
                        Arg::ptr(y),
                        Arg::Int(count as i64),
                        Arg::Int(*dim as i64),
                    ],
                })]
            }
            Op::Rnn {
                cell,
                hidden,
                return_sequences,
                bias,
            } => vec![self.recurrent(step, *cell, *hidden, *return_sequences, *bias)?],
            Op::Input { .. }
            | Op::Param(_)
            | Op::Constant { .. }
            | Op::Loss { .. }
            | Op::Penalty { .. }
            | Op::Grad { .. } => return Err(err(step, "a training-graph op")),
            Op::Fused(f) => self.fused(step, f)?,
        })
    }

    /// Inference batch norm as per-channel factors `(scale, shift)` in f64, `y = x * scale + shift`, from the
    /// parameters starting at input slot `first` (gamma, beta if `affine`, then mean and variance).
    fn bn_factors(
        &self,
        step: &Step,
        first: usize,
        eps: f64,
        affine: bool,
        c: usize,
    ) -> Result<(Vec<f64>, Vec<f64>), CompileError> {
        let stats = if affine { first + 2 } else { first };
        let f64s = |v: Vec<f32>| -> Vec<f64> { v.into_iter().map(f64::from).collect() };
        let mean = f64s(self.param(step, stats)?);
        let var = f64s(self.param(step, stats + 1)?);
        let (gamma, beta) = if affine {
            (
                f64s(self.param(step, first)?),
                f64s(self.param(step, first + 1)?),
            )
        } else {
            (vec![1.0; c], vec![0.0; c])
        };
        let scale: Vec<f64> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
        let shift = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
        Ok((scale, shift))
    }

    /// A per-channel kernel (`Affine`) over `[N, C, plane]` images, tasks over images and channel chunks.
    fn per_channel(
        &mut self,
        step: &Step,
        kernel: KernelId,
        s: Addr,
        t: Addr,
    ) -> Result<Exec, CompileError> {
        let d = &step.inputs[0].dims;
        let (c, plane) = (d[1], d[2..].iter().product::<u64>());
        let cc = (CHUNK / plane.max(1)).clamp(1, c);
        let (xa, xs, _) = self.image(step, &step.inputs[0])?;
        let (ya, ys, _) = self.image(step, &step.output)?;
        let strided = |a: Addr, image_stride: u64| Arg::Ptr {
            addr: a,
            image_stride,
            chunk_stride: cc * plane,
        };
        let factors = |a: Addr| Arg::Ptr {
            addr: a,
            image_stride: 0,
            chunk_stride: cc,
        };
        Ok(Exec::Simple(Simple {
            scratch: 0,
            kernel,
            images: self.plan.batch,
            chunks: c.div_ceil(cc),
            args: vec![
                strided(xa, xs),
                strided(ya, ys),
                factors(s),
                factors(t),
                Arg::Len {
                    total: c,
                    chunk: cc,
                },
                Arg::Int(plane as i64),
                Arg::Int(0),
            ],
        }))
    }

    fn concat(&mut self, step: &Step, axis: usize) -> Result<Vec<Exec>, CompileError> {
        let out = &step.output;
        let (ya, ys, _) = self.image(step, out)?;
        let inner_out: u64 = out.dims[axis..].iter().product();
        let below: u64 = out.dims[axis + 1..].iter().product();
        let outer: u64 = out.dims[1..axis].iter().product();
        let mut start = 0;
        let mut execs = Vec::new();
        for v in &step.inputs {
            let width = v.dims[axis];
            // Inputs the plan placed in their slice are already there.
            let placed = v.buffer == out.buffer;
            if !placed {
                let (xa, xs, _) = self.image(step, v)?;
                let len = width * below;
                execs.push(Exec::Simple(Simple {
                    scratch: 0,
                    kernel: KernelId::Copy,
                    images: self.plan.batch,
                    chunks: 1,
                    args: vec![
                        chunked(xa, xs, 0),
                        chunked(ya.at(start * below), ys, 0),
                        Arg::Int(outer as i64),
                        Arg::Int(len as i64),
                        Arg::Int(len as i64),
                        Arg::Int(inner_out as i64),
                    ],
                }));
            }
            start += width;
        }
        Ok(execs)
    }

    fn pool(&mut self, step: &Step) -> Result<Exec, CompileError> {
        let xv = &step.inputs[0];
        let (c, h, w) = (xv.dims[1], xv.dims[2], xv.dims[3]);
        let (oh, ow) = if step.output.dims.len() == 4 {
            (step.output.dims[2], step.output.dims[3])
        } else {
            (1, 1)
        };
        let (rows, cols, divs, max) = super::windows::tables(&step.op, (h, w), (oh, ow));
        if super::windows::same_3x3(&rows, &cols, (h, w), (oh, ow)) {
            return self.pool_3x3(step, max, &divs, (c, h, w));
        }
        let kernel = if max {
            KernelId::MaxPool
        } else {
            KernelId::AvgPool
        };
        let vector = super::windows::vector_run(&cols);
        let as_bits = |v: Vec<i32>| v.into_iter().map(|i| f32::from_bits(i as u32)).collect();
        let (rows, cols, divs) = (
            self.own(as_bits(rows)),
            self.own(as_bits(cols)),
            self.own(divs),
        );
        let (xa, xs, _) = self.image(step, xv)?;
        let (ya, ys, _) = self.image(step, &step.output)?;
        let cc = (CHUNK / (h * w).max(1)).clamp(1, c);
        Ok(Exec::Simple(Simple {
            scratch: w + 4,
            kernel,
            images: self.plan.batch,
            chunks: c.div_ceil(cc),
            args: vec![
                Arg::Ptr {
                    addr: xa,
                    image_stride: xs,
                    chunk_stride: cc * h * w,
                },
                Arg::Ptr {
                    addr: ya,
                    image_stride: ys,
                    chunk_stride: cc * oh * ow,
                },
                Arg::Int(oh as i64),
                Arg::Int(ow as i64),
                Arg::Int(w as i64),
                Arg::ptr(rows),
                Arg::ptr(cols),
                Arg::ptr(divs),
                Arg::Len {
                    total: c,
                    chunk: cc,
                },
                Arg::Int((h * w) as i64),
                Arg::ptr(Addr {
                    region: Region::Scratch,
                    offset: 0,
                }),
                Arg::Int(vector[0]),
                Arg::Int(vector[1]),
                Arg::Int(vector[2]),
                Arg::Int(vector[3]),
                Arg::Int(vector[4]),
                Arg::Int(vector[5]),
            ],
        }))
    }

    /// A pooling layer whose windows are 3x3 with stride 1 and padding 1 and whose output has the input's
    /// size (`windows::same_3x3`): the whole-plane kernel, with its edge masks and divisors per position.
    fn pool_3x3(
        &mut self,
        step: &Step,
        max: bool,
        divs: &[f32],
        (c, h, w): (u64, u64, u64),
    ) -> Result<Exec, CompileError> {
        let hw = (h * w) as usize;
        let init = if max { f32::NEG_INFINITY } else { 0.0 };
        let mut edges = vec![0.0f32; 4 * hw + 4];
        for i in 0..hw {
            let x = i as u64 % w;
            for (k, inside) in [(0, x > 0), (2, x + 1 < w)] {
                let (mask, fill) = if inside {
                    (u32::MAX, 0)
                } else {
                    (0, init.to_bits())
                };
                edges[k * hw + i] = f32::from_bits(mask);
                edges[(k + 1) * hw + i] = f32::from_bits(fill);
            }
        }
        // The divisor per position, as the table kernel computes it: row divisor times column divisor.
        let mut div: Vec<f32> = (0..hw)
            .map(|i| divs[i / w as usize] * divs[h as usize + i % w as usize])
            .collect();
        div.resize(hw + 4, 1.0);
        let (edges, div) = (self.own(edges), self.own(div));
        let (xa, xs, _) = self.image(step, &step.inputs[0])?;
        let (ya, ys, _) = self.image(step, &step.output)?;
        let cc = (CHUNK / (h * w).max(1)).clamp(1, c);
        Ok(Exec::Simple(Simple {
            scratch: h * w + 8,
            kernel: if max {
                KernelId::MaxPool3
            } else {
                KernelId::AvgPool3
            },
            images: self.plan.batch,
            chunks: c.div_ceil(cc),
            args: vec![
                chunked(xa, xs, cc * h * w),
                chunked(ya, ys, cc * h * w),
                Arg::Int((h * w) as i64),
                Arg::Int(w as i64),
                Arg::Len {
                    total: c,
                    chunk: cc,
                },
                Arg::ptr(edges),
                Arg::ptr(div),
                Arg::ptr(Addr {
                    region: Region::Scratch,
                    offset: 0,
                }),
            ],
        }))
    }
}

fn chunked(addr: Addr, image_stride: u64, chunk_stride: u64) -> Arg {
    Arg::Ptr {
        addr,
        image_stride,
        chunk_stride,
    }
}

fn copy_images(images: u64, (xa, xs): (Addr, u64), (ya, ys): (Addr, u64), n: u64) -> Exec {
    Exec::Simple(Simple {
        scratch: 0,
        kernel: KernelId::Copy,
        images,
        chunks: 1,
        args: vec![
            chunked(xa, xs, 0),
            chunked(ya, ys, 0),
            Arg::Int(1),
            Arg::Int(n as i64),
            Arg::Int(n as i64),
            Arg::Int(n as i64),
        ],
    })
}

fn act_kind(a: Act) -> (ActKind, f32) {
    match a {
        Act::Relu => (ActKind::Relu, 0.0),
        Act::Sigmoid => (ActKind::Sigmoid, 0.0),
        Act::Tanh => (ActKind::Tanh, 0.0),
        Act::Identity => (ActKind::Identity, 0.0),
        Act::LeakyRelu { slope } => (ActKind::LeakyRelu, slope as f32),
    }
}

/// A fused chain's kernel identity and its links' constants (f32 bits). The pass keeps chains within
/// [`CHAIN_LINKS`] links and [`crate::codegen::CHAIN_INPUTS`] inputs.
fn chain_code(c: &crate::ir::op::Chain) -> (ChainCode, Vec<i64>) {
    use crate::ir::op::Link;
    let mut links = [(ChainOp::Add, 0u8, 0u8); CHAIN_LINKS];
    let mut consts = Vec::with_capacity(c.links.len());
    for (slot, link) in links.iter_mut().zip(&c.links) {
        let (op, a, b, k) = match *link {
            Link::Act(a, r) => {
                let (kind, slope) = act_kind(a);
                (ChainOp::Act(kind), r, r, slope)
            }
            Link::Add(a, b) => (ChainOp::Add, a, b, 0.0),
            Link::Mul(a, b) => (ChainOp::Mul, a, b, 0.0),
            Link::Scale(f, r) => (ChainOp::Scale, r, r, f as f32),
        };
        *slot = (op, a as u8, b as u8);
        consts.push(k.to_bits() as i64);
    }
    let code = ChainCode {
        inputs: c.inputs as u8,
        len: c.links.len() as u8,
        links,
    };
    (code, consts)
}
