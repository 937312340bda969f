//! Loading a model from one of this project's GGUF files (the format itself, reading and
//! writing, is `visualglm_weights::gguf`, re-exported here).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use visualglm_weights::gguf::*;

use crate::checkpoint::{LoadOptions, HF_IMAGE_PREFIX, LM_HEAD, WORD_EMBEDDINGS};
use crate::model::{BuildOptions, VisualGlm};
use crate::param_shapes::expected_parameters;

/// Loads a GGUF file written by [`write_gguf`]: dense tensors converted to `dtype` on `device`
/// (the image encoder's to `opts.vision_dtype` when set), quantized GLM linears, `lm_head` and
/// word embeddings kept as GGML blocks (linears run with `QMatMul`; a tied `lm_head` shares the
/// embedding table). `opts.config_path`, when set, must describe the same model (it replaces
/// the embedded config).
pub fn load_gguf(
    path: &Path,
    device: &Device,
    dtype: DType,
    opts: &LoadOptions,
) -> Result<VisualGlm, GgufError> {
    let mut file = GgufReader::open(path, opts.config_path.as_deref())?;
    let model_err = |e: crate::VisualGlmError| GgufError::Model {
        path: path.to_path_buf(),
        source: Box::new(e),
    };
    let config = file.config().clone();
    let expected = expected_parameters(&config).map_err(model_err)?;
    file.check(&expected)?;
    let vision_dtype = opts.vision_dtype.unwrap_or(dtype);

    let mut tensors = std::collections::HashMap::with_capacity(expected.len());
    for (name, shape) in &expected {
        let dtype = if name.starts_with(HF_IMAGE_PREFIX) {
            vision_dtype
        } else {
            dtype
        };
        let t = if file.is_quantized(name) {
            // Placeholder: a zero-stride view of one zero; replaced by the GGML weight below.
            Tensor::zeros((), dtype, device)
                .and_then(|z| z.broadcast_as(shape.as_slice()))
                .map_err(file.tensor_err(name))?
        } else {
            file.dense(name, dtype, device)?
        };
        tensors.insert(name.clone(), t);
    }
    let vb = VarBuilder::from_tensors(tensors, dtype, device);
    let build = BuildOptions {
        vision_dtype: opts.vision_dtype,
    };
    let mut model = VisualGlm::from_var_builder(&config, vb, &build).map_err(model_err)?;
    let mut seen = 0;
    if file.is_quantized(WORD_EMBEDDINGS) {
        let q = file.quantized_weight(WORD_EMBEDDINGS, device)?;
        model
            .language_model_mut()
            .set_quantized_embeddings(q, file.lm_head_tied())
            .map_err(file.tensor_err(WORD_EMBEDDINGS))?;
        seen += 1;
    }
    for (name, linear) in model.language_model_mut().named_linears_mut(true) {
        if (name == LM_HEAD && file.lm_head_tied()) || !file.is_quantized(&name) {
            continue;
        }
        let q = file.quantized_weight(&name, device)?;
        linear
            .set_quantized_weight(q)
            .map_err(file.tensor_err(&name))?;
        seen += 1;
    }
    if seen != file.quantized_count() {
        return Err(GgufError::Mismatch {
            path: path.to_path_buf(),
            report: format!(
                "\n  {} quantized tensors, but the model has {seen} places for them",
                file.quantized_count()
            ),
        });
    }
    Ok(model)
}
