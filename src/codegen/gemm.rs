//! The GEMM macro-kernel: one column panel of `C = A . B` over one block of k, for all rows of a block of A.
//!
//! `A` comes packed in panels of [`TILE_M`] rows (for each k, the panel's rows side by side; `pack.rs`), `B`
//! as rows of [`TILE_N`] values at a stride given at run time, so a packed panel (stride 32 bytes) and the
//! rows of a 1x1 convolution's input (stride: the plane) are read by the same code. Each `4 x 8` tile of C lives
//! in eight F32X4 accumulators: per k, four broadcasts of A and two vector loads of B feed eight fused
//! multiply-adds, k unrolled by 8 in a loop whose accumulators and pointers are block parameters. The
//! tile is then added to C's values (later k blocks) and, on the last k block, passes through the
//! epilogue `act(v * row_scale + row_shift + col_shift)` (bias, folded batch norm, activation) before
//! one store. Tiles cut by the matrix edge go through a stack slot and scalar code.
//! The caller (the runtime) chooses blocks of k ([`KC`]) and rows so that A's block stays in L2 and B's panel
//! in L1, and splits column panels across threads.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{BlockArg, Function, InstBuilder, StackSlotData, StackSlotKind, Value};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::Variable;

use super::builder::{Draft, Kb, Lanes};
use super::{math, ActKind};

/// Rows and columns of the register tile.
pub const TILE_M: usize = 4;
pub const TILE_N: usize = 8;
/// The k block: a B panel of `KC x 8` floats (8 KiB) stays in L1 while A's rows stream past it.
pub const KC: usize = 256;

/// Steps of k per iteration of the main k loop.
const UNROLL: i64 = 8;

/// The arguments the tile's store uses (the k loop loads its own).
struct Args {
    c: Value,
    ldc: Value,
    rows: Value,
    cols: Value,
    mode: Value,
    row_scale: Value,
    row_shift: Value,
    col_shift: Value,
    slope: Value,
}

/// Loads the store's arguments, per tile after its k loop, so that they are not live across the loop.
fn load_args(kb: &mut Kb) -> Args {
    let slope64 = kb.arg(12);
    let slope32 =
        kb.b.ins()
            .ireduce(cranelift_codegen::ir::types::I32, slope64);
    let slope =
        kb.b.ins()
            .bitcast(F32, cranelift_codegen::ir::MemFlagsData::new(), slope32);
    Args {
        c: kb.arg(3),
        ldc: kb.arg(4),
        rows: kb.arg(5),
        cols: kb.arg(6),
        mode: kb.arg(8),
        row_scale: kb.arg(9),
        row_shift: kb.arg(10),
        col_shift: kb.arg(11),
        slope,
    }
}

/// Builds the macro-kernel with epilogue activation `act`.
///
/// The loops are written with explicit block parameters (accumulators, pointers, counters), and the
/// kernel's arguments are loaded where they are used, so that few scalars are live across the k loop and
/// none of them needs to be reloaded from the stack inside it.
pub fn build(act: ActKind, config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| {
        let zero = kb.iconst(0);
        let rows = kb.arg(5);
        kb.for_range(zero, rows, TILE_M as i64, |kb, row0| {
            // Panel row0 / TILE_M starts row0 * kc values in.
            let a0 = kb.arg(0);
            let kc = kb.arg(7);
            let a_start = kb.b.ins().imul(row0, kc);
            let a_start = kb.addr(a0, a_start, 4);
            let acc = k_loop(kb, a_start);
            let a = load_args(kb);
            let four = kb.iconst(TILE_M as i64);
            let left = kb.b.ins().isub(a.rows, row0);
            let rows_here = kb.b.ins().smin(left, four);
            let full_rows =
                kb.b.ins()
                    .icmp_imm_s(IntCC::Equal, rows_here, TILE_M as i64);
            let full_cols = kb.b.ins().icmp_imm_s(IntCC::Equal, a.cols, TILE_N as i64);
            let full = kb.b.ins().band(full_rows, full_cols);
            kb.if_else(
                full,
                |kb| store_full(kb, &acc, &a, row0, act),
                |kb| store_partial(kb, &acc, &a, row0, rows_here, act),
            );
        });
    })
}

