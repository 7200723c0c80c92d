//! Pooling windows as tables, PyTorch's rules: for each output row and column, the input rows or columns
//! read (`start, count, step`) and the divisor of averaging. Windows are separable, so rows and columns are
//! tabulated apart.

use crate::ir::{window, Op};

/// One axis of a max pool: taps `o * s - pad + i * d` for `i < k`, kept when inside `0..len`.
fn max_axis(o: u64, len: u64, k: u64, s: u64, pad: u64, d: u64) -> [i32; 3] {
    let start0 = (o * s) as i64 - pad as i64;
    let d = d as i64;
    let lo = if start0 < 0 { (-start0 + d - 1) / d } else { 0 };
    let hi = ((len as i64 - 1 - start0).div_euclid(d)).min(k as i64 - 1);
    let count = (hi - lo + 1).max(0);
    [(start0 + lo * d) as i32, count as i32, d as i32]
}

/// `(rows, cols, divisors, is_max)` of a pooling op over an `h x w` plane with an `oh x ow` output.
pub fn tables(
    op: &Op,
    (h, w): (u64, u64),
    (oh, ow): (u64, u64),
) -> (Vec<i32>, Vec<i32>, Vec<f32>, bool) {
    let (mut rows, mut cols, mut divs) = (Vec::new(), Vec::new(), Vec::new());
    let is_max = matches!(op, Op::MaxPool2d { .. });
    for (axis, (len, outs)) in [(h, oh), (w, ow)].into_iter().enumerate() {
        let table = if axis == 0 { &mut rows } else { &mut cols };
        for o in 0..outs {
            let (t, div) = match op {
                Op::MaxPool2d {
                    kernel,
                    stride,
                    pad,
                    dilation,
                    ..
                } => (
                    max_axis(
                        o,
                        len,
                        kernel[axis],
                        stride[axis],
                        pad[2 * axis],
                        dilation[axis],
                    ),
                    1,
                ),
                Op::AvgPool2d {
                    kernel,
                    stride,
                    pad,
                    count_include_pad,
                    ..
                } => {
                    let w = window::average(
                        o as usize,
                        len as usize,
                        kernel[axis] as usize,
                        stride[axis] as usize,
                        pad[2 * axis] as usize,
                        pad[2 * axis + 1] as usize,
                    );
                    let count = w.end - w.start;
                    let t = [w.start as i32, count as i32, 1];
                    (
                        t,
                        if *count_include_pad {
                            w.padded_len as u64
                        } else {
                            count as u64
                        },
                    )
                }
                _ => {
                    let (a, b) = window::adaptive(o as usize, len as usize, outs as usize);
                    ([a as i32, (b - a) as i32, 1], (b - a) as u64)
                }
            };
            table.extend(t);
            divs.push(div as f32);
        }
    }
    (rows, cols, divs, is_max)
}

/// The longest run of output columns whose windows are whole and evenly spaced, cut to a multiple of 4:
/// `[lo, hi, start of lo's window, count, step, spacing]`, or all zeros.
pub fn vector_run(cols: &[i32]) -> [i64; 6] {
    let t: Vec<[i32; 3]> = cols.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
    let full = t.iter().map(|w| w[1]).max().unwrap_or(0);
    let (mut best, mut i) = ((0, 0, 1), 0);
    while i < t.len() {
        let spacing = t.get(i + 1).map_or(1, |n| n[0] - t[i][0]).max(1);
        let mut j = i;
        while j < t.len()
            && t[j][1] == full
            && t[j][2] == t[i][2]
            && t[j][0] == t[i][0] + (j - i) as i32 * spacing
        {
            j += 1;
        }
        if j - i > best.1 - best.0 {
            best = (i, j, spacing);
        }
        i = j.max(i + 1);
    }
    let (lo, len) = (best.0, (best.1 - best.0) / 4 * 4);
    if len == 0 || full == 0 {
        return [0, 0, 0, 0, 0, 1];
    }
    let w = t[lo];
    [
        lo as i64,
        (lo + len) as i64,
        w[0] as i64,
        w[1] as i64,
        w[2] as i64,
        best.2 as i64,
    ]
}

/// Whether the window tables are those of 3x3 windows with stride 1 and padding 1 over a plane of at least
/// 2x2, with an output of the input's size: `(o - 1, 3, 1)` clipped at both edges, on both axes.
pub fn same_3x3(rows: &[i32], cols: &[i32], (h, w): (u64, u64), (oh, ow): (u64, u64)) -> bool {
    let axis = |t: &[i32], len: u64| {
        len >= 2
            && t.len() as u64 == 3 * len
            && t.chunks(3).enumerate().all(|(o, w)| {
                let o = o as i64;
                let start = (o - 1).max(0);
                let end = (o + 1).min(len as i64 - 1);
                w[0] as i64 == start && w[1] as i64 == end - start + 1 && (w[1] == 1 || w[2] == 1)
            })
    };
    (oh, ow) == (h, w) && axis(rows, h) && axis(cols, w)
}
