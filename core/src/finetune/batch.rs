//! Turning examples into model inputs and computing the autoregressive loss of a batch.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use visualglm_dist::Collective;
use visualglm_language::prompt::{PromptBuilder, Template};
use visualglm_tokenizer::ChatGlmTokenizer;
use visualglm_train::data::Example;
use visualglm_train::labels::{
    build_labeled_ids, collate, pad_batch, LabelConfig, LabeledIds, PadTo, SpecialIds,
};
use visualglm_vision::decode::load_image;
use visualglm_vision::preprocess::ImagePreprocessor;

use super::data_parallel::dist_err;
use super::error::train_err;
use super::head::lm_loss;
use super::slots::ImageSlots;
use crate::error::{Result, VisualGlmError};
use crate::model::{batch_prefix_inputs, RowLayout, VisualGlm};

/// The release's training ids of one example: `encode("<img>")` + 32 pads +
/// `encode("</img>问：{prompt}\n答：")`, then the answer; returns them with `pre_image`.
pub fn example_ids(
    tokenizer: &ChatGlmTokenizer,
    image_length: usize,
    prompt: &str,
    label: &str,
    english: bool,
    cfg: &LabelConfig,
) -> Result<(LabeledIds, usize)> {
    let (ids, starts) =
        example_ids_images(tokenizer, 1, image_length, prompt, label, english, cfg)?;
    Ok((ids, starts.first().copied().unwrap_or(0)))
}

/// [`example_ids`] of an example with `images` images: the source is the inference prompt
/// without its `[gMASK] <sop>` (one `<img>` block per image, see
/// [`visualglm_language::prompt`]); returns the ids and where each image's placeholders start.
/// With several images, every placeholder must survive the cut to `max_source_length − 1`.
pub fn example_ids_images(
    tokenizer: &ChatGlmTokenizer,
    images: usize,
    image_length: usize,
    prompt: &str,
    label: &str,
    english: bool,
    cfg: &LabelConfig,
) -> Result<(LabeledIds, Vec<usize>)> {
    let template = if english {
        Template::English
    } else {
        Template::Chinese
    };
    let inputs = PromptBuilder::new(tokenizer)
        .template(template)
        .images(images, image_length, tokenizer.pad_id())
        .max_length(usize::MAX)
        .build(prompt, &[])?;
    let source = &inputs.ids[..inputs.ids.len().saturating_sub(2)];
    if images > 1 {
        let end = inputs.image_ranges().last().map_or(0, |r| r.end);
        if end >= cfg.max_source_length {
            return Err(VisualGlmError::Input(format!(
                "an example with {images} images needs max_source_length > {end} (it is {}): \
                 the prompt part is cut to max_source_length - 1 tokens",
                cfg.max_source_length
            )));
        }
    }
    let answer = tokenizer.encode(label)?;
    let special = SpecialIds {
        gmask: tokenizer.gmask_id(),
        sop: tokenizer.sop_id(),
        eop: tokenizer.eop_id(),
        pad: tokenizer.pad_id(),
    };
    let ids = build_labeled_ids(source, &answer, &special, cfg).map_err(train_err)?;
    Ok((ids, inputs.image_starts))
}

/// The mean autoregressive loss of a batch: `pixels` `[N, 3, 224, 224]` (every row's images,
/// row by row), labeled ids of equal length, and where the images go (`pre_image` for one
/// image per row, see [`ImageSlots`]).
pub fn batch_loss(
    model: &VisualGlm,
    pixels: &Tensor,
    batch: &[LabeledIds],
    images: impl Into<ImageSlots>,
) -> Result<Tensor> {
    Ok(batch_forward(model, pixels, batch, images, None)?.0)
}

/// [`batch_loss`] and the Q-Former output `[N, 32, width]` (the ITC image side), with an
/// optional embedding gradient shrink.
pub fn batch_forward(
    model: &VisualGlm,
    pixels: &Tensor,
    batch: &[LabeledIds],
    images: impl Into<ImageSlots>,
    shrink: Option<f64>,
) -> Result<(Tensor, Tensor)> {
    let out = batch_hidden(model, pixels, batch, images, shrink)?;
    let loss = lm_loss(model.language_model(), &out.hidden, &out.labels, None)?
        .mean()
        .map_err(train_err)?;
    Ok((loss, out.qformer_out))
}

/// What the model computes for a training batch before the loss.
pub struct BatchHidden {
    /// ChatGLM's final hidden states `[B, T, hidden]` (after the final LayerNorm).
    pub hidden: Tensor,
    /// The labels `[B, T]` (i64, −100 where nothing is predicted).
    pub labels: Tensor,
    /// The Q-Former output `[N, 32, width]` of the batch's images, in row order.
    pub qformer_out: Tensor,
}

