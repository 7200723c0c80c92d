//! A thin layer over Cranelift's `FunctionBuilder` for writing kernels: the one kernel ABI (a single pointer to
//! an array of i64 arguments), counted loops, and element code written once for both the F32X4 body and the
//! scalar tail of a loop over `n` elements.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, I32, I32X4, I64, I8X16};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, ConstantData, Endianness, Function, InstBuilder, MemFlagsData,
    Signature, Type, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

/// Every kernel has this signature: `fn(args: *const i64)`. Argument `i` is the i64 at `args + 8 i`; each
/// kernel documents what its arguments are (pointers or sizes).
pub fn signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::new(I64));
    sig
}

/// Builds one kernel function.
pub struct Kb<'a> {
    pub b: FunctionBuilder<'a>,
    pub flags: MemFlagsData,
    args: Value,
}

/// A function under construction and the context its builder borrows.
pub struct Draft {
    pub func: Function,
    pub fctx: FunctionBuilderContext,
}

impl Draft {
    pub fn new(config: TargetFrontendConfig) -> Draft {
        Draft {
            func: Function::with_name_signature(
                UserFuncName::user(0, 0),
                signature(config.default_call_conv),
            ),
            fctx: FunctionBuilderContext::new(),
        }
    }

    /// Runs `body` with a builder positioned in the entry block, then returns from the function.
    pub fn build(mut self, config: TargetFrontendConfig, body: impl FnOnce(&mut Kb)) -> Function {
        {
            let mut b = FunctionBuilder::new(&mut self.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let args = b.block_params(entry)[0];
            let mut kb = Kb {
                b,
                flags: MemFlagsData::new().with_notrap(),
                args,
            };
            body(&mut kb);
            kb.b.ins().return_(&[]);
            kb.b.seal_all_blocks();
            kb.b.finalize(config);
        }
        self.func
    }
}

/// Element type of a loop body: four lanes in the vector body, one in the tail.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lanes {
    Four,
    One,
}

impl Lanes {
    pub fn float(self) -> Type {
        match self {
            Lanes::Four => F32X4,
            Lanes::One => F32,
        }
    }

    pub fn int(self) -> Type {
        match self {
            Lanes::Four => I32X4,
            Lanes::One => I32,
        }
    }
}

