//! The model with some weights as trainable variables: the base weights by name prefix, and
//! optional LoRA adapters on the frozen ChatGLM linears.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use visualglm_nn::lora::LoraAdapters;

use super::config::FinetuneConfig;
use crate::checkpoint::{self, LoadOptions as CheckpointOptions};
use crate::error::{Result, VisualGlmError};
use crate::model::VisualGlm;
use crate::param_shapes::expected_parameters;

/// Serves trainable names as variables and everything else as plain tensors.
struct TrainableBackend {
    frozen: HashMap<String, Tensor>,
    trainable: HashMap<String, Var>,
}

impl SimpleBackend for TrainableBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = match self.trainable.get(name) {
            Some(v) => v.as_tensor().clone(),
            None => self
                .frozen
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("cannot find tensor {name}")))?
                .clone(),
        };
        if t.shape() != &s {
            candle_core::bail!(
                "shape mismatch for {name}: expected {s:?}, got {:?}",
                t.shape()
            );
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = match self.trainable.get(name) {
            Some(v) => v.as_tensor().clone(),
            None => self
                .frozen
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("cannot find tensor {name}")))?
                .clone(),
        };
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.trainable.contains_key(name) || self.frozen.contains_key(name)
    }
}

/// The model with its trainable weights as variables, plus their names.
pub struct TrainableModel {
    /// The model (built over the variables).
    pub model: VisualGlm,
    /// The trainable variables, by canonical name.
    pub vars: Vec<(String, Var)>,
    /// The frozen tensors (to check they never change).
    pub frozen: HashMap<String, Tensor>,
    /// The checkpoint family the weights came from (kept when the model is exported).
    pub family: checkpoint::CheckpointFamily,
}

/// Loads `path` in f32 on `device` with the weights whose names start with one of
/// `trainable` as variables.
pub fn load_trainable(
    path: &Path,
    trainable: &[String],
    device: &Device,
) -> Result<TrainableModel> {
    let ck = checkpoint::load(path, &CheckpointOptions::default())?;
    let expected = expected_parameters(&ck.config)?;
    checkpoint::validate(&ck, &expected)?;
    let mut frozen = HashMap::new();
    let mut vars = Vec::new();
    for (name, t) in ck.tensors {
        let t = t.to_dtype(DType::F32)?.to_device(device)?;
        if trainable.iter().any(|p| name.starts_with(p.as_str())) {
            vars.push((name, Var::from_tensor(&t)?));
        } else {
            frozen.insert(name, t);
        }
    }
    if vars.is_empty() {
        return Err(VisualGlmError::Input(format!(
            "no weight matches the trainable prefixes {trainable:?}"
        )));
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let backend = TrainableBackend {
        frozen: frozen.clone(),
        trainable: vars.iter().cloned().collect(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
    let model = VisualGlm::from_var_builder(&ck.config, vb, &Default::default())?;
    Ok(TrainableModel {
        model,
        vars,
        frozen,
        family: ck.family,
    })
}

/// Adapters whose tensors are the trainable variables listed beside them.
type TrainableLora = (LoraAdapters, Vec<(String, Var)>);

/// Trainable LoRA adapters per `cfg.lora_*` on the frozen ChatGLM linears, attached unmerged
/// to `tm.model`; `None` when `lora_rank` is 0.
pub(super) fn attach_trainable_lora(
    cfg: &FinetuneConfig,
    tm: &mut TrainableModel,
    device: &Device,
) -> Result<Option<TrainableLora>> {
    let Some(config) = cfg.lora_config() else {
        return Ok(None);
    };
    let lora_err = VisualGlmError::from;
    let fresh =
        LoraAdapters::init(config, &tm.frozen, cfg.seed, device).map_err(|e| lora_err(e.into()))?;
    if fresh.is_empty() {
        return Err(VisualGlmError::Input(
            "lora_rank is set but no frozen ChatGLM linear matches lora_layers".into(),
        ));
    }
    let (set, vars) = fresh.to_vars().map_err(|e| lora_err(e.into()))?;
    tm.model.attach_lora(&set).map_err(lora_err)?;
    Ok(Some((set, vars)))
}
