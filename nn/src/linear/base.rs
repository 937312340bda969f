//! The frozen base weight of a linear layer: dense, or GGML-quantized with its matmul.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Result, Tensor};

/// The frozen base weight of a [`Linear`] layer, `[out, in]`.
#[derive(Debug, Clone)]
pub enum LinearBase {
    /// A dense weight in the run dtype.
    Dense(Tensor),
    /// A GGML-quantized weight and its matmul.
    Quantized(QuantizedWeight),
}

/// A quantized `[out, in]` weight: the GGML tensor (kept for writing and inspection) and the
/// candle matmul built over it.
#[derive(Debug, Clone)]
pub struct QuantizedWeight {
    pub(super) qtensor: Arc<QTensor>,
    pub(super) matmul: QMatMul,
}

impl QuantizedWeight {
    /// Wraps a quantized `[out, in]` tensor.
    pub fn new(qtensor: Arc<QTensor>) -> Result<Self> {
        let (_out, _in) = qtensor.shape().dims2()?;
        let matmul = QMatMul::from_arc(qtensor.clone())?;
        Ok(Self { qtensor, matmul })
    }

    /// The GGML tensor.
    pub fn qtensor(&self) -> &Arc<QTensor> {
        &self.qtensor
    }

    /// The GGML block type.
    pub fn dtype(&self) -> GgmlDType {
        self.qtensor.dtype()
    }
}
