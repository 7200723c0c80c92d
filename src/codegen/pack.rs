//! Packing for the GEMM macro-kernel. Weights are packed once, at compile time, by the Rust functions here;
//! activations are packed at run time, panel by panel, by generated kernels (`build_patches`,
//! `build_rows`), so that no full im2col matrix is ever materialized.
//!
//! Layouts: A (the left operand, `m x k`) in blocks of [`KC`] along k, each block in panels of [`TILE_M`]
//! rows, `[kblock][panel][p][r]`; B (the right operand, `k x n`, a dense layer's weights) likewise in
//! groups of 8 to 32 columns (the runtime's choice, `runtime::exec::dense_b_width`), `[kblock][group][p]
//! [c]`: the [`TILE_N`]-column panels of a group side by side, so that a kernel call reads each row of its
//! columns contiguously ([`b_panel_offset`]).
//! ([`KC`]: super::KC) Missing rows and columns are zeros.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I32, I64, I8X16};
use cranelift_codegen::ir::{ConstantData, Endianness, Function, InstBuilder, MemFlagsData, Value};
use cranelift_codegen::isa::TargetFrontendConfig;

use super::builder::{Draft, Kb, Lanes};
use super::gemm::{TILE_M, TILE_N};

/// Where panel `i` of the k block starting at `k0` begins in a packed operand with `panels` panels of
/// `tile` lanes, depth `k` and k blocks of `kb` (elements).
pub fn panel_offset(panels: usize, tile: usize, k: usize, kb: usize, k0: usize, i: usize) -> usize {
    k0 * panels * tile + i * kb.min(k - k0) * tile
}

/// Where panel `p` (of [`TILE_N`] columns) of the k block starting at `k0` begins in packed B (`n`
/// columns in groups of `width`, depth `k`, k blocks of `kb`); its rows are `width` values apart, and
/// panel `p + 1` starts [`TILE_N`] values after it when both are in one group.
pub fn b_panel_offset(n: usize, k: usize, kb: usize, k0: usize, p: usize, width: usize) -> usize {
    let per = width / TILE_N;
    panel_offset(n.div_ceil(width), width, k, kb, k0, p / per) + (p % per) * TILE_N
}

/// The length of `a [m x k]` in the packed A layout.
pub fn packed_a_len(m: usize, k: usize) -> usize {
    m.div_ceil(TILE_M) * TILE_M * k
}

/// Row-major `a [m x k]` (f32 or f64) in the packed A layout, into `out` (of [`packed_a_len`] values),
/// each row times `scale[row]` if given.
pub fn pack_a_into<T: Copy + Into<f64>>(
    a: &[T],
    m: usize,
    k: usize,
    kb: usize,
    scale: Option<&[f64]>,
    out: &mut [f32],
) {
    pack_panels(a, m, k, kb, TILE_M, scale, out);
}

/// Row-major `a [m x k]` (f32 or f64) as [`KernelId::ConvRows`](super::KernelId)'s weights: blocks of
/// 16 rows (filters), each `k` vectors of the 16 rows' values, each row times `scale[row]` if given
/// (rounded as [`pack_a_into`] rounds). `m` is a multiple of 16.
pub fn pack_filter_blocks<T: Copy + Into<f64>>(
    a: &[T],
    m: usize,
    k: usize,
    scale: Option<&[f64]>,
) -> Vec<f32> {
    let tile = super::conv_rows::FILTERS;
    let mut out = vec![0.0; m.div_ceil(tile) * tile * k];
    pack_panels(a, m, k, k, tile, scale, &mut out);
    out
}

/// Packs the rows of `a [rows x k]` into panels of `tile` rows (k blocks of `kb`), writing `out` in order,
/// each row times `scale[row]` if given (the product rounded once, to f32).
fn pack_panels<T: Copy + Into<f64>>(
    a: &[T],
    rows: usize,
    k: usize,
    kb: usize,
    tile: usize,
    scale: Option<&[f64]>,
    out: &mut [f32],
) {
    let panels = rows.div_ceil(tile);
    for k0 in (0..k).step_by(kb.max(1)) {
        let kc = kb.min(k - k0);
        for i in 0..panels {
            let base = panel_offset(panels, tile, k, kb, k0, i);
            let here = tile.min(rows - i * tile);
            let dst = &mut out[base..base + kc * tile];
            for r in 0..here {
                let src = &a[(i * tile + r) * k + k0..][..kc];
                let dst = dst[r..].iter_mut().step_by(tile).zip(src);
                match scale {
                    Some(s) => {
                        let s = s[i * tile + r];
                        for (d, &v) in dst {
                            *d = (v.into() * s) as f32;
                        }
                    }
                    None => {
                        for (d, &v) in dst {
                            *d = v.into() as f32;
                        }
                    }
                }
            }
        }
    }
}

