//! The text queue of the ITC loss: caption features of earlier batches, kept as extra
//! negatives (and in checkpoints, so a resumed run ranks the same texts).

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use crate::error::{Result, VisualGlmError};

/// Text features of earlier batches, newest first, that the ITC loss ranks as extra
/// negatives for each image (ALBEF's and BLIP's text queue). It keeps the frozen language
/// model's pooled caption states, before `text_proj`, so each step projects them with the
/// current heads; they go stale only as far as LoRA on the language model moves them.
#[derive(Debug, Clone)]
pub struct TextQueue {
    capacity: usize,
    pub(super) features: Option<Tensor>,
    pub(super) ids: Vec<i64>,
}

/// Checkpoint key of the queued features.
const QUEUE_FEATURES: &str = "itc_queue.features";
/// Checkpoint key of the queued caption ids.
const QUEUE_IDS: &str = "itc_queue.ids";

impl TextQueue {
    /// An empty queue holding at most `capacity` texts.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            features: None,
            ids: Vec::new(),
        }
    }

    /// Number of queued texts.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Puts a batch's features `[B, W]` (detached) and caption ids in front, dropping the
    /// oldest beyond the capacity.
    pub fn push(&mut self, features: &Tensor, ids: &[i64]) -> Result<()> {
        if self.capacity == 0 {
            return Ok(());
        }
        if features.dim(0)? != ids.len() {
            return Err(VisualGlmError::Input(format!(
                "text queue: {} ids for {} features",
                ids.len(),
                features.dim(0)?
            )));
        }
        let features = features.detach();
        let all = match &self.features {
            Some(old) => Tensor::cat(&[&features, old], 0)?,
            None => features,
        };
        let keep = all.dim(0)?.min(self.capacity);
        self.features = Some(all.narrow(0, 0, keep)?);
        self.ids = ids.iter().chain(&self.ids).take(keep).copied().collect();
        Ok(())
    }

    /// The queue as named tensors, to save with a training checkpoint (none when empty).
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        if let Some(f) = &self.features {
            out.insert(QUEUE_FEATURES.to_string(), f.clone());
            let ids = Tensor::from_vec(self.ids.clone(), self.ids.len(), f.device())?;
            out.insert(QUEUE_IDS.to_string(), ids);
        }
        Ok(out)
    }

    /// Restores a queue saved by [`TextQueue::tensors`] from checkpoint tensors (an empty
    /// queue when they hold none); more saved texts than `capacity` keep the newest.
    pub fn from_tensors(capacity: usize, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let mut queue = Self::new(capacity);
        let (Some(f), Some(ids)) = (tensors.get(QUEUE_FEATURES), tensors.get(QUEUE_IDS)) else {
            return Ok(queue);
        };
        let ids = ids.to_dtype(DType::I64)?.to_vec1::<i64>()?;
        if f.dims().len() != 2 || f.dim(0)? != ids.len() {
            return Err(VisualGlmError::Input(format!(
                "checkpoint text queue: features {:?} with {} ids",
                f.dims(),
                ids.len()
            )));
        }
        queue.push(&f.to_dtype(DType::F32)?, &ids)?;
        Ok(queue)
    }
}
