//! A linear layer `y = x·Wᵀ + b` with the checkpoint's own weight names.
//!
//! The base weight is either dense (a [`Tensor`] in the run dtype) or quantized (a GGML
//! [`QTensor`] multiplied with candle's [`QMatMul`], which has no backward of its own).
//! The output is `base(x) + bias`; low-rank adapters are meant to be added on top of the
//! base output (see [`Linear::forward_base`]) whatever the base kind.
//!
//! When the input is tracked for gradients and the base weight is not (quantized, or a dense
//! tensor that is no variable), the product runs on the detached input with the inference
//! kernels and joins the graph through a custom op whose backward returns only the input's
//! gradient `grad·W` ([`Linear::backward_input`], module `frozen`): no weight-side product.
//! A trainable dense weight keeps candle's matmul and its weight gradient.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::{output_dims, SWAP_MAX_ROWS};
use crate::lora::LoraAdapter;

mod base;
mod frozen;

pub use base::{LinearBase, QuantizedWeight};

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
            LinearBase::Quantized(q) => q.dequantize(),
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
            LinearBase::Quantized(q) => q.dims(),
        }
    }

    /// Bytes of the base weight and bias as stored (quantized blocks or dense elements): what
    /// one pass over the layer reads from memory. Adapters are not counted.
    pub fn weight_bytes(&self) -> usize {
        let bias = self
            .bias
            .as_ref()
            .map_or(0, |b| b.elem_count() * b.dtype().size_in_bytes());
        let base = match &self.base {
            LinearBase::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            LinearBase::Quantized(q) => q.storage_size_in_bytes(),
        };
        base + bias
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
        self.set_quantized_weight(QuantizedWeight::new(weight)?)
    }

    /// Replaces the base by an already wrapped quantized weight (e.g. one shared with an
    /// embedding table), keeping the bias.
    pub fn set_quantized_weight(&mut self, weight: QuantizedWeight) -> Result<()> {
        let (out, inp) = self.dims()?;
        let got = weight.dims()?;
        if got != (out, inp) {
            candle_core::bail!(
                "quantized weight has shape {got:?}, the layer needs ({out}, {inp})"
            );
        }
        self.base = LinearBase::Quantized(weight);
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
        self.product_tracked(x, None)
    }

    /// The gradient of `x·Wᵀ` with respect to `x`: `grad·W` `[.., in]` in f32 for `grad`
    /// `[.., out]` (f32, or any float dtype: it is widened first), whatever the base. A dense
    /// f32 weight takes one product; an f16/bf16 weight is widened to f32 and a GGML-quantized
    /// one dequantized (on the weight's device) a block of output rows at a time, at most
    /// 16 MiB of f32 rows, and the blocks' products `grad[.., rows]·W[rows, :]` are summed:
    /// the whole f32 matrix is never built. This is the backward of the forward when the input
    /// is tracked and the weight is not.
    pub fn backward_input(&self, grad: &Tensor) -> Result<Tensor> {
        let (_, inp) = self.dims()?;
        frozen::backward_input(&self.base, grad, frozen::block_rows(inp))
    }

    /// `x·Wᵀ (+ bias)` for any input: when `x` is tracked and the weight is not, computed on
    /// the detached input and joined to the graph by the frozen op (input gradient only); an
    /// untracked bias goes into that product, a tracked one is added after it.
    fn product_tracked(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        if !frozen::applies(&self.base, x) {
            return self.product(x, bias);
        }
        let (_, inp) = self.dims()?;
        let fixed_bias = bias.filter(|b| !b.track_op());
        let y = self.product(&x.detach(), fixed_bias)?;
        let y = frozen::attach(x, &y, &self.base, frozen::block_rows(inp))?;
        match bias {
            Some(b) if b.track_op() => y.broadcast_add(b),
            _ => Ok(y),
        }
    }

    /// `x·Wᵀ`, plus `bias` when given. A dense f16/bf16 weight with an f32 input takes the
    /// input cast to the weight's dtype and returns the output cast back to f32 (the bias added
    /// in f32); otherwise the operands go to [`Linear::product_same_dtype`] as they are.
    fn product(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        match &self.base {
            LinearBase::Dense(w)
                if x.dtype() == DType::F32 && matches!(w.dtype(), DType::F16 | DType::BF16) =>
            {
                let y = self
                    .product_same_dtype(&x.to_dtype(w.dtype())?, None)?
                    .to_dtype(x.dtype())?;
                match bias {
                    Some(b) => y.broadcast_add(&b.to_dtype(x.dtype())?),
                    None => Ok(y),
                }
            }
            _ => self.product_same_dtype(x, bias),
        }
    }

    /// `x·Wᵀ`, plus `bias` when given: written into the output before the product where the
    /// kernel takes it (many rows of a dense f32 weight), added after it otherwise.
    fn product_same_dtype(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let y = match &self.base {
            // Many rows of a dense f32 weight: one product per thread, the bias written first.
            LinearBase::Dense(weight) if crate::kernels::gemm_f32::applies(weight, bias, x) => {
                return crate::kernels::gemm_f32::matmul(weight, bias, x);
            }
            // Decode rows of a contiguous f16 weight: the faster GEMV (x86 with AVX2/FMA/F16C).
            LinearBase::Dense(weight) if crate::kernels::gemv_f16::applies(weight, x) => {
                crate::kernels::gemv_f16::matmul(weight, x)?
            }
            LinearBase::Dense(weight) if swap_applies(weight, x) => {
                // `(W·xᵀ)ᵀ`: the same products; candle's CPU GEMM splits a few-row `x·Wᵀ`
                // poorly over threads but the tall `W·xᵀ` well.
                let (n, k) = weight.dims2()?;
                let rows = x.elem_count() / k;
                let y = weight
                    .matmul(&x.reshape((rows, k))?.t()?)?
                    .t()?
                    .contiguous()?;
                y.reshape(output_dims(x.dims(), n))?
            }
            LinearBase::Dense(weight) => {
                let w = weight.t()?;
                match x.dims() {
                    [b, s, k] => {
                        // One 2D matmul over all rows: faster than a batched one on the CPU.
                        let x2 = x.reshape((b * s, *k))?;
                        x2.matmul(&w)?.reshape((*b, *s, ()))?
                    }
                    _ => x.broadcast_matmul(&w)?,
                }
            }
            LinearBase::Quantized(q) => q.product(x)?,
        };
        match bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Whether [`Linear::forward_base`] computes `x·Wᵀ` as `(W·xᵀ)ᵀ`: 2 to [`SWAP_MAX_ROWS`] input
/// rows (one row is candle's matrix-vector path already), an f32 CPU weight and input, neither
/// tracked for gradients (training keeps the plain product).
fn swap_applies(weight: &Tensor, x: &Tensor) -> bool {
    let Some(&k) = x.dims().last() else {
        return false;
    };
    let rows = x.elem_count() / k.max(1);
    (2..=SWAP_MAX_ROWS).contains(&rows)
        && weight.dtype() == candle_core::DType::F32
        && x.dtype() == candle_core::DType::F32
        && weight.device().is_cpu()
        && x.device().is_cpu()
        && !weight.track_op()
        && !x.track_op()
        && weight.dims2().is_ok_and(|(_, wk)| wk == k)
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = self.product_tracked(x, self.bias.as_ref())?;
        for adapter in &self.adapters {
            y = (y + adapter.forward(x)?)?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use visualglm_testing::max_abs_diff;

    #[test]
    fn few_row_products_match_the_plain_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.05, (96, 200), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 96, &dev)?;
        let lin = Linear::from_weights(w.clone(), Some(b.clone()));
        for dims in [
            &[1usize, 200][..],
            &[2, 200],
            &[1, 5, 200],
            &[4, 16, 200],
            &[65, 200],
        ] {
            let x = Tensor::randn(0f32, 1.0, dims, &dev)?;
            let rows = x.elem_count() / 200;
            assert_eq!(swap_applies(&w, &x), (2..=SWAP_MAX_ROWS).contains(&rows));
            let want = x.reshape((rows, 200))?.matmul(&w.t()?)?.broadcast_add(&b)?;
            let got = lin.forward(&x)?;
            let mut out_dims = dims.to_vec();
            *out_dims.last_mut().unwrap() = 96;
            assert_eq!(got.dims(), &out_dims[..]);
            let diff = max_abs_diff(&got.reshape((rows, 96))?, &want);
            assert!(diff <= 1e-5, "{dims:?}: {diff}");
        }
        // Tracked inputs, other dtypes and a strided input keep the plain product or work.
        let v = Var::randn(0f32, 1.0, (4, 200), &dev)?;
        assert!(!swap_applies(&w, v.as_tensor()));
        let g = lin.forward(v.as_tensor())?.sum_all()?.backward()?;
        assert!(g.get(v.as_tensor()).is_some());
        assert!(!swap_applies(
            &w.to_dtype(DType::F16)?,
            &Tensor::zeros((4, 200), DType::F16, &dev)?
        ));
        let strided = Tensor::randn(0f32, 1.0, (200, 3), &dev)?.t()?;
        let want = strided.matmul(&w.t()?)?.broadcast_add(&b)?;
        let diff = max_abs_diff(&lin.forward(&strided)?, &want);
        assert!(diff <= 1e-5, "strided: {diff}");
        Ok(())
    }

    #[test]
    fn weight_bytes_count_the_stored_base_and_bias() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::zeros((8, 64), DType::F16, &dev)?;
        let b = Tensor::zeros(8, DType::F32, &dev)?;
        let mut lin = Linear::from_weights(w, Some(b));
        assert_eq!(lin.weight_bytes(), 8 * 64 * 2 + 8 * 4);
        lin = Linear::from_weights(Tensor::zeros((8, 64), DType::F32, &dev)?, None);
        lin.quantize(candle_core::quantized::GgmlDType::Q4_0)?;
        // Two 32-value blocks per row, 18 bytes each.
        assert_eq!(lin.weight_bytes(), 8 * 2 * 18);
        Ok(())
    }
}
