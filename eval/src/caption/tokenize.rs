//! Caption tokenisation as pycocoevalcap does it before scoring.
//!
//! pycocoevalcap's `PTBTokenizer` joins the captions with `"\n"` (after replacing the `"\n"`s
//! inside captions with spaces), runs Stanford CoreNLP 3.4.1's
//! `PTBTokenizer -preserveLines -lowerCase` (Java) on that text, splits the output lines on
//! `" "` and drops the tokens `'' ' `` ` . ? ! , : - -- ... ;` (its list also names
//! `-LRB- -RRB- -LCB- -RCB-`, which never match because the output is lower-cased).
//!
//! [`ptb_tokenize_all`] reimplements that pipeline in Rust: the CoreNLP lexer's token rules
//! (`tokenize/rules.rs`, with JFlex's longest-match and trailing-context semantics in
//! `tokenize/nfa.rs`), its token normalisations (`-LRB-`, `-LSB-`, `-LCB-`, LaTeX quotes,
//! `...`, `--`, `can not`, ...), Java's lower-casing, and the punctuation filter. It matches
//! the reference token for token on every caption of the committed differential fixtures
//! (`eval/tests/data/ptb/`: printable ASCII plus non-ASCII samples; see `eval/README.md`). A caption's tokens can
//! depend on the text that follows it in the file (a caption-final `I.` before a caption
//! starting `The `, a final `:)` or `'99` at the end of the file, ...), so
//! [`ptb_tokenize_all`] takes the captions of one pycocoevalcap call in order, and
//! [`ptb_tokenize`] tokenises one caption as a file of its own.
//!
//! Outside ASCII, Java's `Character.isLetter`/`isDigit` (as compiled into the lexer) are
//! approximated with Unicode's `Alphabetic` property and the BMP decimal digits; characters
//! the lexer cannot tokenise (emoji and other non-BMP characters, most symbols it does not
//! list) are deleted as CoreNLP deletes them. Line breaks other than `\n` inside a caption
//! (`\r`, U+2028, U+2029, U+000B, U+000C) end the line for CoreNLP, so pycocoevalcap would
//! shift every later caption by a line; here they only separate tokens.

mod lexer;
mod nfa;
mod rules;

use rayon::prelude::*;

/// Which tokenisation to apply to captions before scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// Emulation of pycocoevalcap's PTBTokenizer (the COCO standard).
    #[default]
    Ptb,
    /// Lower-case and split on whitespace; punctuation stays attached to words.
    Simple,
    /// Text is already tokenised: only whitespace is normalised.
    None,
}

impl Tokenizer {
    /// Tokenises one caption into a single-space-joined string (for [`Tokenizer::Ptb`], as
    /// the only caption of a pycocoevalcap call: see [`ptb_tokenize`]).
    pub fn apply(self, text: &str) -> String {
        match self {
            Tokenizer::Ptb => ptb_tokenize(text),
            Tokenizer::Simple => simple_tokenize(text),
            Tokenizer::None => text.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    /// Tokenises the captions of one pycocoevalcap tokenizer call, in order (see
    /// [`ptb_tokenize_all`]; the other tokenizers treat captions independently).
    pub fn apply_all(self, texts: &[&str]) -> Vec<String> {
        match self {
            Tokenizer::Ptb => ptb_tokenize_all(texts),
            _ => texts.par_iter().map(|t| self.apply(t)).collect(),
        }
    }

    /// The name used in reports (`ptb`, `simple`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::Ptb => "ptb",
            Tokenizer::Simple => "simple",
            Tokenizer::None => "none",
        }
    }
}

