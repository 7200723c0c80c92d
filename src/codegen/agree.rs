//! The Rust GEMM kernels (`avx2.rs`, `avx512.rs`) against the Cranelift one, bit for bit, on every tile
//! shape, mode and activation, with B's panels apart (a dense layer's packed weights) and side by side
//! (a convolution's input read in place, or its packed patches); and the Rust `PackPatches` (`twins.rs`)
//! against the Cranelift one.

use super::{ActKind, GemmImpl, KernelId, Kernels, GEMM_WIDEST_N, STREAM_PANEL_ROWS, TILE_N};
use crate::tensor::Rng;

/// B's layout in a call: elements between rows, between panels and (`mode` bit 4) between groups of
/// [`GEMM_WIDEST_N`] columns.
#[derive(Clone, Copy, Debug)]
struct Layout {
    stride: usize,
    next: usize,
    group: usize,
}

/// Runs one macro-kernel call of `k` on C (with guards) from column `col0` on (B from `b_at`, the
/// column shifts from `col0`), returning C.
#[allow(clippy::too_many_arguments)]
fn call(
    k: &Kernels,
    act: ActKind,
    a: &[f32],
    b: &[f32],
    b_at: usize,
    l: Layout,
    (c0, ldc, col0): (&[f32], usize, usize),
    (rows, cols, kc, mode): (usize, usize, usize, i64),
    factors: &[Vec<f32>; 3],
) -> Vec<f32> {
    let mut c = c0.to_vec();
    let args = [
        a.as_ptr() as i64,
        b[b_at..].as_ptr() as i64,
        (4 * l.stride) as i64,
        c[col0..].as_mut_ptr() as i64,
        (4 * ldc) as i64,
        rows as i64,
        cols as i64,
        kc as i64,
        mode,
        factors[0].as_ptr() as i64,
        factors[1].as_ptr() as i64,
        factors[2][col0..].as_ptr() as i64,
        0.125f32.to_bits() as i64,
        (4 * l.next) as i64,
        (4 * l.group) as i64,
    ];
    k.call(KernelId::Gemm(act), &args);
    c
}

/// One call of `wide` on C (guards around it) against one Cranelift call per panel (panel `j`'s B at
/// `b_at(j)`, `mode` `lift_mode`): the same bits, and nothing written outside C's `rows x cols`. With
/// `mode` bit 5, also the values of `wide` with zero column shifts added (up to the sign of zero): the bit
/// drops the column vector and nothing else.
#[allow(clippy::too_many_arguments)]
fn agrees(
    (wide, lift): (&Kernels, &Kernels),
    act: ActKind,
    (a, b): (&[f32], &[f32]),
    l: Layout,
    b_at: impl Fn(usize) -> usize,
    (c0, ldc): (&[f32], usize),
    at: (usize, usize, usize, i64),
    lift_mode: i64,
    factors: &[Vec<f32>; 3],
) {
    let (rows, cols, kc, mode) = at;
    let y = call(wide, act, a, b, 0, l, (c0, ldc, 0), at, factors);
    let mut x = c0.to_vec();
    for j in 0..cols.div_ceil(TILE_N) {
        let col0 = j * TILE_N;
        let here = (rows, TILE_N.min(cols - col0), kc, lift_mode);
        x = call(
            lift,
            act,
            a,
            b,
            b_at(j),
            l,
            (&x[..], ldc, col0),
            here,
            factors,
        );
    }
    for (i, (x, y)) in x.iter().zip(&y).enumerate() {
        let inside = i / ldc < rows && i % ldc < cols;
        let (x0, c) = (x.to_bits(), c0[i].to_bits());
        assert_eq!(x0, y.to_bits(), "{l:?} {act:?} {at:?}: c[{i}] differs");
        assert!(
            inside || y.to_bits() == c,
            "{l:?} {act:?} {at:?}: c[{i}] written"
        );
    }
    if mode & 32 != 0 {
        let zero = [
            factors[0].clone(),
            factors[1].clone(),
            vec![0.0; factors[2].len()],
        ];
        let at = (rows, cols, kc, mode & !32);
        let z = call(wide, act, a, b, 0, l, (c0, ldc, 0), at, &zero);
        let same = y
            .iter()
            .zip(&z)
            .all(|(y, z)| y == z || y.is_nan() && z.is_nan());
        assert!(
            same,
            "{l:?} {act:?} {at:?}: bit 5 changes more than the column shifts"
        );
    }
}

