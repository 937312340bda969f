//! VisualGLM prompts (spec §6): the chat template, the image placeholders and the GLM
//! positions, assembled exactly as the release does it.
//!
//! With an image the prompt is `<img></img>` + history + query. `"<img>"` and the rest
//! (`"</img>问：…\n答："`) are tokenised by **separate** `encode` calls (each gets its own
//! dummy prefix), with `image_length` placeholder ids between them, then `[gMASK]` `<sop>`:
//!
//! ```text
//! encode("<img>") + [placeholder; image_length] + encode("</img>" + turns) + [gMASK, <sop>]
//! ```
//!
//! Without an image it is `encode(turns) + [gMASK, <sop>]`. Positions come from
//! [`crate::positions`].
//!
//! **Several images** go one after another before the turns, in order, each in its own
//! `<img></img>` block. The text between two placeholder runs is one `encode` call, as the
//! release splits its prompt at the image (one image gives exactly the release's prompt):
//!
//! ```text
//! encode("<img>") + [placeholder; n] + encode("</img><img>") + [placeholder; n]
//!     + encode("</img>" + turns) + [gMASK, <sop>]
//! ```
//!
//! The released weights saw one image per prompt: how well a model answers about several
//! depends on fine-tuning with such prompts.
//!
//! **Too long:** a prompt of more than `max_length` ids is an error ([`PromptError::TooLong`])
//! unless [`Overflow::DropOldestTurns`] is chosen; then the oldest history turns are dropped,
//! one at a time, until it fits (the error remains when even no history is too long).

use std::ops::Range;

use candle_core::Tensor;
use visualglm_tokenizer::{ChatGlmTokenizer, TokenizerError};

use crate::positions;
use crate::splice::EmbedSpan;

/// Errors of prompt assembly.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// Tokenising a piece of the prompt failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The number of image embeddings given does not match the prompt's image blocks.
    #[error("the prompt has {blocks} image blocks but {given} images were given")]
    ImageCount {
        /// Image blocks in the prompt.
        blocks: usize,
        /// Images given.
        given: usize,
    },
    /// The prompt does not fit in the maximum length.
    #[error("prompt is {len} tokens, more than the maximum length {max} (with {turns} history turns kept)")]
    TooLong {
        /// Length of the shortest prompt tried.
        len: usize,
        /// The maximum length.
        max: usize,
        /// History turns in that prompt.
        turns: usize,
    },
}

/// The chat template (spec §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Template {
    /// `问：{q}\n答：{a}\n` … `问：{query}\n答：` (full-width colons).
    #[default]
    Chinese,
    /// `Q:{q}\nA:{a}\n` … `Q:{query}\nA:` (the release's `--english`).
    English,
}

/// The fixed text every VisualGLM prompt contains (image markers, both templates' labels), so
/// a tokenizer trained on data plus these never meets an unknown character in a prompt.
pub fn template_texts() -> Vec<String> {
    let mut out = vec!["<img>".to_string(), "</img>".to_string()];
    for t in [Template::Chinese, Template::English] {
        let history = [(String::new(), String::new())];
        out.push(format!("</img>{}", t.render(&history, "")));
    }
    out
}

impl Template {
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Template::Chinese => ("问：", "答："),
            Template::English => ("Q:", "A:"),
        }
    }

    /// The text of the history turns and the query, without the image markers.
    pub fn render(self, history: &[(String, String)], query: &str) -> String {
        let (q, a) = self.labels();
        let mut out = String::new();
        for (old_q, old_a) in history {
            out.push_str(&format!("{q}{old_q}\n{a}{old_a}\n"));
        }
        out.push_str(&format!("{q}{query}\n{a}"));
        out
    }
}

/// What to do with a prompt longer than the maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Fail with [`PromptError::TooLong`].
    #[default]
    Error,
    /// Drop the oldest history turns until it fits.
    DropOldestTurns,
}

/// The image slot of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSlot {
    /// Number of placeholder ids (the Q-Former's 32 queries).
    pub length: usize,
    /// Their id (never embedded): SAT uses `<pad>` (3), HF `<unk>` (0).
    pub placeholder: u32,
}

/// Model inputs of one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptInputs {
    /// Token ids, ending with `[gMASK]`, `<sop>`.
    pub ids: Vec<u32>,
    /// Where each image's placeholders start, in order (`len(encode("<img>"))` for the
    /// first); empty without an image.
    pub image_starts: Vec<usize>,
    /// Number of placeholders of each image; 0 without an image.
    pub image_length: usize,
    /// Context length: the index of `<sop>` (everything before it is bidirectional).
    pub context_len: usize,
    /// Index of `[gMASK]` (the position every generated token reuses).
    pub gmask_index: usize,
    /// 2D position ids of the prompt (spec §6.3).
    pub position_ids: [Vec<u32>; 2],
    /// History turns dropped to fit ([`Overflow::DropOldestTurns`]).
    pub dropped_turns: usize,
}