/// Lower-case, split on whitespace and join with one space.
pub fn simple_tokenize(text: &str) -> String {
    text.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tokens pycocoevalcap removes after the Java tokenizer (compared after lower-casing).
const DROPPED: [&str; 13] = [
    "''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";",
];

/// Tokenises one caption as pycocoevalcap does when it is the only caption of the call
/// (the caption is followed by the end of the file).
pub fn ptb_tokenize(text: &str) -> String {
    let units = caption_units(text);
    tokens_to_line(&units, units.len())
}

/// Tokenises the captions of one pycocoevalcap `PTBTokenizer.tokenize` call, in order (for
/// `COCOEvalCap`: all references of all images, or all candidates, image by image).
///
/// Each caption sees the captions after it as CoreNLP does (they follow it in the file);
/// the work runs in parallel.
pub fn ptb_tokenize_all(texts: &[&str]) -> Vec<String> {
    let file = JoinedCaptions::new(texts);
    (0..texts.len())
        .into_par_iter()
        .map(|i| {
            let (input, end) = file.caption(i);
            tokens_to_line(input, end)
        })
        .collect()
}

/// A caption as the Java tokenizer reads it: UTF-16, inner `"\n"` replaced with a space.
fn caption_units(text: &str) -> Vec<u16> {
    let mut units = Vec::with_capacity(text.len());
    push_caption_units(&mut units, text);
    units
}

fn push_caption_units(units: &mut Vec<u16>, text: &str) {
    let newline = u16::from(b'\n');
    units.extend(
        text.encode_utf16()
            .map(|u| if u == newline { u16::from(b' ') } else { u }),
    );
}

/// The file pycocoevalcap writes for the Java tokenizer: the captions joined by `"\n"`.
struct JoinedCaptions {
    units: Vec<u16>,
    /// Start of every caption, then the end of the file.
    starts: Vec<usize>,
    /// Per caption: where the text a trailing context may read after it ends.
    context_ends: Vec<usize>,
}

impl JoinedCaptions {
    fn new(texts: &[&str]) -> JoinedCaptions {
        let mut units = Vec::with_capacity(texts.iter().map(|t| t.len() + 1).sum());
        let mut starts = Vec::with_capacity(texts.len() + 1);
        for (i, text) in texts.iter().enumerate() {
            if i > 0 {
                units.push(u16::from(b'\n'));
            }
            starts.push(units.len());
            push_caption_units(&mut units, text);
        }
        starts.push(units.len());
        let blank: Vec<bool> = (0..texts.len())
            .map(|i| {
                let end = starts[i + 1].min(units.len());
                units[starts[i]..end]
                    .iter()
                    .all(|&u| is_space_or_newline(u))
            })
            .collect();
        // A trailing context reads at most: line breaks and blank captions, the first
        // caption that is not blank, the next line break and one unit after it.
        let mut context_ends = vec![units.len(); texts.len()];
        let mut next_text: Option<usize> = None;
        for i in (0..texts.len()).rev() {
            if let Some(j) = next_text {
                context_ends[i] = (starts[j + 1] + 1).min(units.len());
            }
            if !blank[i] {
                next_text = Some(i);
            }
        }
        JoinedCaptions {
            units,
            starts,
            context_ends,
        }
    }

    /// Caption `i` with the text after it that the lexer may read, and the caption's length.
    fn caption(&self, i: usize) -> (&[u16], usize) {
        let start = self.starts[i];
        let end = if i + 1 < self.starts.len() - 1 {
            self.starts[i + 1] - 1
        } else {
            self.units.len()
        };
        (&self.units[start..self.context_ends[i]], end - start)
    }
}

/// The lexer's whitespace and line-break characters.
fn is_space_or_newline(u: u16) -> bool {
    matches!(
        u,
        0x09..=0x0D | 0x20 | 0x85 | 0xA0 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x3000
    )
}

/// Lexes `units[..end]` and formats the tokens as pycocoevalcap's output line for it.
fn tokens_to_line(units: &[u16], end: usize) -> String {
    lexer::with_tokens(units, end, |tokens| {
        // Java lower-cases each token (Locale.ENGLISH).
        if tokens.text().is_ascii() {
            tokens.make_ascii_lowercase();
            return format_line(tokens.iter(), tokens.text().len());
        }
        let lower: Vec<String> = tokens.iter().map(str::to_lowercase).collect();
        format_line(lower.iter().map(String::as_str), tokens.text().len())
    })
}

/// Java joins the tokens with spaces; Python strips the line's trailing whitespace, splits
/// it on `" "` and drops the punctuation tokens.
fn format_line<'a>(tokens: impl Iterator<Item = &'a str> + Clone, len: usize) -> String {
    let plain = tokens
        .clone()
        .last()
        .is_none_or(|t| !t.ends_with(is_python_space))
        && tokens.clone().all(|t| !t.is_empty() && !t.contains(' '));
    if !plain {
        let line = tokens.collect::<Vec<_>>().join(" ");
        return line
            .trim_end_matches(is_python_space)
            .split(' ')
            .filter(|t| !DROPPED.contains(t))
            .collect::<Vec<_>>()
            .join(" ");
    }
    // Splitting the joined line on " " gives the tokens back: filter them directly.
    let mut line = String::with_capacity(len + 16);
    for token in tokens.filter(|t| !DROPPED.contains(t)) {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(token);
    }
    line
}

