//! Convolutions, dense layers and recurrent layers lowered to GEMM execs: weights packed once into the
//! macro-kernel's panels, patch tables for implicit-GEMM convolution, and how the work splits into tasks.

use std::collections::HashMap;

use crate::codegen::{
    pack_a_into, pack_b_transposed, packed_a_len, ActKind, KernelId, KC, TAP_READ, TILE_M, TILE_N,
};
use crate::ir::op::Fused;
use crate::ir::{Cell, Op};
use crate::plan::{Step, View};

use super::super::exec::{Addr, Exec, Form, Gemm, Recurrent, Segment, STREAM_ROWS};
use super::{act_kind, copy_images, err, CompileError, Lower, ToPack};

/// What a product computes after the matrix product, per output channel `o`: `act((v + bias[o]) *
/// factor[o] + shift[o] (+ C))`. The factor is folded into the packed weights, so the kernel's epilogue
/// adds one shift per channel; `accumulate` says C already holds a residual to add.
pub(super) struct Epilogue {
    pub factor: Option<Vec<f64>>,
    pub shift: Option<Vec<f64>>,
    pub act: ActKind,
    pub slope: f32,
    pub accumulate: bool,
}

impl Epilogue {
    pub fn none() -> Epilogue {
        Epilogue {
            factor: None,
            shift: None,
            act: ActKind::Identity,
            slope: 0.0,
            accumulate: false,
        }
    }

    /// The per-channel shift: the bias times the factor, plus the shift.
    pub(super) fn shift(&self, bias: Option<Vec<f32>>, channels: usize) -> Option<Vec<f32>> {
        if bias.is_none() && self.shift.is_none() {
            return None;
        }
        Some(
            (0..channels)
                .map(|o| {
                    let b = bias.as_ref().map_or(0.0, |b| b[o] as f64);
                    let f = self.factor.as_ref().map_or(1.0, |f| f[o]);
                    let t = self.shift.as_ref().map_or(0.0, |t| t[o]);
                    (b * f + t) as f32
                })
                .collect(),
        )
    }
}

