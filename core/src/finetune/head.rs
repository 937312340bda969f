//! The autoregressive loss from final hidden states: through `lm_head` a chunk of rows at a time
//! when `lm_head` is frozen (see `visualglm_train::chunked_ce`), through full logits when it
//! trains.

use std::sync::Arc;

use candle_core::{DType, Module, Tensor};
use visualglm_language::ChatGlm;
use visualglm_nn::checkpoint::HasParams;
use visualglm_nn::Linear;
use visualglm_train::chunked_ce::{ar_loss_chunked, chunk_rows_for, LogitsHead, CHUNK_BYTES};
use visualglm_train::losses::{ar_loss, ArLoss};

use super::error::train_err;
use crate::error::Result;

/// A frozen `lm_head` as the head of the chunked loss.
pub struct LmHead {
    linear: Linear,
    vocab: usize,
}

impl LmHead {
    /// The head over `linear` (`[vocab, hidden]`), or `None` when the linear trains (a tracked
    /// weight or bias, or adapters): its weights need the gradient the chunked loss does not
    /// give.
    pub fn frozen(linear: &Linear) -> Result<Option<Self>> {
        if linear.has_params() {
            return Ok(None);
        }
        let (vocab, _) = linear.dims()?;
        Ok(Some(Self {
            linear: linear.clone(),
            vocab,
        }))
    }
}

impl LogitsHead for LmHead {
    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn logits(&self, rows: &Tensor) -> visualglm_train::Result<Tensor> {
        Ok(self.linear.forward(&rows.detach())?.to_dtype(DType::F32)?)
    }

    fn backward_input(&self, grad_logits: &Tensor) -> visualglm_train::Result<Tensor> {
        // `grad·W`, a block of rows of W widened to f32 at a time.
        Ok(self.linear.backward_input(grad_logits)?)
    }
}

/// The release's autoregressive loss of final hidden states `[B, T, H]` against `labels`
/// `[B, T]`: `ar_loss(glm.logits(hidden), labels)`, computed a chunk of `chunk_rows` rows of
/// logits at a time (`None`: rows of about 64 MiB of f32 logits, 128 at ChatGLM-6B's vocabulary)
/// when `lm_head` is frozen, through the full logits when it trains.
pub fn lm_loss(
    glm: &ChatGlm,
    hidden: &Tensor,
    labels: &Tensor,
    chunk_rows: Option<usize>,
) -> Result<ArLoss> {
    let loss = match LmHead::frozen(glm.lm_head())? {
        Some(head) => {
            let rows = chunk_rows.unwrap_or_else(|| chunk_rows_for(head.vocab, CHUNK_BYTES));
            ar_loss_chunked(hidden, labels, Arc::new(head), rows)
        }
        None => ar_loss(&glm.logits(hidden)?, labels),
    };
    loss.map_err(train_err)
}
