//! The boundary into generated code: the only `unsafe` of the project. Each handle checks everything the
//! generated function assumes (buffer lengths) before calling it.

use cranelift_module::Module;

use super::gemm::{TILE_M, TILE_N};
use super::jit::{CodegenError, Jit};
use super::pack;

type GemmFn = unsafe extern "C" fn(*const f32, *const f32, *mut f32, i64, i64, i64, i64);

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

    /// `c = a . b` for row-major `a [m x k]`, `b [k x n]` and `c [m x n]`. Packs both operands; use
    /// [`Gemm::run_packed`] to pack a constant operand (weights) once.
    ///
    /// # Panics
    /// If a slice is shorter than its matrix (a caller's bug).
    pub fn run(&self, a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
        assert!(
            a.len() >= m * k && b.len() >= k * n,
            "gemm: a matrix is larger than its slice"
        );
        self.run_packed(&pack::pack_a(a, m, k), &pack::pack_b(b, k, n), c, m, n, k);
    }

    /// `c = a . b` from operands already packed by [`pack::pack_a`] and [`pack::pack_b`].
    ///
    /// # Panics
    /// If a slice is shorter than its (packed) matrix.
    pub fn run_packed(
        &self,
        a_packed: &[f32],
        b_packed: &[f32],
        c: &mut [f32],
        m: usize,
        n: usize,
        k: usize,
    ) {
        let (mb, nb) = (m.div_ceil(TILE_M), n.div_ceil(TILE_N));
        assert!(
            a_packed.len() >= mb * TILE_M * k
                && b_packed.len() >= nb * TILE_N * k
                && c.len() >= m * n,
            "gemm: a matrix is larger than its slice"
        );
        if m == 0 || n == 0 {
            return;
        }
        // Whole tiles are written: straight into `c` when it has no partial tile, else into a padded
        // scratch matrix whose existing part is then copied out.
        let whole = m.is_multiple_of(TILE_M) && n.is_multiple_of(TILE_N);
        let (rows, cols) = (mb * TILE_M, nb * TILE_N);
        let mut scratch = if whole {
            Vec::new()
        } else {
            vec![0.0f32; rows * cols]
        };
        let (out, ldc) = if whole {
            (&mut c[..m * n], n)
        } else {
            (&mut scratch[..], cols)
        };
        let i = |v: usize| v as i64;
        // SAFETY: the kernel reads mb*k*TILE_M values of `a_packed` and nb*k*TILE_N of `b_packed` (checked
        // above) and writes the rows*cols tiles of `out` with leading dimension `ldc`: `out` holds m*n = rows*cols
        // values when whole, rows*cols otherwise. `out` is borrowed mutably, so nothing else aliases it.
        unsafe {
            (self.f)(
                a_packed.as_ptr(),
                b_packed.as_ptr(),
                out.as_mut_ptr(),
                i(mb),
                i(nb),
                i(k),
                i(ldc),
            )
        }
        if !whole {
            for r in 0..m {
                c[r * n..(r + 1) * n].copy_from_slice(&scratch[r * cols..r * cols + n]);
            }
        }
    }
}
