//! ChatGLM's text rules after SentencePiece decoding (`<n>`, `<|tab|>`, `<|blank_N|>` back
//! to whitespace, the reverse of [`crate::normalize::chatglm`]) and Hugging Face's
//! `clean_up_tokenization_spaces` step.

use crate::normalize::chatglm::{MAX_BLANK, NEWLINE, TAB};

/// ChatGLM `postprocess`: `<n>` → `\n`, `<|tab|>` → `\t`, `<|blank_N|>` → N spaces
/// (2 ≤ N ≤ 80), anywhere in the decoded text.
pub fn postprocess(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(r) = rest.strip_prefix(NEWLINE) {
            out.push('\n');
            rest = r;
        } else if let Some(r) = rest.strip_prefix(TAB) {
            out.push('\t');
            rest = r;
        } else if let Some((n, r)) = blank_at(rest) {
            out.extend(std::iter::repeat_n(' ', n));
            rest = r;
        } else {
            out.push('<');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// If `s` starts with `<|blank_N|>` (2 ≤ N ≤ 80, N without leading zeros), N and the rest.
fn blank_at(s: &str) -> Option<(usize, &str)> {
    let digits_and_rest = s.strip_prefix("<|blank_")?;
    let end = digits_and_rest.find("|>")?;
    let digits = &digits_and_rest[..end];
    if digits.is_empty() || digits.len() > 2 || digits.starts_with('0') {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (2..=MAX_BLANK)
        .contains(&n)
        .then(|| (n, &digits_and_rest[end + 2..]))
}

/// Hugging Face `clean_up_tokenization`: drops the space before `. ? ! ,` and English
/// contractions, in the same order of replacements.
pub fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::chatglm::preprocess;

    #[test]
    fn postprocess_reverses_the_pieces() {
        assert_eq!(postprocess("a<n>b<|tab|>c<|blank_3|>d"), "a\nb\tc   d");
        assert_eq!(
            postprocess("<|blank_1|><|blank_81|><|blank_02|><"),
            "<|blank_1|><|blank_81|><|blank_02|><"
        );
        let s = "f(x)  \n\t   g";
        assert_eq!(postprocess(&preprocess(s)), s);
    }

    #[test]
    fn cleanup_matches_hf() {
        assert_eq!(
            clean_up_tokenization("It 's a cat . Is n't it ?"),
            "It's a cat. Isn't it?"
        );
    }
}
