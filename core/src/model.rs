//! The assembled VisualGLM: EVA ViT → Q-Former → `glm_proj` → ChatGLM, with the 32 image
//! embeddings spliced in right after the tokens of `<img>`.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use visualglm_language::positions::{attends, position_at, position_ids};
use visualglm_language::splice::{splice_spans, EmbedSpan};
use visualglm_language::{ChatGlm, KvCache};
use visualglm_nn::checkpoint::Checkpointing;
use visualglm_nn::Linear;
use visualglm_qformer::QFormer;
use visualglm_vision::EvaVit;

use crate::config::VisualGlmConfig;
use crate::error::{Result, VisualGlmError};
use crate::param_shapes::expected_parameters;
use crate::parts::Parts;

/// Every intermediate of encoding one batch of images.
#[derive(Debug, Clone)]
pub struct ImageEncoding {
    /// ViT output after `ln_vision`, `[B, 257, vit_width]`.
    pub vit_out: Tensor,
    /// Q-Former output after its final LayerNorm, `[B, 32, qformer_width]`.
    pub qformer_out: Tensor,
    /// `glm_proj` output, `[B, 32, glm_width]`: what replaces the placeholder tokens.
    pub image_embeds: Tensor,
}

/// Options of [`VisualGlm::from_var_builder`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Dtype of the image encoder (ViT, Q-Former, `glm_proj`); `None`: `vb`'s dtype.
    pub vision_dtype: Option<DType>,
}

/// The full VisualGLM model.
#[derive(Debug, Clone)]
pub struct VisualGlm {
    config: VisualGlmConfig,
    /// Dtype of the image encoder's weights and activations.
    vision_dtype: DType,
    vit: EvaVit,
    qformer: QFormer,
    glm_proj: Linear,
    glm: ChatGlm,
}