/// The epilogues the agreement tests call.
const ACTS: [ActKind; 3] = [ActKind::Identity, ActKind::Relu, ActKind::LeakyRelu];

/// The kernels `ids` of the Cranelift set and of `gemm`'s, or `None` (with a note) when this CPU cannot
/// run `gemm`.
fn cranelift_and(gemm: GemmImpl, ids: &[KernelId]) -> Option<(Kernels, Kernels)> {
    if !gemm.available() {
        eprintln!("skipped: this CPU cannot run the {} kernels", gemm.name());
        return None;
    }
    let lift = Kernels::compile_with(ids, GemmImpl::Cranelift).unwrap();
    Some((lift, Kernels::compile_with(ids, gemm).unwrap()))
}

/// The GEMM kernels, one per [`ACTS`] epilogue.
fn gemm_ids() -> Vec<KernelId> {
    ACTS.iter().map(|&a| KernelId::Gemm(a)).collect()
}

/// `gemm`'s calls of 1 to [`super::Table::gemm_cols`] columns give the bits of one Cranelift call per
/// panel, and write only C's `rows x cols` elements.
fn agrees_bitwise(gemm: GemmImpl) {
    let Some((lift, wide)) = cranelift_and(gemm, &gemm_ids()) else {
        return;
    };
    let width = wide.table().gemm_cols(ActKind::Identity);
    assert_eq!(width, gemm.panels_per_call() * TILE_N);
    let mut rng = Rng::new(7);
    let mut rand =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform_in(-1.0, 1.0) as f32).collect() };
    let ldc = width + 3;
    // Up to 4 panels of A, then row counts that fill the kernels' 2- to 16-panel tiles with every
    // remainder.
    for rows in (1..=13usize).chain([24, 45, 50, 53, 63, 100]) {
        for cols in 1..=width {
            for kc in [0, 1, 7, 33] {
                let mut a = rand(rows.div_ceil(4) * 4 * kc);
                // Zero padding past the last row, as `PackRows` leaves it.
                for p in 0..kc {
                    for r in rows..rows.div_ceil(4) * 4 {
                        a[(r / 4) * 4 * kc + p * 4 + r % 4] = 0.0;
                    }
                }
                let apart = Layout {
                    stride: 12,
                    next: 12 * kc + 8,
                    group: 0,
                };
                let side_by_side = Layout {
                    stride: width + 4,
                    next: TILE_N,
                    group: 0,
                };
                let b = rand(4 * (12 * kc + 8) + (width + 4) * kc + width);
                let factors = [rand(rows + 8), rand(rows + 8), rand(width + 8)];
                let c0 = rand(rows * ldc + 16);
                for l in [apart, side_by_side] {
                    for &act in &ACTS {
                        // Bits 2 and 3 (B streams, B in place: hints the AVX-512 kernel prefetches
                        // by) change no value.
                        // Bit 5 (no column shifts) skips the column vector in every kernel alike.
                        // Bit 6 (A from L3: the AVX2 kernel prefetches it) changes no value either.
                        for mode in (0..16).chain([34, 35, 38, 42, 64, 65, 66, 67, 98, 99]) {
                            let at = (rows, cols, kc, mode);
                            let ab = (&a[..], &b[..]);
                            agrees(
                                (&wide, &lift),
                                act,
                                ab,
                                l,
                                |j| j * l.next,
                                (&c0, ldc),
                                at,
                                mode,
                                &factors,
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn avx2_and_cranelift_agree_bitwise() {
    agrees_bitwise(GemmImpl::Avx2);
}

#[test]
fn avx512_and_cranelift_agree_bitwise() {
    agrees_bitwise(GemmImpl::Avx512);
}

/// Calls with `mode` bit 4 (up to [`super::Table::stream_cols`] columns in groups of [`GEMM_WIDEST_N`],
/// each group's B `group` elements after the previous one's) give the bits of one Cranelift call per
/// panel, and write only C's `rows x cols` elements: one to four rows, every column count, groups whose
/// panels are side by side (the AVX-512 kernel's packed weights), in two runs of two (the AVX2 kernel's)
/// or apart.
fn stream_groups_agree_bitwise(gemm: GemmImpl, groups: usize) {
    let Some((lift, wide)) = cranelift_and(gemm, &gemm_ids()) else {
        return;
    };
    let width = wide.table().stream_cols(ActKind::Identity);
    assert_eq!(width, groups * GEMM_WIDEST_N);
    let mut rng = Rng::new(11);
    let mut rand =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform_in(-1.0, 1.0) as f32).collect() };
    let ldc = width + 3;
    for rows in 1..=STREAM_PANEL_ROWS {
        for kc in [0, 1, 7, 33] {
            let mut a = rand(4 * kc);
            for p in 0..kc {
                for r in rows..4 {
                    a[p * 4 + r] = 0.0;
                }
            }
            let side_by_side = Layout {
                stride: GEMM_WIDEST_N,
                next: TILE_N,
                group: GEMM_WIDEST_N * kc + 16,
            };
            let apart = Layout {
                stride: 12,
                next: 12 * kc + 8,
                group: 4 * (12 * kc + 8) + 5,
            };
            // Weights packed for the AVX2 kernel's row tiles (`runtime::exec::dense_b_width`): each
            // group's panels in two runs of two side by side, the second run `kc` rows after the first.
            let runs_of_two = Layout {
                stride: 2 * TILE_N,
                next: TILE_N,
                group: GEMM_WIDEST_N * kc + 16,
            };
            // Panels per run of each layout (runs `kc` rows apart); 0: every panel `next` apart.
            let mut layouts = vec![(side_by_side, 4), (apart, 0)];
            if gemm == GemmImpl::Avx2 {
                layouts.push((runs_of_two, 2));
            }
            let b = rand(4 * (4 * (12 * kc + 8) + 5) + 4 * (GEMM_WIDEST_N * kc + 16));
            let factors = [rand(rows + 8), rand(rows + 8), rand(width + 8)];
            let c0 = rand(rows * ldc + 16);
            for cols in 1..=width {
                for &(l, run) in &layouts {
                    for &act in &ACTS {
                        for mode in [16, 17, 18, 19, 20, 23, 31, 50, 51] {
                            let at = (rows, cols, kc, mode);
                            let ab = (&a[..], &b[..]);
                            let b_at = |j: usize| {
                                let q = j % 4;
                                (j / 4) * l.group
                                    + match run {
                                        0 => q * l.next,
                                        _ => (q / run) * kc * l.stride + (q % run) * l.next,
                                    }
                            };
                            agrees(
                                (&wide, &lift),
                                act,
                                ab,
                                l,
                                b_at,
                                (&c0, ldc),
                                at,
                                mode & !16,
                                &factors,
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn avx512_stream_groups_and_cranelift_agree_bitwise() {
    stream_groups_agree_bitwise(GemmImpl::Avx512, 4);
}

#[test]
fn avx2_stream_groups_and_cranelift_agree_bitwise() {
    stream_groups_agree_bitwise(GemmImpl::Avx2, 3);
}

/// A random tap of a patch pattern over a plane of `plane` values: its 8 offsets (-1: padding) and how
/// `PackPatches` reads them (`[kind, a1, a2, 0, mask1 x 8, mask2 x 8]`), of kind `kind`.
fn random_tap(rng: &mut Rng, kind: i32, plane: usize) -> ([i32; 8], [i32; super::TAP_READ]) {
    let mut pick = |n: usize| (rng.uniform_in(0.0, n as f64) as usize).min(n - 1);
    let mut table = [-1i32; 8];
    let mut runs = [0i32; super::TAP_READ];
    runs[0] = kind;
    match kind {
        1 => {
            let first = pick(plane - 7) as i32;
            for (j, o) in table.iter_mut().enumerate() {
                *o = first + j as i32;
            }
        }
        2..=5 => {
            let step = kind - 1;
            let span = 8 * step as usize;
            // Two starts, or one (a1 == a2) with some or all columns present.
            let shape = pick(3);
            let a1 = pick(plane - span + 1) as i32;
            let a2 = if shape == 0 {
                pick(plane - span + 1) as i32
            } else {
                a1
            };
            runs[1] = a1;
            runs[2] = a2;
            for (j, o) in table.iter_mut().enumerate() {
                match if shape == 2 { 0 } else { pick(3) } {
                    0 => {
                        *o = a1 + step * j as i32;
                        runs[4 + j] = -1;
                    }
                    1 => {
                        *o = a2 + step * j as i32;
                        runs[12 + j] = -1;
                    }
                    _ => {}
                }
            }
        }
        _ => {
            for o in table.iter_mut() {
                *o = pick(plane + 1) as i32 - 1;
            }
        }
    }
    (table, runs)
}

/// `PackPatches`' 9 arguments for one panel of `taps` taps (`table`, `runs`) over `x`, written to `out`.
fn patches_args(
    (x, out): (&[f32], *mut f32),
    taps: usize,
    (table, runs): (&[i32], &[i32]),
    (ci0, ci1): (usize, usize),
    (plane, ld): (usize, usize),
) -> Vec<i64> {
    vec![
        x.as_ptr() as i64,
        out as i64,
        taps as i64,
        table.as_ptr() as i64,
        ci0 as i64,
        ci1 as i64,
        plane as i64,
        runs.as_ptr() as i64,
        ld as i64,
    ]
}

/// The Rust `PackPatches` writes the bits the Cranelift one writes, tap kind by tap kind, with panels
/// side by side (`ld` of 8, 16 or 32) and nothing else of `out`.
#[test]
fn rust_and_cranelift_pack_patches_agree_bitwise() {
    let Some((lift, rust)) = cranelift_and(GemmImpl::Avx2, &[KernelId::PackPatches]) else {
        return;
    };
    let mut rng = Rng::new(11);
    let (plane, channels) = (45usize, 6usize);
    let x: Vec<f32> = (0..plane * channels)
        .map(|_| rng.uniform_in(-1.0, 1.0) as f32)
        .collect();
    for taps in [1usize, 4, 9] {
        for ld in [8usize, 16, 32] {
            for round in 0..20 {
                let mut table = Vec::new();
                let mut runs = Vec::new();
                for t in 0..taps {
                    let (tt, rr) = random_tap(&mut rng, ((round + t) % 6) as i32, plane);
                    table.extend(tt);
                    runs.extend(rr);
                }
                for (ci0, ci1) in [(0, channels), (2, 5), (3, 3)] {
                    let pack = |k: &Kernels| {
                        let mut out = vec![f32::NAN; channels * taps * ld + 8];
                        let to = (&x[..], out.as_mut_ptr());
                        let panel = (&table[..], &runs[..]);
                        let args = patches_args(to, taps, panel, (ci0, ci1), (plane, ld));
                        k.call(KernelId::PackPatches, &args);
                        out
                    };
                    let (want, got) = (pack(&lift), pack(&rust));
                    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                        assert_eq!(w.to_bits(), g.to_bits(), "taps {taps} ld {ld}: out[{i}]");
                        let written = i % ld < 8 && i / (taps * ld) < ci1 - ci0;
                        assert_eq!(!g.is_nan(), written, "taps {taps} ld {ld}: out[{i}]");
                    }
                }
            }
        }
    }
}

/// The Rust `PackRows` writes the bits the Cranelift one writes, for every row count of a panel, column
/// counts around the vector width and offsets `k0` that do not align the rows, and nothing else of
/// `out`.
#[test]
fn rust_and_cranelift_pack_rows_agree_bitwise() {
    let Some((lift, rust)) = cranelift_and(GemmImpl::Avx2, &[KernelId::PackRows]) else {
        return;
    };
    let mut rng = Rng::new(12);
    let ld = 37usize;
    // A -0.0 and a NaN with a payload among the values: copied as bits.
    let mut x: Vec<f32> = (0..4 * ld)
        .map(|_| rng.uniform_in(-1.0, 1.0) as f32)
        .collect();
    x[ld + 5] = -0.0;
    x[2 * ld + 9] = f32::from_bits(0x7fc0_1234);
    for rows in 0..=4usize {
        for k0 in [0usize, 3, 5] {
            for n in 0..=(ld - k0) {
                let pack = |k: &Kernels| {
                    let mut out = vec![f32::from_bits(0x7fc0_0001); 4 * n + 8];
                    let args = [
                        x.as_ptr() as i64,
                        out.as_mut_ptr() as i64,
                        rows as i64,
                        k0 as i64,
                        (k0 + n) as i64,
                        ld as i64,
                    ];
                    k.call(KernelId::PackRows, &args);
                    out
                };
                let (want, got) = (pack(&lift), pack(&rust));
                for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                    let at = format!("rows {rows} k0 {k0} n {n}: out[{i}]");
                    assert_eq!(w.to_bits(), g.to_bits(), "{at}");
                    if i < 4 * n {
                        let (p, r) = (k0 + i / 4, i % 4);
                        let value = if r < rows { x[r * ld + p] } else { 0.0 };
                        assert_eq!(g.to_bits(), value.to_bits(), "{at}");
                    } else {
                        assert_eq!(g.to_bits(), 0x7fc0_0001, "{at}: written");
                    }
                }
            }
        }
    }
}

/// A tap that continues `prev` in the next panel: the same step, its run starting where `prev`'s ends,
/// with random columns kept; `None` when `prev` is not one run or the plane ends first.
fn following_tap(
    rng: &mut Rng,
    (table, runs): (&[i32], &[i32]),
    plane: usize,
) -> Option<([i32; 8], [i32; super::TAP_READ])> {
    let (kind, a1, a2) = (runs[0], runs[1], runs[2]);
    let step = if kind == 3 { 2 } else { 1 };
    let start = match kind {
        1 => table[0] + 8,
        2 | 3 if a1 == a2 => a1 + 8 * step,
        _ => return None,
    };
    // Sometimes one value off: the panels no longer continue each other.
    let start = start + i32::from(rng.uniform_in(0.0, 1.0) < 0.2);
    if start as usize + 8 * step as usize > plane {
        return None;
    }
    let mut table = [-1i32; 8];
    let mut runs = [0i32; super::TAP_READ];
    let whole = kind == 1 && rng.uniform_in(0.0, 1.0) < 0.5;
    runs[0] = if whole { 1 } else { 1 + step };
    runs[1] = start;
    runs[2] = start;
    for (j, o) in table.iter_mut().enumerate() {
        if whole || rng.uniform_in(0.0, 1.0) < 0.7 {
            *o = start + step * j as i32;
            runs[4 + j] = if whole { 0 } else { -1 };
        }
    }
    Some((table, runs))
}

/// The AVX-512 `PackPatches`, given 1 to 4 panels in one call, writes the bits of one Cranelift call per
/// panel: panels whose taps continue each other (packed as one run of 16) and panels that do not, every
/// kind, both strides.
#[test]
fn wide_pack_patches_agrees_with_one_call_per_panel() {
    let Some((lift, wide)) = cranelift_and(GemmImpl::Avx512, &[KernelId::PackPatches]) else {
        return;
    };
    assert_eq!(wide.table().pack_panels(), super::PACK_PANELS);
    let mut rng = Rng::new(13);
    let (plane, channels, ld) = (150usize, 5usize, 32usize);
    let x: Vec<f32> = (0..plane * channels)
        .map(|_| rng.uniform_in(-1.0, 1.0) as f32)
        .collect();
    let mut joined = 0;
    for taps in [1usize, 3, 9] {
        for n in 1..=4usize {
            for round in 0..40 {
                // Per panel, its taps' offsets (TILE_N i32 each) and reads (TAP_READ each).
                let mut parts: Vec<(Vec<i32>, Vec<i32>)> = Vec::new();
                for j in 0..n {
                    let (mut table, mut runs) = (Vec::new(), Vec::new());
                    for t in 0..taps {
                        let follow = match j % 2 == 1 && (round + t) % 3 != 0 {
                            true => {
                                let (pt, pr) = &parts[j - 1];
                                let prev = (&pt[t * TILE_N..], &pr[t * super::TAP_READ..]);
                                following_tap(&mut rng, prev, plane)
                            }
                            false => None,
                        };
                        joined += usize::from(follow.is_some());
                        let kind = (rng.uniform_in(0.0, 6.0) as i32).min(5);
                        let (tt, rr) = follow.unwrap_or_else(|| random_tap(&mut rng, kind, plane));
                        table.extend(tt);
                        runs.extend(rr);
                    }
                    parts.push((table, runs));
                }
                for (ci0, ci1) in [(0, channels), (1, 4), (2, 2)] {
                    let args = |j: usize, out: &mut Vec<f32>| {
                        let to = (&x[..], out[8 * j..].as_mut_ptr());
                        let panel = (&parts[j].0[..], &parts[j].1[..]);
                        patches_args(to, taps, panel, (ci0, ci1), (plane, ld))
                    };
                    let mut want = vec![f32::NAN; channels * taps * ld + 8];
                    for j in 0..n {
                        let a = args(j, &mut want);
                        lift.call(KernelId::PackPatches, &a);
                    }
                    let mut got = vec![f32::NAN; channels * taps * ld + 8];
                    let mut a = args(0, &mut got);
                    a.push(n as i64);
                    for (table, runs) in &parts[1..] {
                        a.extend([x.as_ptr() as i64, table.as_ptr() as i64]);
                        a.push(runs.as_ptr() as i64);
                    }
                    wide.call(KernelId::PackPatches, &a);
                    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                        assert_eq!(w.to_bits(), g.to_bits(), "taps {taps} n {n}: out[{i}]");
                    }
                }
            }
        }
    }
    assert!(joined > 100);
}
