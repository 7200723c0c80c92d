//! 3x3 and 5x5 stride-1 convolutions as Winograd's F(2x2, 3x3), F(4x4, 3x3) or F(2x2, 5x5) (Lavin and
//! Gray, 2016). 3x3: each 2x2
//! (4x4) block of outputs from a 4x4 (6x6) tile of inputs with 16 (36) multiplications per input and
//! output channel instead of 36 (144). [`KernelId::WinogradIn`] (`Winograd4In`) writes each tile's
//! transformed values `V = Bᵀ d B` as 16 (36) matrices `V_k [channels x tiles]`; a GEMM multiplies each
//! by its transformed weights `U_k = (G g Gᵀ)_k [filters x channels]` (computed in f64 and packed at
//! compile time, the batch-norm factor folded in) as 16 (36) groups of a 1x1 convolution that reads
//! `V_k` in place and stores raw sums; [`KernelId::WinogradOut`] (`Winograd4Out`) turns each tile's sums
//! into its outputs `Aᵀ M A` and applies the layer's epilogue (residual, bias and batch-norm shift,
//! activation).
//!
//! F(4x4, 3x3) where this CPU has its transforms (AVX2 and FMA: `codegen::winograd4_by_default`) and the
//! plane makes at least [`MIN_TILES4`] tiles of 4 with at most a fifth more outputs computed than kept
//! (ResNet's 56x56 and 28x28, VGG's 224x224 to 28x28, Inception v3's 35x35); otherwise F(2x2, 3x3).
//! Small planes whose tiles compute up to a third more than they keep (14x14 in tiles of 4, 7x7 in
//! tiles of 2 or 4) run as Winograd too when they have at least [`MIN_SMALL_CHANNELS`] channels and
//! filters and all images make at least [`MIN_SMALL`] tiles, in the staged form: ResNet's 14x14 as
//! F(4x4), its 7x7 as F(2x2) at batches 1 to 3 and F(4x4) from 4. Two threads (in-process A/B,
//! medians of paired ratios): ResNet-18 batch 1 1.065-1.085x, ResNet-50 batch 1 1.04x, batch 8 1.065x
//! (its 7x7 3x3 layers 7.1 -> 3.5 ms); GoogLeNet's 14x14 and 7x7 layers (96-192 channels) were 10-20%
//! slower so, hence the channel bound.
//! F(4x4, 3x3) also takes valid convolutions (padding 0, the output two rows and columns smaller:
//! Inception v3's stem), its input transform starting tiles at the plane's first row and column.
//!
//! 5x5 stride-1 convolutions (padding 2 or 0) run as F(2x2, 5x5) on the same CPUs (`codegen/winograd5.rs`:
//! 36 multiplications per 2x2 outputs instead of 100, F(4x4, 3x3)'s `Bᵀ`), under the same bounds as
//! F(2x2, 3x3) (tiles of 2 within a fifth, or small planes of many channels). One layer alone, two
//! threads, best of three runs of 100 (`nnc bench`, direct against F(2x2, 5x5)): AlexNet's 27x27 layer
//! (64 -> 192) 2.85 -> 1.41 ms, Inception v3's 35x35 ones (48 -> 64) 1.24 -> 0.74 ms. (torchvision's
//! GoogLeNet has 3x3 filters where the paper has 5x5.)
//!
//! Two forms with the same operations (so the same bits): one `exec::Winograd`, a task per block of
//! tiles ([`BLOCK`], or [`block4`]'s) through all three stages with `V` and `M` in its thread's scratch;
//! or, when blocks make fewer than four tasks per thread (and for small planes), three execs over whole
//! planes with `V` and `M` in two program buffers every such layer reuses (execs run one after
//! another), the images' tiles side by side in them, so the products are one GEMM of all images' tiles.
//!
//! It does not apply to other kernels, strides, dilations, paddings (or padding 0 with F(2x2, 3x3))
//! or groups, to sigmoid or tanh epilogues, to planes under [`MIN_PLANE`] pixels or whose tiles would
//! compute more than a fifth more outputs than they keep (a third for small planes, as above), to fewer
//! than [`MIN_CHANNELS`] channels or filters, or on CPUs without AVX2 and FMA (`codegen::winograd_by_default`: F(2x2)'s Cranelift
//! transforms work value by value; they are the reference the AVX2 and AVX-512 ones are checked
//! against). Results differ from the direct convolution's by rounding only:
//! the transforms of F(2x2, 3x3) take additions and halvings, those of F(4x4, 3x3) small constants (up
//! to 8, and sixths in `G`), so about ten times F(2x2)'s rounding; every JIT test compares against the
//! interpreter.

