//! A linear layer `y = x·Wᵀ + b` with the checkpoint's own weight names.
//!
//! The base weight is either dense (a [`Tensor`] in the run dtype) or quantized (a GGML
//! [`QTensor`] multiplied with candle's [`QMatMul`], inference only: it has no backward).
//! The output is `base(x) + bias`; low-rank adapters are meant to be added on top of the
//! base output (see [`Linear::forward_base`]) whatever the base kind.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::adapters::LoraAdapter;

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
    qtensor: Arc<QTensor>,
    matmul: QMatMul,
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

/// A linear layer. Weights are stored `[out, in]` as in PyTorch checkpoints.
#[derive(Debug, Clone)]
pub struct Linear {
    base: LinearBase,
    bias: Option<Tensor>,
    /// Unmerged low-rank adapters whose outputs are added in `forward`.
    adapters: Vec<LoraAdapter>,
}

impl Linear {
    /// Builds a dense layer from existing tensors.
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            base: LinearBase::Dense(weight),
            bias,
            adapters: Vec::new(),
        }
    }

    /// Builds a layer over a quantized `[out, in]` weight; the bias stays dense.
    pub fn from_quantized(weight: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            base: LinearBase::Quantized(QuantizedWeight::new(weight)?),
            bias,
            adapters: Vec::new(),
        })
    }

    /// Loads `weight` `[out, in]` and `bias` `[out]` from `vb`.
    pub fn load(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = vb.get(out_dim, "bias")?;
        Ok(Self::from_weights(weight, Some(bias)))
    }

    /// Loads a layer without bias.
    pub fn load_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        Ok(Self::from_weights(weight, None))
    }

    /// The dense weight `[out, in]`, or `None` when the base is quantized (see
    /// [`Linear::dequantized_weight`]).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.base {
            LinearBase::Dense(w) => Some(w),
            LinearBase::Quantized(_) => None,
        }
    }

    /// The weight `[out, in]` as a dense f32 tensor (a copy when quantized).
    pub fn dequantized_weight(&self) -> Result<Tensor> {
        match &self.base {
            LinearBase::Dense(w) => Ok(w.clone()),
            LinearBase::Quantized(q) => q.qtensor.dequantize(&q.qtensor.device()),
        }
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The base weight.
    pub fn base(&self) -> &LinearBase {
        &self.base
    }

    /// `(out, in)` of the weight.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match &self.base {
            LinearBase::Dense(w) => w.dims2(),
            LinearBase::Quantized(q) => q.qtensor.shape().dims2(),
        }
    }

    /// The GGML type of a quantized base, `None` when dense.
    pub fn quantized_dtype(&self) -> Option<GgmlDType> {
        match &self.base {
            LinearBase::Dense(_) => None,
            LinearBase::Quantized(q) => Some(q.dtype()),
        }
    }

    /// Replaces the base by a quantized one, keeping the bias.
    pub fn set_quantized_base(&mut self, weight: Arc<QTensor>) -> Result<()> {
        let (out, inp) = self.dims()?;
        let got = weight.shape().dims2()?;
        if got != (out, inp) {
            candle_core::bail!(
                "quantized weight has shape {got:?}, the layer needs ({out}, {inp})"
            );
        }
        self.base = LinearBase::Quantized(QuantizedWeight::new(weight)?);
        Ok(())
    }

    /// Quantizes a dense base to `dtype` in place (a no-op when it is already quantized).
    ///
    /// Fails when the inner dimension is not a multiple of the block size of `dtype`
    /// (32 for `Q4_0`…`Q8_1`, 256 for the K-quants); see [`crate::quant::fit_dtype`].
    pub fn quantize(&mut self, dtype: GgmlDType) -> Result<()> {
        let LinearBase::Dense(w) = &self.base else {
            return Ok(());
        };
        let q = QTensor::quantize(w, dtype)?;
        self.base = LinearBase::Quantized(QuantizedWeight::new(Arc::new(q))?);
        Ok(())
    }

    /// Adds a low-rank adapter, applied on top of the (dense or quantized) base in
    /// `forward`: `y = x·Wᵀ + b + adapter(x)`. Its `[out, in]` must match the layer's and its
    /// matrices should be in the run dtype.
    pub fn add_adapter(&mut self, adapter: LoraAdapter) -> Result<()> {
        let dims = self.dims()?;
        if dims != (adapter.out_dim(), adapter.in_dim()) {
            candle_core::bail!(
                "adapter is [{}, {}], the layer is {dims:?}",
                adapter.out_dim(),
                adapter.in_dim()
            );
        }
        self.adapters.push(adapter);
        Ok(())
    }

    /// The unmerged adapters, in the order they were added.
    pub fn adapters(&self) -> &[LoraAdapter] {
        &self.adapters
    }

    /// Removes every unmerged adapter.
    pub fn clear_adapters(&mut self) {
        self.adapters.clear();
    }

    /// `x·Wᵀ` without the bias: the frozen part adapters add to.
    pub fn forward_base(&self, x: &Tensor) -> Result<Tensor> {
        match &self.base {
            // Decode rows of a contiguous f16 weight: the faster GEMV (x86 with AVX2/FMA/F16C).
            LinearBase::Dense(weight) if crate::gemv_f16::applies(weight, x) => {
                crate::gemv_f16::matmul(weight, x)
            }
            LinearBase::Dense(weight) => {
                let w = weight.t()?;
                match x.dims() {
                    [b, s, k] => {
                        // One 2D matmul over all rows: faster than a batched one on the CPU.
                        let x2 = x.reshape((b * s, *k))?;
                        x2.matmul(&w)?.reshape((*b, *s, ()))
                    }
                    _ => x.broadcast_matmul(&w),
                }
            }
            // The quantized kernels read the input as one contiguous `[rows, in]` block and
            // return the input's dtype.
            // Decode rows of a Q4_0 weight: the faster GEMV (x86 with AVX2/FMA/F16C).
            LinearBase::Quantized(q) if crate::gemv_q4_0::applies(&q.qtensor, x) => {
                crate::gemv_q4_0::matmul(&q.qtensor, x)
            }
            LinearBase::Quantized(q) => q.matmul.forward(&x.contiguous()?),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward_base(x)?;
        let mut y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        for adapter in &self.adapters {
            y = (y + adapter.forward(x)?)?;
        }
        Ok(y)
    }
}