/// The k loop for one tile starting at A panel pointer `ap`: UNROLL steps at a time, then one at a time,
/// counting the remaining steps down. Returns the accumulators.
fn k_loop(kb: &mut Kb, ap: Value) -> Vec<Value> {
    let b0 = kb.arg(1);
    let bs = kb.arg(2);
    let kc = kb.arg(7);
    let fzero = kb.b.ins().f32const(0.0);
    let vzero = kb.b.ins().splat(F32X4, fzero);
    let (head, body, head1, body1, done) = (
        kb.b.create_block(),
        kb.b.create_block(),
        kb.b.create_block(),
        kb.b.create_block(),
        kb.b.create_block(),
    );
    let params = |kb: &mut Kb, blk| {
        let acc: Vec<Value> = (0..2 * TILE_M)
            .map(|_| kb.b.append_block_param(blk, F32X4))
            .collect();
        let ap = kb.b.append_block_param(blk, I64);
        let bp = kb.b.append_block_param(blk, I64);
        let n = kb.b.append_block_param(blk, I64);
        (acc, ap, bp, n)
    };
    let args = |acc: &[Value], ap, bp, n| -> Vec<BlockArg> {
        acc.iter()
            .chain([ap, bp, n].iter())
            .map(|&v| BlockArg::Value(v))
            .collect()
    };
    let init = vec![vzero; 2 * TILE_M];
    kb.b.ins().jump(head, &args(&init, ap, b0, kc));

    kb.b.switch_to_block(head);
    let (acc, ap, bp, n) = params(kb, head);
    let more =
        kb.b.ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, n, UNROLL);
    kb.b.ins()
        .brif(more, body, &[], head1, &args(&acc, ap, bp, n));

    kb.b.switch_to_block(body);
    let mut acc2 = acc.clone();
    let mut brow = bp;
    for u in 0..UNROLL as i32 {
        k_step(kb, &mut acc2, ap, brow, u);
        brow = kb.b.ins().iadd(brow, bs);
    }
    let ap2 = kb.b.ins().iadd_imm_s(ap, UNROLL * (TILE_M as i64) * 4);
    let n2 = kb.b.ins().iadd_imm_s(n, -UNROLL);
    kb.b.ins().jump(head, &args(&acc2, ap2, brow, n2));

    kb.b.switch_to_block(head1);
    let (acc, ap, bp, n) = params(kb, head1);
    let more = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, n, 0);
    kb.branch(more, body1, done);
    kb.b.switch_to_block(body1);
    let mut acc2 = acc.clone();
    k_step(kb, &mut acc2, ap, bp, 0);
    let ap2 = kb.b.ins().iadd_imm_s(ap, (TILE_M * 4) as i64);
    let bp2 = kb.b.ins().iadd(bp, bs);
    let n2 = kb.b.ins().iadd_imm_s(n, -1);
    kb.b.ins().jump(head1, &args(&acc2, ap2, bp2, n2));
    kb.b.switch_to_block(done);
    acc
}

/// One k step of the tile: two vector loads of the B row, then per row of A and half of B one broadcast
/// load of A and one fused multiply-add. Each A value is loaded twice so that each broadcast has a single
/// use: Cranelift then folds the load into a memory-operand `vbroadcastss` (a load, not a shuffle competing
/// with the FMAs) and the FMA may overwrite the broadcast's register instead of copying it first.
fn k_step(kb: &mut Kb, acc: &mut [Value], a: Value, brow: Value, u: i32) {
    let flags = kb.flags;
    let b0 = kb.b.ins().load(F32X4, flags, brow, 0);
    let b1 = kb.b.ins().load(F32X4, flags, brow, 16);
    for r in 0..TILE_M {
        for (h, bv) in [b0, b1].into_iter().enumerate() {
            let av =
                kb.b.ins()
                    .load(F32, flags, a, (u * TILE_M as i32 + r as i32) * 4);
            let a4 = kb.b.ins().splat(F32X4, av);
            let i = 2 * r + h;
            acc[i] = kb.b.ins().fma(a4, bv, acc[i]);
        }
    }
}

/// Accumulate and epilogue flags from `mode`.
fn mode_flags(kb: &mut Kb, a: &Args) -> (Value, Value) {
    let add = kb.b.ins().band_imm_u(a.mode, 1);
    let add = kb.b.ins().icmp_imm_s(IntCC::NotEqual, add, 0);
    let last = kb.b.ins().band_imm_u(a.mode, 2);
    let last = kb.b.ins().icmp_imm_s(IntCC::NotEqual, last, 0);
    (add, last)
}

/// Whether the epilogue adds the column shifts: `mode` bit 5 clear.
fn shifts_cols(kb: &mut Kb, a: &Args) -> Value {
    let none = kb.b.ins().band_imm_u(a.mode, 32);
    kb.b.ins().icmp_imm_s(IntCC::Equal, none, 0)
}

