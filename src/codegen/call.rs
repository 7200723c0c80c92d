//! The boundary into generated code: the only `unsafe` of the project. Each handle checks everything the
//! generated function assumes (buffer lengths) before calling it.

use cranelift_module::Module;

use super::jit::{CodegenError, Jit};

type GemmFn = unsafe extern "C" fn(*const f32, *const f32, *mut f32, i64, i64, i64, i64, i64, i64);

/// A compiled single-precision matrix product.
pub struct Gemm {
    /// Owns the executable memory `f` points into.
    _jit: Jit,
    f: GemmFn,
}

impl Gemm {
    pub fn new() -> Result<Gemm, CodegenError> {
        let mut jit = Jit::new()?;
        let func = super::gemm::build(jit.module.target_config());
        let id = jit.define("gemm_f32", func)?;
        jit.finalize()?;
        let code = jit.module.get_finalized_function(id);
        // SAFETY: `code` is the entry of the function `gemm::build` made, whose signature is
        // `gemm::signature`: nine i64-sized arguments in the platform's default calling convention, matching
        // `GemmFn`; it stays mapped as long as `_jit` lives, which is as long as `f` can be called.
        let f = unsafe { std::mem::transmute::<*const u8, GemmFn>(code) };
        Ok(Gemm { _jit: jit, f })
    }

    /// `c = a . b` for row-major `a [m x k]`, `b [k x n]` and `c [m x n]`.
    ///
    /// # Panics
    /// If a slice is shorter than its matrix (a caller's bug).
    pub fn run(&self, a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
        assert!(
            a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
            "gemm: a matrix is larger than its slice"
        );
        if m == 0 || n == 0 {
            return;
        }
        let i = |v: usize| v as i64;
        // SAFETY: the kernel reads a[0 .. m*k], b[0 .. k*n] and writes c[0 .. m*n] (leading dimensions k, n, n),
        // all inside the slices checked above; `c` is borrowed mutably, so nothing else aliases it.
        unsafe {
            (self.f)(
                a.as_ptr(),
                b.as_ptr(),
                c.as_mut_ptr(),
                i(m),
                i(n),
                i(k),
                i(k),
                i(n),
                i(n),
            )
        }
    }
}