use crate::codegen::{ActKind, WinogradKind, KC, TILE_N};
use crate::ir::Op;
use crate::plan::Step;

use super::super::exec::{
    winograd_matrix_stride, Addr, Arg, Exec, Form, Gemm, Region, Segment, Simple, Winograd,
};
use super::products::{pack_conv, patches, split, whole_calls, Epilogue};
use super::{CompileError, Lower, ToPack};

/// The smallest plane (pixels) a convolution runs as Winograd on.
const MIN_PLANE: u64 = 7 * 7;

/// The fewest input channels and filters: the products' depth is the input channels (a 3-channel stem
/// is faster direct, with 27 taps per product).
const MIN_CHANNELS: u64 = 32;

/// The fewest tiles per image for F(4x4, 3x3) on planes that fit tiles of 4 within a fifth: fewer make
/// products of too few columns.
const MIN_TILES4: u64 = 36;

/// The fewest tiles of all images for a small plane's Winograd convolution (see [`Fit::Third`]): a
/// 7x7 plane's 16 tiles of 2 at batch 1, its 4 tiles of 4 from batch 4. One layer alone, two threads,
/// best of 3 x 30 (512 -> 512 at 7x7: direct, F(2x2), F(4x4)): batch 1 0.92, 0.64, 0.96 ms; batch 2 1.67,
/// 1.02, 1.71; batch 4 3.34, 2.41, 1.73; batch 8 6.68, 5.01, 3.00. 256 -> 256 at 14x14 (F(2x2) as
/// before, F(4x4)): batch 1 0.53, 0.40; batch 2 0.97, 0.71; batch 4 2.07, 1.69; batch 8 3.55, 3.50.
const MIN_SMALL: u64 = 16;

/// The fewest input channels and filters for a small plane's Winograd convolution (GoogLeNet's 96-192
/// were slower than direct or F(2x2); ResNet's 256 and 512 faster).
const MIN_SMALL_CHANNELS: u64 = 256;

/// Tiles per block of F(2x2, 3x3): two macro-kernel calls of 32 columns.
const BLOCK: u64 = 64;

/// `U = G g Gᵀ` of every `r x r` filter of `w` (`[filters, channels, r, r]`), as `n²` matrices `U_k
/// [filters, channels]` one after another (`G`, `g_mat`, has `n` rows of `r`).
/// `u`'s memory is reused from layer to layer (fresh pages cost a fault each: a 512 -> 512 layer's
/// `U` of F(2x2, 3x3) takes 34 MB in f64).
fn transform_weights<T: Copy + Into<f64>>(
    w: &[T],
    filters: usize,
    channels: usize,
    g_mat: &[&[f64]],
    u: &mut Vec<f64>,
) {
    let (n, r) = (g_mat.len(), g_mat[0].len());
    // Every value is written below.
    u.resize(n * n * filters * channels, 0.0);
    // `G g` (`n` rows of `r`).
    let mut t = vec![0.0; n * r];
    for (f, g) in w.chunks_exact(r * r).enumerate() {
        for (i, row) in t.chunks_exact_mut(r).enumerate() {
            for (j, e) in row.iter_mut().enumerate() {
                *e = (0..r).map(|k| g_mat[i][k] * g[k * r + j].into()).sum();
            }
        }
        for i in 0..n {
            for j in 0..n {
                let v: f64 = (0..r).map(|k| t[i * r + k] * g_mat[j][k]).sum();
                u[(n * i + j) * filters * channels + f] = v;
            }
        }
    }
}

/// Output tiles of `m x m` (2 or 4) for an `h x w` plane: rows, columns, and how many more outputs they
/// compute than they keep (odd sides round up to whole tiles: with tiles of 2, 13x13 computes 14x14
/// (1.16x), 7x7 8x8 (1.31x); with tiles of 4, 14x14 computes 16x16 (1.31x), 17x17 20x20 (1.38x)).
fn tiling(m: u64, h: u64, w: u64) -> (u64, u64, Fit) {
    let (th, tw) = (h.div_ceil(m), w.div_ceil(m));
    let (computed, kept) = (m * m * th * tw, h * w);
    let fit = if 5 * computed <= 6 * kept {
        Fit::Fifth
    } else if 3 * computed <= 4 * kept {
        Fit::Third
    } else {
        Fit::Over
    };
    (th, tw, fit)
}

/// How many more outputs a plane's tiles compute than it keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// At most a fifth more.
    Fifth,
    /// At most a third more.
    Third,
    Over,
}

