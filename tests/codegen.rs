//! Generated kernels against plain Rust references, on random shapes including sizes that are not
//! multiples of the vector width or the register tile.

use nnc::runtime::MatMul;
use nnc::tensor::Rng;

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
        MatMul::new(&b, m, n, k, threads)
            .expect("the host is supported")
            .run(&a, &mut c);
        let want = reference(&a, &b, m, n, k);
        for (idx, (&got, &exact)) in c.iter().zip(&want).enumerate() {
            // f32 accumulation of k products of values below 1: error below k * 2^-23 in absolute terms.
            let tol = 1e-6 * (k as f64 + 1.0);
            assert!(
                (got as f64 - exact).abs() <= tol,
                "{m}x{n}x{k}: c[{idx}] = {got}, expected {exact}"
            );
        }
        assert!(
            c[m * n..].iter().all(|v| v.is_nan()),
            "{m}x{n}x{k}: wrote past the end of c"
        );
    }
}
