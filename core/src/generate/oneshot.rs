//! Decoding a fixed set of prompts to the end: [`generate`] (one prompt, many images) and
//! [`generate_many`] (many prompts), both over a [`BatchDecoder`].

use std::ops::Range;

use visualglm_language::{EmbedSpan, GenerationConfig};

use super::batch::BatchDecoder;
use super::request::{Flow, GenRequest};
use crate::error::Result;
use crate::model::VisualGlm;

/// Generates answers to one prompt `ids` for each of `B` rows of its image spans (each
/// `[B, 32, width]`: row `i` of every span makes prompt `i`), or for the text alone when
/// `images` is empty (B = 1).
///
/// Row `i` samples with seed `cfg.seed + i`. `on_token(row, token)` sees every token as it is
/// made (`<eop>` included) and may stop that row. Returns each row's tokens without `<eop>`.
pub fn generate(
    model: &VisualGlm,
    ids: &[u32],
    images: &[EmbedSpan],
    cfg: &GenerationConfig,
    invalid: &[Range<usize>],
    on_token: &mut dyn FnMut(usize, u32) -> Flow,
) -> Result<Vec<Vec<u32>>> {
    let batch = match images.first() {
        Some(span) => span.embeds.dim(0)?,
        None => 1,
    };
    let rows = (0..batch)
        .map(|i| EmbedSpan::row(images, i))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let configs: Vec<GenerationConfig> = (0..rows.len())
        .map(|i| GenerationConfig {
            seed: cfg.seed.wrapping_add(i as u64),
            ..cfg.clone()
        })
        .collect();
    let requests: Vec<GenRequest<'_>> = rows
        .iter()
        .zip(&configs)
        .map(|(images, config)| GenRequest {
            ids,
            images,
            config,
            invalid,
        })
        .collect();
    generate_many(model, &requests, on_token)
}

/// Decodes several prompts together: prompts are left-padded to a common length (pads are
/// masked out and never attended), each row keeps its own 2D positions, prefix mask, sampler,
/// budget and stop. `on_token(request, token)` sees each token as it is made and may stop
/// that request ([`Flow::Stop`]). Returns each request's tokens without `<eop>`.
///
/// A thin wrapper over [`BatchDecoder`]: all requests are admitted at once and stepped until
/// the last one ends; rows that end leave the batch at once.
pub fn generate_many(
    model: &VisualGlm,
    requests: &[GenRequest<'_>],
    on_token: &mut dyn FnMut(usize, u32) -> Flow,
) -> Result<Vec<Vec<u32>>> {
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); requests.len()];
    let mut decoder = BatchDecoder::new(model);
    let ids = decoder.add(requests)?;
    while !decoder.is_idle() {
        for done in decoder.step(&mut |id, t| {
            // Ids are handed out in request order from 0, so they are the request indices.
            on_token(id as usize, t)
        })? {
            if let Some(slot) = ids
                .iter()
                .position(|&i| i == done.id)
                .and_then(|i| out.get_mut(i))
            {
                *slot = done.tokens;
            }
        }
    }
    Ok(out)
}
