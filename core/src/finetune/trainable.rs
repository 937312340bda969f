//! The model with some weights as trainable variables: the base weights by name prefix, and
//! optional LoRA adapters on the frozen ChatGLM linears.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use visualglm_nn::lora::LoraAdapters;

use super::base::{BaseWeights, FrozenForm};
use super::config::FinetuneConfig;
use crate::checkpoint::{self, LazyCheckpoint, LoadOptions as CheckpointOptions, StoredTensor};
use crate::error::{Result, VisualGlmError};
use crate::model::VisualGlm;
use crate::param_shapes::expected_parameters;
use crate::streamed::{checked_shape, place_quantized, quantized_placeholder};

/// Serves trainable names as variables and everything else as plain tensors.
struct TrainableBackend {
    frozen: HashMap<String, Tensor>,
    trainable: HashMap<String, Var>,
}

impl TrainableBackend {
    /// A trainable tensor in `dtype`, or a frozen one in the dtype it was stored in (the base
    /// dtype for linear weights and embedding tables, f32 otherwise).
    fn tensor(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.trainable.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => self
                .frozen
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("cannot find tensor {name}")))?
                .to_device(dev),
        }
    }
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
        checked_shape(self.tensor(name, dtype, dev)?, s, name)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.tensor(name, dtype, dev)
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
    /// The frozen tensors (to check they never change), in their base dtype; a quantized
    /// weight appears as a zero-stride placeholder of its shape (see `quantized`).
    pub frozen: HashMap<String, Tensor>,
    /// The frozen ChatGLM linear weights held as GGML blocks (`base_quantize`), by name.
    pub quantized: HashMap<String, Arc<QTensor>>,
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
    load_trainable_with(path, trainable, device, &BaseWeights::default())
}

/// [`load_trainable`] with the frozen weights held as `base` says. Each tensor is converted
/// (or quantized) and the stored one dropped before the next, so the converted model is
/// never held in f32.
pub fn load_trainable_with(
    path: &Path,
    trainable: &[String],
    device: &Device,
    base: &BaseWeights,
) -> Result<TrainableModel> {
    let ck = checkpoint::open(path, &CheckpointOptions::default())?;
    let expected = expected_parameters(&ck.config)?;
    checkpoint::validate(&ck, &expected)?;
    let (config, family) = (ck.config.clone(), ck.family);
    let tensors = read_once_each(ck);
    trainable_from_tensors(&config, family, tensors, trainable, device, base)
}

/// The tensors in name order, each read when the iterator reaches it; names that read the same
/// stored data (a tied `lm_head`) get one tensor, held only until the last of them is reached.
fn read_once_each(ck: LazyCheckpoint) -> impl Iterator<Item = Result<(String, Tensor)>> {
    let groups = ck.shared_data();
    let mut left: HashMap<usize, usize> = HashMap::new();
    for g in groups.values() {
        *left.entry(*g).or_default() += 1;
    }
    let mut entries: Vec<(String, StoredTensor)> = ck.tensors.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    // Group → its tensor, while names of the group are still to come.
    let mut shared: HashMap<usize, Tensor> = HashMap::new();
    entries.into_iter().map(move |(name, stored)| {
        let Some(&g) = groups.get(&name) else {
            return Ok((name, stored.read()?));
        };
        let t = match shared.get(&g) {
            Some(t) => t.clone(),
            None => shared.entry(g).or_insert(stored.read()?).clone(),
        };
        let n = left.entry(g).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            shared.remove(&g);
        }
        Ok((name, t))
    })
}

/// Builds the trainable model from canonical tensors, each read (and dropped after its
/// conversion) before the next: pass them lazily and the stored checkpoint is never held.
pub fn trainable_from_tensors(
    config: &crate::config::VisualGlmConfig,
    family: checkpoint::CheckpointFamily,
    tensors: impl IntoIterator<Item = Result<(String, Tensor)>>,
    trainable: &[String],
    device: &Device,
    base: &BaseWeights,
) -> Result<TrainableModel> {
    if device.is_cpu() && base.dtype == DType::BF16 {
        return Err(VisualGlmError::Input(
            "base_dtype = \"bf16\" is refused on the CPU (candle's CPU bf16 matmul is 10-20x \
             slower than f32); use \"f16\" or a base_quantize type"
                .into(),
        ));
    }
    let mut frozen = HashMap::new();
    let mut quantized = HashMap::new();
    let mut converted: HashMap<(candle_core::TensorId, DType), Tensor> = HashMap::new();
    let mut vars = Vec::new();
    for item in tensors {
        let (name, t) = item?;
        if trainable.iter().any(|p| name.starts_with(p.as_str())) {
            let t = t.to_dtype(DType::F32)?.to_device(device)?;
            vars.push((name, Var::from_tensor(&t)?));
            continue;
        }
        match base.frozen_form(&name, t.dims()) {
            FrozenForm::Dense(dtype) => {
                // The same tensor under two names (tied) is converted once.
                let key = (t.id(), dtype);
                let held = match converted.get(&key) {
                    Some(c) => Tensor::clone(c),
                    None => {
                        let c = t.to_dtype(dtype)?.to_device(device)?;
                        converted.insert(key, c.clone());
                        c
                    }
                };
                frozen.insert(name, held);
            }
            FrozenForm::Quantized(q) => {
                let dims = t.dims().to_vec();
                let q = QTensor::quantize_onto(&t.to_dtype(DType::F32)?, q, device)?;
                drop(t);
                frozen.insert(
                    name.clone(),
                    quantized_placeholder(&dims, DType::F32, device)?,
                );
                quantized.insert(name, Arc::new(q));
            }
        }
    }
    if let Some(p) = trainable
        .iter()
        .find(|p| !vars.iter().any(|(n, _)| n.starts_with(p.as_str())))
    {
        return Err(VisualGlmError::Input(format!(
            "no weight matches the trainable prefix {p:?}"
        )));
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let backend = TrainableBackend {
        frozen: frozen.clone(),
        trainable: vars.iter().cloned().collect(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
    let mut model = VisualGlm::from_var_builder(config, vb, &Default::default())?;
    place_quantized(&mut model, quantized.clone())?;
    Ok(TrainableModel {
        model,
        vars,
        frozen,
        quantized,
        family,
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
