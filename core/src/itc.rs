//! Image-text contrastive (ITC) heads, BLIP-2 style, for VisualGLM: `vision_proj` on the
//! Q-Former queries, `text_proj` on the frozen language model's mean-pooled caption states
//! (VisualGLM's Q-Former has no text branch), a learnable temperature; the in-batch loss for
//! training and the similarity matrix for retrieval.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use visualglm_tokenizer::ChatGlmTokenizer;
use visualglm_train::losses::{
    itc_loss_queued, l2_normalize, masked_mean, ItcConfig, Temperature, NORMALIZE_EPS,
};

use crate::error::{Result, VisualGlmError};
use crate::model::{batch_prefix_inputs, RowLayout, VisualGlm};

mod queue;
pub use queue::TextQueue;

/// File of the ITC heads in an exported model directory.
pub const ITC_FILE: &str = "itc.safetensors";

/// Metadata key of the caption layout in [`ITC_FILE`].
const LAYOUT_KEY: &str = "caption_layout";

/// The caption layout recorded in the bytes of a heads file (files without one used
/// `context`); `path` only names the file in errors.
fn read_layout(bytes: &[u8], path: &Path) -> Result<CaptionLayout> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
        VisualGlmError::Input(format!("{}: not a safetensors file: {e}", path.display()))
    })?;
    match meta.metadata().as_ref().and_then(|m| m.get(LAYOUT_KEY)) {
        None => Ok(CaptionLayout::Context),
        Some(v) => CaptionLayout::parse(v).ok_or_else(|| {
            VisualGlmError::Input(format!("{}: unknown caption layout {v:?}", path.display()))
        }),
    }
}

/// Names of the two projections.
const PROJECTIONS: [&str; 2] = ["vision_proj", "text_proj"];

/// The ITC heads: BLIP-2's `vision_proj` on the Q-Former queries, a `text_proj` on the frozen
/// language model's mean-pooled caption states (VisualGLM's Q-Former has no text branch), and
/// the learnable temperature.
pub struct ItcHeads {
    vision_proj: visualglm_nn::Linear,
    text_proj: visualglm_nn::Linear,
    temperature: Temperature,
    vars: Vec<(String, Var)>,
    layout: CaptionLayout,
}

impl std::fmt::Debug for ItcHeads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItcHeads")
            .field("layout", &self.layout)
            .field("vars", &self.vars.len())
            .finish()
    }
}

impl ItcHeads {
    /// New heads of width `dim`, initialised N(0, 0.02) (biases 0) from `seed`, reading
    /// captions laid out per `layout`.
    pub fn new(
        qformer_width: usize,
        glm_width: usize,
        dim: usize,
        seed: u64,
        layout: CaptionLayout,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut projection = |inp: usize| -> Result<(Tensor, Tensor)> {
            let values: Vec<f32> = (0..dim * inp)
                .map(|_| (0.02 * crate::init::standard_normal(&mut rng)) as f32)
                .collect();
            Ok((
                Tensor::from_vec(values, (dim, inp), device)?,
                Tensor::zeros(dim, DType::F32, device)?,
            ))
        };
        let parts = [projection(qformer_width)?, projection(glm_width)?];
        Self::from_parts(parts, Temperature::INIT, layout, device)
    }

    /// Heads over the given `(weight, bias)` of `vision_proj` and `text_proj` and an initial
    /// temperature, all made trainable variables.
    fn from_parts(
        parts: [(Tensor, Tensor); 2],
        temperature: f64,
        layout: CaptionLayout,
        device: &Device,
    ) -> Result<Self> {
        let mut vars = Vec::new();
        let mut linears = Vec::with_capacity(2);
        for (name, (w, b)) in PROJECTIONS.iter().zip(parts) {
            let w = Var::from_tensor(&w)?;
            let b = Var::from_tensor(&b)?;
            linears.push(visualglm_nn::Linear::from_weights(
                w.as_tensor().clone(),
                Some(b.as_tensor().clone()),
            ));
            vars.push((format!("itc.{name}.weight"), w));
            vars.push((format!("itc.{name}.bias"), b));
        }
        let temperature = Temperature::new(temperature, device).map_err(train_err)?;
        vars.push(("itc.temp".into(), temperature.var().clone()));
        let text_proj = linears.pop();
        let vision_proj = linears.pop();
        let (Some(vision_proj), Some(text_proj)) = (vision_proj, text_proj) else {
            return Err(VisualGlmError::Input(
                "ITC heads need two projections".into(),
            ));
        };
        Ok(Self {
            vision_proj,
            text_proj,
            temperature,
            vars,
            layout,
        })
    }

