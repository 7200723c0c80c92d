//! The GEMM kernel generator: `C[m x n] = A[m x k] . B[k x n]`, row-major with leading dimensions, in f32.
//!
//! The body walks 4 x 8 tiles of C, each kept in eight F32X4 accumulators while the k loop streams one row
//! of B (two vector loads) and four broadcast elements of A into eight fused multiply-adds. Columns past the
//! last full tile and rows past the last full block of four are computed by scalar loops, so every size
//! works. What it does not do yet: pack panels of A and B for cache locality, or split work across threads.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

/// Rows and columns of the register tile.
pub const TILE_M: i64 = 4;
pub const TILE_N: i64 = 8;

/// The kernel's signature: `(a, b, c, m, n, k, lda, ldb, ldc)`, pointers and sizes as i64.
pub fn signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params
        .extend(std::iter::repeat_n(AbiParam::new(I64), 9));
    sig
}

struct Gen<'a> {
    b: FunctionBuilder<'a>,
    flags: MemFlagsData,
    params: [Value; 9],
}

impl Gen<'_> {
    /// `base + 4 * (row * ld + col)`: the address of an f32 element.
    fn addr(&mut self, base: Value, row: Value, ld: Value, col: Value) -> Value {
        let r = self.b.ins().imul(row, ld);
        let idx = self.b.ins().iadd(r, col);
        let bytes = self.b.ins().ishl_imm_s(idx, 2);
        self.b.ins().iadd(base, bytes)
    }

    fn var(&mut self, ty: cranelift_codegen::ir::Type, init: Value) -> Variable {
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    fn jump(&mut self, to: Block) {
        self.b.ins().jump(to, &[]);
    }

    /// `if cond { then } else { other }` as a branch.
    fn branch(&mut self, cond: Value, then: Block, other: Block) {
        self.b
            .ins()
            .brif(cond, then, &[] as &[BlockArg], other, &[] as &[BlockArg]);
    }

    fn incr(&mut self, v: Variable, by: i64) {
        let x = self.b.use_var(v);
        let y = self.b.ins().iadd_imm_s(x, by);
        self.b.def_var(v, y);
    }

    /// `v + extra <= limit` (signed).
    fn fits(&mut self, v: Variable, extra: i64, limit: Value) -> Value {
        let x = self.b.use_var(v);
        let end = self.b.ins().iadd_imm_s(x, extra);
        self.b.ins().icmp(IntCC::SignedLessThanOrEqual, end, limit)
    }
}

impl Gen<'_> {
    /// Emits "rows `i .. i + rows` of C across all columns": full `rows x 8` tiles in vector accumulators,
    /// then the remaining columns one at a time. Starts at `entry`, jumps to `done` with `i` unchanged.
    fn row_block(&mut self, rows: i64, entry: Block, done: Block, v: &Vars) {
        let [a, bp, c, _, n, k, lda, ldb, ldc] = self.params;
        let (i, j, p) = (v.i, v.j, v.p);
        let [col8_head, tile_k_head, tile_k_body, tile_store, col1_head, col1_k_head, col1_k_body, col1_store] =
            [(); 8].map(|_| self.b.create_block());
        let tile_init = self.b.create_block();
        let col1_init = self.b.create_block();

        self.b.switch_to_block(entry);
        self.b.def_var(j, v.zero);
        self.jump(col8_head);

        // Full tiles.
        self.b.switch_to_block(col8_head);
        let more = self.fits(j, TILE_N, n);
        self.branch(more, tile_init, col1_head);
        self.b.switch_to_block(tile_init);
        for &acc in &v.acc[..2 * rows as usize] {
            self.b.def_var(acc, v.vzero);
        }
        self.b.def_var(p, v.zero);
        self.jump(tile_k_head);
        self.b.switch_to_block(tile_k_head);
        let pv = self.b.use_var(p);
        let more_k = self.b.ins().icmp(IntCC::SignedLessThan, pv, k);
        self.branch(more_k, tile_k_body, tile_store);
        self.b.switch_to_block(tile_k_body);
        let (pv, jv, iv) = (self.b.use_var(p), self.b.use_var(j), self.b.use_var(i));
        let brow = self.addr(bp, pv, ldb, jv);
        let b0 = self.b.ins().load(F32X4, self.flags, brow, 0);
        let b1 = self.b.ins().load(F32X4, self.flags, brow, 16);
        for r in 0..rows {
            let row = self.b.ins().iadd_imm_s(iv, r);
            let aaddr = self.addr(a, row, lda, pv);
            let av = self.b.ins().load(F32, self.flags, aaddr, 0);
            let avv = self.b.ins().splat(F32X4, av);
            for (h, bv) in [b0, b1].into_iter().enumerate() {
                let var = v.acc[(2 * r) as usize + h];
                let old = self.b.use_var(var);
                let new = self.b.ins().fma(avv, bv, old);
                self.b.def_var(var, new);
            }
        }
        self.incr(p, 1);
        self.jump(tile_k_head);
        self.b.switch_to_block(tile_store);
        let (iv, jv) = (self.b.use_var(i), self.b.use_var(j));
        for r in 0..rows {
            let row = self.b.ins().iadd_imm_s(iv, r);
            let caddr = self.addr(c, row, ldc, jv);
            for h in 0..2 {
                let x = self.b.use_var(v.acc[(2 * r) as usize + h]);
                self.b.ins().store(self.flags, x, caddr, (16 * h) as i32);
            }
        }
        self.incr(j, TILE_N);
        self.jump(col8_head);

        // Remaining columns, one at a time.
        self.b.switch_to_block(col1_head);
        let more = self.fits(j, 1, n);
        self.branch(more, col1_init, done);
        self.b.switch_to_block(col1_init);
        for &sv in &v.s[..rows as usize] {
            self.b.def_var(sv, v.fzero);
        }
        self.b.def_var(p, v.zero);
        self.jump(col1_k_head);
        self.b.switch_to_block(col1_k_head);
        let pv = self.b.use_var(p);
        let more_k = self.b.ins().icmp(IntCC::SignedLessThan, pv, k);
        self.branch(more_k, col1_k_body, col1_store);
        self.b.switch_to_block(col1_k_body);
        let (pv, jv, iv) = (self.b.use_var(p), self.b.use_var(j), self.b.use_var(i));
        let baddr = self.addr(bp, pv, ldb, jv);
        let bv = self.b.ins().load(F32, self.flags, baddr, 0);
        for r in 0..rows {
            let row = self.b.ins().iadd_imm_s(iv, r);
            let aaddr = self.addr(a, row, lda, pv);
            let av = self.b.ins().load(F32, self.flags, aaddr, 0);
            let old = self.b.use_var(v.s[r as usize]);
            let new = self.b.ins().fma(av, bv, old);
            self.b.def_var(v.s[r as usize], new);
        }
        self.incr(p, 1);
        self.jump(col1_k_head);
        self.b.switch_to_block(col1_store);
        let (iv, jv) = (self.b.use_var(i), self.b.use_var(j));
        for r in 0..rows {
            let row = self.b.ins().iadd_imm_s(iv, r);
            let caddr = self.addr(c, row, ldc, jv);
            let x = self.b.use_var(v.s[r as usize]);
            self.b.ins().store(self.flags, x, caddr, 0);
        }
        self.incr(j, 1);
        self.jump(col1_head);
    }
}

