//! [`DecodeOptions`]: Hugging Face `decode`'s switches.

/// How to decode; [`Default`] is Hugging Face `decode`'s default (keep special tokens, clean
/// up tokenization spaces), which the VisualGLM chat code uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Drop `<sop>`, `<eop>`, `<unk>`, `<pad>` and `[MASK]` (HF's special-token attributes;
    /// `[gMASK]` is not one, so it stays).
    pub skip_special_tokens: bool,
    /// Apply HF `clean_up_tokenization` (`"cat ."` → `"cat."`, `"It 's"` → `"It's"`).
    pub clean_up_tokenization_spaces: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            skip_special_tokens: false,
            clean_up_tokenization_spaces: true,
        }
    }
}

impl DecodeOptions {
    /// SentencePiece + ChatGLM post-processing only (`SPTokenizer.decode`).
    pub fn raw() -> Self {
        Self {
            skip_special_tokens: false,
            clean_up_tokenization_spaces: false,
        }
    }
}