    /// The trainable variables (for the optimiser and checkpoints).
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Loads heads saved by a training run (`itc.safetensors`: `itc.vision_proj.*`,
    /// `itc.text_proj.*`, `itc.temp`).
    pub fn from_file(path: &Path, device: &Device) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(VisualGlmError::io("cannot read the ITC heads", path))?;
        let layout = read_layout(&bytes, path)?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
            VisualGlmError::Input(format!(
                "cannot read the ITC heads {}: {}",
                path.display(),
                crate::error::first_line(&e)
            ))
        })?;
        let get = |name: &str| -> Result<Tensor> {
            tensors
                .get(name)
                .map(|t| t.to_dtype(DType::F32))
                .transpose()?
                .ok_or_else(|| {
                    VisualGlmError::Input(format!("{}: missing `{name}`", path.display()))
                })
        };
        let projection = |name: &str| -> Result<(Tensor, Tensor)> {
            let w = get(&format!("itc.{name}.weight"))?;
            let b = get(&format!("itc.{name}.bias"))?;
            if w.dims().len() != 2 || b.dims() != [w.dims()[0]] {
                return Err(VisualGlmError::Input(format!(
                    "{}: `itc.{name}` has weight {:?} and bias {:?}",
                    path.display(),
                    w.dims(),
                    b.dims()
                )));
            }
            Ok((w, b))
        };
        let parts = [projection(PROJECTIONS[0])?, projection(PROJECTIONS[1])?];
        let temp = get("itc.temp")?.flatten_all()?.to_vec1::<f32>()?;
        let temp = temp.first().copied().ok_or_else(|| {
            VisualGlmError::Input(format!("{}: `itc.temp` is empty", path.display()))
        })?;
        Self::from_parts(parts, f64::from(temp), layout, device)
    }

    /// How captions are laid out for the text side.
    pub fn caption_layout(&self) -> CaptionLayout {
        self.layout
    }

    /// Writes the heads (and their caption layout, as metadata) to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors = self.tensors();
        let meta = HashMap::from([(LAYOUT_KEY.to_string(), self.layout.as_str().to_string())]);
        let bytes =
            safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
                .map_err(|e| {
                    VisualGlmError::Input(format!("cannot serialise the ITC heads: {e}"))
                })?;
        visualglm_files::write_atomic_bytes(path, &bytes)
            .map_err(|e| VisualGlmError::io("cannot write", path)(e.source))?;
        Ok(())
    }

    /// The heads as named tensors (what [`ItcHeads::from_file`] reads).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
            .collect()
    }

    /// `[N, T]` similarities of `N` images (Q-Former outputs `[N, 32, w]`) to `T` texts
    /// (features `[T, W]`): the best query's cosine similarity, as BLIP-2 ranks.
    pub fn similarity(&self, qformer_out: &Tensor, text_feature: &Tensor) -> Result<Tensor> {
        embedding_scores(
            &self.image_embeddings(qformer_out)?,
            &self.text_embeddings(text_feature)?,
        )
    }

    /// The ITC loss of Q-Former outputs `[B, 32, w]` and text features `[B, W]`; rows with
    /// the same `group` (e.g. the same caption) count as positives of each other. With a
    /// non-empty `queue`, image→text also ranks the queued texts of earlier batches
    /// ([`itc_loss_queued`]).
    pub fn loss(
        &self,
        qformer_out: &Tensor,
        text_feature: &Tensor,
        group: &[i64],
        queue: Option<&TextQueue>,
    ) -> Result<Tensor> {
        let (image, text, queued, queue_ids) = self.project(qformer_out, text_feature, queue)?;
        let out = itc_loss_queued(
            &image,
            &text,
            group,
            &queued,
            queue_ids,
            self.temperature.tensor(),
            &ItcConfig::default(),
        )
        .map_err(train_err)?;
        Ok(out.loss)
    }

    /// The share of rows `rows` of [`ItcHeads::loss`] over the whole (gathered) batch
    /// `qformer_out` `[B, 32, w]`, `text_feature` `[B, W]`, `group`: what one data-parallel
    /// rank computes for its own rows (see `visualglm_train::itc_rows`); the shares of a
    /// partition of the rows add up to the whole loss.
    pub fn loss_rows(
        &self,
        qformer_out: &Tensor,
        text_feature: &Tensor,
        group: &[i64],
        rows: std::ops::Range<usize>,
        queue: Option<&TextQueue>,
    ) -> Result<Tensor> {
        let (image, text, queued, queue_ids) = self.project(qformer_out, text_feature, queue)?;
        visualglm_train::itc_rows::itc_loss_queued_rows(
            &image,
            &text,
            group,
            rows,
            &queued,
            queue_ids,
            self.temperature.tensor(),
            &ItcConfig::default(),
        )
        .map_err(train_err)
    }

    /// Clamps the temperature, then the loss's inputs through the heads, normalised: image
    /// features `[B, 32, D]`, text features `[B, D]`, the queued texts `[E, D]` and their ids.
    #[allow(clippy::type_complexity)]
    fn project<'q>(
        &self,
        qformer_out: &Tensor,
        text_feature: &Tensor,
        queue: Option<&'q TextQueue>,
    ) -> Result<(Tensor, Tensor, Tensor, &'q [i64])> {
        self.temperature.clamp().map_err(train_err)?;
        let image = l2_normalize(
            &self
                .vision_proj
                .forward(&qformer_out.to_dtype(DType::F32)?)?,
            NORMALIZE_EPS,
        )
        .map_err(train_err)?;
        let text = l2_normalize(&self.text_proj.forward(text_feature)?, NORMALIZE_EPS)
            .map_err(train_err)?;
        let (queued, queue_ids) = self.projected_queue(queue, text.dim(1)?, text.device())?;
        Ok((image, text, queued, queue_ids))
    }

    /// The queued text features through `text_proj`, normalised, with their caption ids
    /// (`[0, width]` and none for an empty or absent queue).
    fn projected_queue<'q>(
        &self,
        queue: Option<&'q TextQueue>,
        width: usize,
        device: &Device,
    ) -> Result<(Tensor, &'q [i64])> {
        Ok(
            match queue.and_then(|q| Some((q.features.as_ref()?, &q.ids))) {
                Some((f, ids)) => (
                    l2_normalize(&self.text_proj.forward(f)?, NORMALIZE_EPS).map_err(train_err)?,
                    ids.as_slice(),
                ),
                None => (Tensor::zeros((0, width), DType::F32, device)?, &[][..]),
            },
        )
    }
}

