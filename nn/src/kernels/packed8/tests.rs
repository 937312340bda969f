use super::*;

use visualglm_testing::{max_abs, max_abs_diff};

/// Fixed pseudo-random values in [-2, 2).
fn values(len: usize, seed: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract() * 2.0)
        .collect()
}

fn quantized(dtype: GgmlDType, n: usize, k: usize, seed: f32) -> Result<QTensor> {
    let w = Tensor::from_vec(values(n * k, seed), (n, k), &Device::Cpu)?;
    QTensor::quantize(&w, dtype)
}

fn q4_0(n: usize, k: usize, seed: f32) -> Result<QTensor> {
    quantized(GgmlDType::Q4_0, n, k, seed)
}

/// Both block types this layout holds.
const TYPES: [GgmlDType; 2] = [GgmlDType::Q4_0, GgmlDType::Q8_0];

/// The exact value of one row's dot product with a quantized input (integer sums in i64,
/// scales in f64) and a bound on its partial sums, from GGML's bytes of a Q4_0 or Q8_0 row.
fn reference_dot(dtype: GgmlDType, row: &[u8], x: &QuantizedRow) -> (f64, f64) {
    let bb = if dtype == GgmlDType::Q4_0 { 18 } else { 34 };
    let (mut sum, mut bound) = (0f64, 0f64);
    for (b, blk) in row.chunks_exact(bb).enumerate() {
        let dw = f64::from(half::f16::from_le_bytes([blk[0], blk[1]]).to_f32());
        let q = &x.qs[b * QK..(b + 1) * QK];
        let mut dot = 0i64;
        let mut offset = 0f64;
        if dtype == GgmlDType::Q4_0 {
            for (j, &byte) in blk[2..].iter().enumerate() {
                dot += i64::from(byte & 0x0f) * i64::from(q[j]);
                dot += i64::from(byte >> 4) * i64::from(q[j + QK / 2]);
            }
            offset = f64::from(x.offset[b]);
        } else {
            for (j, &byte) in blk[2..].iter().enumerate() {
                dot += i64::from(byte as i8) * i64::from(q[j]);
            }
        }
        let term = dw * (f64::from(x.scale[b]) * dot as f64 - offset);
        sum += term;
        bound += term.abs() + (dw * offset).abs();
    }
    (sum, bound)
}

#[test]
fn packing_keeps_every_byte_and_value() -> Result<()> {
    for (dtype, (n, k)) in TYPES
        .into_iter()
        .flat_map(|t| [(8usize, 32usize), (16, 64), (72, 4096), (24, 96)].map(|s| (t, s)))
    {
        let q = quantized(dtype, n, k, 1.0)?;
        let p = Packed8::pack(&q)?;
        assert_eq!(p.dims(), (n, k));
        assert_eq!(p.storage_size_in_bytes(), q.storage_size_in_bytes());
        let back = p.to_qtensor()?;
        assert_eq!(back.dtype(), dtype);
        assert_eq!(p.dtype(), dtype);
        assert_eq!(
            back.data()?.as_ref(),
            q.data()?.as_ref(),
            "{dtype:?} [{n}, {k}]"
        );
        // Any run of rows widens to candle's values exactly.
        let want = q.dequantize(&Device::Cpu)?;
        for (start, len) in [(0, n), (3, 1), (5, n - 5), (n - 1, 1)] {
            let mut got = vec![0f32; len * k];
            p.dequantize_rows(start, len, &mut got);
            let want = want
                .narrow(0, start, len)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            assert_eq!(got, want, "{dtype:?} [{n}, {k}] rows {start}+{len}");
        }
    }
    Ok(())
}

#[test]
fn packing_in_place_gives_the_same_bytes_as_packing_a_copy() -> Result<()> {
    for (dtype, (n, k)) in TYPES
        .into_iter()
        .flat_map(|t| [(8usize, 32usize), (24, 96), (72, 4096)].map(|s| (t, s)))
    {
        let q = quantized(dtype, n, k, 2.0)?;
        let copied = Packed8::pack(&q)?;
        let in_place = Packed8::from_ggml_bytes(dtype, (n, k), q.data()?.to_vec())?;
        assert_eq!(in_place.bytes, copied.bytes, "{dtype:?} [{n}, {k}]");
        assert_eq!((in_place.dims(), in_place.dtype()), ((n, k), dtype));
    }
    // Wrong type, shape or byte count: refused with the reason.
    let bytes = q4_0(8, 64, 1.0)?.data()?.to_vec();
    let e = Packed8::from_ggml_bytes(GgmlDType::Q4_0, (8, 96), bytes.clone()).unwrap_err();
    assert!(e.to_string().contains("weight bytes"), "{e}");
    for (dtype, dims) in [(GgmlDType::Q4K, (8, 64)), (GgmlDType::Q4_0, (4, 128))] {
        let e = Packed8::from_ggml_bytes(dtype, dims, bytes.clone()).unwrap_err();
        assert!(e.to_string().contains("rows a multiple of 8"), "{e}");
    }
    Ok(())
}

