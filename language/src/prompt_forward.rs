//! Running a whole prompt: [`ChatGlm`] computes the 2D positions and the prefix-LM mask from
//! the prompt's ids and splices any number of embedding spans (images) into it.

use candle_core::{Result, Tensor};

use crate::kv_cache::KvCache;
use crate::model::ChatGlm;
use crate::positions::{context_and_mask, position_ids};
use crate::splice::{splice_spans, EmbedSpan};

impl ChatGlm {
    /// The context length (tokens before `<sop>`) and the `[gMASK]` index of a prompt.
    pub fn prompt_layout(&self, ids: &[u32]) -> (usize, usize) {
        let c = self.config();
        context_and_mask(ids, c.bos_token_id, c.gmask_token_id, c.mask_token_id)
    }

    /// `[1, 2, S]` position ids of a prompt.
    pub fn prompt_position_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let (context_len, gmask_index) = self.prompt_layout(ids);
        let [p, b] = position_ids(ids.len(), context_len, gmask_index);
        let data: Vec<u32> = p.into_iter().chain(b).collect();
        Tensor::from_vec(data, (1, 2, ids.len()), self.device())
    }

    /// Word embeddings of `ids` `[B, S]` with each span's embeddings in its range.
    pub fn embed_spliced(&self, ids: &Tensor, spans: &[EmbedSpan]) -> Result<Tensor> {
        splice_spans(ids, spans, self.dtype(), |ids| self.embed(ids))
    }

    /// Runs one prompt for `batch` rows (the same ids, each span's embeddings `[batch, n,
    /// hidden]`) from its ids alone: positions and the prefix-LM mask come from the ids. With a
    /// cache, keys and values are appended to it. Returns the final hidden states `[batch, S,
    /// hidden]`.
    pub fn forward_prompt(
        &self,
        ids: &[u32],
        batch: usize,
        spans: &[EmbedSpan],
        cache: Option<&mut KvCache>,
        layer_outputs: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        let ids_t = Tensor::new(ids, self.device())?
            .unsqueeze(0)?
            .repeat((batch, 1))?;
        let embeds = self.embed_spliced(&ids_t, spans)?;
        let pos = self.prompt_position_ids(ids)?;
        let (context_len, _) = self.prompt_layout(ids);
        let mask = self.prefix_lm_mask(context_len, 0, ids.len())?;
        self.forward_embeds(&embeds, &pos, Some(&mask), cache, layer_outputs)
    }
}