/// How a caption is laid out when the frozen language model encodes it for ITC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptionLayout {
    /// `caption [gMASK] <sop>`: the caption is the bidirectional context.
    #[default]
    Context,
    /// `[gMASK] <sop> caption`: the caption sits where the model writes its answers (causal),
    /// as a small language model trained only on answers has learned to read it.
    Answer,
}

impl CaptionLayout {
    /// The name stored with the heads.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptionLayout::Context => "context",
            CaptionLayout::Answer => "answer",
        }
    }

    /// Parses [`CaptionLayout::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "context" => Some(CaptionLayout::Context),
            "answer" => Some(CaptionLayout::Answer),
            _ => None,
        }
    }
}

/// The frozen language model's final hidden states over each caption's tokens, mean-pooled:
/// `[B, width]`, no gradient. Each caption runs as a text-only GLM input laid out per
/// `layout`; padding goes after everything and is never attended by the caption tokens.
pub fn caption_features(
    model: &VisualGlm,
    tokenizer: &ChatGlmTokenizer,
    captions: &[&str],
    layout: CaptionLayout,
) -> Result<Tensor> {
    let device = model.device().clone();
    let limit = model
        .config()
        .glm
        .max_sequence_length
        .saturating_sub(2)
        .max(1);
    let mut rows = Vec::with_capacity(captions.len());
    for c in captions {
        let mut ids = tokenizer.encode(c)?;
        ids.truncate(limit);
        rows.push(ids);
    }
    let seq = rows.iter().map(|r| r.len() + 2).max().unwrap_or(2);
    let mut all = Vec::with_capacity(rows.len() * seq);
    let mut mask = Vec::with_capacity(rows.len() * seq);
    let mut layouts = Vec::with_capacity(rows.len());
    let specials = [tokenizer.gmask_id(), tokenizer.sop_id()];
    for r in &rows {
        let n = r.len();
        let (caption_at, row_layout) = match layout {
            CaptionLayout::Context => {
                all.extend_from_slice(r);
                all.extend(specials);
                let l = RowLayout {
                    pad_left: 0,
                    len: seq,
                    context_len: n + 1,
                    gmask_index: n,
                };
                (0, l)
            }
            CaptionLayout::Answer => {
                all.extend(specials);
                all.extend_from_slice(r);
                let l = RowLayout {
                    pad_left: 0,
                    len: seq,
                    context_len: 1,
                    gmask_index: 0,
                };
                (2, l)
            }
        };
        all.extend(std::iter::repeat_n(tokenizer.pad_id(), seq - n - 2));
        mask.extend((0..seq).map(|i| u32::from(i >= caption_at && i < caption_at + n)));
        layouts.push(row_layout);
    }
    let ids = Tensor::from_vec(all, (rows.len(), seq), &device)?;
    let mask = Tensor::from_vec(mask, (rows.len(), seq), &device)?;
    let (pos, attn) = batch_prefix_inputs(&layouts, seq, &device)?;
    let glm = model.language_model();
    let hidden = glm
        .forward_embeds(&glm.embed(&ids)?, &pos, Some(&attn), None, None)?
        .detach()
        .to_dtype(DType::F32)?;
    masked_mean(&hidden, &mask).map_err(train_err)
}

