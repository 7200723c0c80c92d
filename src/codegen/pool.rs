//! Max and average pooling from window tables: the runtime computes, at compile time, which input rows and
//! columns each output row and column reads (padding, ceil mode, dilation, adaptive windows) and the
//! divisors, so one kernel serves max, average, adaptive and global pooling. Windows are separable, so each
//! output row is computed in two passes: the window's input rows are reduced into a row buffer four columns
//! at a time (vector loads, scalar tail), then each output column reduces its few entries of that buffer:
//! four columns at a time where windows are whole and one column apart; where they are whole and two
//! columns apart (stride 2), four columns at a time from eight-value reads narrowed to their even lanes;
//! and where they are whole and further apart, every window position is reduced four at a time and the
//! columns pick theirs.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{Function, InstBuilder, Value};
use cranelift_codegen::isa::TargetFrontendConfig;

use super::builder::{Draft, Kb, Lanes};

/// Loads the i32 triple `(start, count, step)` number `i` of `table`, widened.
fn triple(kb: &mut Kb, table: Value, i: Value) -> [Value; 3] {
    let p = kb.addr(table, i, 12);
    [0, 4, 8].map(|o| {
        let v = kb.b.ins().load(I32, kb.flags, p, o);
        kb.b.ins().sextend(I64, v)
    })
}

/// `acc` combined with `v`: the maximum (NaN propagates, as in PyTorch: `v` wins when greater or NaN) or
/// the sum.
fn combine(kb: &mut Kb, lanes: Lanes, max: bool, acc: Value, v: Value) -> Value {
    if max {
        let gt = kb.fcmp(FloatCC::GreaterThan, v, acc);
        let nan = kb.fcmp(FloatCC::Unordered, v, v);
        let keep = kb.b.ins().bor(gt, nan);
        kb.select(lanes, keep, v, acc)
    } else {
        kb.b.ins().fadd(acc, v)
    }
}

/// The reduction (max or sum, from `init`) of `count` values at `base[first + j * step]`, `lanes` wide.
#[allow(clippy::too_many_arguments)]
fn reduce(
    kb: &mut Kb,
    lanes: Lanes,
    max: bool,
    init: f32,
    base: Value,
    first: Value,
    count: Value,
    step: Value,
) -> Value {
    reduce_with(kb, lanes, max, init, first, count, step, &|kb, at| {
        kb.load(lanes, base, at)
    })
}

/// The reduction (max or sum, from `init`) of the `count` values `load(first + j * step)`, in ascending
/// `j`, `lanes` wide.
#[allow(clippy::too_many_arguments)]
fn reduce_with(
    kb: &mut Kb,
    lanes: Lanes,
    max: bool,
    init: f32,
    first: Value,
    count: Value,
    step: Value,
    load: &dyn Fn(&mut Kb, Value) -> Value,
) -> Value {
    let start = kb.fconst(lanes, init);
    let acc = kb.var(lanes.float(), start);
    let three = kb.b.ins().icmp_imm_s(IntCC::Equal, count, 3);
    kb.if_else(
        three,
        |kb| {
            // The common 3-wide window, unrolled (the same operations in the same order as the loop).
            let mut at = first;
            let mut v = start;
            for j in 0..3 {
                if j > 0 {
                    at = kb.b.ins().iadd(at, step);
                }
                let x = load(kb, at);
                v = combine(kb, lanes, max, v, x);
            }
            kb.b.def_var(acc, v);
        },
        |kb| {
            kb.for_n(count, |kb, j| {
                let at = kb.b.ins().imul(j, step);
                let at = kb.b.ins().iadd(at, first);
                let v = load(kb, at);
                let cur = kb.b.use_var(acc);
                let next = combine(kb, lanes, max, cur, v);
                kb.b.def_var(acc, next);
            });
        },
    );
    kb.b.use_var(acc)
}

