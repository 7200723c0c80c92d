//! Convolutions with few input channels (a network's first layer) computed directly by
//! [`KernelId::ConvRows`] (`codegen/conv_rows.rs`: filters in the vector lanes, no patches packed), in
//! tasks of a band of output rows of one image. The same operations in the same order as the GEMM with
//! packed patches, so the same bits.
//!
//! It applies on CPUs with AVX2 and FMA to convolutions of at most [`MAX_CHANNELS`] input channels,
//! a multiple of 16 filters, one group, no dilation, the same stride (1, 2 or 4) both ways, no residual
//! to add, and an identity, ReLU or leaky ReLU epilogue: ResNet's and GoogLeNet's 7x7 stride-2 stems,
//! AlexNet's 11x11 stride 4, VGG's first 3x3, Inception v3's first 3x3 stride 2.

use crate::codegen::{self, ActKind, KernelId, CONV_ROWS_FILTERS, CONV_ROWS_STRIDES, KC};
use crate::ir::Op;
use crate::plan::Step;

use super::super::exec::{Addr, Arg, Exec, Region, Simple};
use super::products::Epilogue;
use super::{CompileError, Lower, ToPack};

/// The most input channels: the kernel reads a band of every channel's rows per task (3 for images;
/// with many channels a GEMM reads its weights with more reuse).
const MAX_CHANNELS: u64 = 4;

/// Output rows per task: about this many tasks per image, so two threads share the work evenly.
const TASKS: u64 = 16;

impl Lower<'_> {
    /// Convolution `op` as [`KernelId::ConvRows`] tasks, or `None` when it does not apply (see the
    /// module documentation).
    pub(super) fn conv_rows(
        &mut self,
        step: &Step,
        op: &Op,
        epi: &Epilogue,
    ) -> Result<Option<Exec>, CompileError> {
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
            return Ok(None);
        };
        let (xv, out) = (&step.inputs[0], &step.output);
        let (c, h, w) = (xv.dims[1], xv.dims[2], xv.dims[3]);
        let (oh, ow) = (out.dims[2], out.dims[3]);
        let fits = self.plan.conv_rows
            && codegen::conv_rows_by_default()
            && c <= MAX_CHANNELS
            && filters % CONV_ROWS_FILTERS as u64 == 0
            && groups == 1
            && dilation == [1, 1]
            && stride[0] == stride[1]
            && CONV_ROWS_STRIDES.contains(&stride[0])
            && !epi.accumulate
            && matches!(
                epi.act,
                ActKind::Identity | ActKind::Relu | ActKind::LeakyRelu
            );
        if !fits {
            return Ok(None);
        }
        let k = c * kernel[0] * kernel[1];
        let factor = epi.factor.as_deref();
        let packed = match self.weight_to_pack(step, 1)? {
            ToPack::F64(wt) => {
                codegen::pack_filter_blocks(wt, filters as usize, k as usize, factor)
            }
            ToPack::F32(wt) => {
                let packed = codegen::pack_filter_blocks(&wt, filters as usize, k as usize, factor);
                self.done_with(wt);
                packed
            }
        };
        let weights = self.own(packed);
        let b = if bias {
            Some(self.param(step, 2)?)
        } else {
            None
        };
        let shift = match epi.shift(b, filters as usize) {
            Some(t) => self.own(t),
            None => self.zeros(),
        };
        let scale = self.ones();
        let (xa, xs, _) = self.image(step, xv)?;
        let (ya, ys, _) = self.image(step, out)?;
        let rows = oh.div_ceil(TASKS);
        let shape = (c, kernel[0], kernel[1], stride[0]);
        let scratch = codegen::conv_rows_band_len(shape, ow, rows);
        let image = |addr: Addr, image_stride: u64| Arg::Ptr {
            addr,
            image_stride,
            chunk_stride: 0,
        };
        let mut args = vec![
            image(xa, xs),
            image(ya, ys),
            Arg::ptr(weights),
            Arg::ptr(scale),
            Arg::ptr(shift),
            Arg::ptr(Addr {
                region: Region::Scratch,
                offset: 0,
            }),
        ];
        let ints = [
            c, h, w, kernel[0], kernel[1], stride[0], pad[0], pad[2], oh, ow, filters,
        ];
        args.extend(ints.map(|v| Arg::Int(v as i64)));
        args.push(Arg::Start { chunk: rows });
        args.push(Arg::Len {
            total: oh,
            chunk: rows,
        });
        args.push(Arg::Int(epi.slope.to_bits() as i64));
        // The GEMM's k blocks (`products::conv`), whole channels each.
        let taps = kernel[0] * kernel[1];
        args.push(Arg::Int((KC as u64 / taps).max(1) as i64));
        Ok(Some(Exec::Simple(Simple {
            kernel: KernelId::ConvRows(epi.act),
            scratch,
            images: self.plan.batch,
            chunks: oh.div_ceil(rows),
            args,
        })))
    }
}
