//! The codegen room, the only one that knows Cranelift: kernels generated as Cranelift IR and compiled by its
//! JIT to native code for this CPU. Every kernel has one signature, `fn(args: *const i64)` (`builder.rs`);
//! each [`KernelId`] documents its arguments. Kernels are generic over sizes, which arrive as arguments,
//! so a program needs a handful of them, compiled together in milliseconds. Generated code is the only code
//! that touches tensor memory; `call.rs` is the one place that enters it.

mod builder;
mod call;
mod elementwise;
mod gemm;
mod jit;
mod math;
mod pack;
mod pool;
mod rnn;

pub use call::{Kernels, Table};
pub use gemm::{KC, TILE_M, TILE_N};
pub use jit::{listing, CodegenError, Jit};
pub use pack::{pack_a, pack_b, pack_b_transposed, panel_offset};

/// An activation applied by a kernel's epilogue or by an elementwise kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActKind {
    Identity,
    Relu,
    /// `x > 0 ? x : slope * x`, the slope an f32 argument.
    LeakyRelu,
    Sigmoid,
    Tanh,
}

/// Every kernel nnc generates. Arguments are i64: pointers are byte addresses, sizes and strides are counts
/// of f32 elements unless marked "bytes", and `f32` arguments are the bits of an f32 in the low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelId {
    /// One column panel of a packed GEMM, `C[rows, cols] (+)= A[rows, kc] . B[kc, cols]`, cols <= 8:
    /// `[a, b, b_stride_bytes, c, ldc_bytes, rows, cols, kc, mode, row_scale, row_shift, col_shift, slope]`.
    /// `a` is packed in panels of 4 rows (`pack::PackRows` layout, panel stride `kc * 4`), `b` has row `p`
    /// at `b + p * b_stride_bytes` with 8 readable values. `mode` bit 0: add to C's values; bit 1: last
    /// block, so apply the epilogue `act(v * row_scale[r] + row_shift[r] + col_shift[c])` (pointers to the
    /// entries of the first row and column).
    Gemm(ActKind),
    /// Packs a B panel of convolution patches: `[x, out, taps, table, ci0, ci1, plane, runs]`: for each input
    /// channel `ci` in `ci0..ci1`, tap `t` and column `j < 8`, `out[((ci - ci0) * taps + t) * 8 + j] =
    /// table[t * 8 + j] < 0 ? 0 : x[ci * plane + table[t * 8 + j]]` (`table` holds i32). `runs[t]` (i32) is 1
    /// when tap `t`'s offsets are consecutive and inside, so its 8 values are read with two vector loads.
    PackPatches,
    /// Packs rows of a matrix into panels of 4 rows: `[x, out, rows, k0, k1, ld]`: for row `r < 4` and `p` in
    /// `k0..k1`, `out[(p - k0) * 4 + r] = r < rows ? x[r * ld + p] : 0`.
    PackRows,
    /// `[x, y, n, slope]`: `y[i] = act(x[i])`; `x` may equal `y`.
    Unary(ActKind),
    /// `[a, b, y, n]`: `y[i] = a[i] + b[i]`.
    Add,
    /// `[a, b, y, n]`: `y[i] = a[i] * b[i]`.
    Mul,
    /// `[x, y, scale, shift, channels, plane, slope]`: `y[c * plane + i] = act(x[..] * scale[c] + shift[c])`.
    Affine(ActKind),
    /// `[x, y, outer, len, inner]`: softmax over the middle axis of `[outer, len, inner]`.
    Softmax,
    /// `[x, y, channels, plane, size, alpha, beta, k]` (the last three f32), one image `[C, plane]`:
    /// `y = x / (k + alpha / size * sum of x^2 over channels c - size/2 ..= c + (size-1)/2)^beta`.
    Lrn,
    /// `[src, dst, rows, len, src_stride, dst_stride]`: copies `rows` rows of `len` values.
    Copy,
    /// `[dst, n, value]` (value f32).
    Fill,
    /// Pooling over planes with window tables: `[x, y, oh, ow, iw, rows, cols, div, planes, in_plane, row,
    /// v_lo, v_hi, v_start, v_count, v_step]`.
    /// `rows` and `cols` are i32 triples `(start, count, step)` per output row and column (input rows
    /// `start + i * step` for `i < count`); `div` the f32 divisor per output row and column (`div[o]` for
    /// rows, `div[oh + o]` for columns; averaging divides by their product). Plane `q` of `x` starts at
    /// `q * in_plane`, of `y` at `q * oh * ow`. A max over no element is -inf. `row` is scratch for `iw` values.
    /// Output columns `v_lo..v_hi` (a multiple of 4 long) have the windows `(v_start + c - v_lo, v_count,
    /// v_step)`: they are computed four at a time.
    MaxPool,
    AvgPool,
    /// `[idx, table, y, count, dim]`: `y[i * dim ..] = table[idx[i] * dim ..]`, `idx` i32, checked before.
    Embedding,
    /// One LSTM step for a batch: `[gx, gh, c, h, n, hidden, gx_stride, h_stride]`: gate pre-activations
    /// `gx[b * gx_stride + ..]` (input projection with its bias) and `gh[b * 4 hidden ..]`; updates `c[b *
    /// hidden ..]` and writes `h[b * h_stride ..]`. PyTorch gate order i, f, g, o.
    LstmCell,
    /// One GRU step: `[gx, gh, h_prev, h, n, hidden, gx_stride, h_stride, hp_stride]`, gate order r, z, n.
    GruCell,
    /// One simple-RNN step: `[gx, gh, h, n, hidden, gx_stride, h_stride]`: `h = act(gx + gh)`.
    RnnCell(ActKind),
}

/// Generates the Cranelift function of kernel `id`.
fn build(
    id: KernelId,
    config: cranelift_codegen::isa::TargetFrontendConfig,
) -> cranelift_codegen::ir::Function {
    match id {
        KernelId::Gemm(act) => gemm::build(act, config),
        KernelId::PackPatches => pack::build_patches(config),
        KernelId::PackRows => pack::build_rows(config),
        KernelId::MaxPool => pool::build(true, config),
        KernelId::AvgPool => pool::build(false, config),
        KernelId::LstmCell | KernelId::GruCell | KernelId::RnnCell(_) => rnn::build(id, config),
        KernelId::Unary(_)
        | KernelId::Add
        | KernelId::Mul
        | KernelId::Affine(_)
        | KernelId::Softmax
        | KernelId::Lrn
        | KernelId::Copy
        | KernelId::Fill
        | KernelId::Embedding => elementwise::build(id, config),
    }
}