impl PromptInputs {
    /// Where the first image's placeholders start; 0 without an image.
    pub fn pre_image(&self) -> usize {
        self.image_starts.first().copied().unwrap_or(0)
    }

    /// The ids the first image's embeddings replace, if there is an image.
    pub fn image_range(&self) -> Option<Range<usize>> {
        self.image_ranges().next()
    }

    /// The ids each image's embeddings replace, in order.
    pub fn image_ranges(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.image_starts.iter().map(|&s| s..s + self.image_length)
    }

    /// The prompt's images as embedding spans: `images[i]` (`[B, image_length, hidden]`) at
    /// image block `i`. The number of images must match the prompt's blocks.
    pub fn image_spans(&self, images: &[Tensor]) -> Result<Vec<EmbedSpan>, PromptError> {
        if images.len() != self.image_starts.len() {
            return Err(PromptError::ImageCount {
                blocks: self.image_starts.len(),
                given: images.len(),
            });
        }
        Ok(self
            .image_starts
            .iter()
            .zip(images)
            .map(|(&start, embeds)| EmbedSpan::new(start, embeds.clone()))
            .collect())
    }
}

/// Builds VisualGLM prompts with a tokenizer.
#[derive(Debug, Clone)]
pub struct PromptBuilder<'a> {
    tokenizer: &'a ChatGlmTokenizer,
    template: Template,
    image: Option<ImageSlot>,
    image_count: usize,
    max_length: usize,
    overflow: Overflow,
}

impl<'a> PromptBuilder<'a> {
    /// Chinese template, no image, maximum length 2048, too long = error.
    pub fn new(tokenizer: &'a ChatGlmTokenizer) -> Self {
        Self {
            tokenizer,
            template: Template::Chinese,
            image: None,
            image_count: 0,
            max_length: 2048,
            overflow: Overflow::Error,
        }
    }

    /// Sets the template.
    pub fn template(mut self, template: Template) -> Self {
        self.template = template;
        self
    }

    /// One image slot of `length` placeholders with id `placeholder` (the release's prompt).
    pub fn image(self, length: usize, placeholder: u32) -> Self {
        self.images(1, length, placeholder)
    }

    /// `count` image slots of `length` placeholders each, one block after another (0: a
    /// text-only prompt).
    pub fn images(mut self, count: usize, length: usize, placeholder: u32) -> Self {
        self.image = (count > 0).then_some(ImageSlot {
            length,
            placeholder,
        });
        self.image_count = count;
        self
    }

    /// Removes the image slots (text-only prompt).
    pub fn no_image(mut self) -> Self {
        self.image = None;
        self.image_count = 0;
        self
    }

    /// Sets the maximum prompt length in tokens.
    pub fn max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// Sets what happens to a prompt longer than the maximum length.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Assembles the prompt for `query` after the `(question, answer)` turns of `history`.
    pub fn build(
        &self,
        query: &str,
        history: &[(String, String)],
    ) -> Result<PromptInputs, PromptError> {
        let mut dropped = 0;
        loop {
            let kept = &history[dropped..];
            let inputs = self.assemble(query, kept, dropped)?;
            if inputs.ids.len() <= self.max_length {
                return Ok(inputs);
            }
            if self.overflow == Overflow::Error || kept.is_empty() {
                return Err(PromptError::TooLong {
                    len: inputs.ids.len(),
                    max: self.max_length,
                    turns: kept.len(),
                });
            }
            dropped += 1;
        }
    }

    fn assemble(
        &self,
        query: &str,
        history: &[(String, String)],
        dropped: usize,
    ) -> Result<PromptInputs, PromptError> {
        let tok = self.tokenizer;
        let turns = self.template.render(history, query);
        let (mut ids, image_starts, image_length) = match self.image {
            Some(slot) => {
                let mut ids = tok.encode("<img>")?;
                let mut starts = Vec::with_capacity(self.image_count);
                for i in 0..self.image_count {
                    if i > 0 {
                        ids.extend(tok.encode("</img><img>")?);
                    }
                    starts.push(ids.len());
                    ids.extend(std::iter::repeat_n(slot.placeholder, slot.length));
                }
                ids.extend(tok.encode(&format!("</img>{turns}"))?);
                (ids, starts, slot.length)
            }
            None => (tok.encode(&turns)?, Vec::new(), 0),
        };
        ids.extend([tok.gmask_id(), tok.sop_id()]);
        let (context_len, gmask_index) =
            positions::context_and_mask(&ids, tok.sop_id(), tok.gmask_id(), tok.mask_id());
        let position_ids = positions::position_ids(ids.len(), context_len, gmask_index);
        Ok(PromptInputs {
            ids,
            image_starts,
            image_length,
            context_len,
            gmask_index,
            position_ids,
            dropped_turns: dropped,
        })
    }
}