/// `[x, y, oh, ow, iw, rows, cols, div, planes, in_plane, row, v_lo, v_hi, v_start, v_count, v_step,
/// v_stride]`: see
/// [`super::KernelId::MaxPool`].
pub fn build(max: bool, config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| {
        let [x, y, oh, ow, iw, rows, cols, div, planes, in_plane, row] =
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(|i| kb.arg(i));
        let [v_lo, v_hi, v_start, v_count, v_step, v_stride] =
            [11, 12, 13, 14, 15, 16].map(|i| kb.arg(i));
        let init = if max { f32::NEG_INFINITY } else { 0.0 };
        let out_plane = kb.b.ins().imul(oh, ow);
        kb.for_n(planes, |kb, q| {
            let xo = kb.b.ins().imul(q, in_plane);
            let xq = kb.addr(x, xo, 4);
            let yo = kb.b.ins().imul(q, out_plane);
            let yq = kb.addr(y, yo, 4);
            kb.for_n(oh, |kb, r| {
                let [hs, hc, hstep] = triple(kb, rows, r);
                // Pass 1: the window's rows reduced into `row`, column by column.
                let first_row = kb.b.ins().imul(hs, iw);
                let row_step = kb.b.ins().imul(hstep, iw);
                kb.for_lanes(iw, |kb, lanes, c| {
                    let first = kb.b.ins().iadd(first_row, c);
                    let v = reduce(kb, lanes, max, init, xq, first, hc, row_step);
                    kb.store(v, row, c);
                });
                // Pass 2: each output column reduces its entries of `row`; four at a time where the
                // windows are whole and one column apart (`v_lo..v_hi`).
                let yr = kb.b.ins().imul(r, ow);
                let yr = kb.addr(yq, yr, 4);
                let rdiv = kb.load(Lanes::One, div, r);
                // Output column `c` from its window's reduction `v` (averages divide).
                let finish = |kb: &mut Kb, lanes: Lanes, c: Value, mut v: Value| {
                    if !max {
                        let oc = kb.b.ins().iadd(oh, c);
                        let cdiv = kb.load(lanes, div, oc);
                        let rd = kb.broadcast(lanes, rdiv);
                        let d = kb.b.ins().fmul(rd, cdiv);
                        v = kb.b.ins().fdiv(v, d);
                    }
                    kb.store(v, yr, c);
                };
                let column = |kb: &mut Kb, lanes: Lanes, c: Value, [ws, wc, wstep]: [Value; 3]| {
                    let v = reduce(kb, lanes, max, init, row, ws, wc, wstep);
                    finish(kb, lanes, c, v);
                };
                let zero = kb.iconst(0);
                kb.for_range(zero, v_lo, 1, |kb, c| {
                    let t = triple(kb, cols, c);
                    column(kb, Lanes::One, c, t);
                });
                kb.for_range(v_hi, ow, 1, |kb, c| {
                    let t = triple(kb, cols, c);
                    column(kb, Lanes::One, c, t);
                });
                let unit = kb.b.ins().icmp_imm_s(IntCC::Equal, v_stride, 1);
                kb.if_else(
                    unit,
                    |kb| {
                        kb.for_range(v_lo, v_hi, 4, |kb, c| {
                            let rel = kb.b.ins().isub(c, v_lo);
                            let ws = kb.b.ins().iadd(v_start, rel);
                            column(kb, Lanes::Four, c, [ws, v_count, v_step]);
                        });
                    },
                    |kb| {
                        let two = kb.b.ins().icmp_imm_s(IntCC::Equal, v_stride, 2);
                        kb.if_else(
                            two,
                            |kb| {
                                stride_two(
                                    kb,
                                    max,
                                    init,
                                    row,
                                    [v_lo, v_hi, v_start, v_count, v_step],
                                    &column,
                                    &finish,
                                )
                            },
                            |kb| {
                                // Windows three or more columns apart: first every window
                                // position of the run reduced in place, `row[i] = reduce_j
                                // row[i + j * v_step]` (ascending, so each read is still the
                                // input), four positions at a time; then each output column picks
                                // its window's position.
                                let run = kb.b.ins().isub(v_hi, v_lo);
                                let last = kb.b.ins().iadd_imm_s(run, -1);
                                let span = kb.b.ins().imul(last, v_stride);
                                let span = kb.b.ins().iadd_imm_s(span, 1);
                                let rs = kb.addr(row, v_start, 4);
                                kb.for_lanes(span, |kb, lanes, i| {
                                    let v = reduce(kb, lanes, max, init, rs, i, v_count, v_step);
                                    kb.store(v, rs, i);
                                });
                                kb.for_range(v_lo, v_hi, 1, |kb, c| {
                                    let rel = kb.b.ins().isub(c, v_lo);
                                    let at = kb.b.ins().imul(rel, v_stride);
                                    let v = kb.load(Lanes::One, rs, at);
                                    finish(kb, Lanes::One, c, v);
                                });
                            },
                        );
                    },
                );
            });
        });
    })
}