impl Kb<'_> {
    /// Argument `i` of the kernel.
    pub fn arg(&mut self, i: usize) -> Value {
        self.b
            .ins()
            .load(I64, MemFlagsData::trusted(), self.args, (8 * i) as i32)
    }

    pub fn var(&mut self, ty: Type, init: Value) -> Variable {
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    pub fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(I64, v)
    }

    /// `base + index * scale` (bytes).
    pub fn addr(&mut self, base: Value, index: Value, scale: i64) -> Value {
        let off = if scale == 1 {
            index
        } else {
            self.b.ins().imul_imm_s(index, scale)
        };
        self.b.ins().iadd(base, off)
    }

    /// `for i in (start..end).step_by(step)`, `step > 0`, the body given the index as a value.
    pub fn for_range(
        &mut self,
        start: Value,
        end: Value,
        step: i64,
        mut body: impl FnMut(&mut Self, Value),
    ) {
        let i = self.var(I64, start);
        let (head, bodyb, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let iv = self.b.use_var(i);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, iv, end);
        self.branch(more, bodyb, exit);
        self.b.switch_to_block(bodyb);
        let iv = self.b.use_var(i);
        body(self, iv);
        let iv = self.b.use_var(i);
        let next = self.b.ins().iadd_imm_s(iv, step);
        self.b.def_var(i, next);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(exit);
    }

    /// `for i in 0..n`.
    pub fn for_n(&mut self, n: Value, body: impl FnMut(&mut Self, Value)) {
        let zero = self.iconst(0);
        self.for_range(zero, n, 1, body);
    }

    /// A loop over `n` elements: a body over four lanes at a time while four remain, then a scalar tail.
    /// `body` gets the lanes and the element index of the first lane.
    pub fn for_lanes(&mut self, n: Value, mut body: impl FnMut(&mut Self, Lanes, Value)) {
        let i = self.var(I64, n);
        let zero = self.iconst(0);
        self.b.def_var(i, zero);
        let (head, vbody, thead, tbody, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let iv = self.b.use_var(i);
        let next = self.b.ins().iadd_imm_s(iv, 4);
        let more = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, n);
        self.branch(more, vbody, thead);
        self.b.switch_to_block(vbody);
        let iv = self.b.use_var(i);
        body(self, Lanes::Four, iv);
        let iv = self.b.use_var(i);
        let next = self.b.ins().iadd_imm_s(iv, 4);
        self.b.def_var(i, next);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(thead);
        let iv = self.b.use_var(i);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, iv, n);
        self.branch(more, tbody, exit);
        self.b.switch_to_block(tbody);
        let iv = self.b.use_var(i);
        body(self, Lanes::One, iv);
        let iv = self.b.use_var(i);
        let next = self.b.ins().iadd_imm_s(iv, 1);
        self.b.def_var(i, next);
        self.b.ins().jump(thead, &[]);
        self.b.switch_to_block(exit);
    }

    /// Runs `then` when `cond` (an i8 truth value) holds.
    pub fn when(&mut self, cond: Value, then: impl FnOnce(&mut Self)) {
        let (yes, done) = (self.b.create_block(), self.b.create_block());
        self.branch(cond, yes, done);
        self.b.switch_to_block(yes);
        then(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// Runs `then` or `other` depending on `cond`.
    pub fn if_else(
        &mut self,
        cond: Value,
        then: impl FnOnce(&mut Self),
        other: impl FnOnce(&mut Self),
    ) {
        let (yes, no, done) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.branch(cond, yes, no);
        self.b.switch_to_block(yes);
        then(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(no);
        other(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    pub fn branch(&mut self, cond: Value, then: Block, other: Block) {
        self.b
            .ins()
            .brif(cond, then, &[] as &[BlockArg], other, &[] as &[BlockArg]);
    }

    /// Loads `lanes` f32 values at `ptr + 4 * index`.
    pub fn load(&mut self, lanes: Lanes, ptr: Value, index: Value) -> Value {
        let a = self.addr(ptr, index, 4);
        self.b.ins().load(lanes.float(), self.flags, a, 0)
    }

    /// Stores `lanes` f32 values at `ptr + 4 * index`.
    pub fn store(&mut self, value: Value, ptr: Value, index: Value) {
        let a = self.addr(ptr, index, 4);
        self.b.ins().store(self.flags, value, a, 0);
    }

    /// The even lanes of the eight f32 values at `ptr + offset` (bytes): `[v0 v2 v4 v6]`, two vector loads
    /// and one `shufps` (stride-2 reads).
    pub fn evens(&mut self, ptr: Value, offset: i32) -> Value {
        const EVEN_LANES: [u8; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
        let mask = self
            .b
            .func
            .dfg
            .immediates
            .push(ConstantData::from(EVEN_LANES.as_slice()));
        let lanes = MemFlagsData::new().with_endianness(Endianness::Little);
        let lo = self.b.ins().load(F32X4, self.flags, ptr, offset);
        let hi = self.b.ins().load(F32X4, self.flags, ptr, offset + 16);
        let lo = self.b.ins().bitcast(I8X16, lanes, lo);
        let hi = self.b.ins().bitcast(I8X16, lanes, hi);
        let v = self.b.ins().shuffle(lo, hi, mask);
        self.b.ins().bitcast(F32X4, lanes, v)
    }

    /// A constant in every lane.
    pub fn fconst(&mut self, lanes: Lanes, v: f32) -> Value {
        let s = self.b.ins().f32const(v);
        match lanes {
            Lanes::Four => self.b.ins().splat(F32X4, s),
            Lanes::One => s,
        }
    }

    pub fn iconst32(&mut self, lanes: Lanes, v: i32) -> Value {
        let s = self.b.ins().iconst(I32, v as i64);
        match lanes {
            Lanes::Four => self.b.ins().splat(I32X4, s),
            Lanes::One => s,
        }
    }

    /// A scalar f32 in every lane.
    pub fn broadcast(&mut self, lanes: Lanes, s: Value) -> Value {
        match lanes {
            Lanes::Four => self.b.ins().splat(F32X4, s),
            Lanes::One => s,
        }
    }

    /// `cond ? a : b` lane by lane, `cond` from [`Kb::fcmp`].
    pub fn select(&mut self, lanes: Lanes, cond: Value, a: Value, b: Value) -> Value {
        match lanes {
            Lanes::Four => {
                // A vector `fcmp` gives an I32X4 mask; `bitselect` wants the values' type.
                let m = self.b.ins().bitcast(F32X4, MemFlagsData::new(), cond);
                self.b.ins().bitselect(m, a, b)
            }
            Lanes::One => self.b.ins().select(cond, a, b),
        }
    }

    pub fn fcmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(cc, a, b)
    }

    /// `max(a, b)` as `a > b ? a : b` (one `maxps`; a NaN in `a` gives `b`).
    pub fn max(&mut self, lanes: Lanes, a: Value, b: Value) -> Value {
        let gt = self.fcmp(FloatCC::GreaterThan, a, b);
        self.select(lanes, gt, a, b)
    }

    pub fn min(&mut self, lanes: Lanes, a: Value, b: Value) -> Value {
        let lt = self.fcmp(FloatCC::LessThan, a, b);
        self.select(lanes, lt, a, b)
    }

    /// Horizontal sum of four lanes.
    pub fn hsum(&mut self, v: Value) -> Value {
        let mut s = self.b.ins().extractlane(v, 0);
        for l in 1..4 {
            let x = self.b.ins().extractlane(v, l);
            s = self.b.ins().fadd(s, x);
        }
        s
    }

    /// Horizontal maximum of four lanes.
    pub fn hmax(&mut self, v: Value) -> Value {
        let mut s = self.b.ins().extractlane(v, 0);
        for l in 1..4 {
            let x = self.b.ins().extractlane(v, l);
            s = self.max(Lanes::One, x, s);
        }
        s
    }
}
