//! The frozen base weight of a linear layer: dense, or GGML-quantized with its matmul.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Module, Result, Tensor};

use crate::kernels::packed8::{self, Packed8};

/// The frozen base weight of a [`Linear`](crate::Linear) layer, `[out, in]`.
#[derive(Debug, Clone)]
pub enum LinearBase {
    /// A dense weight in the run dtype.
    Dense(Tensor),
    /// A GGML-quantized weight and its matmul.
    Quantized(QuantizedWeight),
}

/// A quantized `[out, in]` weight: the GGML tensor with candle's matmul over it, or, for a
/// Q4_0 or Q8_0 weight on a CPU whose decode GEMV is the AVX2 one, the same bytes in the
/// eight-row layout of [`packed8`] (which then replaces the GGML tensor: no second copy is kept).
#[derive(Debug, Clone)]
pub struct QuantizedWeight {
    repr: Repr,
}

#[derive(Debug, Clone)]
enum Repr {
    Ggml {
        qtensor: Arc<QTensor>,
        matmul: QMatMul,
    },
    Packed8(Arc<Packed8>),
}

impl QuantizedWeight {
    /// Wraps a quantized `[out, in]` tensor. A CPU Q4_0 or Q8_0 weight held by no one else (`qtensor`
    /// is its only reference), with rows a multiple of 8, is repacked into the eight-row
    /// layout when the active path's decode GEMV is the AVX2 one ([`packed8::packs_on`]); a
    /// shared one (e.g. an embedding table tied to `lm_head`) keeps GGML's layout.
    pub fn new(qtensor: Arc<QTensor>) -> Result<Self> {
        let (_out, _in) = qtensor.shape().dims2()?;
        if packed8::packs_on(crate::kernels::isa::active())
            && packed8::fits(&qtensor)
            && Arc::strong_count(&qtensor) == 1
        {
            let packed = Packed8::pack(&qtensor)?;
            return Ok(Self {
                repr: Repr::Packed8(Arc::new(packed)),
            });
        }
        Self::ggml(qtensor)
    }

    /// A CPU weight `[out, in]` of type `dtype` from its bytes in GGML's layout (as a GGUF file
    /// stores them). Where [`QuantizedWeight::new`] would repack, the bytes are regrouped in
    /// place, so no second copy of the weight is ever made; otherwise they become a GGML
    /// tensor (one copy, as candle makes).
    pub fn from_ggml_bytes(dtype: GgmlDType, dims: (usize, usize), bytes: Vec<u8>) -> Result<Self> {
        let (out, inp) = dims;
        if packed8::packs_on(crate::kernels::isa::active()) && packed8::fits_dims(dtype, out, inp) {
            let packed = Packed8::from_ggml_bytes(dtype, dims, bytes)?;
            return Ok(Self {
                repr: Repr::Packed8(Arc::new(packed)),
            });
        }
        let blocks = (out * inp).div_ceil(dtype.block_size());
        if inp % dtype.block_size() != 0 || bytes.len() != blocks * dtype.type_size() {
            candle_core::bail!(
                "{} bytes for a {dtype:?} weight [{out}, {inp}]",
                bytes.len()
            );
        }
        let storage = QStorage::from_data(Cow::Owned(bytes), &candle_core::Device::Cpu, dtype)?;
        Self::ggml(Arc::new(QTensor::new(storage, dims)?))
    }

    /// Wraps a quantized tensor in GGML's layout whatever the path (no repacking).
    pub fn ggml(qtensor: Arc<QTensor>) -> Result<Self> {
        let (_out, _in) = qtensor.shape().dims2()?;
        let matmul = QMatMul::from_arc(qtensor.clone())?;
        Ok(Self {
            repr: Repr::Ggml { qtensor, matmul },
        })
    }

    /// The weight as a GGML tensor: the one held, or, when repacked, a new one rebuilt in
    /// GGML's layout (a copy of the weight's bytes).
    pub fn qtensor(&self) -> Result<Arc<QTensor>> {
        match &self.repr {
            Repr::Ggml { qtensor, .. } => Ok(qtensor.clone()),
            Repr::Packed8(p) => Ok(Arc::new(p.to_qtensor()?)),
        }
    }

    /// The GGML tensor when the weight is held in GGML's layout, `None` when repacked.
    pub fn ggml_tensor(&self) -> Option<&Arc<QTensor>> {
        match &self.repr {
            Repr::Ggml { qtensor, .. } => Some(qtensor),
            Repr::Packed8(_) => None,
        }
    }

    /// Whether the weight is held in the eight-row layout.
    pub fn is_repacked(&self) -> bool {
        matches!(self.repr, Repr::Packed8(_))
    }

