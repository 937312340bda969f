//! Temporary prompt assembly until the language crate's prompt builder lands.

use visualglm_language::tokenizer::ChatGlmTokenizer;

use crate::error::{Result, VisualGlmError};

/// Prompt ids and where the image goes.
#[derive(Debug, Clone)]
pub struct PromptIds {
    /// The ids, ending with `[gMASK] <sop>`.
    pub ids: Vec<u32>,
    /// Index of the first image placeholder (0 without an image).
    pub pre_image: usize,
}

/// Builds the VisualGLM prompt (spec §6).
pub fn build_prompt(
    tok: &ChatGlmTokenizer,
    query: &str,
    history: &[(String, String)],
    english: bool,
    image_length: Option<usize>,
    max_length: usize,
) -> Result<PromptIds> {
    let (q, a) = if english { ("Q:", "\nA:") } else { ("问：", "\n答：") };
    let mut text = String::new();
    for (hq, ha) in history {
        text.push_str(&format!("{q}{hq}{a}{ha}\n"));
    }
    text.push_str(&format!("{q}{query}{a}"));
    let mut ids = Vec::new();
    let mut pre_image = 0;
    if let Some(n) = image_length {
        ids = tok.encode("<img>")?;
        pre_image = ids.len();
        ids.extend(std::iter::repeat_n(tok.special_ids().unk, n));
        ids.extend(tok.encode(&format!("</img>{text}"))?);
    } else {
        ids.extend(tok.encode(&text)?);
    }
    let s = tok.special_ids();
    ids.push(s.gmask);
    ids.push(s.sop);
    if ids.len() > max_length {
        return Err(VisualGlmError::Input(format!(
            "the prompt has {} tokens, more than the maximum {max_length}",
            ids.len()
        )));
    }
    Ok(PromptIds { ids, pre_image })
}
