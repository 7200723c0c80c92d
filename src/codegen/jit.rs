//! Setting up Cranelift's JIT for this CPU and turning built functions into executable code.

use cranelift_codegen::ir::Function;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};

/// Why code generation failed: a bug in a kernel generator, or a CPU Cranelift cannot target.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("this CPU is not supported by Cranelift: {0}")]
    UnsupportedHost(String),
    #[error("this CPU cannot run the {0} GEMM kernel (it needs AVX2 and FMA)")]
    GemmUnavailable(&'static str),
    #[error(
        "internal error: Winograd F(4x4, 3x3) or F(2x2, 5x5) chosen on a CPU without AVX2 and FMA"
    )]
    Winograd4Unavailable,
    #[error("internal error: Cranelift rejected kernel `{kernel}`: {message}")]
    Compile { kernel: String, message: String },
}

/// A JIT module: kernels are added, then finalized together; their code lives as long as the module.
pub struct Jit {
    pub(super) module: JITModule,
}

impl Jit {
    /// A JIT for the host CPU (its SIMD extensions detected), with Cranelift's optimizer off: the kernel
    /// generators schedule their own code (see shared notes: `opt_level=speed` spills hand-tiled loops).
    pub fn new() -> Result<Jit, CodegenError> {
        let mut flags = settings::builder();
        for (k, v) in [
            ("opt_level", "none"),
            ("is_pic", "false"),
            ("use_colocated_libcalls", "false"),
        ] {
            flags
                .set(k, v)
                .map_err(|e| CodegenError::UnsupportedHost(e.to_string()))?;
        }
        let isa = cranelift_native::builder()
            .map_err(|e| CodegenError::UnsupportedHost(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| CodegenError::UnsupportedHost(e.to_string()))?;
        let builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        Ok(Jit {
            module: JITModule::new(builder),
        })
    }

    /// Compiles one function and returns its id (its code is usable after `finalize`).
    pub(super) fn define(&mut self, name: &str, func: Function) -> Result<FuncId, CodegenError> {
        let err = |message: String| CodegenError::Compile {
            kernel: name.to_string(),
            message,
        };
        let id = self
            .module
            .declare_function(name, Linkage::Local, &func.signature)
            .map_err(|e| err(e.to_string()))?;
        let mut ctx = Context::for_function(func);
        self.module
            .define_function(id, &mut ctx)
            .map_err(|e| err(format!("{e:?}")))?;
        Ok(id)
    }

    pub(super) fn finalize(&mut self) -> Result<(), CodegenError> {
        self.module
            .finalize_definitions()
            .map_err(|e| CodegenError::Compile {
                kernel: "(module)".into(),
                message: e.to_string(),
            })
    }
}

/// The kernels `ids` as text: Cranelift IR, or the machine code Cranelift generates for this CPU.
pub fn listing(ids: &[super::KernelId], asm: bool) -> Result<String, CodegenError> {
    let jit = Jit::new()?;
    let config = jit.module.target_config();
    let mut out = String::new();
    for &id in ids {
        let func = super::build(id, config);
        out.push_str(&format!("; kernel {id:?}\n"));
        if asm {
            let mut ctx = Context::for_function(func);
            ctx.set_disasm(true);
            let mut ctrl = cranelift_codegen::control::ControlPlane::default();
            let code =
                ctx.compile(jit.module.isa(), &mut ctrl)
                    .map_err(|e| CodegenError::Compile {
                        kernel: format!("{id:?}"),
                        message: format!("{:?}", e.inner),
                    })?;
            out.push_str(code.vcode.as_deref().unwrap_or(""));
        } else {
            out.push_str(&func.display().to_string());
        }
        out.push('\n');
    }
    Ok(out)
}
