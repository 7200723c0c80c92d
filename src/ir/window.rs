//! Pooling windows along one axis, PyTorch's rules, shared by the interpreter and the native runtime.

/// An average-pooling window along an axis: the input range it reads and its divisor's extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// For `count_include_pad`: the window clipped to the input plus trailing padding.
    pub padded_len: usize,
}

/// The window of output cell `o` along an axis of length `len` (clipped to the input plus trailing padding for
/// the divisor, to the input for the cells read; empty when it lies in padding).
pub fn average(o: usize, len: usize, k: usize, s: usize, pad_lo: usize, pad_hi: usize) -> Span {
    let start = (o * s) as i64 - pad_lo as i64;
    let end = (start + k as i64).min((len + pad_hi) as i64);
    let padded_len = (end - start).max(0) as usize;
    let first = start.max(0) as usize;
    Span {
        start: first,
        end: (end.min(len as i64).max(0) as usize).max(first),
        padded_len,
    }
}

/// Adaptive pooling's window `[floor(o * len / out), ceil((o + 1) * len / out))`.
pub fn adaptive(o: usize, len: usize, out: usize) -> (usize, usize) {
    (o * len / out, ((o + 1) * len).div_ceil(out))
}