impl Lower<'_> {
    /// A convolution or dense layer `op` (the step's op or a fused op's core, whose inputs come first).
    pub(super) fn product(
        &mut self,
        step: &Step,
        op: &Op,
        epi: &Epilogue,
    ) -> Result<Gemm, CompileError> {
        match op {
            Op::Conv2d { .. } => self.conv(step, op, epi),
            Op::Dense { bias, .. } => self.dense(step, *bias, epi),
            _ => unreachable!("a product"),
        }
    }

    /// A fused op: its batch norm and scale folded into the product's weights and shift, its residual
    /// placed in the output first (unless the plan already put the output in the residual's memory).
    pub(super) fn fused(&mut self, step: &Step, f: &Fused) -> Result<Vec<Exec>, CompileError> {
        let channels = match f.core {
            Op::Conv2d { filters, .. } => filters,
            Op::Dense { units, .. } => units,
            _ => unreachable!("a product"),
        } as usize;
        let (mut factor, mut shift) = match f.bn {
            Some(b) => {
                let (s, t) = self.bn_factors(step, f.first_bn(), b.eps, b.affine, channels)?;
                (Some(s), Some(t))
            }
            None => (None, None),
        };
        if f.scale != 1.0 {
            let times = |v: Vec<f64>| v.into_iter().map(|x| x * f.scale).collect();
            factor = Some(factor.map_or(vec![f.scale; channels], times));
            shift = shift.map(times);
        }
        let (act, slope) = act_kind(f.act);
        let epi = Epilogue {
            factor,
            shift,
            act,
            slope,
            accumulate: f.residual,
        };
        let mut execs = Vec::new();
        if f.residual && !step.in_place {
            let r = &step.inputs[1];
            let (ra, rs, n) = self.image(step, r)?;
            let (ya, ys, _) = self.image(step, &step.output)?;
            execs.push(copy_images(self.plan.batch, (ra, rs), (ya, ys), n));
        }
        // The core reads its inputs (x, weight, bias) as the unfused layer's step would.
        let core = Step {
            inputs: f
                .core_slots()
                .into_iter()
                .map(|i| step.inputs[i].clone())
                .collect(),
            ..step.clone()
        };
        if let Some(w) = self.winograd(&core, &f.core, &epi)? {
            execs.extend(w);
        } else if let Some(r) = self.conv_rows(&core, &f.core, &epi)? {
            execs.push(r);
        } else {
            execs.push(Exec::Gemm(Box::new(self.product(&core, &f.core, &epi)?)));
        }
        Ok(execs)
    }

    /// Sibling fused 1x1 convolutions of one input (a `merge-siblings` group, `steps` in schedule order)
    /// as one product: each member lowered as usual, then their packed weights stacked as the rows of one
    /// A (each member's rows padded to whole panels, k block by k block), their row shifts likewise, and
    /// one output segment per member. The members share the input and its geometry, so the first one's
    /// B side (in place, with its tail patterns) serves all.
    pub(crate) fn merged(&mut self, steps: &[Step]) -> Result<Gemm, CompileError> {
        let mut members = Vec::with_capacity(steps.len());
        for step in steps {
            let Op::Fused(f) = &step.op else {
                unreachable!("a group holds fused products")
            };
            let mut execs = self.fused(step, f)?;
            match (execs.pop(), execs.is_empty()) {
                (Some(Exec::Gemm(g)), true) => members.push(*g),
                _ => unreachable!("a member has no residual, so it lowers to one product"),
            }
        }
        let mut merged = members[0].clone();
        let (k, kblock) = (merged.k, merged.kblock);
        let panels: Vec<u64> = members
            .iter()
            .map(|g| g.m.div_ceil(TILE_M as u64))
            .collect();
        let total: u64 = panels.iter().sum();
        let rows = total * TILE_M as u64;
        let mut packed = Vec::with_capacity((rows * k) as usize);
        let weights: Vec<Vec<f32>> = members.iter().map(|g| self.take(g.weights)).collect();
        for k0 in (0..k).step_by(kblock.max(1) as usize) {
            let kc = kblock.min(k - k0);
            for (w, &p) in weights.iter().zip(&panels) {
                let at = (k0 * p) as usize * TILE_M;
                packed.extend_from_slice(&w[at..at + (p * kc) as usize * TILE_M]);
            }
        }
        drop(weights);
        let mut shift = Vec::with_capacity(rows as usize + TILE_N);
        let mut outs = Vec::with_capacity(members.len());
        for (g, &p) in members.iter().zip(&panels) {
            let first = shift.len() as u64;
            shift.extend(self.values_at(g.row_shift, g.m));
            shift.resize((first + p * TILE_M as u64) as usize, 0.0);
            outs.extend(g.outs.iter().map(|s| Segment {
                first: first + s.first,
                ..s.clone()
            }));
        }
        shift.resize(rows as usize + TILE_N, 0.0);
        let col_panels = merged.n.div_ceil(TILE_N as u64);
        let (panels_per_task, row_splits) = split(
            merged.images,
            col_panels,
            (rows, k),
            (self.threads, self.call_panels),
        );
        merged.m = rows;
        merged.weights = self.own(packed);
        merged.group_weight_stride = 0;
        merged.row_scale = self.own(vec![1.0; rows as usize + TILE_N]);
        merged.row_shift = self.own(shift);
        merged.outs = outs;
        merged.panels_per_task = panels_per_task;
        merged.row_splits = row_splits;
        Ok(merged)
    }

    fn conv(&mut self, step: &Step, op: &Op, epi: &Epilogue) -> Result<Gemm, CompileError> {
        let Op::Conv2d {
            filters,
            kernel,
            stride,
            pad,
            dilation,
            groups,
            bias,
        } = *op
        else {
            unreachable!("a convolution")
        };
        let (xv, out) = (&step.inputs[0], &step.output);
        let (c, h, w) = (xv.dims[1], xv.dims[2], xv.dims[3]);
        let (oh, ow) = (out.dims[2], out.dims[3]);
        let (m, n) = (filters / groups, oh * ow);
        let taps = kernel[0] * kernel[1];
        let cg = c / groups;
        let k = cg * taps;
        let kblock = taps * (KC as u64 / taps).max(1);
        let shape = (groups as usize, m as usize, k as usize, kblock as usize);
        let factor = epi.factor.as_deref();
        let packed = match self.weight_to_pack(step, 1)? {
            ToPack::F64(w) => pack_conv(w, shape, factor),
            ToPack::F32(w) => {
                let packed = pack_conv(&w, shape, factor);
                self.done_with(w);
                packed
            }
        };
        let group_weight_stride = packed_a_len(m as usize, k as usize) as u64;
        let weights = self.own(packed);
        let b = if bias {
            Some(self.param(step, 2)?)
        } else {
            None
        };
        let row_shift = match epi.shift(b, filters as usize) {
            Some(t) => self.own(t),
            None => self.zeros(),
        };
        // A 1x1 stride-1 unpadded convolution reads B in place when each row of 16 columns is one cache
        // line (planes of a multiple of 16 pixels: 56x56, 28x28, 8x8). Otherwise every k row of a call
        // spans one more line than it needs and the kernel's B stream crowds A out of L1: packing is
        // faster there. AVX2 on Zen 1 (2 threads): IRv2's 1088 -> 192 at 17x17 54 -> 63 GFLOP/s, while in
        // place wins on aligned planes (512 -> 128 at 28x28: 72 vs 67). AVX-512 on Emerald Rapids (session
        // 9, both variants in one process, alternating, per-layer minimum of 40 runs, one thread):
        // ResNet-50's 1x1 layers at 14x14 0.70-0.72 -> 0.63-0.66 ms, at 7x7 0.87-0.97 -> 0.80-0.89 (the
        // model's layer sum -1.7%; two threads -2.7%, Inception v3 -2.8%). Session 6 had measured the
        // opposite on GoogLeNet (480 -> 192 at 14x14 0.14-0.15 ms in place against 0.18-0.24 packed),
        // before packing read a panel's consecutive pixels as one load.
        let in_place_plane = plane_aligned(h * w);
        let direct = taps == 1 && stride == [1, 1] && pad == [0; 4] && in_place_plane;
        let panels = n.div_ceil(TILE_N as u64);
        let (table, runs, panel_map) = patches(kernel, (stride, pad, dilation), (h, w), (ow, n));
        let table = self.own(table);
        let runs = self.own(runs);
        let (xa, xs, _) = self.image(step, xv)?;
        let (ya, ys, _) = self.image(step, out)?;
        let (panels_per_task, row_splits) = split(
            self.plan.batch * groups,
            panels,
            (m, k),
            (self.threads, self.call_panels),
        );
        Ok(Gemm {
            act: epi.act,
            slope: epi.slope,
            accumulate: epi.accumulate,
            m,
            n,
            k,
            kblock,
            form: Form::Conv {
                input: xa,
                in_image_stride: xs,
                in_group_stride: cg * h * w,
                plane: h * w,
                taps,
                table,
                runs,
                panels: panel_map.into(),
                direct,
                winograd: false,
            },
            weights,
            group_weight_stride,
            row_scale: self.ones(),
            row_shift,
            col_shift: self.zeros(),
            outs: vec![Segment {
                first: 0,
                rows: m,
                out: ya,
                image_stride: ys,
            }],
            ldc: n,
            groups,
            images: self.plan.batch,
            panels_per_task,
            row_splits,
            shares_first: false,
            call_panels: self.call_panels,
        })
    }

    fn dense(&mut self, step: &Step, bias: bool, epi: &Epilogue) -> Result<Gemm, CompileError> {
        let (xv, out) = (&step.inputs[0], &step.output);
        let rank = xv.dims.len();
        let k = xv.dims[rank - 1];
        let units = out.dims[rank - 1];
        let rows: u64 = xv.dims[..rank - 1].iter().product();
        let (ku, n, factor) = (k as usize, units as usize, epi.factor.as_deref());
        let kblock = dense_kblock(rows, k);
        let width = self.b_width(rows);
        let packed = match self.weight_to_pack(step, 1)? {
            ToPack::F64(w) => pack_b_transposed(w, ku, n, kblock, width, factor),
            ToPack::F32(w) => {
                let packed = pack_b_transposed(&w, ku, n, kblock, width, factor);
                self.done_with(w);
                packed
            }
        };
        let b = if bias {
            Some(self.param(step, 2)?)
        } else {
            None
        };
        let b = epi.shift(b, units as usize);
        let x = self.addr(xv)?;
        let y = self.addr(out)?;
        let row_ok = |v: &View| rank == 2 || v.is_contiguous();
        if xv.strides[rank - 1] != 1 || out.strides[rank - 1] != 1 || !row_ok(xv) || !row_ok(out) {
            return Err(err(step, "a dense layer over a strided tensor"));
        }
        let mut gemm = self.matmul(
            self.threads,
            x,
            xv.strides[rank - 2],
            rows,
            k,
            packed,
            units,
            b,
            y,
            out.strides[rank - 2],
        );
        gemm.kblock = kblock as u64;
        gemm.act = epi.act;
        gemm.slope = epi.slope;
        gemm.accumulate = epi.accumulate;
        Ok(gemm)
    }

    /// Columns per group of the packed weights of a product of `rows` rows (`exec::dense_b_width`).
    fn b_width(&self, rows: u64) -> usize {
        super::super::exec::dense_b_width(self.call_panels, rows) as usize
    }

    /// `y[rows, units] = x[rows, k] . w + b` with `w [k, units]` given packed (`pack_b_transposed`
    /// with [`Self::b_width`] of `rows`), its tasks shared by `threads` threads (1 for a product whose
    /// tasks run one after another, as a recurrent layer's).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &mut self,
        threads: u64,
        x: Addr,
        ld: u64,
        rows: u64,
        k: u64,
        packed: Vec<f32>,
        units: u64,
        b: Option<Vec<f32>>,
        y: Addr,
        ldc: u64,
    ) -> Gemm {
        let weights = self.own(packed);
        let col_shift = match b {
            Some(mut b) => {
                b.resize(b.len() + TILE_N, 0.0);
                self.own(b)
            }
            None => self.zeros(),
        };
        let panels = units.div_ceil(TILE_N as u64);
        Gemm {
            act: ActKind::Identity,
            slope: 0.0,
            accumulate: false,
            m: rows,
            n: units,
            k,
            kblock: KC as u64,
            form: Form::Dense {
                input: x,
                ld,
                b_width: self.b_width(rows) as u64,
            },
            weights,
            group_weight_stride: 0,
            row_scale: self.ones(),
            row_shift: self.zeros(),
            col_shift,
            outs: vec![Segment {
                first: 0,
                rows,
                out: y,
                image_stride: 0,
            }],
            ldc,
            groups: 1,
            images: 1,
            panels_per_task: dense_panels_per_task(rows, panels, threads, self.call_panels),
            call_panels: self.call_panels,
            row_splits: dense_row_splits(rows),
            shares_first: false,
        }
    }

    pub(super) fn recurrent(
        &mut self,
        step: &Step,
        cell: Cell,
        hidden: u64,
        return_sequences: bool,
        bias: bool,
    ) -> Result<Exec, CompileError> {
        let xv = &step.inputs[0];
        let (n, t, f) = (xv.dims[0], xv.dims[1], xv.dims[2]);
        if !xv.is_contiguous() {
            return Err(err(step, "a recurrent layer over a strided tensor"));
        }
        let g = cell.gates();
        let w_ih = self.param(step, 1)?;
        let w_hh = self.param(step, 2)?;
        let (b_ih, b_hh) = if bias {
            (Some(self.param(step, 3)?), Some(self.param(step, 4)?))
        } else {
            (None, None)
        };
        let width = g * hidden;
        let gates = self.own(vec![0.0; (n * t * width) as usize]);
        let recur_out = self.own(vec![0.0; (n * width) as usize]);
        let state_h = self.own(vec![0.0; (n * hidden) as usize]);
        let state_c = self.own(vec![0.0; (n * hidden) as usize]);
        let x = self.addr(xv)?;
        // The projection's rows are every step's, the recurrence's one step's.
        let (ih_cols, hh_cols) = (self.b_width(n * t), self.b_width(n));
        let w_ih = pack_b_transposed(&w_ih, f as usize, width as usize, KC, ih_cols, None);
        let w_hh = pack_b_transposed(&w_hh, hidden as usize, width as usize, KC, hh_cols, None);
        // A recurrent layer runs its tasks on one thread (`tasks::recurrent`).
        let project = self.matmul(1, x, f, n * t, f, w_ih, width, b_ih, gates, width);
        let recur = self.matmul(
            1, state_h, hidden, n, hidden, w_hh, width, b_hh, recur_out, width,
        );
        let (ya, ys, _) = self.image(step, &step.output)?;
        let kernel = match cell {
            Cell::Lstm => KernelId::LstmCell,
            Cell::Gru => KernelId::GruCell,
            Cell::Simple { relu } => {
                KernelId::RnnCell(if relu { ActKind::Relu } else { ActKind::Tanh })
            }
        };
        Ok(Exec::Recurrent(Box::new(Recurrent {
            cell: kernel,
            project,
            recur,
            gates,
            recur_out,
            state_h,
            state_c,
            batch: n,
            steps: t,
            hidden,
            out: ya,
            out_image_stride: ys,
            return_sequences,
        })))
    }
}

