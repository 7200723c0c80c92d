//! Max and average pooling from window tables: the runtime computes, at compile time, which input rows and
//! columns each output row and column reads (padding, ceil mode, dilation, adaptive windows) and the
//! divisors, so one kernel serves max, average, adaptive and global pooling. Scalar code; the windows
//! are separable, so the tables are per row and per column.

use cranelift_codegen::ir::types::{F32, I32, I64};
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

/// `[x, y, oh, ow, iw, rows, cols, div, planes, in_plane]`: see [`super::KernelId::MaxPool`].
pub fn build(max: bool, config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |kb| {
        let [x, y, oh, ow, iw, rows, cols, div, planes, in_plane] =
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(|i| kb.arg(i));
        let init = kb.fconst(Lanes::One, if max { f32::NEG_INFINITY } else { 0.0 });
        let out_plane = kb.b.ins().imul(oh, ow);
        kb.for_n(planes, |kb, q| {
            let xo = kb.b.ins().imul(q, in_plane);
            let xq = kb.addr(x, xo, 4);
            let yo = kb.b.ins().imul(q, out_plane);
            let yq = kb.addr(y, yo, 4);
            kb.for_n(oh, |kb, r| {
                let [hs, hc, hstep] = triple(kb, rows, r);
                let yr = kb.b.ins().imul(r, ow);
                let yr = kb.addr(yq, yr, 4);
                let rdiv = kb.load(Lanes::One, div, r);
                kb.for_n(ow, |kb, c| {
                    let [ws, wc, wstep] = triple(kb, cols, c);
                    let acc = kb.var(F32, init);
                    kb.for_n(hc, |kb, a| {
                        let ih = kb.b.ins().imul(a, hstep);
                        let ih = kb.b.ins().iadd(ih, hs);
                        let row = kb.b.ins().imul(ih, iw);
                        let xr = kb.addr(xq, row, 4);
                        kb.for_n(wc, |kb, b| {
                            let iwv = kb.b.ins().imul(b, wstep);
                            let iwv = kb.b.ins().iadd(iwv, ws);
                            let v = kb.load(Lanes::One, xr, iwv);
                            let cur = kb.b.use_var(acc);
                            let next = if max {
                                // NaN propagates, as in PyTorch: keep v when v > cur or v is NaN.
                                let keep = kb.fcmp(
                                    cranelift_codegen::ir::condcodes::FloatCC::UnorderedOrGreaterThan,
                                    v,
                                    cur,
                                );
                                kb.select(Lanes::One, keep, v, cur)
                            } else {
                                kb.b.ins().fadd(cur, v)
                            };
                            kb.b.def_var(acc, next);
                        });
                    });
                    let mut v = kb.b.use_var(acc);
                    if !max {
                        let oc = kb.b.ins().iadd(oh, c);
                        let cdiv = kb.load(Lanes::One, div, oc);
                        let d = kb.b.ins().fmul(rdiv, cdiv);
                        v = kb.b.ins().fdiv(v, d);
                    }
                    kb.store(v, yr, c);
                });
            });
        });
    })
}