/// Tiles of F(4x4, 3x3) per block, from a cost per tile in bytes moved to or from L3: every block
/// reads all the transformed weights `U` (`36 c m` values; for 256 channels and filters 9 MiB, never
/// in L2), and a block whose `V` and `M` (`36 (c + m)` values per tile) pass 2 MiB, the L2 of this
/// machine's cores, writes and reads them back through L3. One thread, best of 20 (both variants in
/// one process, alternating): 256 -> 256 at 56x56 9.5 ms with blocks of 16, 8.4 with 64, 7.6 with 128,
/// 7.1 with 196; 128 -> 128 at 112x112 9.5 with 32 against 11.0 with 64; 128 -> 256 at 56x56 4.9 with
/// 32 against 5.5 with 64 (VGG16's layers).
fn block4(channels: u64, filters: u64) -> u64 {
    let u = 36 * channels * filters * 4;
    let per_tile = 36 * (channels + filters) * 4;
    let cost = |b: u64| {
        u / b
            + if per_tile * b > 2 << 20 {
                2 * per_tile
            } else {
                0
            }
    };
    [16, 32, 64, 128, 256]
        .into_iter()
        .min_by_key(|&b| cost(b))
        .expect("candidates")
}

impl Lower<'_> {
    /// The execs of convolution `op` as Winograd F(4x4, 3x3), F(2x2, 3x3) or F(2x2, 5x5), or `None` when
    /// it does not apply (see the module documentation).
    pub(super) fn winograd(
        &mut self,
        step: &Step,
        op: &Op,
        epi: &Epilogue,
    ) -> Result<Option<Vec<Exec>>, CompileError> {
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
        let (c, in_h, in_w) = (xv.dims[1], xv.dims[2], xv.dims[3]);
        // 3x3 filters, or 5x5 where this CPU has F(2x2, 5x5)'s transforms. Padding half the filter (the
        // output the input's size), or 0 (a valid convolution, two or four rows and columns smaller).
        let (r, p) = (kernel[0], pad[0]);
        let half = r / 2;
        let (h, w) = (out.dims[2], out.dims[3]);
        let fits = (kernel == [3, 3] || kernel == [5, 5] && self.winograd4)
            && stride == [1, 1]
            && dilation == [1, 1]
            && (pad == [half; 4] || pad == [0; 4])
            && groups == 1
            && matches!(
                epi.act,
                ActKind::Identity | ActKind::Relu | ActKind::LeakyRelu
            )
            && c >= MIN_CHANNELS
            && filters >= MIN_CHANNELS
            && h * w >= MIN_PLANE
            && [h + 2 * half - 2 * p, w + 2 * half - 2 * p] == [in_h, in_w];
        if !self.winograd || !fits {
            return Ok(None);
        }
        // Tiles of 4 where they fit the plane and are many enough, else of 2 (padding 1 only: F(2x2)'s
        // transforms take no other).
        let batch = self.plan.batch;
        // Small planes (a third more outputs computed than kept) need many channels and filters, and
        // enough tiles in all images for the products.
        let wide = c.min(filters) >= MIN_SMALL_CHANNELS;
        let enough = |th: u64, tw: u64| wide && batch * th * tw >= MIN_SMALL;
        let (kind, small) = match (r, tiling(4, h, w), tiling(2, h, w)) {
            (5, _, (_, _, Fit::Fifth)) => (WinogradKind::F2x5, false),
            (5, _, (th, tw, Fit::Third)) if enough(th, tw) => (WinogradKind::F2x5, true),
            (5, _, _) => return Ok(None),
            (_, (th, tw, Fit::Fifth), _) if self.winograd4 && th * tw >= MIN_TILES4 => {
                (WinogradKind::F4x3, false)
            }
            // Not by threads: results must not depend on them (on one thread F(2x2)'s blocked form
            // would beat F(4x4) at 14x14, 1.00 against 1.09 ms, two threads the other way round).
            (_, (th, tw, Fit::Third), _) if self.winograd4 && enough(th, tw) => {
                (WinogradKind::F4x3, true)
            }
            (_, _, (_, _, Fit::Fifth)) if p == 1 => (WinogradKind::F2x3, false),
            (_, _, (th, tw, Fit::Third)) if p == 1 && enough(th, tw) => (WinogradKind::F2x3, true),
            _ => return Ok(None),
        };
        let (th, tw, _) = tiling(kind.out(), h, w);
        let n2 = kind.values();
        let m = filters;
        let kblock = KC as u64;
        let shape = (n2 as usize, m as usize, c as usize, kblock as usize);
        // The batch-norm factor of each filter, for each of the matrices.
        let factor: Option<Vec<f64>> = epi.factor.as_ref().map(|f| f.repeat(n2 as usize));
        let g_mat = kind.g();
        let mut u = std::mem::take(&mut self.winograd_u);
        let packed = match self.weight_to_pack(step, 1)? {
            ToPack::F64(wt) => {
                transform_weights(wt, m as usize, c as usize, g_mat, &mut u);
                pack_conv(&u, shape, factor.as_deref())
            }
            ToPack::F32(wt) => {
                transform_weights(&wt, m as usize, c as usize, g_mat, &mut u);
                self.done_with(wt);
                pack_conv(&u, shape, factor.as_deref())
            }
        };
        self.winograd_u = u;
        let group_weight_stride = crate::codegen::packed_a_len(m as usize, c as usize) as u64;
        let weights = self.own(packed);
        let b = if bias {
            Some(self.param(step, 2)?)
        } else {
            None
        };
        let shift = match epi.shift(b, m as usize) {
            Some(t) => self.own(t),
            None => self.zeros(),
        };
        let (xa, xs, _) = self.image(step, xv)?;
        let (ya, ys, _) = self.image(step, out)?;
        let tiles = th * tw;
        let block = if n2 == 36 { block4(c, m) } else { BLOCK }.min(tiles);
        let call_panels = self.call_panels;
        if small || self.threads > 1 && batch * tiles.div_ceil(block) < 4 * self.threads {
            let geometry = Geometry {
                x: (xa, xs),
                y: (ya, ys),
                c,
                m,
                h,
                w,
                input: (in_h, in_w, p),
                kind,
            };
            return Ok(Some(self.staged(
                geometry,
                (weights, group_weight_stride),
                shift,
                epi,
            )));
        }
        let ld = block.next_multiple_of(16);
        let (v_at, m_at) = Winograd::scratch_at(call_panels, n2 * winograd_matrix_stride(c, ld));
        let scratch = |offset: u64| Addr {
            region: Region::Scratch,
            offset,
        };
        // The products of a block of `n` tiles, in scratch.
        let mut product = |n: u64| {
            let panels = n.div_ceil(TILE_N as u64);
            let split = (whole_calls(panels, panels, call_panels), 1);
            let shape = (m, c, n, ld, n2);
            let at = (scratch(v_at), scratch(m_at));
            self.products((weights, group_weight_stride), shape, at, split)
        };
        let full = product(block);
        let last = match tiles % block {
            0 => full.clone(),
            n => product(n),
        };
        Ok(Some(vec![Exec::Winograd(Box::new(Winograd {
            x: xa,
            x_image_stride: xs,
            y: ya,
            y_image_stride: ys,
            channels: c,
            filters: m,
            h,
            w,
            in_hw: (in_h, in_w),
            pad: p,
            kind,
            block,
            shift,
            act: epi.act,
            slope: epi.slope,
            accumulate: epi.accumulate,
            images: batch,
            full,
            last,
        }))]))
    }

    /// A Winograd convolution as three execs over whole planes, for planes whose blocks make too few
    /// tasks to share between the threads (at batch 1 on two threads: 28x28 and smaller) and small
    /// planes: the input transform shared by channels, the 16 (36) products by groups, rows and columns
    /// as any GEMM, the output transform by filters, with `V` and `M` in two program buffers that every
    /// such layer reuses (execs run one after another), all images' tiles side by side in them. The
    /// same operations as the blocked exec, so the same bits.
    fn staged(
        &mut self,
        Geometry {
            x,
            y,
            c,
            m,
            h,
            w,
            input: (in_h, in_w, p),
            kind,
        }: Geometry,
        (weights, group_weight_stride): (Addr, u64),
        shift: Addr,
        epi: &Epilogue,
    ) -> Vec<Exec> {
        let batch = self.plan.batch;
        let (th, tw, _) = tiling(kind.out(), h, w);
        let n2 = kind.values();
        let tiles = th * tw;
        // The images' tiles side by side: image `i`'s tile `t` is column `i tiles + t` of each matrix,
        // so the products are one GEMM of `batch tiles` columns per matrix (a 7x7 plane's 16 tiles
        // would make products of one panel, reading all the weights per image).
        let n = batch * tiles;
        let ld = n.next_multiple_of(16);
        let (vs, ms) = (winograd_matrix_stride(c, ld), winograd_matrix_stride(m, ld));
        let (va, ma) = self.winograd_buffers(n2 * vs, n2 * ms);
        let [kin, kout] = kind.kernels(epi.act);
        let ptr = |addr: Addr, image_stride: u64, chunk_stride: u64| Arg::Ptr {
            addr,
            image_stride,
            chunk_stride,
        };
        let ints = |v: &[u64]| v.iter().map(|&x| Arg::Int(x as i64)).collect::<Vec<_>>();
        // About 16 tasks per image for each transform.
        let (ci, co) = (c.div_ceil(16), m.div_ceil(16));
        let mut args = vec![
            ptr(x.0, x.1, ci * in_h * in_w),
            ptr(va, tiles, ci * ld),
            Arg::Len {
                total: c,
                chunk: ci,
            },
        ];
        args.extend(ints(&[in_h, in_w, tw, tiles, ld, vs, 0]));
        if kind.takes_pad() {
            args.push(Arg::Int(p as i64));
        }
        let input = Exec::Simple(Simple {
            kernel: kin,
            scratch: 0,
            images: batch,
            chunks: c.div_ceil(ci),
            args,
        });
        let panels = n.div_ceil(TILE_N as u64);
        let split = split(n2, panels, (m, c), (self.threads, self.call_panels));
        let product = self.products(
            (weights, group_weight_stride),
            (m, c, n, ld, n2),
            (va, ma),
            split,
        );
        let product = Exec::Gemm(Box::new(product));
        let mut args = vec![
            ptr(ma, tiles, co * ld),
            ptr(y.0, y.1, co * h * w),
            Arg::Len {
                total: m,
                chunk: co,
            },
        ];
        args.extend(ints(&[h, w, tw, tiles, ld, ms]));
        args.push(ptr(shift, 0, co));
        args.push(Arg::Int(epi.accumulate as i64));
        args.push(Arg::Int(epi.slope.to_bits() as i64));
        args.push(Arg::Int(0));
        let output = Exec::Simple(Simple {
            kernel: kout,
            scratch: 0,
            images: batch,
            chunks: m.div_ceil(co),
            args,
        });
        vec![input, product, output]
    }

    /// The 16 (36) products `M_k = U_k V_k` of `n` tiles (a block's, or all images' side by side) as
    /// one GEMM of 16 (36) groups: `V_k` read in place (rows of `ld` values, whole panels long) from `v`,
    /// `M_k` written raw (no epilogue) to `out`, in tasks of `split` (panels per task, row splits).
    fn products(
        &mut self,
        (weights, group_weight_stride): (Addr, u64),
        (m, c, n, ld, n2): (u64, u64, u64, u64, u64),
        (v, out): (Addr, Addr),
        (panels_per_task, row_splits): (u64, u64),
    ) -> Gemm {
        let (table, runs, panel_map) = patches([1, 1], ([1, 1], [0; 4], [1, 1]), (1, ld), (n, n));
        let (ones, zeros) = (self.ones(), self.zeros());
        Gemm {
            act: ActKind::Identity,
            slope: 0.0,
            accumulate: false,
            m,
            n,
            k: c,
            kblock: KC as u64,
            form: Form::Conv {
                input: v,
                in_image_stride: 0,
                in_group_stride: winograd_matrix_stride(c, ld),
                plane: ld,
                taps: 1,
                table: self.own(table),
                runs: self.own(runs),
                panels: panel_map.into(),
                direct: true,
                winograd: true,
            },
            weights,
            group_weight_stride,
            row_scale: ones,
            row_shift: zeros,
            col_shift: zeros,
            outs: vec![Segment {
                first: 0,
                rows: m,
                out,
                image_stride: 0,
            }],
            ldc: ld,
            groups: n2,
            images: 1,
            panels_per_task,
            row_splits,
            shares_first: true,
            call_panels: self.call_panels,
        }
    }

    /// The program's buffers for the staged execs' `V` and `M`, grown to `v` and `m` values.
    fn winograd_buffers(&mut self, v: u64, m: u64) -> (Addr, Addr) {
        let (va, ma) = match self.winograd_mem {
            Some(b) => b,
            None => {
                let va = self.own(Vec::new());
                let ma = self.own(Vec::new());
                self.winograd_mem = Some((va, ma));
                (va, ma)
            }
        };
        for (a, len) in [(va, v), (ma, m)] {
            let Region::Owned(i) = a.region else {
                unreachable!("program memory")
            };
            if (self.owned[i].len() as u64) < len {
                self.owned[i].resize(len as usize, 0.0);
            }
        }
        (va, ma)
    }
}

/// Where a staged Winograd convolution reads and writes (address and image stride of its input and
/// output), its channels, filters and output plane.
struct Geometry {
    x: (Addr, u64),
    y: (Addr, u64),
    c: u64,
    m: u64,
    h: u64,
    w: u64,
    /// The input plane and its padding.
    input: (u64, u64, u64),
    kind: WinogradKind,
}
