//! Building a [`VisualGlm`] from a [`LazyCheckpoint`] one tensor at a time: each tensor is
//! read from its mapped file, converted to the dtype the model asks for (or quantized to GGML
//! blocks), and its stored copy dropped before the next is read. The peak is the built model
//! plus one tensor, never the stored checkpoint and never the model in f32 before quantizing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use visualglm_nn::quant::{dtype_name, fit_dtype};

use crate::checkpoint::{CanonicalTensors, LazyCheckpoint, LM_HEAD, WORD_EMBEDDINGS};
use crate::error::{Result, VisualGlmError};
use crate::model::{BuildOptions, VisualGlm};
use crate::quantize::QuantizeOptions;

/// Whether `name` (of `shape`) is the weight of one of ChatGLM's per-layer linears
/// (`query_key_value`, `dense`, `dense_h_to_4h`, `dense_4h_to_h`): what the release quantizes.
pub(crate) fn is_glm_layer_linear(name: &str, shape: &[usize]) -> bool {
    name.starts_with("transformer.layers.") && name.ends_with(".weight") && shape.len() == 2
}

/// A weight that stands for a quantized one while the model is built: a zero-stride view of
/// one zero, so it costs nothing; [`place_quantized`] then gives the layer the GGML weight.
pub(crate) fn quantized_placeholder(
    dims: &[usize],
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    Tensor::zeros((), dtype, dev)?.broadcast_as(dims)
}

/// Gives each ChatGLM linear (and `lm_head`) named in `quantized` its GGML weight; every one
/// must find its place.
pub(crate) fn place_quantized(
    model: &mut VisualGlm,
    mut quantized: HashMap<String, Arc<QTensor>>,
) -> Result<()> {
    let total = quantized.len();
    let mut placed = 0;
    for (name, linear) in model.language_model_mut().named_linears_mut(true) {
        // Moved out of the map: the layer holds the only reference, so it may repack it
        // (`visualglm_nn::QuantizedWeight::new`).
        if let Some(q) = quantized.remove(&name) {
            linear.set_quantized_base(q)?;
            placed += 1;
        }
    }
    if placed != total {
        return Err(VisualGlmError::Input(format!(
            "{total} weights were quantized but the model has {placed} places for them"
        )));
    }
    Ok(())
}

/// `t` if it has shape `s` (what a `VarBuilder` backend's `get` promises), else an error
/// naming the tensor.
pub(crate) fn checked_shape(t: Tensor, s: Shape, name: &str) -> candle_core::Result<Tensor> {
    if t.shape() != &s {
        return Err(candle_core::Error::UnexpectedShape {
            msg: format!("shape mismatch for {name}"),
            expected: s,
            got: t.shape().clone(),
        }
        .bt());
    }
    Ok(t)
}

/// What the streamed build quantizes while reading.
#[derive(Debug, Clone, Copy, Default)]
struct Quantizing {
    /// GGML type for ChatGLM's layer linears; `None`: everything dense.
    dtype: Option<GgmlDType>,
    /// Also the word-embedding table and/or `lm_head`.
    opts: QuantizeOptions,
}

/// The GGML weights made while reading.
#[derive(Default)]
struct Made {
    /// Layer linears and `lm_head`, by weight name.
    linears: HashMap<String, Arc<QTensor>>,
    /// The word-embedding table.
    table: Option<Arc<QTensor>>,
}

/// Serves the tensors of a [`LazyCheckpoint`] to a `VarBuilder`, reading each when asked.
struct StreamedBackend {
    ck: LazyCheckpoint,
    quantizing: Quantizing,
    /// The quantized weights made so far.
    made: Arc<Mutex<Made>>,
    /// Names that read the same stored data (a tied `lm_head`) → their group
    /// ([`LazyCheckpoint::shared_data`]).
    tied: HashMap<String, usize>,
    /// Converted tensors of tied groups, so both names get the same tensor.
    tied_done: Mutex<HashMap<(usize, DType), Tensor>>,
}

impl StreamedBackend {
    fn new(ck: LazyCheckpoint, quantizing: Quantizing) -> Self {
        Self {
            tied: ck.shared_data(),
            ck,
            quantizing,
            made: Arc::default(),
            tied_done: Mutex::default(),
        }
    }

