use super::*;
use crate::kernels::gemm_q4_0;
use visualglm_testing::{max_abs, max_abs_diff};

/// Fixed pseudo-random values in [-2, 2).
fn values(len: usize, seed: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract() * 2.0)
        .collect()
}

fn q4_0(n: usize, k: usize, seed: f32) -> Result<QTensor> {
    let w = Tensor::from_vec(values(n * k, seed), (n, k), &Device::Cpu)?;
    QTensor::quantize(&w, GgmlDType::Q4_0)
}

/// The exact value of one row's dot product with a quantized input (integer sums in i64,
/// scales in f64) and a bound on its partial sums, from GGML's bytes.
fn reference_dot(row: &[u8], x: &QuantizedRow) -> (f64, f64) {
    let (mut sum, mut bound) = (0f64, 0f64);
    for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        let dw = f64::from(half::f16::from_le_bytes([blk[0], blk[1]]).to_f32());
        let q = &x.qs[b * QK..(b + 1) * QK];
        let mut dot = 0i64;
        for (j, &byte) in blk[2..].iter().enumerate() {
            dot += i64::from(byte & 0x0f) * i64::from(q[j]);
            dot += i64::from(byte >> 4) * i64::from(q[j + QK / 2]);
        }
        let term = dw * (f64::from(x.scale[b]) * dot as f64 - f64::from(x.offset[b]));
        sum += term;
        bound += term.abs() + (dw * f64::from(x.offset[b])).abs();
    }
    (sum, bound)
}

#[test]
fn packing_keeps_every_byte_and_value() -> Result<()> {
    for (n, k) in [(8usize, 32usize), (16, 64), (72, 4096), (24, 96)] {
        let q = q4_0(n, k, 1.0)?;
        let p = Q4_0x8::pack(&q)?;
        assert_eq!(p.dims(), (n, k));
        assert_eq!(p.storage_size_in_bytes(), q.storage_size_in_bytes());
        let back = p.to_qtensor()?;
        assert_eq!(back.dtype(), GgmlDType::Q4_0);
        assert_eq!(back.data()?.as_ref(), q.data()?.as_ref(), "[{n}, {k}]");
        // Any run of rows widens to candle's values exactly.
        let want = q.dequantize(&Device::Cpu)?;
        for (start, len) in [(0, n), (3, 1), (5, n - 5), (n - 1, 1)] {
            let mut got = vec![0f32; len * k];
            p.dequantize_rows(start, len, &mut got);
            let want = want
                .narrow(0, start, len)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            assert_eq!(got, want, "[{n}, {k}] rows {start}+{len}");
        }
    }
    Ok(())
}

#[test]
fn refuses_weights_it_cannot_pack() -> Result<()> {
    let odd = q4_0(7, 64, 1.0)?;
    assert!(!fits(&odd));
    assert!(Q4_0x8::pack(&odd).is_err());
    let w = Tensor::from_vec(values(8 * 64, 1.0), (8, 64), &Device::Cpu)?;
    let q8 = QTensor::quantize(&w, GgmlDType::Q8_0)?;
    assert!(!fits(&q8));
    let p = Q4_0x8::pack(&q4_0(8, 64, 1.0)?)?;
    let wrong = Tensor::zeros((1, 32), DType::F32, &Device::Cpu)?;
    assert!(p.matmul(&wrong).is_err());
    Ok(())
}

#[test]
fn every_path_gives_the_same_bits_and_the_exact_products() -> Result<()> {
    let dev = Device::Cpu;
    let cases = [
        (8usize, 32usize, 1usize),
        (136, 256, 1),
        (40, 4096, 3),
        (16, 96, 4),
    ];
    for &(n, k, rows) in &cases {
        let q = q4_0(n, k, 1.0)?;
        let p = Q4_0x8::pack(&q)?;
        let data = q.data()?;
        let rb = k / QK * BLOCK_BYTES;
        let x = Tensor::from_vec(values(rows * k, 2.0), (1, rows, k), &dev)?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let mut first: Option<Vec<f32>> = None;
        for isa in isa::supported_paths() {
            let what = format!("{isa}: [{n}, {k}] x{rows}");
            eprintln!("q4_0x8: {what}");
            let got = p.matmul_with(isa, &x)?;
            assert_eq!(got.dims(), &[1, rows, n], "{what}");
            let got = got.flatten_all()?.to_vec1::<f32>()?;
            for (i, xrow) in xs.chunks_exact(k).enumerate() {
                let xq = QuantizedRow::new(xrow);
                for r in 0..n {
                    let (want, bound) = reference_dot(&data[r * rb..(r + 1) * rb], &xq);
                    let v = f64::from(got[i * n + r]);
                    let tol = 2e-5 * bound + 1e-6;
                    assert!((v - want).abs() <= tol, "{what} [{i}, {r}]: {v} vs {want}");
                }
            }
            // The portable and the AVX2 kernel sum the same integers in the same order.
            match &first {
                None => first = Some(got),
                Some(f) => assert_eq!(
                    f.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{what}"
                ),
            }
        }
        // And the product with the dequantized weight: the input rounds to 8 bits per block.
        let want = x.broadcast_matmul(&q.dequantize(&dev)?.t()?)?;
        let got = p.matmul(&x)?;
        let rel = max_abs_diff(&got, &want) / max_abs(&want).max(1e-6);
        assert!(rel < 0.02, "[{n}, {k}] x{rows}: {rel}");
    }
    Ok(())
}

#[test]
fn many_rows_take_the_widening_gemm() -> Result<()> {
    let dev = Device::Cpu;
    for (rows, n, k) in [(5usize, 8usize, 32usize), (37, 1104, 4096), (300, 96, 64)] {
        let q = q4_0(n, k, 3.0)?;
        let p = Q4_0x8::pack(&q)?;
        let x = Tensor::from_vec(values(rows * k, 4.0), (1, rows, k), &dev)?;
        let got = p.matmul(&x)?;
        assert_eq!(got.dims(), &[1, rows, n]);
        let want = gemm_q4_0::matmul(&q, &x)?;
        let rel = max_abs_diff(&got, &want) / max_abs(&want).max(1e-6);
        assert!(rel < 1e-6, "{:?}: {rel}", (rows, n, k));
        // Other float inputs come back in their dtype.
        let half = p.matmul(&x.to_dtype(DType::F16)?)?;
        assert_eq!(half.dtype(), DType::F16);
    }
    Ok(())
}
