//! The GEMM kernel generator: `C = A . B` in f32 over packed panels.
//!
//! `A` comes packed in panels of [`TILE_M`] rows (for each k, the panel's rows side by side) and `B` in
//! panels of [`TILE_N`] columns (for each k, the panel's columns side by side), both zero-padded to whole
//! panels (`pack.rs`). The kernel walks B panels in the outer loop, so one B panel stays in cache while every A
//! panel streams past it, and computes each `4 x 8` tile of C in eight F32X4 accumulators: per k, four
//! broadcasts of A and two vector loads of B feed eight fused multiply-adds. It writes whole tiles to a C
//! with padded dimensions; the caller copies out the part that exists. What it does not do yet: block k for
//! L1, or split panels across threads.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

/// Rows and columns of the register tile.
pub const TILE_M: usize = 4;
pub const TILE_N: usize = 8;

/// The kernel's signature: `(a_packed, b_packed, c, m_panels, n_panels, k, ldc)`, as i64.
pub fn signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params
        .extend(std::iter::repeat_n(AbiParam::new(I64), 7));
    sig
}

struct Gen<'a> {
    b: FunctionBuilder<'a>,
    flags: MemFlagsData,
}

impl Gen<'_> {
    fn var(&mut self, ty: cranelift_codegen::ir::Type, init: Value) -> Variable {
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    fn jump(&mut self, to: Block) {
        self.b.ins().jump(to, &[]);
    }

    fn branch(&mut self, cond: Value, then: Block, other: Block) {
        self.b
            .ins()
            .brif(cond, then, &[] as &[BlockArg], other, &[] as &[BlockArg]);
    }

    fn add(&mut self, v: Variable, by: i64) {
        let x = self.b.use_var(v);
        let y = self.b.ins().iadd_imm_s(x, by);
        self.b.def_var(v, y);
    }

    /// `v < limit` (signed).
    fn below(&mut self, v: Variable, limit: Value) -> Value {
        let x = self.b.use_var(v);
        self.b.ins().icmp(IntCC::SignedLessThan, x, limit)
    }
}

/// Steps of k per iteration of the main k loop.
const UNROLL: usize = 4;

impl Gen<'_> {
    /// One k step of the 4 x 8 tile, `u` steps past the panel pointers: four broadcasts of A, two vector
    /// loads of B, eight fused multiply-adds.
    fn k_step(&mut self, acc: &[Variable], a_ptr: Variable, b_ptr: Variable, u: usize) {
        let (a, b) = (self.b.use_var(a_ptr), self.b.use_var(b_ptr));
        let b_off = (u * TILE_N * 4) as i32;
        let b0 = self.b.ins().load(F32X4, self.flags, b, b_off);
        let b1 = self.b.ins().load(F32X4, self.flags, b, b_off + 16);
        for r in 0..TILE_M {
            let av = self
                .b
                .ins()
                .load(F32, self.flags, a, ((u * TILE_M + r) * 4) as i32);
            let a4 = self.b.ins().splat(F32X4, av);
            for (h, bv) in [b0, b1].into_iter().enumerate() {
                let var = acc[2 * r + h];
                let old = self.b.use_var(var);
                let new = self.b.ins().fma(a4, bv, old);
                self.b.def_var(var, new);
            }
        }
    }
}