#[test]
fn refuses_weights_it_cannot_pack() -> Result<()> {
    let odd = q4_0(7, 64, 1.0)?;
    assert!(!fits(&odd));
    assert!(Packed8::pack(&odd).is_err());
    let w = Tensor::from_vec(values(8 * 64, 1.0), (8, 64), &Device::Cpu)?;
    let q4k = QTensor::quantize(
        &Tensor::zeros((8, 256), DType::F32, &Device::Cpu)?,
        GgmlDType::Q4K,
    )?;
    assert!(!fits(&q4k));
    assert!(fits(&QTensor::quantize(&w, GgmlDType::Q8_0)?));
    let p = Packed8::pack(&q4_0(8, 64, 1.0)?)?;
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
    for (dtype, &(n, k, rows)) in TYPES
        .into_iter()
        .flat_map(|t| cases.iter().map(move |c| (t, c)))
    {
        let q = quantized(dtype, n, k, 1.0)?;
        let p = Packed8::pack(&q)?;
        let data = q.data()?;
        let rb = k / QK * if dtype == GgmlDType::Q4_0 { 18 } else { 34 };
        let x = Tensor::from_vec(values(rows * k, 2.0), (1, rows, k), &dev)?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let mut first: Option<Vec<f32>> = None;
        for isa in isa::supported_paths() {
            let what = format!("{isa}: {dtype:?} [{n}, {k}] x{rows}");
            eprintln!("packed8: {what}");
            let got = p.matmul_with(isa, &x)?;
            assert_eq!(got.dims(), &[1, rows, n], "{what}");
            let got = got.flatten_all()?.to_vec1::<f32>()?;
            for (i, xrow) in xs.chunks_exact(k).enumerate() {
                let xq = QuantizedRow::new(xrow);
                for r in 0..n {
                    let (want, bound) = reference_dot(dtype, &data[r * rb..(r + 1) * rb], &xq);
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
        assert!(rel < 0.02, "{dtype:?} [{n}, {k}] x{rows}: {rel}");
    }
    Ok(())
}

#[test]
fn many_rows_get_the_gemv_bits_row_by_row_on_every_path() -> Result<()> {
    let dev = Device::Cpu;
    // Row counts past the GEMV's, with and without a remainder after the blocks of four.
    let cases = [
        (5usize, 8usize, 32usize),
        (8, 136, 256),
        (11, 40, 4096),
        (300, 16, 64),
    ];
    for (dtype, (rows, n, k)) in TYPES.into_iter().flat_map(|t| cases.map(|c| (t, c))) {
        let q = quantized(dtype, n, k, 3.0)?;
        let p = Packed8::pack(&q)?;
        let data = q.data()?;
        let rb = k / QK * if dtype == GgmlDType::Q4_0 { 18 } else { 34 };
        let x = Tensor::from_vec(values(rows * k, 4.0), (1, rows, k), &dev)?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let mut first: Option<Vec<u32>> = None;
        for isa in isa::supported_paths() {
            let what = format!("{isa}: {dtype:?} [{n}, {k}] x{rows}");
            eprintln!("packed8 prefill: {what}");
            let got = p.matmul_with(isa, &x)?;
            assert_eq!(got.dims(), &[1, rows, n], "{what}");
            let got = got.flatten_all()?.to_vec1::<f32>()?;
            for (i, (xrow, yrow)) in xs.chunks_exact(k).zip(got.chunks_exact(n)).enumerate() {
                let one = Tensor::from_slice(xrow, (1, k), &dev)?;
                let gemv = p.matmul_with(isa, &one)?.flatten_all()?.to_vec1::<f32>()?;
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(yrow), bits(&gemv), "{what}: row {i}");
                let xq = QuantizedRow::new(xrow);
                for (r, &v) in yrow.iter().enumerate() {
                    let (want, bound) = reference_dot(dtype, &data[r * rb..][..rb], &xq);
                    let tol = 2e-5 * bound + 1e-6;
                    assert!((f64::from(v) - want).abs() <= tol, "{what} [{i}, {r}]");
                }
            }
            let bits: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            match &first {
                None => first = Some(bits),
                Some(f) => assert_eq!(f, &bits, "{what}"),
            }
        }
        // Against the product with the dequantized weight: the input rounds to 8 bits per block.
        let want = x.broadcast_matmul(&q.dequantize(&dev)?.t()?)?;
        let rel = max_abs_diff(&p.matmul(&x)?, &want) / max_abs(&want).max(1e-6);
        assert!(rel < 0.02, "{dtype:?} {:?}: {rel}", (rows, n, k));
        // Other float inputs come back in their dtype.
        let half = p.matmul(&x.to_dtype(DType::F16)?)?;
        assert_eq!(half.dtype(), DType::F16);
    }
    Ok(())
}

#[test]
fn q8_0_weights_of_minus_128_are_exact() -> Result<()> {
    // GGML's quantizer never writes -128, but a file may hold it: |w| must read as 128.
    let (n, k) = (8usize, 64usize);
    let mut bytes = Vec::new();
    for r in 0..n {
        for b in 0..k / QK {
            bytes.extend_from_slice(&half::f16::from_f32(0.01 * (r + b + 1) as f32).to_le_bytes());
            bytes.extend((0..QK).map(|i| {
                if (i + r) % 3 == 0 {
                    0x80u8
                } else {
                    (i * 7) as u8
                }
            }));
        }
    }
    let dev = Device::Cpu;
    let storage = QStorage::from_data(Cow::Owned(bytes.clone()), &dev, GgmlDType::Q8_0)?;
    let q = QTensor::new(storage, (n, k))?;
    let p = Packed8::pack(&q)?;
    let x = Tensor::from_vec(values(k, 5.0), (1, k), &dev)?;
    let xq = QuantizedRow::new(&x.flatten_all()?.to_vec1::<f32>()?);
    for isa in isa::supported_paths() {
        let got = p.matmul_with(isa, &x)?.flatten_all()?.to_vec1::<f32>()?;
        for (r, v) in got.iter().enumerate() {
            let row = &bytes[r * (k / QK) * 34..(r + 1) * (k / QK) * 34];
            let (want, bound) = reference_dot(GgmlDType::Q8_0, row, &xq);
            let v = f64::from(*v);
            assert!(
                (v - want).abs() <= 2e-5 * bound + 1e-6,
                "{isa} [{r}]: {v} vs {want}"
            );
        }
    }
    Ok(())
}
