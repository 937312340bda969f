//! Embeddings for retrieval from the ITC heads: L2-normalised image embeddings `[32, d]` (one
//! per Q-Former query) and text embeddings `[d]`. An image and a text score as BLIP-2 ranks
//! them, and as training and `eval retrieval` do: the largest of the 32 query–text dot
//! products (cosine similarities, the embeddings being unit vectors).

use candle_core::{DType, Module, Tensor};
use visualglm_train::losses::l2_normalize;

use super::{caption_features, train_err, ItcHeads};
use crate::error::{Result, VisualGlmError};
use crate::pipeline::Captioner;

/// The ε of the normalisation (BLIP-2's `F.normalize` default).
const EPS: f64 = 1e-12;

impl ItcHeads {
    /// Unit image embeddings `[N, 32, d]` of Q-Former outputs `[N, 32, w]`.
    pub fn image_embeddings(&self, qformer_out: &Tensor) -> Result<Tensor> {
        let projected = self
            .vision_proj
            .forward(&qformer_out.to_dtype(DType::F32)?)?;
        l2_normalize(&projected, EPS).map_err(train_err)
    }

    /// Unit text embeddings `[T, d]` of caption features `[T, W]` ([`caption_features`]).
    pub fn text_embeddings(&self, text_feature: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.text_proj.forward(text_feature)?, EPS).map_err(train_err)
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

/// Unit image embeddings `[N, 32, d]` of `images`, encoded `batch_size` at a time.
pub fn embed_images(
    captioner: &Captioner,
    heads: &ItcHeads,
    images: &[image::DynamicImage],
    batch_size: usize,
) -> Result<Tensor> {
    let model = captioner.model();
    let mut parts = Vec::new();
    for part in images.chunks(batch_size.max(1)) {
        let pixels = captioner
            .preprocessor()
            .preprocess_batch(part, model.device())?;
        let queries = model.encode_image_stages(&pixels)?.qformer_out;
        parts.push(heads.image_embeddings(&queries)?);
    }
    if parts.is_empty() {
        return Err(VisualGlmError::Input("no images to embed".into()));
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Unit text embeddings `[T, d]` of `texts` (each run through the frozen language model as
/// the heads' caption layout says), `batch_size` at a time.
pub fn embed_texts(
    captioner: &Captioner,
    heads: &ItcHeads,
    texts: &[&str],
    batch_size: usize,
) -> Result<Tensor> {
    let mut parts = Vec::new();
    for part in texts.chunks(batch_size.max(1)) {
        let features = caption_features(
            captioner.model(),
            captioner.tokenizer(),
            part,
            heads.caption_layout(),
        )?;
        parts.push(heads.text_embeddings(&features)?);
    }
    if parts.is_empty() {
        return Err(VisualGlmError::Input("no texts to embed".into()));
    }
    Ok(Tensor::cat(&parts, 0)?)
}