/// i32 per tap of a patch pattern that `PackPatches` reads (`TAP_READ` of them): how the tap's 8 offsets
/// (relative to the panel's `base`, -1 for padding) are read. Kind 1: consecutive and inside, two vector
/// loads. Kind 2: every inside offset continues one of at most two runs, `o[j] = a + j`, whose 8-value reads
/// from `base + a` stay in the channel's plane (`plane` values): four vector loads, each kept under a lane
/// mask (a panel that crosses an output row, or a tap with padding on one side). Kind 3: the same with
/// `o[j] = a + 2j` (stride 2), 16-value reads of which the even lanes are kept. Kinds 4 and 5: strides 3
/// and 4 (24- and 32-value reads; AlexNet's first layer), which the Cranelift and AVX2 kernels read as
/// kind 0 and the AVX-512 one as two vector loads and a permute. Kind 0: value by value.
/// Layout: `[kind, a1, a2, 0, mask1 x 8, mask2 x 8]` (masks -1 or 0).
fn tap_reads(tap: &[i32], base: i64, plane: i64) -> [i32; TAP_READ] {
    if tap[0] >= 0 && tap.windows(2).all(|w| w[1] == w[0] + 1) {
        let mut r = [0i32; TAP_READ];
        r[0] = 1;
        return r;
    }
    (1..=4)
        .find_map(|stride| strided_runs(tap, base, plane, stride))
        .unwrap_or([0; TAP_READ])
}

