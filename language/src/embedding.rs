//! ChatGLM's word-embedding table, dense or GGML-quantized.
//!
//! A quantized table is a `[vocab, hidden]` [`QuantizedWeight`] (a GGML tensor, or on the AVX2
//! path the eight-row layout of Q4_0/Q8_0); looking ids up dequantizes only the selected rows,
//! so the dense table never exists in memory. The same weight can also be the base of a tied
//! `lm_head` (as chatglm.cpp stores ChatGLM-6B): one copy serves both.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Module, Result, Tensor};
use visualglm_nn::QuantizedWeight;

/// The word-embedding table of the language model.
#[derive(Debug, Clone)]
pub enum WordEmbeddings {
    /// A dense `[vocab, hidden]` table (in the run dtype, or another float dtype: lookups are
    /// cast to the activation dtype).
    Dense(candle_nn::Embedding),
    /// A GGML-quantized `[vocab, hidden]` table; lookups dequantize only the selected rows.
    Quantized(QuantizedWeight),
}

impl WordEmbeddings {
    /// A dense table `[vocab, hidden]`.
    pub fn dense(table: Tensor) -> Result<Self> {
        let (_, hidden) = table.dims2()?;
        Ok(Self::Dense(candle_nn::Embedding::new(table, hidden)))
    }

    /// A quantized table `[vocab, hidden]`; `hidden` must be a multiple of the type's block
    /// size (GGML quantizes rows in blocks, so every row starts on a block boundary).
    pub fn quantized(table: Arc<QTensor>) -> Result<Self> {
        Self::from_quantized_weight(QuantizedWeight::new(table)?)
    }

    /// A quantized table `[vocab, hidden]` already wrapped (e.g. to share it with `lm_head`:
    /// clones of a [`QuantizedWeight`] share its storage); as [`WordEmbeddings::quantized`].
    pub fn from_quantized_weight(table: QuantizedWeight) -> Result<Self> {
        let (_, hidden) = table.dims()?;
        let block = table.dtype().block_size();
        if !hidden.is_multiple_of(block) {
            candle_core::bail!(
                "quantized embedding width {hidden} is not a multiple of the block size {block}"
            );
        }
        Ok(Self::Quantized(table))
    }

    /// `(vocab, hidden)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::Dense(e) => e.embeddings().dims2(),
            Self::Quantized(q) => q.dims(),
        }
    }

    /// The dense table, `None` when quantized.
    pub fn dense_table(&self) -> Option<&Tensor> {
        match self {
            Self::Dense(e) => Some(e.embeddings()),
            Self::Quantized(_) => None,
        }
    }

    /// The quantized table, `None` when dense.
    pub fn quantized_table(&self) -> Option<&QuantizedWeight> {
        match self {
            Self::Dense(_) => None,
            Self::Quantized(q) => Some(q),
        }
    }

    /// The GGML type of a quantized table, `None` when dense.
    pub fn quantized_dtype(&self) -> Option<GgmlDType> {
        self.quantized_table().map(|q| q.dtype())
    }

    /// Embeddings of `ids` (any shape `[..]`, integer) → `[.., hidden]` in `dtype`.
    ///
    /// An id outside the table is an error (not a panic) for both kinds.
    pub fn forward(&self, ids: &Tensor, dtype: DType) -> Result<Tensor> {
        match self {
            Self::Dense(e) => e.forward(ids)?.to_dtype(dtype),
            // Gathers on the table's device; the result is f32.
            Self::Quantized(q) => q.embedding(ids)?.to_device(ids.device())?.to_dtype(dtype),
        }
    }
}

/// Whether two tensors hold the same values (same shape, elementwise equal). Compared in
/// chunks of rows so that comparing two 2 GB tables needs no 2 GB temporary.
pub fn same_values(a: &Tensor, b: &Tensor) -> Result<bool> {
    if a.shape() != b.shape() {
        return Ok(false);
    }
    // A clone of the same tensor (e.g. a tied `lm_head`): same storage and layout.
    if a.id() == b.id() {
        return Ok(true);
    }
    let b = b.to_dtype(a.dtype())?.to_device(a.device())?;
    let rows = a.dims().first().copied().unwrap_or(1);
    if a.rank() == 0 {
        return Ok(a.ne(&b)?.to_dtype(DType::U32)?.to_scalar::<u32>()? == 0);
    }
    let chunk = 4096;
    let mut start = 0;
    while start < rows {
        let n = chunk.min(rows - start);
        let diff = a
            .narrow(0, start, n)?
            .ne(&b.narrow(0, start, n)?)?
            .to_dtype(DType::U32)?
            .max_all()?
            .to_scalar::<u32>()?;
        if diff != 0 {
            return Ok(false);
        }
        start += n;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn quantized_gather_matches_dequantize_then_index() -> Result<()> {
        let dev = Device::Cpu;
        // 48 rows: a table held by no one else is repacked on the AVX2 path (rows in eights).
        let table = Tensor::randn(0f32, 1.0, (48, 64), &dev)?;
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q4K] {
            let table = if dtype == GgmlDType::Q4K {
                Tensor::randn(0f32, 1.0, (20, 256), &dev)?
            } else {
                table.clone()
            };
            let q = Arc::new(QTensor::quantize(&table, dtype)?);
            let shared = WordEmbeddings::quantized(q.clone())?;
            let own = WordEmbeddings::quantized(Arc::new(QTensor::quantize(&table, dtype)?))?;
            for emb in [shared, own] {
                let ids = Tensor::new(&[[3u32, 0, 19], [7, 7, 1]], &dev)?;
                let got = emb.forward(&ids, DType::F32)?;
                assert_eq!(got.dims(), &[2, 3, table.dim(1)?]);
                let full = q.dequantize(&dev)?;
                let want = full
                    .index_select(&ids.flatten_all()?, 0)?
                    .reshape(got.shape())?;
                let d = visualglm_testing::max_abs_diff(&got, &want);
                assert_eq!(d, 0.0, "{dtype:?}");
                // Out-of-range ids are an error.
                assert!(emb
                    .forward(&Tensor::new(&[[1000u32]], &dev)?, DType::F32)
                    .is_err());
            }
        }
        Ok(())
    }

    #[test]
    fn dense_lookup_casts_to_the_activation_dtype() -> Result<()> {
        let dev = Device::Cpu;
        let table = Tensor::randn(0f32, 1.0, (10, 8), &dev)?.to_dtype(DType::F16)?;
        let emb = WordEmbeddings::dense(table)?;
        let out = emb.forward(&Tensor::new(&[[1u32, 2]], &dev)?, DType::F32)?;
        assert_eq!(out.dtype(), DType::F32);
        assert_eq!(out.dims(), &[1, 2, 8]);
        Ok(())
    }

    #[test]
    fn compares_values() -> Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (9000, 4), &dev)?;
        assert!(same_values(&a, &a.clone())?);
        assert!(same_values(&a, &a.copy()?)?);
        let mut v = a.flatten_all()?.to_vec1::<f32>()?;
        v[8999 * 4] += 1.0;
        let b = Tensor::from_vec(v, (9000, 4), &dev)?;
        assert!(!same_values(&a, &b)?);
        assert!(!same_values(&a, &a.narrow(0, 0, 10)?)?);
        Ok(())
    }
}
