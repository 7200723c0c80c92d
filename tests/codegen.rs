//! Generated kernels against plain Rust references, on random shapes including sizes that are not
//! multiples of the vector width or the register tile.

use nnc::codegen::{ActKind, GemmImpl};
use nnc::runtime::{MatMul, MatMulOptions};
use nnc::tensor::Rng;

/// The GEMM implementations this CPU runs (the others skipped with a note).
fn implementations() -> Vec<GemmImpl> {
    [GemmImpl::Cranelift, GemmImpl::Avx2, GemmImpl::Avx512]
        .into_iter()
        .filter(|g| {
            let ok = g.available();
            if !ok {
                eprintln!("skipped: this CPU cannot run the {} GEMM", g.name());
            }
            ok
        })
        .collect()
}

fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
        }
    }
    c
}

#[test]
fn gemm_matches_the_reference_on_odd_and_tiled_sizes() {
    for gemm in implementations() {
        matches_the_reference(gemm);
    }
}

fn matches_the_reference(gemm: GemmImpl) {
    let mut rng = Rng::new(42);
    let mut shapes: Vec<(usize, usize, usize)> = vec![
        (1, 1, 1),
        (4, 8, 1),
        (4, 8, 16),
        (3, 7, 5),
        (5, 9, 3),
        (8, 16, 33),
        (0, 3, 4),
        (3, 0, 4),
        (2, 3, 0),
    ];
    for _ in 0..40 {
        shapes.push((
            1 + rng.next_u64() as usize % 37,
            1 + rng.next_u64() as usize % 41,
            1 + rng.next_u64() as usize % 29,
        ));
    }
    shapes.push((64, 64, 64));
    shapes.push((67, 131, 45));
    shapes.push((9, 17, 600));
    shapes.push((33, 40, 513));
    // Rows shared between two threads (m + n odd): one share each, and shares of at most 256 rows.
    shapes.push((201, 40, 300));
    shapes.push((517, 24, 70));
    // One to four rows streaming B, on two threads: the second thread's columns start in the middle of a
    // 32-column group of packed B for the AVX2 kernel (whose blocks are whole pairs of panels), so its
    // calls of several groups (`mode` bit 4) start at the next group.
    shapes.push((1, 96, 300));
    shapes.push((3, 200, 70));
    // Two-panel (16-column) calls of the AVX2 kernel, whole and with a short second panel or a lone last one.
    for n in [9, 15, 16, 17, 24, 31, 32, 47] {
        shapes.push((13, n, 300));
    }
    for (m, n, k) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|_| rng.uniform_in(-1.0, 1.0) as f32)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|_| rng.uniform_in(-1.0, 1.0) as f32)
            .collect();
        // Guard values past the end of c must survive: the kernel may not write outside its matrix.
        let mut c = vec![f32::NAN; m * n + 8];
        // One and two threads, and depths beyond one k block (KC = 256) in the larger shapes.
        let threads = 1 + (m + n) % 2;
        let o = MatMulOptions {
            gemm,
            ..MatMulOptions::new(threads)
        };
        MatMul::with_options(&b, m, n, k, &o)
            .expect("the host is supported")
            .run(&a, &mut c);
        let want = reference(&a, &b, m, n, k);
        for (idx, (&got, &exact)) in c.iter().zip(&want).enumerate() {
            // f32 accumulation of k products of values below 1: error below k * 2^-23 in absolute terms.
            let tol = 1e-6 * (k as f64 + 1.0);
            assert!(
                (got as f64 - exact).abs() <= tol,
                "{gemm:?} {m}x{n}x{k}: c[{idx}] = {got}, expected {exact}"
            );
        }
        assert!(
            c[m * n..].iter().all(|v| v.is_nan()),
            "{gemm:?} {m}x{n}x{k}: wrote past the end of c"
        );
    }
}

fn activation(act: ActKind, x: f64, slope: f64) -> f64 {
    match act {
        ActKind::Identity => x,
        ActKind::Relu => x.max(0.0),
        ActKind::LeakyRelu => {
            if x < 0.0 {
                slope * x
            } else {
                x
            }
        }
        ActKind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        ActKind::Tanh => x.tanh(),
    }
}