    /// The GGML block type.
    pub fn dtype(&self) -> GgmlDType {
        match &self.repr {
            Repr::Ggml { qtensor, .. } => qtensor.dtype(),
            Repr::Packed8(p) => p.dtype(),
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match &self.repr {
            Repr::Ggml { qtensor, .. } => qtensor.shape().dims2(),
            Repr::Packed8(p) => Ok(p.dims()),
        }
    }

    /// Bytes of the weight as stored.
    pub fn storage_size_in_bytes(&self) -> usize {
        match &self.repr {
            Repr::Ggml { qtensor, .. } => qtensor.storage_size_in_bytes(),
            Repr::Packed8(p) => p.storage_size_in_bytes(),
        }
    }

    /// The weight widened to a dense f32 `[out, in]` tensor on its device.
    pub fn dequantize(&self) -> Result<Tensor> {
        match &self.repr {
            Repr::Ggml { qtensor, .. } => qtensor.dequantize(&qtensor.device()),
            Repr::Packed8(p) => p.dequantize(),
        }
    }

    /// Rows `start..start + len` widened to f32 `[len, in]`.
    pub fn dequantize_rows(&self, start: usize, len: usize) -> Result<Tensor> {
        match &self.repr {
            Repr::Ggml { qtensor, .. } => dequantize_ggml_rows(qtensor, start, len),
            Repr::Packed8(p) => {
                let (_, k) = p.dims();
                let mut out = vec![0f32; len * k];
                p.dequantize_rows(start, len, &mut out);
                Tensor::from_vec(out, (len, k), &candle_core::Device::Cpu)
            }
        }
    }

    /// Whether `self` and `other` hold the very same weight (one copy shared, e.g. an
    /// embedding table tied to `lm_head`), not merely equal values.
    pub fn shares_storage(&self, other: &QuantizedWeight) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::Ggml { qtensor: a, .. }, Repr::Ggml { qtensor: b, .. }) => Arc::ptr_eq(a, b),
            (Repr::Packed8(a), Repr::Packed8(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Rows `ids` (integers of any shape `[..]`) widened to f32 `[.., in]`, on the weight's
    /// device: an embedding lookup that dequantizes only the selected rows. An id outside the
    /// weight's rows is an error.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        match &self.repr {
            Repr::Ggml { qtensor, .. } => qtensor.embedding(&ids.to_device(&qtensor.device())?),
            Repr::Packed8(p) => {
                let (n, k) = p.dims();
                let flat = ids.flatten_all()?.to_dtype(candle_core::DType::U32)?;
                let flat = flat.to_vec1::<u32>()?;
                let mut out = vec![0f32; flat.len() * k];
                for (&id, row) in flat.iter().zip(out.chunks_exact_mut(k.max(1))) {
                    let id = id as usize;
                    if id >= n {
                        candle_core::bail!("embedding id {id} is out of range for {n} rows");
                    }
                    p.dequantize_rows(id, 1, row);
                }
                let mut dims = ids.dims().to_vec();
                dims.push(k);
                Tensor::from_vec(out, dims, &candle_core::Device::Cpu)
            }
        }
    }

    /// `x·Wᵀ` for an untracked input: the Q4_0 kernels where they apply, else candle's matmul.
    pub(super) fn product(&self, x: &Tensor) -> Result<Tensor> {
        use crate::kernels::{gemm_q4_0, gemv_q4_0};
        match &self.repr {
            Repr::Packed8(p) => p.matmul(x),
            // The quantized kernels read the input as one contiguous `[rows, in]` block and
            // return the input's dtype.
            // Decode rows of a Q4_0 weight: the faster GEMV (x86 with AVX2/FMA/F16C).
            Repr::Ggml { qtensor, .. } if gemv_q4_0::applies(qtensor, x) => {
                gemv_q4_0::matmul(qtensor, x)
            }
            // Prefill rows of a Q4_0 weight: widened a block at a time into candle's f32 GEMM
            // (candle's Q4_0 kernel takes one dot product per row pair).
            Repr::Ggml { qtensor, .. } if gemm_q4_0::applies(qtensor, x) => {
                gemm_q4_0::matmul(qtensor, x)
            }
            Repr::Ggml { matmul, .. } => matmul.forward(&x.contiguous()?),
        }
    }
}

