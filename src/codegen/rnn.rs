//! (stub, being written)

use cranelift_codegen::ir::Function;
use cranelift_codegen::isa::TargetFrontendConfig;

use super::builder::Draft;
use super::KernelId;

pub fn build(_id: KernelId, config: TargetFrontendConfig) -> Function {
    Draft::new(config).build(config, |_| {})
}
