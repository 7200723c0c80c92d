//! Packing matrices into the panel layouts the GEMM kernel reads: contiguous, zero-padded to whole panels.

use super::gemm::{TILE_M, TILE_N};

/// Panels of `TILE_M` rows of a row-major `a [m x k]`: for panel `i` and each `p`, the values
/// `a[i*TILE_M + r][p]` for `r` in the tile, rows past `m` as zeros.
pub fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let panels = m.div_ceil(TILE_M);
    let mut out = vec![0.0; panels * k * TILE_M];
    for i in 0..panels {
        for r in 0..TILE_M {
            let row = i * TILE_M + r;
            if row >= m {
                break;
            }
            for p in 0..k {
                out[(i * k + p) * TILE_M + r] = a[row * k + p];
            }
        }
    }
    out
}

/// Panels of `TILE_N` columns of a row-major `b [k x n]`: for panel `j` and each `p`, the values
/// `b[p][j*TILE_N + t]`, columns past `n` as zeros.
pub fn pack_b(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    let panels = n.div_ceil(TILE_N);
    let mut out = vec![0.0; panels * k * TILE_N];
    for j in 0..panels {
        let cols = TILE_N.min(n - j * TILE_N);
        for p in 0..k {
            let src = &b[p * n + j * TILE_N..p * n + j * TILE_N + cols];
            out[(j * k + p) * TILE_N..(j * k + p) * TILE_N + cols].copy_from_slice(src);
        }
    }
    out
}
