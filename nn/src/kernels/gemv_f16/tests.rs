//! Tests of the f16 GEMV: against a scalar reference on every path the CPU supports, shapes
//! and strides, and the ignored bandwidth measurement.

use super::*;
use candle_core::{Device, IndexOp};

/// `x · wᵀ` in f32 from the f16 tensors.
fn reference(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    let x32 = x.to_dtype(DType::F32)?;
    let w32 = w.to_dtype(DType::F32)?;
    let dims = x32.dims().to_vec();
    let k = dims[dims.len() - 1];
    let rows = x32.elem_count() / k;
    let y = x32.reshape((rows, k))?.matmul(&w32.t()?)?;
    let mut out = dims;
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    y.reshape(out)
}

/// `x · wᵀ` one value at a time, accumulated in f64 from the f16 values: the scalar
/// reference.
fn scalar_reference(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let ws = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(xs.len() / k.max(1) * n);
    for xr in xs.chunks_exact(k) {
        for wr in ws.chunks_exact(k) {
            let dot: f64 = wr.iter().zip(xr).map(|(a, b)| f64::from(a * b)).sum();
            out.push(dot as f32);
        }
    }
    Tensor::from_vec(out, crate::kernels::output_dims(x.dims(), n), &Device::Cpu)
}

/// Each value within f16 rounding (plus f32 summation-order noise) of the reference.
fn assert_close(got: &Tensor, want: &Tensor, what: &str) -> Result<()> {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let g = got.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let w = want.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3 * b.abs() + 1e-3,
            "{what}: [{i}] {a} vs {b}"
        );
    }
    Ok(())
}

fn randn_f16(dims: &[usize]) -> Result<Tensor> {
    Tensor::randn(0f32, 1.0, dims, &Device::Cpu)?.to_dtype(DType::F16)
}

#[test]
fn every_path_matches_the_scalar_reference() -> Result<()> {
    // Widths with and without a tail for 64, 16 and 8; heights not a multiple of any group
    // size, and above one rayon task (64 rows); one input row up to `SINGLE_ROW_MAX_K`
    // wide takes the single-row kernel, wider ones the row-group kernel.
    let cases: &[(usize, usize, &[usize])] = &[
        (1, 16, &[1, 16]),
        (7, 64, &[1, 64]),
        (9, 40, &[2, 40]),
        (5, 37, &[3, 37]),
        (130, 100, &[4, 100]),
        (131, 4096, &[1, 1, 4096]),
        (67, 256, &[1, 3, 256]),
        (200, 136, &[2, 2, 136]),
        (33, 24, &[4, 1, 24]),
        (258, 1000, &[2, 1, 1000]),
        (3, 7, &[3, 7]),
        (70, 8213, &[1, 1, 8213]),
        (9, 8192, &[1, 8192]),
    ];
    for isa in isa::supported_paths() {
        eprintln!("gemv_f16: path {isa} runs {:?}", level(isa));
        for &(n, k, xdims) in cases {
            let what = format!("{isa}: [{n}, {k}] x {xdims:?}");
            let w = randn_f16(&[n, k])?;
            let x = randn_f16(xdims)?;
            if level(isa).is_none() {
                // The scalar path declines: candle computes the product.
                assert!(!applies_with(isa, &w, &x), "{what}");
                assert!(matmul_with(isa, &w, &x).is_err(), "{what}");
                continue;
            }
            assert!(applies_with(isa, &w, &x), "{what}");
            let got = matmul_with(isa, &w, &x)?;
            assert_eq!(got.dtype(), DType::F16);
            assert_close(&got, &scalar_reference(&w, &x)?, &what)?;
        }
    }
    // The same through `Linear` (which routes decode rows to the active path, or to candle).
    for &(n, k, xdims) in &cases[..4] {
        let w = randn_f16(&[n, k])?;
        let x = randn_f16(xdims)?;
        let lin = crate::Linear::from_weights(w.clone(), None);
        assert_close(&lin.forward_base(&x)?, &reference(&w, &x)?, "Linear")?;
        assert_eq!(applies(&w, &x), level(isa::active()).is_some());
    }
    Ok(())
}

#[test]
fn more_rows_offsets_and_refusals() -> Result<()> {
    for isa in isa::supported_paths()
        .into_iter()
        .filter(|&i| i > Isa::Scalar)
    {
        more_rows_offsets_and_refusals_on(isa)?;
    }
    Ok(())
}

