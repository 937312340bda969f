//! ChatGLM's text rules around SentencePiece (spec §5): newline, tab and space-run pieces,
//! and the Hugging Face `clean_up_tokenization_spaces` step of decoding.

/// Longest space run with its own piece (`<|blank_80|>`).
pub const MAX_BLANK: usize = 80;
/// The newline piece.
pub const NEWLINE: &str = "<n>";
/// The tab piece.
pub const TAB: &str = "<|tab|>";

/// The piece for a run of `n` spaces, 2 ≤ n ≤ 80.
pub fn blank_piece(n: usize) -> String {
    format!("<|blank_{n}|>")
}

/// ChatGLM `_preprocess`: `\n` → `<n>`, `\t` → `<|tab|>`, each run of spaces → as many
/// `<|blank_80|>` as fit, then `<|blank_r|>` for a rest r ≥ 2 or one plain space for r = 1
/// (what replacing runs of 80, 79, …, 2 spaces in turn gives).
pub fn preprocess(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let bytes = text.as_bytes();
    // Copy runs of other bytes whole; space, tab and newline are ASCII, so every cut is on a
    // character boundary.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !matches!(b, b' ' | b'\n' | b'\t') {
            i += 1;
            continue;
        }
        out.push_str(&text[copied..i]);
        match b {
            b'\n' => out.push_str(NEWLINE),
            b'\t' => out.push_str(TAB),
            _ => {
                let run = bytes[i..].iter().take_while(|&&c| c == b' ').count();
                push_blanks(&mut out, run);
                i += run;
                copied = i;
                continue;
            }
        }
        i += 1;
        copied = i;
    }
    out.push_str(&text[copied..]);
    out
}

/// Appends the pieces for a run of `n` spaces (see [`preprocess`]).
fn push_blanks(out: &mut String, n: usize) {
    for _ in 0..n / MAX_BLANK {
        push_blank(out, MAX_BLANK);
    }
    match n % MAX_BLANK {
        0 => {}
        1 => out.push(' '),
        r => push_blank(out, r),
    }
}

/// Appends `<|blank_n|>` without formatting machinery.
fn push_blank(out: &mut String, n: usize) {
    out.push_str("<|blank_");
    if n >= 10 {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
    }
    out.push(char::from(b'0' + (n % 10) as u8));
    out.push_str("|>");
}

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

    #[test]
    fn space_runs_split_greedily() {
        assert_eq!(preprocess("a b"), "a b");
        assert_eq!(preprocess("a  b"), "a<|blank_2|>b");
        assert_eq!(preprocess(&" ".repeat(81)), "<|blank_80|> ");
        assert_eq!(
            preprocess(&" ".repeat(200)),
            "<|blank_80|><|blank_80|><|blank_40|>"
        );
        assert_eq!(preprocess("x\n\ty"), "x<n><|tab|>y");
        assert_eq!(preprocess("é  \n"), "é<|blank_2|><n>");
        for n in 2..=MAX_BLANK {
            let mut s = String::new();
            push_blank(&mut s, n);
            assert_eq!(s, blank_piece(n));
        }
    }

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