/// Builds the packed GEMM function.
pub fn build(config: TargetFrontendConfig) -> Function {
    let mut func = Function::with_name_signature(
        UserFuncName::user(0, 0),
        signature(config.default_call_conv),
    );
    let mut fctx = FunctionBuilderContext::new();
    let mut g = Gen {
        b: FunctionBuilder::new(&mut func, &mut fctx),
        flags: MemFlagsData::new().with_notrap(),
    };
    let [entry, jb_head, jb_body, ib_head, ib_body, k_head, k_body, k1_head, k1_body, store, ib_next, jb_next, exit] =
        [(); 13].map(|_| g.b.create_block());
    g.b.append_block_params_for_function_params(entry);
    g.b.switch_to_block(entry);
    let params = g.b.block_params(entry).to_vec();
    let [ap, bp, c, mb, nb, k, ldc] = params.try_into().expect("seven parameters");
    let zero = g.b.ins().iconst(I64, 0);
    let fzero = g.b.ins().f32const(0.0);
    let vzero = g.b.ins().splat(F32X4, fzero);
    let jb = g.var(I64, zero);
    let ib = g.var(I64, zero);
    let p = g.var(I64, zero);
    // Moving pointers into the packed panels: `a_ptr` walks one A panel, `b_ptr` one B panel.
    let a_ptr = g.var(I64, ap);
    let b_ptr = g.var(I64, bp);
    let acc: Vec<Variable> = (0..2 * TILE_M).map(|_| g.var(F32X4, vzero)).collect();
    // Bytes of one packed panel: k rows of the tile width.
    let a_panel = g.b.ins().imul_imm_s(k, (TILE_M * 4) as i64);
    let b_panel = g.b.ins().imul_imm_s(k, (TILE_N * 4) as i64);
    g.jump(jb_head);

    g.b.switch_to_block(jb_head);
    let more = g.below(jb, nb);
    g.branch(more, jb_body, exit);
    g.b.switch_to_block(jb_body);
    g.b.def_var(ib, zero);
    g.jump(ib_head);

    g.b.switch_to_block(ib_head);
    let more = g.below(ib, mb);
    g.branch(more, ib_body, jb_next);
    g.b.switch_to_block(ib_body);
    for &v in &acc {
        g.b.def_var(v, vzero);
    }
    g.b.def_var(p, zero);
    let (ibv, jbv) = (g.b.use_var(ib), g.b.use_var(jb));
    let a_off = g.b.ins().imul(ibv, a_panel);
    let a_start = g.b.ins().iadd(ap, a_off);
    g.b.def_var(a_ptr, a_start);
    let b_off = g.b.ins().imul(jbv, b_panel);
    let b_start = g.b.ins().iadd(bp, b_off);
    g.b.def_var(b_ptr, b_start);
    g.jump(k_head);

    // The k loop, unrolled by UNROLL, then one step at a time for the rest.
    g.b.switch_to_block(k_head);
    let pv = g.b.use_var(p);
    let next = g.b.ins().iadd_imm_s(pv, UNROLL as i64);
    let more = g.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, k);
    g.branch(more, k_body, k1_head);
    g.b.switch_to_block(k_body);
    for u in 0..UNROLL {
        g.k_step(&acc, a_ptr, b_ptr, u);
    }
    g.add(a_ptr, (UNROLL * TILE_M * 4) as i64);
    g.add(b_ptr, (UNROLL * TILE_N * 4) as i64);
    g.add(p, UNROLL as i64);
    g.jump(k_head);
    g.b.switch_to_block(k1_head);
    let more = g.below(p, k);
    g.branch(more, k1_body, store);
    g.b.switch_to_block(k1_body);
    g.k_step(&acc, a_ptr, b_ptr, 0);
    g.add(a_ptr, (TILE_M * 4) as i64);
    g.add(b_ptr, (TILE_N * 4) as i64);
    g.add(p, 1);
    g.jump(k1_head);

    // The tile goes to C[ib*4 .., jb*8 ..]: byte offset ((ib*4 + r) * ldc + jb*8) * 4.
    g.b.switch_to_block(store);
    let (ibv, jbv) = (g.b.use_var(ib), g.b.use_var(jb));
    let row0 = g.b.ins().imul_imm_s(ibv, TILE_M as i64);
    let col0 = g.b.ins().imul_imm_s(jbv, TILE_N as i64);
    for r in 0..TILE_M {
        let row = g.b.ins().iadd_imm_s(row0, r as i64);
        let start = g.b.ins().imul(row, ldc);
        let idx = g.b.ins().iadd(start, col0);
        let bytes = g.b.ins().ishl_imm_s(idx, 2);
        let addr = g.b.ins().iadd(c, bytes);
        for h in 0..2 {
            let x = g.b.use_var(acc[2 * r + h]);
            g.b.ins().store(g.flags, x, addr, (16 * h) as i32);
        }
    }
    g.jump(ib_next);
    g.b.switch_to_block(ib_next);
    g.add(ib, 1);
    g.jump(ib_head);
    g.b.switch_to_block(jb_next);
    g.add(jb, 1);
    g.jump(jb_head);

    g.b.switch_to_block(exit);
    g.b.ins().return_(&[]);
    g.b.seal_all_blocks();
    g.b.finalize(config);
    func
}