/// Kind `1 + stride` (2 to 5 for strides 1 to 4) for a tap whose present columns `j` read `a + stride * j`
/// for at most two starts `a`, when each start's read (`8 * stride` values) lies in the plane.
fn strided_runs(tap: &[i32], base: i64, plane: i64, stride: i32) -> Option<[i32; TAP_READ]> {
    let mut r = [0i32; TAP_READ];
    let (mut starts, mut found) = ([0i32; 2], 0);
    for (j, &o) in tap.iter().enumerate() {
        if o < 0 {
            continue;
        }
        let a = o - stride * j as i32;
        let run = match starts[..found].iter().position(|&s| s == a) {
            Some(i) => i,
            None if found < 2 => {
                starts[found] = a;
                found += 1;
                found - 1
            }
            None => return None,
        };
        r[4 + 8 * run + j] = -1;
    }
    let len = TILE_N as i64 * stride as i64;
    let readable = |a: i32| base + a as i64 >= 0 && base + a as i64 + len <= plane;
    if found == 0 || !starts[..found].iter().all(|&a| readable(a)) {
        return None;
    }
    let starts = &starts[..found];
    r[0] = 1 + stride;
    r[1] = starts[0];
    r[2] = *starts.get(1).unwrap_or(&starts[0]);
    Some(r)
}

