//! Building a [`VisualGlm`] with adapters: merged into the weights, or applied on top.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};

use crate::checkpoint::{self, Checkpoint, LoadOptions};
use crate::model::VisualGlm;
use crate::param_shapes::expected_parameters;
use visualglm_nn::lora::{AdapterError, LoraAdapters};
use visualglm_nn::Linear;
use visualglm_weights::lora::{
    is_sat_lora, load_adapters, read_sat_lora, LoraError, SatLoraFinetune,
};

/// Options of [`VisualGlm::load_adapted`] and [`VisualGlm::load_sat_lora`].
#[derive(Debug, Clone, Default)]
pub struct LoraLoadOptions {
    /// Options for reading the base checkpoint (and a SAT fine-tune).
    pub checkpoint: LoadOptions,
    /// `true`: fold the adapters into the weights (no runtime cost). `false`: keep them
    /// separate and add their output in the forward.
    pub merge: bool,
}

/// Reads adapters from an adapter directory / `adapter_model.safetensors` written by
/// [`visualglm_weights::lora::save_adapters`], or from a SAT LoRA fine-tune (only its adapters are kept).
pub fn read_any_adapters(path: &Path, opts: &LoadOptions) -> Result<LoraAdapters, LoraError> {
    if is_sat_lora(path) {
        return Ok(load_sat_lora(path, opts)?.adapters);
    }
    Ok(load_adapters(path)?.0)
}

/// Adds every adapter's update to the weights of `ck` (f32 results). The adapters must fit
/// the base (`<target>.weight` present with the right shape).
pub fn merge_checkpoint(ck: &mut Checkpoint, adapters: &LoraAdapters) -> Result<(), LoraError> {
    adapters.merge_into(&mut ck.tensors)?;
    Ok(())
}

impl VisualGlm {
    /// Builds the model from a canonical checkpoint and adapters, merged into a copy of the
    /// weights (`merge`) or applied on top of them. Use this to override `ck.config` (α,
    /// rotary convention) before building.
    pub fn from_checkpoint_adapted(
        ck: &Checkpoint,
        adapters: &LoraAdapters,
        merge: bool,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, LoraError> {
        adapters.check_base(&ck.tensors, "")?;
        if merge {
            let mut tensors = ck.tensors.clone();
            adapters.merge_into(&mut tensors)?;
            let vb = candle_nn::VarBuilder::from_tensors(tensors, dtype, device);
            return Ok(VisualGlm::from_var_builder(
                &ck.config,
                vb,
                &Default::default(),
            )?);
        }
        let vb = ck.var_builder(dtype, device);
        let mut model = VisualGlm::from_var_builder(&ck.config, vb, &Default::default())?;
        model.attach_lora(adapters)?;
        Ok(model)
    }

    /// Loads the base checkpoint at `base` (any form [`checkpoint::load`] reads, or a GGUF
    /// file when not merging), checks it, reads the adapters at `adapter` (see
    /// [`read_any_adapters`]) and builds the model with them merged or not per `opts.merge`.
    pub fn load_adapted(
        base: &Path,
        adapter: &Path,
        device: &Device,
        dtype: DType,
        opts: &LoraLoadOptions,
    ) -> Result<Self, LoraError> {
        if crate::gguf::is_gguf_path(base) {
            if opts.merge {
                return Err(LoraError::Unsupported(format!(
                    "{}: adapters cannot be merged into a quantized (GGUF) base; load with \
                     `merge: false`",
                    base.display()
                )));
            }
            let mut model = VisualGlm::load(base, device, dtype, &opts.checkpoint)?;
            model.attach_lora(&read_any_adapters(adapter, &opts.checkpoint)?)?;
            return Ok(model);
        }
        let ck = checkpoint::load(base, &opts.checkpoint)?;
        let expected = expected_parameters(&ck.config)?;
        checkpoint::validate(&ck, &expected)?;
        let adapters = read_any_adapters(adapter, &opts.checkpoint)?;
        let context = format!(" of {}", base.display());
        adapters.check_base(&ck.tensors, &context)?;
        Self::from_checkpoint_adapted(&ck, &adapters, opts.merge, device, dtype)
    }

    /// Loads a SAT LoRA fine-tune directory as one model (its base and its adapters), with
    /// the adapters merged or not per `opts.merge`.
    pub fn load_sat_lora(
        path: &Path,
        device: &Device,
        dtype: DType,
        opts: &LoraLoadOptions,
    ) -> Result<Self, LoraError> {
        let ft = load_sat_lora(path, &opts.checkpoint)?;
        Self::from_checkpoint_adapted(&ft.base, &ft.adapters, opts.merge, device, dtype)
    }

    /// Applies `adapters` on top of the ChatGLM linears without changing their weights: each
    /// adapted layer computes `W x + b + scaling · concat_k((x A_kᵀ) B_kᵀ)`. Works over dense
    /// and quantized bases. Only GLM layer linears can carry unmerged adapters (image-encoder
    /// targets must be merged). Nothing is attached when any adapter does not fit.
    pub fn attach_lora(&mut self, adapters: &LoraAdapters) -> Result<(), LoraError> {
        let (dtype, device) = (self.dtype(), self.device().clone());
        let mut linears: HashMap<String, &mut Linear> = self
            .language_model_mut()
            .named_linears_mut(false)
            .into_iter()
            .filter_map(|(n, l)| Some((n.strip_suffix(".weight")?.to_string(), l)))
            .collect();
        let mut plan = Vec::with_capacity(adapters.len());
        for (target, ad) in adapters.iter() {
            if !linears.contains_key(target) {
                return Err(LoraError::Unsupported(format!(
                    "`{target}` cannot carry an unmerged adapter (only ChatGLM layer linears \
                     can): load with `merge: true`"
                )));
            }
            let converted =
                ad.to_dtype_device(dtype, &device)
                    .map_err(|source| AdapterError::Candle {
                        target: target.to_string(),
                        source,
                    })?;
            plan.push((target, converted));
        }
        for (target, ad) in &plan {
            if let Some(l) = linears.get(*target) {
                let dims = l.dims().map_err(AdapterError::candle(target))?;
                if dims != (ad.out_dim(), ad.in_dim()) {
                    return Err(AdapterError::Shape {
                        target: target.to_string(),
                        message: format!(
                            "base weight `{target}.weight` has shape {dims:?}, the adapter needs \
                             ({}, {})",
                            ad.out_dim(),
                            ad.in_dim()
                        ),
                    }
                    .into());
                }
            }
        }
        for (target, ad) in plan {
            if let Some(l) = linears.get_mut(target) {
                l.add_adapter(ad).map_err(AdapterError::candle(target))?;
            }
        }
        Ok(())
    }

    /// Removes every unmerged adapter from the ChatGLM linears (the base model again).
    pub fn detach_lora(&mut self) {
        for (_, l) in self.language_model_mut().named_linears_mut(false) {
            l.clear_adapters();
        }
    }
}

/// Loads a SAT LoRA fine-tune directory (or its `.pt`) and validates its base against the
/// model's parameters (see [`read_sat_lora`]).
pub fn load_sat_lora(path: &Path, opts: &LoadOptions) -> Result<SatLoraFinetune, LoraError> {
    read_sat_lora(path, opts, |config| Ok(expected_parameters(config)?))
}