/// The forward pass of [`batch_forward`] up to the final hidden states: the loss is
/// [`lm_loss`] of them.
pub fn batch_hidden(
    model: &VisualGlm,
    pixels: &Tensor,
    batch: &[LabeledIds],
    images: impl Into<ImageSlots>,
    shrink: Option<f64>,
) -> Result<BatchHidden> {
    let device = model.device().clone();
    let (ids, labels) = collate(batch, &device).map_err(train_err)?;
    let seq = ids.dim(1)?;
    let stages = model.encode_image_stages(pixels)?;
    let embeds = images
        .into()
        .input_embeds(model, &ids, &stages.image_embeds, shrink)?;
    let g = &model.config().glm;
    let rows: Vec<RowLayout> = batch
        .iter()
        .map(|b| {
            let (context_len, gmask_index) = visualglm_language::positions::context_and_mask(
                &b.input_ids,
                g.bos_token_id,
                g.gmask_token_id,
                g.mask_token_id,
            );
            RowLayout {
                pad_left: 0,
                len: seq,
                context_len,
                gmask_index,
            }
        })
        .collect();
    let (pos, mask) = batch_prefix_inputs(&rows, seq, &device)?;
    let hidden = model
        .language_model()
        .forward_embeds(&embeds, &pos, Some(&mask), None, None)?;
    Ok(BatchHidden {
        hidden,
        labels,
        qformer_out: stages.qformer_out,
    })
}

/// What turning examples into model inputs needs.
pub(super) struct ExampleContext<'a> {
    pub(super) tokenizer: &'a ChatGlmTokenizer,
    pub(super) preprocessor: &'a ImagePreprocessor,
    pub(super) labels: &'a LabelConfig,
    pub(super) pad_to: PadTo,
    pub(super) image_length: usize,
    pub(super) english: bool,
    pub(super) device: &'a Device,
}

/// Pixels `[N, 3, 224, 224]` (every example's images, in order), labeled ids (padded as
/// `ctx.pad_to` says) and the image slots of a batch of examples (images decoded in parallel).
pub(super) fn prepare_batch(
    batch: &[&Example],
    ctx: &ExampleContext<'_>,
) -> Result<(Tensor, Vec<LabeledIds>, ImageSlots)> {
    let paths: Vec<&std::path::Path> = batch
        .iter()
        .flat_map(|ex| ex.images.iter().map(|p| p.as_path()))
        .collect();
    let images = paths
        .par_iter()
        .map(|p| load_image(p, &Default::default()).map_err(VisualGlmError::from))
        .collect::<Result<Vec<_>>>()?;
    let pixels = ctx.preprocessor.preprocess_batch(&images, ctx.device)?;
    let mut labeled = Vec::with_capacity(batch.len());
    let mut starts = Vec::with_capacity(batch.len());
    for ex in batch {
        let (ids, at) = example_ids_images(
            ctx.tokenizer,
            ex.images.len(),
            ctx.image_length,
            &ex.prompt,
            &ex.label,
            ctx.english,
            ctx.labels,
        )
        .map_err(|e| VisualGlmError::Input(format!("{}: {e}", ex.source)))?;
        starts.push(at);
        labeled.push(ids);
    }
    pad_batch(&mut labeled, ctx.pad_to);
    Ok((pixels, labeled, ImageSlots::of_rows(starts)))
}

/// The mean autoregressive loss per answer token over `examples` (no update), computed in
/// batches of `batch_size`: the sum of every token's loss over the number of answer tokens,
/// so the value does not depend on how the examples are batched. In a data-parallel run each
/// rank computes the batches `rank, rank + world, …` and one all-reduce of (loss sum, token
/// count) combines them: every rank gets the value one process computes over all of them.
pub(super) fn validation_loss(
    model: &VisualGlm,
    examples: &[Example],
    batch_size: usize,
    ctx: &ExampleContext<'_>,
    comm: &dyn Collective,
) -> Result<f64> {
    let world = comm.world_size().max(1);
    // (loss sum, answer tokens) of this rank's batches.
    let mut sums = [0.0f64, 0.0];
    for chunk in examples
        .chunks(batch_size.max(1))
        .skip(comm.rank())
        .step_by(world)
    {
        let batch: Vec<&Example> = chunk.iter().collect();
        let (pixels, labeled, slots) = prepare_batch(&batch, ctx)?;
        let out = batch_hidden(model, &pixels, &labeled, slots, None)?;
        let ar = lm_loss(model.language_model(), &out.hidden, &out.labels, None)?;
        let sum = ar.sum.detach().to_dtype(DType::F32)?.to_scalar::<f32>()?;
        sums[0] += f64::from(sum);
        sums[1] += ar.n_supervised as f64;
    }
    comm.all_reduce_sum_f64(&mut sums).map_err(dist_err)?;
    Ok(sums[0] / sums[1].max(1.0))
}
