//! Pooling and zero padding, forward and backward, with PyTorch's window and divisor rules.

use ndarray::{s, Array4, ArrayD, Ix4};

use crate::ir::window::{adaptive, average as window};
use crate::ir::Op;

fn as4(a: &ArrayD<f64>) -> ndarray::ArrayView4<'_, f64> {
    a.view().into_dimensionality::<Ix4>().expect("4-d tensor")
}

/// What output cell `(oh, ow)` of a pooling op reads from one input plane.
enum Reads {
    /// The window's maximum (the first maximum in row-major window order, or its last NaN, as PyTorch);
    /// `None` when the window lies entirely in padding.
    Max(Option<(usize, usize)>),
    /// The mean of `rows x cols` with the given divisor.
    Mean {
        rows: (usize, usize),
        cols: (usize, usize),
        divisor: f64,
    },
}

/// The cells output `(oh, ow)` of `op` reads, over an `h x w` plane, for an `ho x wo` output grid.
fn reads(
    op: &Op,
    plane: &ndarray::ArrayView2<f64>,
    (oh, ow): (usize, usize),
    (ho, wo): (usize, usize),
) -> Reads {
    let (h, w) = plane.dim();
    match op {
        Op::MaxPool2d {
            kernel,
            stride,
            pad,
            dilation,
            ..
        } => {
            let mut best: Option<(usize, usize, f64)> = None;
            for i in 0..kernel[0] as usize {
                for j in 0..kernel[1] as usize {
                    let ih =
                        (oh * stride[0] as usize + i * dilation[0] as usize) as i64 - pad[0] as i64;
                    let iw =
                        (ow * stride[1] as usize + j * dilation[1] as usize) as i64 - pad[2] as i64;
                    if ih < 0 || iw < 0 || ih as usize >= h || iw as usize >= w {
                        continue;
                    }
                    let v = plane[[ih as usize, iw as usize]];
                    if best.is_none_or(|(_, _, b)| v > b || v.is_nan()) {
                        best = Some((ih as usize, iw as usize, v));
                    }
                }
            }
            Reads::Max(best.map(|(i, j, _)| (i, j)))
        }
        Op::AvgPool2d {
            kernel,
            stride,
            pad,
            count_include_pad,
            ..
        } => {
            let wh = window(
                oh,
                h,
                kernel[0] as usize,
                stride[0] as usize,
                pad[0] as usize,
                pad[1] as usize,
            );
            let ww = window(
                ow,
                w,
                kernel[1] as usize,
                stride[1] as usize,
                pad[2] as usize,
                pad[3] as usize,
            );
            let divisor = if *count_include_pad {
                wh.padded_len * ww.padded_len
            } else {
                (wh.end - wh.start) * (ww.end - ww.start)
            };
            Reads::Mean {
                rows: (wh.start, wh.end),
                cols: (ww.start, ww.end),
                divisor: divisor as f64,
            }
        }
        Op::AdaptiveAvgPool2d { .. } | Op::GlobalAvgPool { .. } => {
            let (rows, cols) = (adaptive(oh, h, ho), adaptive(ow, w, wo));
            Reads::Mean {
                rows,
                cols,
                divisor: ((rows.1 - rows.0) * (cols.1 - cols.0)) as f64,
            }
        }
        _ => unreachable!("only pooling ops read windows"),
    }
}

/// The output grid: global pooling without kept dimensions outputs `[N, C]`, pooled as `[N, C, 1, 1]`.
fn grid(shape: &[usize]) -> (usize, usize) {
    if shape.len() == 4 {
        (shape[2], shape[3])
    } else {
        (1, 1)
    }
}

pub fn forward(op: &Op, x: &ArrayD<f64>, out_shape: &[usize]) -> ArrayD<f64> {
    let x = as4(x);
    let (n, c, _, _) = x.dim();
    let (ho, wo) = grid(out_shape);
    let mut y = Array4::<f64>::zeros((n, c, ho, wo));
    for b in 0..n {
        for ch in 0..c {
            let plane = x.slice(s![b, ch, .., ..]);
            for oh in 0..ho {
                for ow in 0..wo {
                    y[[b, ch, oh, ow]] = match reads(op, &plane, (oh, ow), (ho, wo)) {
                        Reads::Max(at) => at.map_or(f64::NEG_INFINITY, |(i, j)| plane[[i, j]]),
                        Reads::Mean {
                            rows,
                            cols,
                            divisor,
                        } => plane.slice(s![rows.0..rows.1, cols.0..cols.1]).sum() / divisor,
                    };
                }
            }
        }
    }
    y.into_shape_with_order(ndarray::IxDyn(out_shape))
        .expect("global pooling may drop the 1x1 axes")
}

/// Gradient of a pooling op: `dy` routed back to the input cells each output read.
pub fn backward(op: &Op, x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
    let xv = as4(x);
    let (n, c, h, w) = xv.dim();
    let mut dx = Array4::<f64>::zeros((n, c, h, w));
    let (ho, wo) = grid(dy.shape());
    let dy = dy
        .to_shape((n, c, ho, wo))
        .expect("pool gradient has the output's element count");
    for b in 0..n {
        for ch in 0..c {
            let plane = xv.slice(s![b, ch, .., ..]);
            for oh in 0..ho {
                for ow in 0..wo {
                    let g = dy[[b, ch, oh, ow]];
                    match reads(op, &plane, (oh, ow), (ho, wo)) {
                        Reads::Max(Some((i, j))) => dx[[b, ch, i, j]] += g,
                        Reads::Max(None) => {}
                        Reads::Mean {
                            rows,
                            cols,
                            divisor,
                        } => dx
                            .slice_mut(s![b, ch, rows.0..rows.1, cols.0..cols.1])
                            .mapv_inplace(|v| v + g / divisor),
                    }
                }
            }
        }
    }
    dx.into_dyn()
}

pub fn zeropad(x: &ArrayD<f64>, pad: [u64; 4]) -> ArrayD<f64> {
    let x = as4(x);
    let (n, c, h, w) = x.dim();
    let p = pad.map(|v| v as usize);
    let mut y = Array4::zeros((n, c, h + p[0] + p[1], w + p[2] + p[3]));
    y.slice_mut(s![.., .., p[0]..p[0] + h, p[2]..p[2] + w])
        .assign(&x);
    y.into_dyn()
}

/// Gradient of zero padding: the interior of `dy`.
pub fn zeropad_grad(dy: &ArrayD<f64>, pad: [u64; 4]) -> ArrayD<f64> {
    let dy = as4(dy);
    let (_, _, h, w) = dy.dim();
    let p = pad.map(|v| v as usize);
    dy.slice(s![.., .., p[0]..h - p[1], p[2]..w - p[3]])
        .to_owned()
        .into_dyn()
}