    fn read(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let stored =
            self.ck
                .tensors
                .get(name)
                .ok_or_else(|| candle_core::Error::CannotFindTensor {
                    path: name.to_string(),
                })?;
        if let Some(q) = self.quantize_as(name, stored.dims()) {
            let tied_table = if name == LM_HEAD {
                self.table_tied_to_lm_head()?
            } else {
                None
            };
            let qt = match tied_table {
                Some(table) => table,
                None => {
                    let t = stored.read().map_err(candle_core::Error::wrap)?;
                    let qt = QTensor::quantize_onto(&t.to_dtype(DType::F32)?, q, dev)
                        .map_err(|e| e.context(format!("quantizing {name}")))?;
                    Arc::new(qt)
                }
            };
            let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
            if name == WORD_EMBEDDINGS {
                made.table = Some(qt);
            } else {
                made.linears.insert(name.to_string(), qt);
            }
            return quantized_placeholder(stored.dims(), dtype, dev);
        }
        let group = self.tied.get(name).copied();
        if let Some(g) = group {
            let done = self.tied_done.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = done.get(&(g, dtype)) {
                return Ok(t.clone());
            }
        }
        let t = stored
            .read()
            .map_err(candle_core::Error::wrap)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        if let Some(g) = group {
            let mut done = self.tied_done.lock().unwrap_or_else(|e| e.into_inner());
            done.insert((g, dtype), t.clone());
        }
        Ok(t)
    }

    /// The GGML type `name` is quantized to, if it is quantized while loading.
    fn quantize_as(&self, name: &str, dims: &[usize]) -> Option<GgmlDType> {
        let wanted = self.quantizing.dtype?;
        let opts = self.quantizing.opts;
        let asked = is_glm_layer_linear(name, dims)
            || (opts.embeddings && name == WORD_EMBEDDINGS)
            || (opts.lm_head && name == LM_HEAD);
        if !asked || dims.len() != 2 {
            return None;
        }
        // A width that fits no block stays dense; `quantize_language` reports it.
        let chosen = fit_dtype(wanted, dims[1])?;
        if chosen != wanted {
            tracing::debug!(
                "{name}: input width {} is not a multiple of {} ({}); using {} instead",
                dims[1],
                wanted.block_size(),
                dtype_name(wanted),
                dtype_name(chosen)
            );
        }
        Some(chosen)
    }

    /// The quantized embedding table when `lm_head` is tied to it, so one tensor serves both
    /// as [`VisualGlm::quantize_language`] does.
    fn table_tied_to_lm_head(&self) -> candle_core::Result<Option<Arc<QTensor>>> {
        let table = {
            let made = self.made.lock().unwrap_or_else(|e| e.into_inner());
            match &made.table {
                Some(t) => t.clone(),
                None => return Ok(None),
            }
        };
        let tied = self
            .ck
            .lm_head_is_tied()
            .map_err(candle_core::Error::wrap)?;
        Ok(tied.then_some(table))
    }
}

impl SimpleBackend for StreamedBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        checked_shape(self.read(name, dtype, dev)?, s, name)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.read(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.ck.tensors.contains_key(name)
    }
}

/// Builds the model of `ck` on `device` in `dtype`, reading one tensor at a time; with
/// `quantize`, ChatGLM's layer linears (and the word embeddings and `lm_head` as its options
/// say) are quantized as they are read. A width that fits no block is left dense, to be
/// reported by [`VisualGlm::quantize_language`].
pub(crate) fn build_streamed(
    ck: LazyCheckpoint,
    device: &Device,
    dtype: DType,
    build: &BuildOptions,
    quantize: Option<(GgmlDType, QuantizeOptions)>,
) -> Result<VisualGlm> {
    let config = ck.config.clone();
    let quantizing = Quantizing {
        dtype: quantize.map(|(d, _)| d),
        opts: quantize.map(|(_, o)| o).unwrap_or_default(),
    };
    let backend = StreamedBackend::new(ck, quantizing);
    let made = backend.made.clone();
    let vb = VarBuilder::from_backend(Box::new(backend), dtype, device.clone());
    let mut model = VisualGlm::from_var_builder(&config, vb, build)?;
    let mut made = std::mem::take(&mut *made.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(table) = made.table {
        // A tied `lm_head` is the very same tensor: handed over as one weight, whose only
        // holder the table then is, so it takes the layout the kernels want (as when a loaded
        // model is quantized after).
        let tied = made
            .linears
            .get(LM_HEAD)
            .is_some_and(|l| Arc::ptr_eq(l, &table));
        if tied {
            made.linears.remove(LM_HEAD);
        }
        model
            .language_model_mut()
            .set_quantized_embeddings(visualglm_nn::QuantizedWeight::new(table)?, tied)?;
    }
    place_quantized(&mut model, made.linears)?;
    Ok(model)
}