/// Output columns `v_lo..v_hi` of windows two columns apart, from the reduced rows in `row`: four columns
/// at a time, each window position `j` read as eight values from `v_start + 2 * rel + j * v_step` of which
/// the even lanes are kept; the last columns (whose eight-value reads would pass the run) one at a time.
#[allow(clippy::type_complexity)]
fn stride_two(
    kb: &mut Kb,
    max: bool,
    init: f32,
    row: Value,
    [v_lo, v_hi, v_start, v_count, v_step]: [Value; 5],
    column: &dyn Fn(&mut Kb, Lanes, Value, [Value; 3]),
    finish: &dyn Fn(&mut Kb, Lanes, Value, Value),
) {
    // Four columns from `c` read up to position 2 * (c - v_lo) + 7 of the run, which spans
    // 2 * (v_hi - v_lo) - 1 positions: whole groups while c + 4 < v_hi.
    // (An empty run, v_hi <= v_lo, has no groups.)
    let run = kb.b.ins().isub(v_hi, v_lo);
    let groups = kb.b.ins().iadd_imm_s(run, -1);
    let zero = kb.iconst(0);
    let groups = kb.b.ins().smax(groups, zero);
    let groups = kb.b.ins().ushr_imm_u(groups, 2);
    let vec_end = kb.b.ins().ishl_imm_u(groups, 2);
    let vec_end = kb.b.ins().iadd(v_lo, vec_end);
    let rs = kb.addr(row, v_start, 4);
    kb.for_range(v_lo, vec_end, 4, |kb, c| {
        let rel = kb.b.ins().isub(c, v_lo);
        let first = kb.b.ins().ishl_imm_u(rel, 1);
        let load = |kb: &mut Kb, at: Value| {
            let a = kb.addr(rs, at, 4);
            kb.evens(a, 0)
        };
        let v = reduce_with(kb, Lanes::Four, max, init, first, v_count, v_step, &load);
        finish(kb, Lanes::Four, c, v);
    });
    kb.for_range(vec_end, v_hi, 1, |kb, c| {
        let rel = kb.b.ins().isub(c, v_lo);
        let at = kb.b.ins().ishl_imm_u(rel, 1);
        let ws = kb.b.ins().iadd(v_start, at);
        column(kb, Lanes::One, c, [ws, v_count, v_step]);
    });
}

/// `[x, y, hw, w, planes, edges, div, v]`: see [`super::KernelId::MaxPool3`].
pub fn build_3x3(max: bool, config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| {
        let [x, y, hw, w, planes, edges, div, v] = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| kb.arg(i));
        let init = if max { f32::NEG_INFINITY } else { 0.0 };
        // `v` has room for four values on each side: the horizontal pass reads `v[-1]` and `v[hw]`.
        let v = kb.b.ins().iadd_imm_s(v, 16);
        let last = kb.b.ins().isub(hw, w);
        kb.for_n(planes, |kb, q| {
            let at = kb.b.ins().imul(q, hw);
            let xq = kb.addr(x, at, 4);
            let yq = kb.addr(y, at, 4);
            // Columns: rows y-1, y, y+1 where they exist (the first and last rows have two), in the order
            // the window tables give them.
            let zero = kb.iconst(0);
            for (from, to, up, down) in [
                (zero, w, false, true),
                (w, last, true, true),
                (last, hw, true, false),
            ] {
                let n = kb.b.ins().isub(to, from);
                kb.for_lanes(n, |kb, lanes, j| {
                    let i = kb.b.ins().iadd(from, j);
                    let mut acc = kb.fconst(lanes, init);
                    if up {
                        let a = kb.b.ins().isub(i, w);
                        let t = kb.load(lanes, xq, a);
                        acc = combine(kb, lanes, max, acc, t);
                    }
                    let c = kb.load(lanes, xq, i);
                    acc = combine(kb, lanes, max, acc, c);
                    if down {
                        let a = kb.b.ins().iadd(i, w);
                        let b = kb.load(lanes, xq, a);
                        acc = combine(kb, lanes, max, acc, b);
                    }
                    kb.store(acc, v, i);
                });
            }
            // Rows: left, centre, right neighbours of the column reductions, masked at row edges.
            kb.for_lanes(hw, |kb, lanes, i| {
                let mut acc = kb.fconst(lanes, init);
                for (d, table) in [(-1i64, Some(0i64)), (0, None), (1, Some(2))] {
                    let at = kb.b.ins().iadd_imm_s(i, d);
                    let mut t = kb.load(lanes, v, at);
                    if let Some(k) = table {
                        let mask = kb.b.ins().imul_imm_s(hw, 4 * k);
                        let mask = kb.b.ins().iadd(edges, mask);
                        let fill = kb.b.ins().imul_imm_s(hw, 4 * (k + 1));
                        let fill = kb.b.ins().iadd(edges, fill);
                        let m = kb.load(lanes, mask, i);
                        let f = kb.load(lanes, fill, i);
                        let kept = kb.b.ins().band(t, m);
                        t = kb.b.ins().bor(kept, f);
                    }
                    acc = combine(kb, lanes, max, acc, t);
                }
                if !max {
                    let d = kb.load(lanes, div, i);
                    acc = kb.b.ins().fdiv(acc, d);
                }
                kb.store(acc, yq, i);
            });
        });
    })
}