fn more_rows_offsets_and_refusals_on(isa: Isa) -> Result<()> {
    let applies = |w: &Tensor, x: &Tensor| applies_with(isa, w, x);
    let matmul = |w: &Tensor, x: &Tensor| matmul_with(isa, w, x);
    // Five or more rows: not a decode shape, but `matmul` still serves them in passes.
    let w = randn_f16(&[70, 48])?;
    let x = randn_f16(&[2, 3, 48])?;
    assert!(!applies(&w, &x));
    assert_close(&matmul(&w, &x)?, &reference(&w, &x)?, "6 rows")?;
    // A contiguous view that starts inside its storage.
    let big = randn_f16(&[80, 48])?;
    let view = big.narrow(0, 5, 70)?;
    assert!(view.is_contiguous());
    let x1 = randn_f16(&[1, 48])?;
    assert!(applies(&view, &x1));
    assert_close(&matmul(&view, &x1)?, &reference(&view, &x1)?, "offset")?;
    assert_close(&matmul(&view, &x1)?, &matmul(&big.i(5..75)?, &x1)?, "i")?;
    // Not for inputs or weights that need gradients (no backward here).
    let var = candle_core::Var::from_tensor(&x1)?;
    assert!(!applies(&w, var.as_tensor()));
    assert!(!applies(&w, &(var.as_tensor() * 2.0)?));
    let wvar = candle_core::Var::from_tensor(&w)?;
    assert!(!applies(wvar.as_tensor(), &x1));
    // Not for: a transposed weight, an f32 input, a wrong width, five rows, a 1D input.
    let wt = randn_f16(&[48, 70])?.t()?;
    assert!(!applies(&wt, &x1));
    assert!(matmul(&wt, &x1).is_err());
    assert!(!applies(&w, &x1.to_dtype(DType::F32)?));
    assert!(matmul(&w, &x1.to_dtype(DType::F32)?).is_err());
    let x40 = randn_f16(&[1, 40])?;
    assert!(!applies(&w, &x40));
    assert!(matmul(&w, &x40).is_err());
    assert!(!applies(&w, &randn_f16(&[5, 48])?));
    assert!(!applies(&w, &randn_f16(&[48])?));
    // Empty shapes give empty or zero outputs.
    let x0 = Tensor::zeros((0, 48), DType::F16, &Device::Cpu)?;
    assert_eq!(matmul(&w, &x0)?.dims(), &[0, 70]);
    Ok(())
}

/// CPU time of all this process's threads so far, in seconds (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 * 1e-9
}

/// Effective weight bandwidth of the kernel against candle's matmul, per second of wall
/// time (best of the repetitions) and per CPU-second (all of them, so less sensitive to other jobs on
/// the machine), e.g.
/// `RAYON_NUM_THREADS=2 cargo test --release -p visualglm-nn gemv_f16 -- --ignored --nocapture`.
#[test]
#[ignore]
fn bandwidth() -> Result<()> {
    if level(isa::host()).is_none() {
        return Ok(());
    }
    // The last shape fits in L2: the kernel's compute rate rather than the memory's.
    for (n, k) in [
        (16384usize, 4096usize),
        (4096, 16384),
        (4096, 4096),
        (128, 4096),
    ] {
        let w = randn_f16(&[n, k])?;
        let gb = (n * k * 2) as f64 / 1e9;
        for rows in [1usize, 4] {
            let x = randn_f16(&[rows, k])?;
            let time = |f: &dyn Fn() -> Result<Tensor>| -> Result<(f64, f64)> {
                f()?;
                let reps = if n * k < (1 << 20) { 200 } else { 5 };
                let mut best = f64::MAX;
                let cpu = cpu_seconds();
                for _ in 0..reps {
                    let t = std::time::Instant::now();
                    f()?;
                    best = best.min(t.elapsed().as_secs_f64());
                }
                Ok((best, (cpu_seconds() - cpu) / reps as f64))
            };
            let (ours, ours_cpu) = time(&|| matmul_with(isa::host(), &w, &x))?;
            let (avx2, avx2_cpu) = time(&|| matmul_with(Isa::Avx2, &w, &x))?;
            eprintln!(
                "  avx2 {:.1} GB/s ({:.1} GB/CPU-s)",
                gb / avx2,
                gb / avx2_cpu
            );
            let (cand, cand_cpu) = time(&|| x.matmul(&w.t()?))?;
            eprintln!(
                "[{n}, {k}] x{rows}: gemv_f16 {:.2} ms {:.1} GB/s ({:.1} GB/CPU-s), \
                 candle {:.2} ms {:.1} GB/s ({:.1} GB/CPU-s)",
                ours * 1e3,
                gb / ours,
                gb / ours_cpu,
                cand * 1e3,
                gb / cand,
                gb / cand_cpu
            );
        }
    }
    Ok(())
}