/// `b [k x n]`, given as its transpose `bt [n x k]` row-major (a dense layer's weight), in the packed B
/// layout with groups of `width` columns (a multiple of [`TILE_N`]), each column times `scale[column]` if given.
pub fn pack_b_transposed<T: Copy + Into<f64>>(
    bt: &[T],
    k: usize,
    n: usize,
    kb: usize,
    width: usize,
    scale: Option<&[f64]>,
) -> Vec<f32> {
    let groups = n.div_ceil(width);
    let mut out = vec![0.0; groups * width * k];
    pack_panels(bt, n, k, kb, width, scale, &mut out);
    out
}

/// `b [k x n]` row-major in the packed B layout with groups of `width` columns.
pub fn pack_b(b: &[f32], k: usize, n: usize, kb: usize, width: usize) -> Vec<f32> {
    let mut bt = vec![0.0; k * n];
    for p in 0..k {
        for c in 0..n {
            bt[c * k + p] = b[p * n + c];
        }
    }
    pack_b_transposed(&bt, k, n, kb, width, None)
}

/// i32 per tap in `PackPatches`' `runs` table: `[kind, a1, a2, 0, mask1 x 8, mask2 x 8]` (see
/// [`super::KernelId::PackPatches`]).
pub const TAP_READ: usize = 20;

/// `[x, out, taps, table, ci0, ci1, plane, runs, ld]`: see [`super::KernelId::PackPatches`].
pub fn build_patches(config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| {
        let [x, out, taps, table, ci0, ci1, plane, runs, ld] =
            [0, 1, 2, 3, 4, 5, 6, 7, 8].map(|i| kb.arg(i));
        let zero = kb.b.ins().f32const(0.0);
        let plane_bytes = kb.b.ins().imul_imm_s(plane, 4);
        let ld_bytes = kb.b.ins().imul_imm_s(ld, 4);
        let row_bytes = kb.b.ins().imul(taps, ld_bytes);
        kb.for_range(ci0, ci1, 1, |kb, ci| {
            let off = kb.b.ins().imul(ci, plane_bytes);
            let xc = kb.b.ins().iadd(x, off);
            let rel = kb.b.ins().isub(ci, ci0);
            let o = kb.b.ins().imul(rel, row_bytes);
            let o = kb.b.ins().iadd(out, o);
            kb.for_n(taps, |kb, t| {
                let tb = kb.b.ins().imul_imm_s(t, (TILE_N * 4) as i64);
                let tp = kb.b.ins().iadd(table, tb);
                let ob = kb.b.ins().imul(t, ld_bytes);
                let op = kb.b.ins().iadd(o, ob);
                let flags = kb.flags;
                let rp = kb.addr(runs, t, (TAP_READ * 4) as i64);
                let kind = kb.b.ins().load(I32, flags, rp, 0);
                let run = kb.b.ins().icmp_imm_s(IntCC::Equal, kind, 1);
                // Kind 1 (most taps) is tested first and alone.
                kb.if_else(
                    run,
                    |kb| {
                        let first = kb.b.ins().load(I32, flags, tp, 0);
                        let first = kb.b.ins().sextend(I64, first);
                        let src = kb.addr(xc, first, 4);
                        for h in 0..2 {
                            let v = kb.b.ins().load(F32X4, flags, src, 16 * h);
                            kb.b.ins().store(flags, v, op, 16 * h);
                        }
                    },
                    |kb| {
                        // Kinds 2 and 3: two runs read with stride 1 or 2 (16 values narrowed
                        // to their even lanes), each kept under its lane mask.
                        for (code, stride) in [(2, 1), (3, 2)] {
                            let this = kb.b.ins().icmp_imm_s(IntCC::Equal, kind, code);
                            kb.when(this, |kb| {
                                let src = |kb: &mut Kb, at: i32| {
                                    let a = kb.b.ins().load(I32, flags, rp, at);
                                    let a = kb.b.ins().sextend(I64, a);
                                    kb.addr(xc, a, 4)
                                };
                                let (s1, s2) = (src(kb, 4), src(kb, 8));
                                let read = |kb: &mut Kb, s: Value, h: i32| match stride {
                                    1 => kb.b.ins().load(F32X4, flags, s, 16 * h),
                                    _ => kb.evens(s, 32 * h),
                                };
                                for h in 0..2 {
                                    let v1 = read(kb, s1, h);
                                    let v2 = read(kb, s2, h);
                                    let m1 = kb.b.ins().load(F32X4, flags, rp, 16 + 16 * h);
                                    let m2 = kb.b.ins().load(F32X4, flags, rp, 48 + 16 * h);
                                    let v1 = kb.b.ins().band(v1, m1);
                                    let v2 = kb.b.ins().band(v2, m2);
                                    let v = kb.b.ins().bor(v1, v2);
                                    kb.b.ins().store(flags, v, op, 16 * h);
                                }
                            });
                        }
                        // Kind 0, and kinds 4 and 5 (strides 3 and 4), value by value.
                        let none = kb.b.ins().icmp_imm_s(IntCC::Equal, kind, 0);
                        let far =
                            kb.b.ins()
                                .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, kind, 4);
                        let other = kb.b.ins().bor(none, far);
                        kb.when(other, |kb| {
                            for j in 0..TILE_N as i32 {
                                let idx = kb.b.ins().load(I32, flags, tp, 4 * j);
                                let inside =
                                    kb.b.ins()
                                        .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, idx, 0);
                                let zero32 = kb.b.ins().iconst(I32, 0);
                                let clamped = kb.b.ins().smax(idx, zero32);
                                let wide = kb.b.ins().sextend(I64, clamped);
                                let v = kb.load(Lanes::One, xc, wide);
                                let v = kb.b.ins().select(inside, v, zero);
                                kb.b.ins().store(flags, v, op, 4 * j);
                            }
                        });
                    },
                );
            });
        });
    })
}

