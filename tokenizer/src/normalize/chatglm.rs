//! ChatGLM's text rules before SentencePiece (spec §5): newlines, tabs and space runs become
//! the pieces `<n>`, `<|tab|>` and `<|blank_N|>` (reversed by [`crate::decode::text`]).

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
}