/// The `PackPatches` tables of a convolution with `kernel`, `(stride, pad, dilation)` on an `h x w`
/// plane into `n` pixels of rows of `ow`: the offsets of each tap of each output pixel, column panel by
/// column panel, relative to the panel's smallest offset, and how each tap is read, one pattern per
/// distinct panel; and per panel its pattern and base offset.
#[allow(clippy::type_complexity)]
pub(super) fn patches(
    kernel: [u64; 2],
    (stride, pad, dilation): ([u64; 2], [u64; 4], [u64; 2]),
    (h, w): (u64, u64),
    (ow, n): (u64, u64),
) -> (Vec<f32>, Vec<f32>, Vec<(u32, i32)>) {
    let taps = kernel[0] * kernel[1];
    let panels = n.div_ceil(TILE_N as u64);
    // Offsets of each tap of each output pixel, column panel by column panel, relative to the
    // panel's smallest offset; panels with equal relative offsets share one pattern.
    let mut patterns: HashMap<Vec<i32>, u32> = HashMap::new();
    let mut table = Vec::new();
    let mut runs = Vec::new();
    let mut panel_map = Vec::with_capacity(panels as usize);
    let mut offs = Vec::with_capacity((taps as usize) * TILE_N);
    for p in 0..panels {
        offs.clear();
        for kh in 0..kernel[0] {
            for kw in 0..kernel[1] {
                for j in 0..TILE_N as u64 {
                    let pix = p * TILE_N as u64 + j;
                    let (y, x) = (pix / ow, pix % ow);
                    let ih = (y * stride[0] + kh * dilation[0]) as i64 - pad[0] as i64;
                    let iw = (x * stride[1] + kw * dilation[1]) as i64 - pad[2] as i64;
                    let inside = pix < n && ih >= 0 && iw >= 0 && ih < h as i64 && iw < w as i64;
                    offs.push(if inside { ih * w as i64 + iw } else { -1 });
                }
            }
        }
        let base = offs.iter().copied().filter(|&o| o >= 0).min().unwrap_or(0);
        let rel: Vec<i32> = offs
            .iter()
            .map(|&o| if o < 0 { -1 } else { (o - base) as i32 })
            .collect();
        // How each tap is read; it depends on the panel's place in the plane, so it is part of the
        // pattern.
        let mut key = rel.clone();
        for tap in rel.chunks(TILE_N) {
            key.extend(tap_reads(tap, base, (h * w) as i64));
        }
        let next = patterns.len() as u32;
        let pattern = *patterns.entry(key).or_insert_with_key(|key| {
            let reads = &key[rel.len()..];
            runs.extend(reads.iter().map(|&v| f32::from_bits(v as u32)));
            table.extend(rel.iter().map(|&o| f32::from_bits(o as u32)));
            next
        });
        panel_map.push((pattern, base as i32));
    }
    (table, runs, panel_map)
}

