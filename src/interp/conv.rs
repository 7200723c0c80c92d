//! Matrix ops: dense layers, 2-d convolution (as im2col + matrix product, per sample and group), and
//! embedding lookup; with their gradients.

use ndarray::{s, Array2, Array4, ArrayD, ArrayView2, Axis, Ix2, Ix4, IxDyn};

/// `x [.., in] . W^T + b`, over the last axis.
pub fn dense(x: &ArrayD<f64>, w: &ArrayD<f64>, b: Option<&ArrayD<f64>>) -> ArrayD<f64> {
    let w = w
        .view()
        .into_dimensionality::<Ix2>()
        .expect("dense weight is 2-d");
    let (_, x2) = rows_of(x);
    let mut y = x2.dot(&w.t());
    if let Some(b) = b {
        y += b;
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank >= 2") = w.nrows();
    y.to_shape(IxDyn(&shape))
        .expect("same element count")
        .into_owned()
}

/// A tensor as a matrix of rows over its last axis.
pub fn rows_of(x: &ArrayD<f64>) -> (usize, Array2<f64>) {
    let last = *x.shape().last().expect("rank >= 1");
    let rows = x.len() / last.max(1);
    let m = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((rows, last))
        .expect("row-major");
    (rows, m)
}

/// Geometry of one convolution.
#[derive(Clone, Copy)]
pub struct Geom {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub ho: usize,
    pub wo: usize,
    pub stride: [usize; 2],
    pub pad: [usize; 4],
    pub dilation: [usize; 2],
}

impl Geom {
    pub fn new(
        h: usize,
        w: usize,
        kernel: [usize; 2],
        stride: [u64; 2],
        pad: [u64; 4],
        dilation: [u64; 2],
    ) -> Geom {
        let stride = stride.map(|v| v as usize);
        let pad = pad.map(|v| v as usize);
        let dilation = dilation.map(|v| v as usize);
        let ho = (h + pad[0] + pad[1] - dilation[0] * (kernel[0] - 1) - 1) / stride[0] + 1;
        let wo = (w + pad[2] + pad[3] - dilation[1] * (kernel[1] - 1) - 1) / stride[1] + 1;
        Geom {
            h,
            w,
            kh: kernel[0],
            kw: kernel[1],
            ho,
            wo,
            stride,
            pad,
            dilation,
        }
    }

    /// The input cell a kernel tap reads for an output cell, if inside the (unpadded) input.
    #[inline]
    fn source(&self, oh: usize, ow: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let ih = (oh * self.stride[0] + i * self.dilation[0]).checked_sub(self.pad[0])?;
        let iw = (ow * self.stride[1] + j * self.dilation[1]).checked_sub(self.pad[2])?;
        (ih < self.h && iw < self.w).then_some((ih, iw))
    }
}

impl Geom {
    /// Calls `f(channel, patch_row, patch_col, ih, iw)` for every tap of channels `0..cg` that reads an input
    /// cell: the patch matrix entry `[patch_row, patch_col]` holds input `[channel, ih, iw]`.
    fn for_each_tap(&self, cg: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
        for c in 0..cg {
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let row = (c * self.kh + i) * self.kw + j;
                    for oh in 0..self.ho {
                        for ow in 0..self.wo {
                            if let Some((ih, iw)) = self.source(oh, ow, i, j) {
                                f(c, row, oh * self.wo + ow, ih, iw);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Patches of channels `c0..c0+cg` of one image `[C, H, W]`: `[cg*kh*kw, ho*wo]`.
pub fn im2col(x: &ndarray::ArrayView3<f64>, c0: usize, cg: usize, g: &Geom) -> Array2<f64> {
    let mut col = Array2::zeros((cg * g.kh * g.kw, g.ho * g.wo));
    g.for_each_tap(cg, |c, row, at, ih, iw| {
        col[[row, at]] = x[[c0 + c, ih, iw]]
    });
    col
}

/// The adjoint of `im2col`: adds patch gradients back into an image gradient `[C, H, W]`.
pub fn col2im(
    col: &ArrayView2<f64>,
    dx: &mut ndarray::ArrayViewMut3<f64>,
    c0: usize,
    cg: usize,
    g: &Geom,
) {
    g.for_each_tap(cg, |c, row, at, ih, iw| {
        dx[[c0 + c, ih, iw]] += col[[row, at]]
    });
}

fn as4(a: &ArrayD<f64>) -> ndarray::ArrayView4<'_, f64> {
    a.view().into_dimensionality::<Ix4>().expect("4-d tensor")
}

/// Cross-correlation as PyTorch's `conv2d`.
pub fn conv2d(
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    b: Option<&ArrayD<f64>>,
    stride: [u64; 2],
    pad: [u64; 4],
    dilation: [u64; 2],
    groups: u64,
) -> ArrayD<f64> {
    let (x, w) = (as4(x), as4(w));
    let (n, _, h, wd) = x.dim();
    let (f, cg, kh, kw) = w.dim();
    let groups = groups as usize;
    let fg = f / groups;
    let g = Geom::new(h, wd, [kh, kw], stride, pad, dilation);
    let mut y = Array4::zeros((n, f, g.ho, g.wo));
    for s in 0..n {
        let xs = x.index_axis(Axis(0), s);
        for gi in 0..groups {
            let col = im2col(&xs, gi * cg, cg, &g);
            let wg = w
                .slice(s![gi * fg..(gi + 1) * fg, .., .., ..])
                .to_owned()
                .into_shape_with_order((fg, cg * kh * kw))
                .expect("contiguous");
            let out = wg.dot(&col);
            let mut ys = y.slice_mut(s![s, gi * fg..(gi + 1) * fg, .., ..]);
            ys.assign(
                &out.to_shape((fg, g.ho, g.wo))
                    .expect("same count")
                    .into_owned(),
            );
        }
    }
    if let Some(b) = b {
        for (fi, bv) in b.iter().enumerate() {
            y.slice_mut(s![.., fi, .., ..]).mapv_inplace(|v| v + bv);
        }
    }
    y.into_dyn()
}

/// Gradients of a convolution: `(dx, dw)` given `dy`.
pub fn conv2d_grad(
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    stride: [u64; 2],
    pad: [u64; 4],
    dilation: [u64; 2],
    groups: u64,
) -> (ArrayD<f64>, ArrayD<f64>) {
    let (x, w, dy) = (as4(x), as4(w), as4(dy));
    let (n, c, h, wd) = x.dim();
    let (f, cg, kh, kw) = w.dim();
    let groups = groups as usize;
    let fg = f / groups;
    let g = Geom::new(h, wd, [kh, kw], stride, pad, dilation);
    let mut dx = Array4::<f64>::zeros((n, c, h, wd));
    let mut dw = Array4::<f64>::zeros((f, cg, kh, kw));
    for s in 0..n {
        let xs = x.index_axis(Axis(0), s);
        for gi in 0..groups {
            let col = im2col(&xs, gi * cg, cg, &g);
            let dyg = dy
                .slice(s![s, gi * fg..(gi + 1) * fg, .., ..])
                .to_owned()
                .into_shape_with_order((fg, g.ho * g.wo))
                .expect("contiguous");
            let wg = w
                .slice(s![gi * fg..(gi + 1) * fg, .., .., ..])
                .to_owned()
                .into_shape_with_order((fg, cg * kh * kw))
                .expect("contiguous");
            let dwg = dyg
                .dot(&col.t())
                .to_shape((fg, cg, kh, kw))
                .expect("same count")
                .into_owned();
            let mut dw_slice = dw.slice_mut(s![gi * fg..(gi + 1) * fg, .., .., ..]);
            dw_slice += &dwg;
            let dcol = wg.t().dot(&dyg);
            let mut dxs = dx.index_axis_mut(Axis(0), s);
            col2im(&dcol.view(), &mut dxs, gi * cg, cg, &g);
        }
    }
    (dx.into_dyn(), dw.into_dyn())
}

/// Rows of `w [vocab, dim]` picked by integer indices; `Err(index)` for the first index out of range.
pub fn embedding(
    idx: &ArrayD<i64>,
    w: &ArrayD<f64>,
    vocab: u64,
    dim: u64,
) -> Result<ArrayD<f64>, i64> {
    let mut shape = idx.shape().to_vec();
    shape.push(dim as usize);
    let mut out = Vec::with_capacity(idx.len() * dim as usize);
    for &i in idx.iter() {
        if i < 0 || i as u64 >= vocab {
            return Err(i);
        }
        out.extend(w.index_axis(Axis(0), i as usize).iter());
    }
    Ok(ArrayD::from_shape_vec(shape, out).expect("length matches"))
}