/// The function's variables and constants.
struct Vars {
    i: Variable,
    j: Variable,
    p: Variable,
    acc: Vec<Variable>,
    s: Vec<Variable>,
    zero: Value,
    fzero: Value,
    vzero: Value,
}

/// Builds the GEMM function: blocks of four rows, then the remaining rows one at a time, each with vector
/// tiles across the columns.
pub fn build(config: TargetFrontendConfig) -> Function {
    let mut func = Function::with_name_signature(
        UserFuncName::user(0, 0),
        signature(config.default_call_conv),
    );
    let mut fctx = FunctionBuilderContext::new();
    let b = FunctionBuilder::new(&mut func, &mut fctx);
    let mut g = Gen {
        b,
        flags: MemFlagsData::new().with_notrap(),
        params: [Value::from_u32(0); 9],
    };
    let entry = g.b.create_block();
    g.b.append_block_params_for_function_params(entry);
    g.b.switch_to_block(entry);
    let ps = g.b.block_params(entry).to_vec();
    g.params.copy_from_slice(&ps);
    let m = g.params[3];
    let zero = g.b.ins().iconst(I64, 0);
    let fzero = g.b.ins().f32const(0.0);
    let vzero = g.b.ins().splat(F32X4, fzero);
    let v = Vars {
        i: g.var(I64, zero),
        j: g.var(I64, zero),
        p: g.var(I64, zero),
        acc: (0..2 * TILE_M).map(|_| g.var(F32X4, vzero)).collect(),
        s: (0..TILE_M).map(|_| g.var(F32, fzero)).collect(),
        zero,
        fzero,
        vzero,
    };
    let [row4_head, row4_body, row4_next, row1_head, row1_body, row1_next, exit] =
        [(); 7].map(|_| g.b.create_block());
    g.jump(row4_head);

    g.b.switch_to_block(row4_head);
    let more = g.fits(v.i, TILE_M, m);
    g.branch(more, row4_body, row1_head);
    g.row_block(TILE_M, row4_body, row4_next, &v);
    g.b.switch_to_block(row4_next);
    g.incr(v.i, TILE_M);
    g.jump(row4_head);

    g.b.switch_to_block(row1_head);
    let more = g.fits(v.i, 1, m);
    g.branch(more, row1_body, exit);
    g.row_block(1, row1_body, row1_next, &v);
    g.b.switch_to_block(row1_next);
    g.incr(v.i, 1);
    g.jump(row1_head);

    g.b.switch_to_block(exit);
    g.b.ins().return_(&[]);
    g.b.seal_all_blocks();
    g.b.finalize(config);
    func
}