/// Convolution weights `[groups x m, k]` (row-major) packed as A, group after group, each row times
/// `factor[row]` if given.
pub(super) fn pack_conv<T: Copy + Into<f64>>(
    w: &[T],
    (groups, m, k, kblock): (usize, usize, usize, usize),
    factor: Option<&[f64]>,
) -> Vec<f32> {
    let stride = packed_a_len(m, k);
    let mut packed = vec![0.0; stride * groups];
    for (g, out) in packed.chunks_mut(stride).enumerate() {
        let w = &w[g * m * k..(g + 1) * m * k];
        pack_a_into(w, m, k, kblock, factor.map(|f| &f[g * m..]), out);
    }
    packed
}

/// How a convolution's work splits: column panels per task, and row shares per column block.
///
/// `images` counts the product's independent (image, group) pairs. Every column block reads all of A
/// (the packed weights) once. From [`BIG_A`] bytes on, A does not stay in cache from one block to the
/// next (it shares the L3 with activations and the other core's work), so a task takes every column of
/// its image (A is read once per image). With fewer than two images per thread the rows are also shared,
/// one share per thread (B is then packed once per share; each task still packs one panel pair at a
/// time, per k block). On two threads: ResNet-50's 512 -> 512 3x3 at 7x7 (9 MiB of weights) goes from
/// 4.5-4.7 to 3.4-3.6 ms alone, its 1024 -> 2048 downsample from 4.2 to 3.2, VGG16's 512 -> 512 at
/// 14x14 from 15.0 to 13.7. Inside the models (sum of per-layer medians), a 1 MiB threshold against 2
/// MiB: ResNet-50 142.2 -> 138.8 ms, GoogLeNet 56.5 -> 54.1, Inception v3 197.2 -> 193.0, VGG16
/// unchanged; 0.5 MiB slows ResNet-50's 128 -> 128 3x3 layers (0.6 MiB, 98 panels). With two images per
/// thread or more, a task is one whole image (B packed once; A's k block, read from L3 once per image,
/// serves all its columns from L2): session 17 (Zen 4, two threads, both splits in one process,
/// alternating, results bitwise equal), medians of paired ratios at batch 8: ResNet-50 1.0085 twice
/// (sums of per-layer minimums -0.9% and -1.1%, its stride-2 layers 3-5% faster), ResNet-18 1.016,
/// Inception v3 1.013, VGG16 1.008; at batch 1, where ResNet-50's 7x7 Winograd products (16 matrices,
/// the "images" here) take it, 1.003.
///
/// Otherwise it aims at 16 or more tasks so two threads stay balanced, with blocks of up to 8 panels (64
/// columns) so a task re-reads its block of A from L2 rather than memory. Blocks hold an even number of
/// panels (see [`whole_calls`]). How work is split never changes results.
pub(super) fn split(
    images: u64,
    panels: u64,
    (m, k): (u64, u64),
    (threads, call): (u64, u64),
) -> (u64, u64) {
    let row_panels = m.div_ceil(TILE_M as u64);
    if 4 * m * k >= BIG_A {
        let shares = if images >= 2 * threads {
            1
        } else {
            threads.clamp(1, row_panels)
        };
        return (whole_calls(panels, panels, call), shares);
    }
    let per_task = whole_calls(panels, (panels * images / 16).clamp(1, 8), call);
    let blocks = images * panels.div_ceil(per_task);
    let splits = 16u64
        .div_ceil(blocks)
        .clamp(1, row_panels.div_ceil(8).max(1));
    (per_task, splits)
}