/// Python's `str.isspace` (what `str.split()` splits on).
pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Expected outputs were produced by pycocoevalcap 1.2 (CoreNLP 3.4.1).
    #[test]
    fn common_cases() {
        let cases = [
            (
                "A cat sitting on a wooden table.",
                "a cat sitting on a wooden table",
            ),
            (
                "A PUPPY, running on a grassy field!!! (really?)",
                "a puppy running on a grassy field !!! -lrb- really -rrb-",
            ),
            (" ! ", ""),
            ("...", ""),
            ("The dog's ball.", "the dog 's ball"),
            ("I don't know", "i do n't know"),
            ("It can't be", "it ca n't be"),
            (
                "\"Hello,\" she said; 1,000 at 10:30",
                "hello she said 1,000 at 10:30",
            ),
            (
                "It costs $2.50, i.e. 50% off",
                "it costs $ 2.50 i.e. 50 % off",
            ),
            (
                "a well-known and/or [odd] thing",
                "a well-known and/or -lsb- odd -rsb- thing",
            ),
            (
                "Plan B. It says no. Wash. wash.",
                "plan b it says no wash. wash",
            ),
            (
                "Mr. Smith went to the U.S. today.",
                "mr. smith went to the u.s. today",
            ),
            ("the players' bags", "the players bags"),
            ("wait -- what?!", "wait what ?!"),
            ("", ""),
            ("Etc. and so on, etc.", "etc. and so on etc."),
            (
                "AT&amp;T \u{201C}quoted\u{201D} caf\u{e9}\u{2026}",
                "at&t quoted caf\u{e9}",
            ),
            ("DON'T", "do n't"),
        ];
        for (text, want) in cases {
            assert_eq!(ptb_tokenize(text), want, "{text:?}");
        }
    }

    #[test]
    fn following_captions_are_context() {
        // A caption-final smiley needs a character after it; one-letter acronyms before a
        // sentence-starting word lose their period.
        assert_eq!(ptb_tokenize("nice :)"), "nice -rrb-");
        assert_eq!(
            ptb_tokenize_all(&["nice :)", "Plan I.", "The end"]),
            ["nice :-rrb-", "plan i", "the end"]
        );
        assert_eq!(
            ptb_tokenize_all(&["Plan I.", "", " ", "The end"])[0],
            "plan i"
        );
        assert_eq!(ptb_tokenize_all(&["Plan I.", "the end"])[0], "plan i.");
    }

    #[test]
    fn never_panics_on_odd_text() {
        let alphabet: Vec<char> =
            "aZ9'\".,;:!?()[]{}-/*$%#&` \u{130}\u{212A}\u{2019}\u{201C}\u{2026}\u{e9}\u{4e2d}\u{1F600}\t\n\r\u{ad}"
                .chars()
                .collect();
        let mut state = 0x1234_5678_u64;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            state = state.wrapping_add(0x9e37_79b9);
            let out = ptb_tokenize(&text);
            assert!(
                !out.starts_with(' ') && !out.ends_with(' ') && !out.contains("  "),
                "{text:?} -> {out:?}"
            );
        }
    }

    #[test]
    fn other_tokenizers() {
        assert_eq!(Tokenizer::Simple.apply("  A Cat,  sat. "), "a cat, sat.");
        assert_eq!(Tokenizer::None.apply("  A Cat,\tsat. "), "A Cat, sat.");
        assert_eq!(
            Tokenizer::Simple.apply_all(&["A b", "C"]),
            ["a b".to_string(), "c".to_string()]
        );
    }
}
