//! Answer text: streaming decoded pieces ([`TextStream`]) and the final clean-up.

use visualglm_tokenizer::{ChatGlmTokenizer, DecodeOptions};

use crate::error::Result;

/// Turns streamed ids into text pieces, holding back incomplete UTF-8 sequences.
#[derive(Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    /// Adds one id and returns the new text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &ChatGlmTokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids, &DecodeOptions::default())?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let new = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        Ok(new)
    }
}

/// The release strips the answer (it also cuts the whole text at the last `答：`/`A:`, which
/// only matters for its own prompt+answer decoding; we decode the answer alone).
pub(crate) fn clean_answer(text: &str) -> String {
    // A token budget can end inside a multi-byte character: drop the incomplete tail.
    text.trim()
        .trim_end_matches('\u{FFFD}')
        .trim_end()
        .to_string()
}