/// Bytes of packed weights from which a convolution reads them once (see [`split`]): 1 MiB, an eighth of
/// this machine's L3.
const BIG_A: u64 = 1 << 20;

/// Rows of A a dense task packs per k block: `DENSE_ROWS x KC` floats (256 KiB) stay in a Zen 1 core's 512
/// KiB L2 while the task's column panels stream past them.
const DENSE_ROWS: u64 = 256;

/// The depth of a dense product's k blocks: [`KC`], or all of `k` for a product that streams its
/// weights (at most [`STREAM_ROWS`] rows: batch 1 to 8 of a 2-D input). Packed B is laid out k block by
/// k block, each block's column groups side by side, so with `KC`-deep blocks a task's weights are runs
/// of 32-64 KiB a whole block apart (4 MiB in AlexNet's 9216 -> 4096 layer), and the kernel's prefetch,
/// which runs a fixed distance ahead, starts cold at each. In one block a column group's weights are one
/// run from its first row to its last; the task's packed rows of A then take `4 k` floats of scratch
/// (400 KiB for VGG16's 25088 inputs). AlexNet on two threads (both variants in one process,
/// alternating, per-layer minimum of 30 runs): its 9216 -> 4096 layer 5.78 -> 5.58 ms, 4096 -> 4096
/// 2.53 -> 2.47; VGG16's 25088 -> 4096 16.10 -> 16.04 (about 26 GB/s, near what a C probe reads on
/// two cores); ResNet-50's 2048 -> 1000 on one thread 0.72 -> 0.70.
pub(crate) fn dense_kblock(rows: u64, k: u64) -> usize {
    if rows <= STREAM_ROWS {
        (k as usize).max(1)
    } else {
        KC
    }
}

/// Row shares of a dense product, so that each task's packed rows of A stay in L2.
pub(crate) fn dense_row_splits(rows: u64) -> u64 {
    rows.div_ceil(DENSE_ROWS).max(1)
}