/// Stable ids of a data set's captions for [`ItcHeads::loss`] and the [`TextQueue`]: equal
/// captions share an id, so they count as positives of each other.
#[derive(Debug, Clone, Default)]
pub struct CaptionIds {
    ids: HashMap<String, i64>,
}

impl CaptionIds {
    /// Numbers the distinct captions in order of first appearance.
    pub fn new<'a>(captions: impl IntoIterator<Item = &'a str>) -> Self {
        let mut ids = HashMap::new();
        for c in captions {
            let next = ids.len() as i64;
            ids.entry(c.to_string()).or_insert(next);
        }
        Self { ids }
    }

    /// The ids of `captions`; a caption not numbered by [`CaptionIds::new`] gets an id past
    /// the known ones, shared with its equals in `captions`.
    pub fn of(&self, captions: &[&str]) -> Vec<i64> {
        let known = self.ids.len() as i64;
        captions
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.ids.get(*c).copied().unwrap_or_else(|| {
                    known + captions[..i].iter().position(|d| d == c).unwrap_or(i) as i64
                })
            })
            .collect()
    }
}

/// The ε of the embeddings' normalisation (BLIP-2's `F.normalize` default).
const EMBEDDING_EPS: f64 = 1e-12;

impl ItcHeads {
    /// Unit image embeddings `[N, 32, d]` of Q-Former outputs `[N, 32, w]`.
    pub fn image_embeddings(&self, qformer_out: &Tensor) -> Result<Tensor> {
        let projected = self
            .vision_proj
            .forward(&qformer_out.to_dtype(DType::F32)?)?;
        l2_normalize(&projected, EMBEDDING_EPS).map_err(train_err)
    }

    /// Unit text embeddings `[T, d]` of caption features `[T, W]` ([`caption_features`]).
    pub fn text_embeddings(&self, text_feature: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.text_proj.forward(text_feature)?, EMBEDDING_EPS).map_err(train_err)
    }
}

/// `[N, T]` scores of image embeddings `[N, 32, d]` against text embeddings `[T, d]`: for
/// each pair, the largest query's dot product.
pub fn embedding_scores(images: &Tensor, texts: &Tensor) -> Result<Tensor> {
    let (n, q, d) = images.dims3()?;
    let t = texts.dim(0)?;
    Ok(images
        .reshape((n * q, d))?
        .matmul(&texts.t()?)?
        .reshape((n, q, t))?
        .max(1)?)
}

fn train_err(e: visualglm_train::TrainError) -> VisualGlmError {
    VisualGlmError::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(values: &[f32]) -> Tensor {
        Tensor::from_vec(values.to_vec(), (values.len(), 1), &Device::Cpu).unwrap()
    }

    #[test]
    fn text_queue_keeps_the_newest_first_and_round_trips() {
        let mut q = TextQueue::new(3);
        assert!(q.is_empty() && q.tensors().unwrap().is_empty());
        q.push(&rows(&[1.0, 2.0]), &[10, 20]).unwrap();
        q.push(&rows(&[3.0, 4.0]), &[30, 40]).unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q.ids, [30, 40, 10]);
        let f = q.features.as_ref().unwrap().flatten_all().unwrap();
        assert_eq!(f.to_vec1::<f32>().unwrap(), [3.0, 4.0, 1.0]);
        assert!(q.push(&rows(&[5.0]), &[1, 2]).is_err());

        let saved = q.tensors().unwrap();
        let back = TextQueue::from_tensors(3, &saved).unwrap();
        assert_eq!(back.ids, q.ids);
        // A smaller capacity keeps the newest.
        let small = TextQueue::from_tensors(2, &saved).unwrap();
        assert_eq!(small.ids, [30, 40]);
        // Capacity 0 never holds anything.
        let mut off = TextQueue::new(0);
        off.push(&rows(&[1.0]), &[1]).unwrap();
        assert!(off.is_empty());
    }

    #[test]
    fn caption_ids_are_stable_and_shared_by_equal_captions() {
        let ids = CaptionIds::new(["a cat", "a dog", "a cat"]);
        assert_eq!(ids.of(&["a dog", "a cat", "a dog"]), [1, 0, 1]);
        // Unknown captions get ids past the known ones, equal ones the same.
        assert_eq!(
            ids.of(&["a bird", "a cat", "a bird", "a fish"]),
            [2, 0, 2, 5]
        );
    }
}