impl VisualGlm {
    /// Builds the model from canonical (HF-named, `[Q|K|V]` GLM rows) weights: the language
    /// model in `vb`'s dtype, the image encoder as `opts` says.
    pub fn from_var_builder(
        config: &VisualGlmConfig,
        vb: VarBuilder,
        opts: &BuildOptions,
    ) -> Result<Self> {
        let vision_dtype = opts.vision_dtype.unwrap_or(vb.dtype());
        if vb.device().is_cpu() && vision_dtype == DType::BF16 && vb.dtype() != DType::BF16 {
            return Err(VisualGlmError::Input(
                "bf16 is not supported on the CPU (candle has no CPU bf16 matmul): use f32 or \
                 f16 for the vision dtype"
                    .into(),
            ));
        }
        let Parts {
            vit,
            qformer,
            glm_proj,
            glm,
        } = Parts::load(config, vb, vision_dtype)?;
        Ok(Self {
            config: config.clone(),
            vision_dtype,
            vit,
            qformer,
            glm_proj,
            glm,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VisualGlmConfig {
        &self.config
    }

    /// The most tokens of prompt + answer a request asking for `requested` may have: the
    /// request's own limit, capped at the language model's `max_sequence_length`.
    pub fn length_limit(&self, requested: usize) -> usize {
        requested.min(self.config.glm.max_sequence_length)
    }

    /// The preprocessing the image encoder expects: the release's for 224 × 224, the config's
    /// `image_size` otherwise (small from-scratch models).
    pub fn image_preprocessor(&self) -> visualglm_vision::preprocess::ImagePreprocessor {
        visualglm_vision::preprocess::ImagePreprocessor::new(
            self.config.vision.image_size[0] as u32,
        )
    }

    /// The language model.
    pub fn language_model(&self) -> &ChatGlm {
        &self.glm
    }

    /// The language model, mutably (quantization, adapters).
    pub fn language_model_mut(&mut self) -> &mut ChatGlm {
        &mut self.glm
    }

    /// Activation checkpointing for training (SAT's `checkpoint_activations`): every ChatGLM
    /// and ViT block, and every Q-Former layer while the ViT is frozen, keeps only its input
    /// for the backward pass and recomputes the rest there. `None` turns it off.
    pub fn set_checkpointing(&mut self, checkpointing: Option<Checkpointing>) {
        self.vit.set_checkpointing(checkpointing.clone());
        self.qformer.set_checkpointing(checkpointing.clone());
        self.glm.set_checkpointing(checkpointing);
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.glm.device()
    }

    /// The activation dtype of the language model.
    pub fn dtype(&self) -> DType {
        self.glm.dtype()
    }

    /// The dtype of the image encoder (ViT, Q-Former, `glm_proj`).
    pub fn vision_dtype(&self) -> DType {
        self.vision_dtype
    }

    /// Encodes preprocessed pixels `[B, 3, 224, 224]` and returns every stage: `vit_out` and
    /// `qformer_out` in the vision dtype, `image_embeds` cast to the language model's dtype.
    pub fn encode_image_stages(&self, pixel_values: &Tensor) -> Result<ImageEncoding> {
        let pixel_values = pixel_values
            .to_device(self.device())?
            .to_dtype(self.vision_dtype)?;
        let vit_out = self.vit.forward(&pixel_values)?;
        let qformer_out = self.qformer.forward(&vit_out)?;
        let image_embeds = self
            .glm_proj
            .forward(&qformer_out)?
            .to_dtype(self.glm.dtype())?;
        Ok(ImageEncoding {
            vit_out,
            qformer_out,
            image_embeds,
        })
    }

    /// Encodes preprocessed pixels `[B, 3, 224, 224]` into `[B, 32, glm_width]` embeddings.
    pub fn encode_image(&self, pixel_values: &Tensor) -> Result<Tensor> {
        Ok(self.encode_image_stages(pixel_values)?.image_embeds)
    }

    /// Word embeddings of `ids` `[B, S]` with each image span's rows (its `[B, 32, width]`
    /// embeddings from its start on) replaced.
    pub fn input_embeds(&self, ids: &Tensor, images: &[EmbedSpan]) -> Result<Tensor> {
        self.input_embeds_shrunk(ids, images, None)
    }

    /// [`VisualGlm::input_embeds`] with GLM-130B's embedding gradient shrink on the word
    /// embeddings: `e·α + e.detach()·(1−α)` (same values up to rounding, gradient scaled by α; the image
    /// embeddings are not shrunk).
    pub fn input_embeds_shrunk(
        &self,
        ids: &Tensor,
        images: &[EmbedSpan],
        shrink: Option<f64>,
    ) -> Result<Tensor> {
        let embed = |ids: &Tensor| -> candle_core::Result<Tensor> {
            let e = self.glm.embed(ids)?;
            match shrink {
                Some(alpha) => (&e * alpha)? + (e.detach() * (1.0 - alpha))?,
                None => Ok(e),
            }
        };
        let (_, seq_len) = ids.dims2()?;
        check_spans(seq_len, images)?;
        Ok(splice_spans(ids, images, self.dtype(), embed)?)
    }

    /// The context length and `[gMASK]` index of a prompt.
    pub fn prompt_layout(&self, ids: &[u32]) -> (usize, usize) {
        self.glm.prompt_layout(ids)
    }

    /// `[1, 2, S]` position ids of a prompt.
    pub fn prompt_position_ids(&self, ids: &[u32]) -> Result<Tensor> {
        Ok(self.glm.prompt_position_ids(ids)?)
    }

    /// Runs one prompt (no cache) and returns the final hidden states `[1, S, width]`.
    ///
    /// `images` are the prompt's image spans (`[1, 32, width]` each, see
    /// [`PromptInputs::image_spans`](visualglm_language::prompt::PromptInputs::image_spans)).
    pub fn prompt_hidden(
        &self,
        ids: &[u32],
        images: &[EmbedSpan],
        cache: Option<&mut KvCache>,
        layer_outputs: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        self.check_prompt(ids)?;
        check_spans(ids.len(), images)?;
        Ok(self
            .glm
            .forward_prompt(ids, 1, images, cache, layer_outputs)?)
    }

    /// Prefills the cache with one prompt for `batch` rows: row `i` gets row `i` of each image
    /// span's embeddings `[batch, 32, width]`. Returns the final hidden states
    /// `[batch, S, width]`.
    pub fn prompt_hidden_batch(
        &self,
        ids: &[u32],
        images: &[EmbedSpan],
        batch: usize,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        self.check_prompt(ids)?;
        for span in images {
            if span.embeds.dim(0)? != batch {
                return Err(VisualGlmError::Input(format!(
                    "{} image embeddings for a batch of {batch}",
                    span.embeds.dim(0)?
                )));
            }
        }
        check_spans(ids.len(), images)?;
        Ok(self
            .glm
            .forward_prompt(ids, batch, images, Some(cache), None)?)
    }

    /// Logits `[1, S, vocab]` (f32) of a whole prompt.
    pub fn prompt_logits(&self, ids: &[u32], images: &[EmbedSpan]) -> Result<Tensor> {
        let hidden = self.prompt_hidden(ids, images, None, None)?;
        Ok(self.glm.logits(&hidden)?)
    }

    /// Greedy decoding with the KV cache: up to `max_new_tokens` ids after the prompt, stopping
    /// after `<eop>`. Also returns the logits `[vocab]` of every step.
    pub fn generate_greedy(
        &self,
        ids: &[u32],
        images: &[EmbedSpan],
        max_new_tokens: usize,
    ) -> Result<(Vec<u32>, Vec<Tensor>)> {
        let mut out = Vec::new();
        let mut step_logits = Vec::new();
        if max_new_tokens == 0 {
            return Ok((out, step_logits));
        }
        let mut cache = self.glm.new_cache();
        // The prompt and every generated token but the last are fed.
        cache.expect_positions(ids.len().saturating_add(max_new_tokens - 1));
        let (context_len, gmask_index) = self.prompt_layout(ids);
        let hidden = self.prompt_hidden(ids, images, Some(&mut cache), None)?;
        let last = hidden.narrow(1, ids.len() - 1, 1)?;
        let mut logits = self.glm.logits(&last)?.flatten_all()?;
        let eos = self.config.glm.eos_id();
        loop {
            let next = logits.argmax(0)?.to_scalar::<u32>()?;
            step_logits.push(logits);
            out.push(next);
            if next == eos || out.len() >= max_new_tokens {
                break;
            }
            let t = ids.len() + out.len() - 1;
            let (p0, p1) = position_at(t, context_len, gmask_index);
            let pos = Tensor::new(&[[[p0], [p1]]], self.device())?;
            let x = self.glm.embed(&Tensor::new(&[[next]], self.device())?)?;
            let hidden = self
                .glm
                .forward_embeds(&x, &pos, None, Some(&mut cache), None)?;
            logits = self.glm.logits(&hidden)?.flatten_all()?;
        }
        Ok((out, step_logits))
    }

    fn check_prompt(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(VisualGlmError::Input("the prompt has no tokens".into()));
        }
        let vocab = self.config.glm.vocab_size as u32;
        if let Some(bad) = ids.iter().find(|&&t| t >= vocab) {
            return Err(VisualGlmError::Input(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        Ok(())
    }
}

/// Where one row of a batch sits: `pad_left` pad tokens, then a prompt of `len` tokens whose
/// context (bidirectional part) is `context_len` long with `[gMASK]` at `gmask_index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLayout {
    /// Pad tokens before the row's first token (never attended).
    pub pad_left: usize,
    /// The row's own tokens.
    pub len: usize,
    /// Tokens before `<sop>`.
    pub context_len: usize,
    /// Index of `[gMASK]` within the row.
    pub gmask_index: usize,
}

/// `[B, 2, seq]` position ids and the additive `[B, 1, seq, seq]` prefix-LM mask of a batch.
/// Left pads get position 0 and attend only themselves (their rows stay finite and are never
/// looked at).
pub fn batch_prefix_inputs(
    rows: &[RowLayout],
    seq: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let batch = rows.len();
    let mut pos = Vec::with_capacity(batch * 2 * seq);
    let mut mask = Vec::with_capacity(batch * seq * seq);
    for r in rows {
        if r.pad_left + r.len != seq {
            return Err(VisualGlmError::Input(format!(
                "row of {} tokens after {} pads does not fill {seq} positions",
                r.len, r.pad_left
            )));
        }
        let [p0, p1] = position_ids(r.len, r.context_len, r.gmask_index);
        for p in [p0, p1] {
            pos.extend(std::iter::repeat_n(0u32, r.pad_left));
            pos.extend(p);
        }
        let pad = r.pad_left;
        for i in 0..seq {
            for j in 0..seq {
                let open = if i < pad {
                    j == i
                } else {
                    j >= pad && attends(i - pad, j - pad, r.context_len)
                };
                mask.push(if open { 0f32 } else { f32::NEG_INFINITY });
            }
        }
    }
    Ok((
        Tensor::from_vec(pos, (batch, 2, seq), device)?,
        Tensor::from_vec(mask, (batch, 1, seq, seq), device)?,
    ))
}

/// All names and shapes the full released VisualGLM-6B reads.
pub fn visualglm_6b_parameters() -> Result<Vec<(String, Vec<usize>)>> {
    expected_parameters(&VisualGlmConfig::visualglm_6b())
}

/// Checks that image spans (`[B, n, width]` embeddings each) lie in a prompt of `seq_len`
/// tokens, in order and apart.
fn check_spans(seq_len: usize, images: &[EmbedSpan]) -> Result<()> {
    let mut at = 0;
    for span in images {
        let n_img = span.embeds.dim(1)?;
        if span.start < at || span.start + n_img > seq_len {
            return Err(VisualGlmError::Input(format!(
                "the prompt has {seq_len} tokens, too few for {n_img} image tokens after \
                 position {} (images must be in order, apart, inside the prompt)",
                span.start
            )));
        }
        at = span.start + n_img;
    }
    Ok(())
}
