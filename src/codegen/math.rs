//! Activations and transcendental functions written in Cranelift IR, for four lanes or one.
//! (exp, log, tanh and sigmoid are being written.)

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value};

use super::builder::{Kb, Lanes};
use super::ActKind;

/// `act(v)`; `slope` (same lanes as `v`) is used by leaky ReLU only. ReLU keeps NaN, as PyTorch does.
pub fn act(kb: &mut Kb, lanes: Lanes, kind: ActKind, v: Value, slope: Value) -> Value {
    match kind {
        ActKind::Identity => v,
        ActKind::Relu => {
            let zero = kb.fconst(lanes, 0.0);
            let neg = kb.fcmp(FloatCC::LessThan, v, zero);
            kb.select(lanes, neg, zero, v)
        }
        ActKind::LeakyRelu => {
            let zero = kb.fconst(lanes, 0.0);
            let neg = kb.fcmp(FloatCC::LessThan, v, zero);
            let scaled = kb.b.ins().fmul(v, slope);
            kb.select(lanes, neg, scaled, v)
        }
        ActKind::Sigmoid | ActKind::Tanh => v,
    }
}
