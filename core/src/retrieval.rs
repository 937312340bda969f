//! Retrieval with the ITC heads: unit image embeddings `[32, d]` (one per Q-Former query) and
//! text embeddings `[d]`; an image and a text score as BLIP-2 ranks them, and as training and
//! `eval retrieval` do: the largest of the 32 query–text dot products (cosine similarities,
//! the embeddings being unit vectors; [`embedding_scores`]).

use candle_core::{DType, Tensor};

use crate::error::{Result, VisualGlmError};
use crate::itc::{caption_features, embedding_scores, ItcHeads};
use crate::pipeline::Captioner;

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

/// `[images][texts]` similarities for retrieval ([`ItcHeads::similarity`]), images and texts
/// run through the model in chunks of `batch_size`.
pub fn retrieval_similarities(
    captioner: &Captioner,
    heads: &ItcHeads,
    images: &[image::DynamicImage],
    texts: &[&str],
    batch_size: usize,
) -> Result<Vec<Vec<f64>>> {
    if images.is_empty() || texts.is_empty() {
        return Err(VisualGlmError::Input(
            "retrieval needs at least one image and one text".into(),
        ));
    }
    let images = embed_images(captioner, heads, images, batch_size)?;
    let texts = embed_texts(captioner, heads, texts, batch_size)?;
    let sim = embedding_scores(&images, &texts)?.to_dtype(DType::F64)?;
    Ok(sim.to_vec2::<f64>()?)
}