/// Interleaves the 32-bit lanes of the low halves (`[a0 b0 a1 b1]`, x64 `punpckldq`), of the high halves
/// (`[a2 b2 a3 b3]`, `punpckhdq`), then the 64-bit halves (`[a0 a1 b0 b1]`, `punpcklqdq`; `[a2 a3 b2 b3]`,
/// `punpckhqdq`): byte masks over `a ++ b`, the patterns Cranelift lowers to one instruction each.
const UNPACK: [[u8; 16]; 4] = [
    [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23],
    [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31],
    [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
    [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31],
];

/// `[x, out, rows, k0, k1, ld]`: see [`super::KernelId::PackRows`]. A whole panel (4 rows) is packed four
/// columns at a time, as a 4x4 transpose in registers; the remaining columns, and panels of fewer rows,
/// one value at a time.
pub fn build_rows(config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| {
        let [x, out, rows, k0, k1, ld] = [0, 1, 2, 3, 4, 5].map(|i| kb.arg(i));
        let zero = kb.b.ins().f32const(0.0);
        let ld_bytes = kb.b.ins().imul_imm_s(ld, 4);
        let masks = UNPACK.map(|m| {
            kb.b.func
                .dfg
                .immediates
                .push(ConstantData::from(m.as_slice()))
        });
        let lanes = MemFlagsData::new().with_endianness(Endianness::Little);
        let full = kb.b.ins().icmp_imm_s(IntCC::Equal, rows, TILE_M as i64);
        // Column `k0 + i`: its source address and where its packed values go.
        let at = |kb: &mut Kb, i: Value| {
            let p = kb.b.ins().iadd(k0, i);
            let o = kb.b.ins().imul_imm_s(i, (TILE_M * 4) as i64);
            (kb.addr(x, p, 4), kb.b.ins().iadd(out, o))
        };
        // One column, value by value (zeros past `rows`).
        let column = |kb: &mut Kb, i: Value| {
            let (xp, o) = at(kb, i);
            for r in 0..TILE_M as i64 {
                let present = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, rows, r);
                let flags = kb.flags;
                kb.if_else(
                    present,
                    |kb| {
                        let off = kb.b.ins().imul_imm_s(ld_bytes, r);
                        let a = kb.b.ins().iadd(xp, off);
                        let v = kb.b.ins().load(F32, flags, a, 0);
                        kb.b.ins().store(flags, v, o, (4 * r) as i32);
                    },
                    |kb| {
                        kb.b.ins().store(flags, zero, o, (4 * r) as i32);
                    },
                );
            }
        };
        // Four columns of a whole panel: four row vectors transposed in registers.
        let transposed = |kb: &mut Kb, i: Value| {
            let (xp, o) = at(kb, i);
            let flags = kb.flags;
            let r: Vec<Value> = (0..TILE_M as i64)
                .map(|row| {
                    let off = kb.b.ins().imul_imm_s(ld_bytes, row);
                    let a = kb.b.ins().iadd(xp, off);
                    let v = kb.b.ins().load(F32X4, flags, a, 0);
                    kb.b.ins().bitcast(I8X16, lanes, v)
                })
                .collect();
            let t: Vec<Value> = [(0, 0, 1), (0, 2, 3), (1, 0, 1), (1, 2, 3)]
                .iter()
                .map(|&(m, a, b)| kb.b.ins().shuffle(r[a], r[b], masks[m]))
                .collect();
            for (j, &(m, a, b)) in [(2, 0, 1), (3, 0, 1), (2, 2, 3), (3, 2, 3)]
                .iter()
                .enumerate()
            {
                let c = kb.b.ins().shuffle(t[a], t[b], masks[m]);
                let c = kb.b.ins().bitcast(F32X4, lanes, c);
                kb.b.ins().store(flags, c, o, 16 * j as i32);
            }
        };
        let n = kb.b.ins().isub(k1, k0);
        kb.for_lanes(n, |kb, four, i| match four {
            Lanes::Four => kb.if_else(
                full,
                |kb| transposed(kb, i),
                |kb| {
                    for c in 0..4 {
                        let ic = kb.b.ins().iadd_imm_s(i, c);
                        column(kb, ic);
                    }
                },
            ),
            Lanes::One => column(kb, i),
        });
    })
}
