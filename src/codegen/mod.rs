//! The codegen room, the only one that knows Cranelift: kernels generated as Cranelift IR and compiled by its
//! JIT to native code for this CPU. So far: a register-tiled single-precision GEMM over packed panels. Callers get safe handles
//! (`call.rs` is the one place that enters generated code).

mod call;
mod gemm;
mod jit;
pub mod pack;

pub use call::Gemm;
pub use jit::{CodegenError, Jit};