/// Rows `start..start + len` of the GGML tensor `q` `[out, in]`, dequantized to f32
/// `[len, in]` on `q`'s device (only those rows' blocks are widened).
fn dequantize_ggml_rows(q: &QTensor, start: usize, len: usize) -> Result<Tensor> {
    let (out, inp) = q.shape().dims2()?;
    let data = q.data()?;
    let row_bytes = data.len() / out.max(1);
    if row_bytes * out != data.len() || start + len > out {
        candle_core::bail!(
            "frozen linear: rows {start}..{} of {} bytes of {:?} data for [{out}, {inp}]",
            start + len,
            data.len(),
            q.dtype()
        );
    }
    let bytes = &data[start * row_bytes..(start + len) * row_bytes];
    let device = q.device();
    let storage = QStorage::from_data(Cow::Borrowed(bytes), &device, q.dtype())?;
    QTensor::new(storage, (len, inp))?.dequantize(&device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::isa;
    use crate::Linear;
    use candle_core::{DType, Device};
    use visualglm_testing::max_abs_diff;

    fn q4_0(n: usize, k: usize) -> Result<QTensor> {
        let w = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu)?;
        QTensor::quantize(&w, GgmlDType::Q4_0)
    }

    #[test]
    fn an_unshared_q4_0_weight_is_repacked_on_the_avx2_path_and_computes_the_same() -> Result<()> {
        let dev = Device::Cpu;
        let q = Arc::new(q4_0(48, 256)?);
        let ggml = QuantizedWeight::ggml(q.clone())?;
        let bytes = q.data()?.to_vec();
        let w = QuantizedWeight::new(Arc::new(q4_0(48, 256)?))?;
        let packs = packed8::packs_on(isa::active());
        eprintln!("path {}: repacked {}", isa::active(), w.is_repacked());
        assert_eq!(w.is_repacked(), packs);
        // A tensor someone else holds keeps GGML's layout.
        let shared = QuantizedWeight::new(q.clone())?;
        assert!(!shared.is_repacked());
        assert!(shared.ggml_tensor().is_some_and(|t| Arc::ptr_eq(t, &q)));
        // Repacking in place: the same sizes, and the GGML bytes come back unchanged.
        let repacked = QuantizedWeight::new(Arc::new(QTensor::new(
            QStorage::from_data(Cow::Owned(bytes.clone()), &dev, GgmlDType::Q4_0)?,
            (48, 256),
        )?))?;
        assert_eq!(repacked.is_repacked(), packs);
        assert_eq!(repacked.dims()?, (48, 256));
        assert_eq!(repacked.dtype(), GgmlDType::Q4_0);
        assert_eq!(repacked.storage_size_in_bytes(), bytes.len());
        assert_eq!(repacked.qtensor()?.data()?.as_ref(), &bytes[..]);
        assert_eq!(
            repacked.dequantize()?.to_vec2::<f32>()?,
            ggml.dequantize()?.to_vec2::<f32>()?
        );
        assert_eq!(
            repacked.dequantize_rows(5, 9)?.to_vec2::<f32>()?,
            ggml.dequantize()?.narrow(0, 5, 9)?.to_vec2::<f32>()?
        );
        // Products of a layer over each form: decode rows, prefill rows, the input gradient.
        let a = Linear::from_quantized(repacked.qtensor()?, None)?;
        let b = Linear {
            base: LinearBase::Quantized(ggml),
            bias: None,
            adapters: Vec::new(),
        };
        for rows in [1usize, 3, 7] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, 256), &dev)?;
            let (ya, yb) = (a.forward_base(&x)?, b.forward_base(&x)?);
            let d = max_abs_diff(&ya, &yb);
            if rows < crate::kernels::gemm_q4_0::MIN_ROWS || !packs {
                assert!(d < 1e-4, "{rows} rows: {d}");
            } else {
                // Repacked prefill quantizes its input as decode does; GGML's widens the weight.
                let rel = d / visualglm_testing::max_abs(&yb);
                assert!(rel < 0.02, "{rows} rows: {rel}");
            }
            let g = Tensor::randn(0f32, 1.0, (1, rows, 48), &dev)?;
            let d = max_abs_diff(&a.backward_input(&g)?, &b.backward_input(&g)?);
            assert!(d < 1e-5, "{rows} rows, backward: {d}");
        }
        let half = a.forward_base(&Tensor::zeros((1, 256), DType::F16, &dev)?)?;
        assert_eq!(half.dtype(), DType::F16);
        Ok(())
    }

    #[test]
    fn a_weight_from_ggml_bytes_is_the_same_weight_in_either_layout() -> Result<()> {
        let packs = packed8::packs_on(isa::active());
        // (type, rows, columns, repacked on an AVX2 path): Q4_0 packs; 12 rows or Q4K do not.
        for (dtype, n, k, packable) in [
            (GgmlDType::Q4_0, 48, 256, true),
            (GgmlDType::Q8_0, 16, 64, true),
            (GgmlDType::Q4_0, 12, 64, false),
            (GgmlDType::Q4K, 8, 256, false),
        ] {
            let w = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu)?;
            let q = QTensor::quantize(&w, dtype)?;
            let bytes = q.data()?.to_vec();
            let from_bytes = QuantizedWeight::from_ggml_bytes(dtype, (n, k), bytes.clone())?;
            assert_eq!(
                from_bytes.is_repacked(),
                packs && packable,
                "{dtype:?} [{n}, {k}]"
            );
            assert_eq!(from_bytes.dims()?, (n, k));
            assert_eq!(from_bytes.dtype(), dtype);
            assert_eq!(from_bytes.qtensor()?.data()?.as_ref(), &bytes[..]);
            assert_eq!(
                from_bytes.dequantize()?.to_vec2::<f32>()?,
                q.dequantize(&Device::Cpu)?.to_vec2::<f32>()?
            );
            // One byte short: refused, whichever layout it would get.
            let short = bytes[..bytes.len() - 1].to_vec();
            let e = QuantizedWeight::from_ggml_bytes(dtype, (n, k), short).unwrap_err();
            assert!(e.to_string().contains("bytes"), "{e}");
        }
        Ok(())
    }
}
