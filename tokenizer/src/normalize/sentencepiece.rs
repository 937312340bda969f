//! SentencePiece's whitespace handling: the symbol `▁` that the converter, the lean encoder
//! and the trainer all write in place of spaces, and `remove_extra_whitespaces`.

/// The dummy-prefix / whitespace symbol `▁` (U+2581).
pub const SPACE: char = '\u{2581}';

/// SentencePiece `remove_extra_whitespaces`: strip spaces at both ends, collapse inner runs.
pub fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_collapse_like_sentencepiece() {
        assert_eq!(collapse_spaces("  a   b c  "), "a b c");
        assert_eq!(collapse_spaces("   "), "");
    }
}