/// Column panels per task of a dense product of `rows` rows and `panels` column panels on `threads`
/// threads. Weights read once as a stream (at most [`STREAM_ROWS`] rows) go in 16 column blocks, so two
/// threads stay balanced while each block streams its own weights. Otherwise every task packs its row
/// share of the input (per k block) before running its columns, so each column block packs the same rows
/// again: blocks are as few as keep `2 threads` tasks (with [`dense_row_splits`]' row shares), and one
/// on one thread. Against 16 blocks (`nnc bench`, two binaries alternating, medians of 4 rounds; Zen 4):
/// a 1024 -> 1024 dense layer at batch 16, 64 and 256 0.897, 0.926 and 0.921 of the time on one thread
/// (84-85 GFLOP/s at 64 and 256 rows), 0.939, 0.911 and 0.918 on two (165 GFLOP/s at 256 rows); at batch
/// 64 on two threads the LSTM model 0.767, the GRU model 0.833 and the text classifier 0.829 (their
/// recurrent layers run one block on one thread); AlexNet at batch 16 even (0.986).
fn dense_panels_per_task(rows: u64, panels: u64, threads: u64, call: u64) -> u64 {
    let blocks = if rows <= STREAM_ROWS {
        16
    } else if threads <= 1 {
        1
    } else {
        (2 * threads).div_ceil(dense_row_splits(rows))
    };
    whole_calls(panels, panels.div_ceil(blocks).max(1), call)
}

/// `per_task` rounded up to a multiple of `call` (the panels a call of the GEMM kernel takes) when there
/// are several panels: a wide kernel (AVX2: 2 panels, AVX-512: 4) takes several panels per call, but only
/// within a task, so a block of another size would leave its last panels to a narrower call. Grouping
/// never changes results (each element gets the same operations).
pub(crate) fn whole_calls(panels: u64, per_task: u64, call: u64) -> u64 {
    if panels > 1 {
        per_task.next_multiple_of(call.max(1))
    } else {
        per_task
    }
}

/// Whether rows of a plane of `plane` f32 values start on cache lines (64 bytes) when the plane does.
fn plane_aligned(plane: u64) -> bool {
    plane.is_multiple_of(16)
}

#[cfg(test)]
mod tests {
    use super::{dense_panels_per_task, split};

    /// Dense products pack their rows once per column block: blocks are as few as keep two tasks per
    /// thread, one on one thread; streamed weights keep 16 blocks.
    #[test]
    fn dense_products_take_few_column_blocks() {
        // 1024 units: 128 panels of 8 columns, calls of 2 panels.
        assert_eq!(dense_panels_per_task(256, 128, 2, 2), 32);
        assert_eq!(dense_panels_per_task(256, 128, 1, 2), 128);
        assert_eq!(dense_panels_per_task(64, 128, 4, 2), 16);
        // 600 rows are three row shares: two column blocks make six tasks on two threads.
        assert_eq!(dense_panels_per_task(600, 128, 2, 2), 64);
        assert_eq!(dense_panels_per_task(2048, 128, 2, 2), 128);
        // At most 12 rows the weights stream, in 16 blocks; blocks hold whole calls.
        assert_eq!(dense_panels_per_task(8, 128, 2, 2), 8);
        assert_eq!(dense_panels_per_task(8, 125, 1, 2), 8);
        assert_eq!(dense_panels_per_task(256, 1, 2, 2), 1);
    }

    /// Products with 1 MiB of weights or more take every column of an image per task, and share its rows
    /// between the threads only when there are fewer than two images per thread.
    #[test]
    fn big_weights_share_rows_below_two_images_per_thread() {
        // 1024 -> 256 1x1 at 14x14: 25 panels of 8 columns, calls of 2 panels, 64 row panels.
        let (m, k) = (256, 1024);
        assert_eq!(split(1, 25, (m, k), (2, 2)), (26, 2));
        assert_eq!(split(3, 25, (m, k), (2, 2)), (26, 2));
        assert_eq!(split(4, 25, (m, k), (2, 2)), (26, 1));
        assert_eq!(split(8, 25, (m, k), (4, 2)), (26, 1));
        assert_eq!(split(1, 25, (m, k), (1, 2)), (26, 1));
        // Smaller weights (128 -> 128 3x3, 576 KiB) split columns into blocks, whatever the batch.
        assert_eq!(split(1, 98, (128, 1152), (2, 2)), (6, 1));
        assert_eq!(split(8, 98, (128, 1152), (2, 2)), (8, 1));
    }
}