fn store_full(kb: &mut Kb, acc: &[Value], a: &Args, row0: Value, act: ActKind) {
    let (add, last) = mode_flags(kb, a);
    let flags = kb.flags;
    for r in 0..TILE_M {
        let row = kb.b.ins().iadd_imm_s(row0, r as i64);
        let off = kb.b.ins().imul(row, a.ldc);
        let cp = kb.b.ins().iadd(a.c, off);
        let v: Vec<Variable> = (0..2).map(|h| kb.var(F32X4, acc[2 * r + h])).collect();
        kb.when(add, |kb| {
            for (h, &x) in v.iter().enumerate() {
                let old = kb.b.ins().load(F32X4, flags, cp, 16 * h as i32);
                let cur = kb.b.use_var(x);
                let sum = kb.b.ins().fadd(cur, old);
                kb.b.def_var(x, sum);
            }
        });
        kb.when(last, |kb| {
            let s = kb.load(Lanes::One, a.row_scale, row);
            let t = kb.load(Lanes::One, a.row_shift, row);
            let (s, t) = (kb.b.ins().splat(F32X4, s), kb.b.ins().splat(F32X4, t));
            let slope = kb.b.ins().splat(F32X4, a.slope);
            let cols = shifts_cols(kb, a);
            for (h, &x) in v.iter().enumerate() {
                let cur = kb.b.use_var(x);
                let y = kb.b.ins().fma(cur, s, t);
                kb.b.def_var(x, y);
                kb.when(cols, |kb| {
                    let cs = kb.b.ins().load(F32X4, flags, a.col_shift, 16 * h as i32);
                    let cur = kb.b.use_var(x);
                    let y = kb.b.ins().fadd(cur, cs);
                    kb.b.def_var(x, y);
                });
                let cur = kb.b.use_var(x);
                let y = math::act(kb, Lanes::Four, act, cur, slope);
                kb.b.def_var(x, y);
            }
        });
        for (h, &x) in v.iter().enumerate() {
            let val = kb.b.use_var(x);
            kb.b.ins().store(flags, val, cp, 16 * h as i32);
        }
    }
}

/// A tile cut by the edge: the accumulators go to a stack slot, then each existing element is finished
/// and stored on its own.
fn store_partial(
    kb: &mut Kb,
    acc: &[Value],
    a: &Args,
    row0: Value,
    rows_here: Value,
    act: ActKind,
) {
    let slot = kb.b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        (TILE_M * TILE_N * 4) as u32,
        4,
    ));
    for (i, &val) in acc.iter().enumerate() {
        kb.b.ins().stack_store(I64, val, slot, (16 * i) as i32);
    }
    let base = kb.b.ins().stack_addr(I64, slot, 0);
    let (add, last) = mode_flags(kb, a);
    kb.for_n(rows_here, |kb, r| {
        let row = kb.b.ins().iadd(row0, r);
        let off = kb.b.ins().imul(row, a.ldc);
        let cp = kb.b.ins().iadd(a.c, off);
        let tile_row = kb.b.ins().imul_imm_s(r, (TILE_N * 4) as i64);
        let tp = kb.b.ins().iadd(base, tile_row);
        kb.for_n(a.cols, |kb, col| {
            let x0 = kb.load(Lanes::One, tp, col);
            let x = kb.var(F32, x0);
            kb.when(add, |kb| {
                let old = kb.load(Lanes::One, cp, col);
                let cur = kb.b.use_var(x);
                let sum = kb.b.ins().fadd(cur, old);
                kb.b.def_var(x, sum);
            });
            kb.when(last, |kb| {
                let s = kb.load(Lanes::One, a.row_scale, row);
                let t = kb.load(Lanes::One, a.row_shift, row);
                let cur = kb.b.use_var(x);
                let y = kb.b.ins().fma(cur, s, t);
                kb.b.def_var(x, y);
                let cols = shifts_cols(kb, a);
                kb.when(cols, |kb| {
                    let cs = kb.load(Lanes::One, a.col_shift, col);
                    let cur = kb.b.use_var(x);
                    let y = kb.b.ins().fadd(cur, cs);
                    kb.b.def_var(x, y);
                });
                let cur = kb.b.use_var(x);
                let y = math::act(kb, Lanes::One, act, cur, a.slope);
                kb.b.def_var(x, y);
            });
            let val = kb.b.use_var(x);
            kb.store(val, cp, col);
        });
    });
}