/// Edge tiles (rows 1..9; cols 1..8, and 9..16 wide for the AVX2 kernel's two-panel calls, in products up
/// to 33 columns wide), depths of one k step, a few and two k blocks (KC = 256, so the second
/// block accumulates onto the first), and every epilogue activation with non-trivial row scales, row and
/// column shifts and a LeakyRelu slope, on each implementation; the two agree bitwise.
#[test]
fn gemm_epilogues_and_edge_tiles_on_both_implementations() {
    let acts = [
        ActKind::Identity,
        ActKind::Relu,
        ActKind::LeakyRelu,
        ActKind::Sigmoid,
        ActKind::Tanh,
    ];
    let mut rng = Rng::new(3);
    let mut rand = |n: usize, lo: f64, hi: f64| -> Vec<f32> {
        (0..n).map(|_| rng.uniform_in(lo, hi) as f32).collect()
    };
    let slope = 0.1f32;
    for m in 1..=9 {
        for n in [1, 2, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 33, 40, 65] {
            for k in [1, 7, 300] {
                let a = rand(m * k, -1.0, 1.0);
                let b = rand(k * n, -1.0, 1.0);
                let (rs, rt, cs) = (rand(m, 0.5, 1.5), rand(m, -0.5, 0.5), rand(n, -0.5, 0.5));
                let product = reference(&a, &b, m, n, k);
                for act in acts {
                    let mut results: Vec<(GemmImpl, Vec<f32>)> = Vec::new();
                    for gemm in implementations() {
                        let o = MatMulOptions {
                            threads: 1,
                            gemm,
                            act,
                            slope,
                            row_scale: rs.clone(),
                            row_shift: rt.clone(),
                            col_shift: cs.clone(),
                        };
                        let mut c = vec![f32::NAN; m * n + 8];
                        let mut mm = MatMul::with_options(&b, m, n, k, &o).expect("runs here");
                        assert_eq!(mm.gemm(), gemm);
                        mm.run(&a, &mut c);
                        for (idx, &got) in c[..m * n].iter().enumerate() {
                            let (i, j) = (idx / n, idx % n);
                            let v = product[idx] * rs[i] as f64 + rt[i] as f64 + cs[j] as f64;
                            let want = activation(act, v, slope as f64);
                            let tol = 1e-6 * (k as f64 + 1.0) * 2.0;
                            assert!(
                                (got as f64 - want).abs() <= tol,
                                "{gemm:?} {act:?} {m}x{n}x{k}: c[{idx}] = {got}, expected {want}"
                            );
                        }
                        assert!(
                            c[m * n..].iter().all(|v| v.is_nan()),
                            "{gemm:?}: wrote past c"
                        );
                        results.push((gemm, c));
                    }
                    let (first, x) = &results[0];
                    for (other, y) in &results[1..] {
                        let same = x.iter().zip(y).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{act:?} {m}x{n}x{k}: {other:?} and {first:?} differ");
                    }
                }
            }
        }
    }
}

/// A product of 541 rows on 16 threads: its packed weights are laid out for row tiles (more than 12
/// rows: groups of one call's columns), and its last row share has one row, which a wide kernel runs as
/// calls over several 32-column groups at once (`mode` bit 4), whose panels then come in runs (two
/// side by side, then the next two `k` rows on, for the AVX2 kernel) rather than side by side. The
/// same values as the reference, and the same bits as on one thread.
#[test]
fn a_one_row_share_reads_weights_packed_for_row_tiles() {
    let (m, n, k) = (541, 100, 300);
    let mut rng = Rng::new(17);
    let mut rand =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.uniform_in(-1.0, 1.0) as f32).collect() };
    let (a, b) = (rand(m * k), rand(k * n));
    let want = reference(&a, &b, m, n, k);
    for gemm in implementations() {
        let run = |threads: usize| {
            let o = MatMulOptions {
                gemm,
                ..MatMulOptions::new(threads)
            };
            let mut c = vec![f32::NAN; m * n];
            MatMul::with_options(&b, m, n, k, &o)
                .expect("the host is supported")
                .run(&a, &mut c);
            c
        };
        let (one, many) = (run(1), run(16));
        for (idx, (&got, &exact)) in many.iter().zip(&want).enumerate() {
            assert!(
                (got as f64 - exact).abs() <= 1e-6 * (k as f64 + 1.0),
                "{gemm:?}: c[{idx}] = {got}, expected {exact}"
            );
        }
        let same = one
            .iter()
            .zip(&many)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{gemm:?}: 16 threads and one differ");
    }
}
