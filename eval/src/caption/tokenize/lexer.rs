//! The scanning loop of the CoreNLP 3.4.1 `PTBLexer` emulation: longest match over the
//! rules of [`super::rules`], the split of trailing-context rules, and the rule actions.

use std::cell::RefCell;
use std::sync::OnceLock;

use super::nfa::{Dfa, Nfa, Re};
use super::rules::{rules, Action};

/// Lexes `input[..end]` (`input[end..]` is the text that follows, read only by trailing
/// contexts) and returns what `f` makes of the tokens (before lower-casing).
///
/// The lexer's DFA cache and the token buffer are kept per thread.
pub(super) fn with_tokens<R>(input: &[u16], end: usize, f: impl FnOnce(&mut Tokens) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Option<(Dfa<'static>, Tokens)>> = const { RefCell::new(None) };
    }
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        let lexer = lexer();
        let (dfa, tokens) =
            scratch.get_or_insert_with(|| (Dfa::new(&lexer.all), Tokens::default()));
        tokens.text.clear();
        tokens.ends.clear();
        lexer.scan(dfa, input, end, tokens);
        f(tokens)
    })
}

/// The compiled rules.
pub(super) struct Lexer {
    /// All rules (body and trailing context together), rule `i` accepting as `i`.
    all: Nfa,
    /// For rules with a trailing context: the body and the context on their own.
    parts: Vec<Option<(Nfa, Nfa)>>,
    actions: Vec<Action>,
}

/// The lexer, compiled on first use.
fn lexer() -> &'static Lexer {
    static LEXER: OnceLock<Lexer> = OnceLock::new();
    LEXER.get_or_init(Lexer::new)
}

impl Lexer {
    fn new() -> Lexer {
        let rules = rules();
        let whole: Vec<Re> = rules
            .iter()
            .map(|r| match &r.context {
                Some(context) => Re::Seq(vec![r.body.clone(), context.clone()]),
                None => r.body.clone(),
            })
            .collect();
        let parts = rules
            .iter()
            .map(|r| {
                r.context.as_ref().map(|context| {
                    (
                        Nfa::new(std::slice::from_ref(&r.body)),
                        Nfa::new(std::slice::from_ref(context)),
                    )
                })
            })
            .collect();
        Lexer {
            all: Nfa::new(&whole),
            parts,
            actions: rules.iter().map(|r| r.action).collect(),
        }
    }

    /// Appends the tokens CoreNLP gives for the units `input[..end]` (before lower-casing)
    /// to `out`; `input[end..]` is the text that follows (read only by trailing contexts).
    fn scan(&self, dfa: &mut Dfa<'_>, input: &[u16], end: usize, out: &mut Tokens) {
        let mut pos = 0;
        while pos < end {
            if let Some(word_end) = plain_word(input, pos) {
                out.push_units(&input[pos..word_end]);
                pos = word_end;
                continue;
            }
            let Some((match_end, rule)) = dfa.longest(input, pos) else {
                // Unreachable (the last rules match any unit); skip the unit to make progress.
                pos += 1;
                continue;
            };
            let rule = usize::from(rule);
            let token_end = self.token_end(rule, input, pos, match_end);
            let consumed = apply(self.actions[rule], &input[pos..token_end], out);
            pos += consumed.max(1);
        }
    }

    /// Where the token of a match of `rule` over `input[start..end]` ends: for a rule
    /// `r1/r2`, the longest `r1` that leaves a match of `r2` (how JFlex 1.4 splits).
    fn token_end(&self, rule: usize, input: &[u16], start: usize, end: usize) -> usize {
        let Some((body, context)) = &self.parts[rule] else {
            return end;
        };
        body.ends(input, start, end)
            .into_iter()
            .rev()
            .find(|&split| context.matches_exactly(input, split, end))
            .unwrap_or(end)
    }
}

/// Fast path for the most common token: a run of ASCII letters starting at `pos` and
/// followed by a space, a tab, a line break or the end of the input. Returns the end of the
/// run when the rules would make exactly that run a token.
///
/// No rule matches past such a run except through a one-unit trailing context with the same
/// token (`{ACRO}/{SPACENL}`, `{ABBREV4}/{SPACE}`), and every other rule that matches the
/// run itself is `{WORD}` or ties with it, except the assimilations that are split
/// (`cannot`, `gonna`, `gotta`, `lemme`, `gimme`, `wanna`), which take the slow path.
fn plain_word(input: &[u16], pos: usize) -> Option<usize> {
    let is_letter = |u: u16| u < 128 && (u as u8).is_ascii_alphabetic();
    let len = input[pos..].iter().take_while(|&&u| is_letter(u)).count();
    if len == 0 {
        return None;
    }
    let end = pos + len;
    if !matches!(input.get(end), None | Some(0x20 | 0x09 | 0x0A)) {
        return None;
    }
    const SPLIT: [&str; 6] = ["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"];
    let word = &input[pos..end];
    let is = |w: &str| {
        w.len() == word.len()
            && w.bytes()
                .zip(word)
                .all(|(b, &u)| (u as u8).to_ascii_lowercase() == b)
    };
    if SPLIT.iter().any(|w| is(w)) {
        return None;
    }
    Some(end)
}

/// Tokens of one caption, laid out in one buffer.
#[derive(Debug, Default)]
pub(super) struct Tokens {
    text: String,
    ends: Vec<usize>,
}

impl Tokens {
    /// The tokens in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.text[a..b])
    }

    /// All tokens concatenated (for whole-buffer checks).
    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// Lower-cases the ASCII letters of every token in place.
    pub(super) fn make_ascii_lowercase(&mut self) {
        self.text.make_ascii_lowercase();
    }

    fn push_str(&mut self, token: &str) {
        self.text.push_str(token);
        self.ends.push(self.text.len());
    }

    fn push_units(&mut self, units: &[u16]) {
        decode_into(&mut self.text, units);
        self.ends.push(self.text.len());
    }
}

/// Adds the token (if any) an action makes of `text` to `out`; returns how many units of
/// `text` are consumed (the rest is scanned again).
fn apply(action: Action, text: &[u16], out: &mut Tokens) -> usize {
    let len = text.len();
    let whole = || decode(text);
    match action {
        Action::Keep => out.push_units(text),
        Action::KeepFirst(n) => {
            let keep = len.saturating_sub(n).max(1);
            out.push_units(&text[..keep]);
            return keep;
        }
        Action::SpacesToNbsp => out.push_str(&whole().replace(' ', "\u{a0}")),
        Action::Dash => out.push_str("--"),
        Action::Amp => out.push_str(&replace_amp(&whole())),
        Action::SoftHyphens if !text.contains(&0xAD) => out.push_units(text),
        Action::SoftHyphens => out.push_str(&remove_soft_hyphens(&whole())),
        Action::QuoteLeft => out.push_str(&latex_quotes(&whole(), true)),
        Action::QuoteRight => out.push_str(&latex_quotes(&whole(), false)),
        Action::Fraction => out.push_str(&spell_fractions(&whole())),
        Action::Currency => out.push_str(&normalize_currency(&whole())),
        Action::Acronym => {
            let trimmed = trim_trailing_blanks(text);
            return if trimmed.len() == 2 {
                // A one-letter "acronym" ("I."): the letter, then the period on its own.
                out.push_units(&trimmed[..1]);
                1
            } else {
                // The acronym keeps its period, and the period is also scanned again.
                out.push_units(trimmed);
                trimmed.len().saturating_sub(1)
            };
        }
        Action::TrimSpaces => {
            let trimmed = trim_trailing_blanks(text);
            out.push_units(trimmed);
            return trimmed.len();
        }
        Action::PeriodAgain => {
            out.push_units(text);
            return len.saturating_sub(1);
        }
        Action::Phone => out.push_str(&replace_parens(&whole().replace(' ', "\u{a0}"))),
        Action::Replace(s) => out.push_str(s),
        Action::Smiley => out.push_str(&replace_parens(&whole())),
        Action::Hyphens if (3..=4).contains(&len) => out.push_str("--"),
        Action::Hyphens => out.push_units(text),
        Action::Ellipsis => out.push_str("..."),
        Action::Skip | Action::Newline | Action::Delete => {}
    }
    len
}

/// UTF-16 units to text; a lone surrogate becomes `?` (what Java's UTF-8 writer prints).
fn decode(units: &[u16]) -> String {
    let mut out = String::with_capacity(units.len());
    decode_into(&mut out, units);
    out
}

fn decode_into(out: &mut String, units: &[u16]) {
    if units.iter().all(|&u| u < 128) {
        out.extend(units.iter().map(|&u| char::from(u as u8)));
    } else {
        out.extend(char::decode_utf16(units.iter().copied()).map(|c| c.unwrap_or('?')));
    }
}

/// `text` without trailing spaces, tabs, line breaks and U+0085.
fn trim_trailing_blanks(text: &[u16]) -> &[u16] {
    let blank = |u: u16| u == 0x20 || u == 0x09 || (0x0A..=0x0D).contains(&u) || u == 0x85;
    let keep = text.len() - text.iter().rev().take_while(|&&u| blank(u)).count();
    &text[..keep]
}

/// Replaces every `&amp;` (any case) with `&`.
fn replace_amp(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.len() >= 5 && tail.is_char_boundary(5) && tail[..5].eq_ignore_ascii_case("&amp;") {
            out.push('&');
            rest = &tail[5..];
        } else {
            out.push('&');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Removes soft hyphens; a token of only soft hyphens becomes `-`.
fn remove_soft_hyphens(text: &str) -> String {
    if !text.contains('\u{ad}') {
        return text.to_string();
    }
    let out: String = text.chars().filter(|&c| c != '\u{ad}').collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// CoreNLP's LaTeX quotes: ASCII `'`, `"` and the `&apos;` / `&quot;` entities become
/// `` ` `` / ` `` ` when the quote is read as opening, `'` / `''` when closing; curly
/// quotes (and their CP1252 codes) become the matching LaTeX quote whatever the side.
fn latex_quotes(text: &str, opening: bool) -> String {
    let (single, double) = if opening { ("`", "``") } else { ("'", "''") };
    let mut out = String::with_capacity(text.len() + 2);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let mut skip = c.len_utf8();
        match c {
            '\'' => out.push_str(single),
            '"' => out.push_str(double),
            '&' if rest.starts_with("&apos;") => {
                out.push_str(single);
                skip = 6;
            }
            '&' if rest.starts_with("&quot;") => {
                out.push_str(double);
                skip = 6;
            }
            '\u{91}' | '\u{2018}' | '\u{201b}' | '\u{2039}' => out.push('`'),
            '\u{92}' | '\u{2019}' | '\u{203a}' => out.push('\''),
            '\u{93}' | '\u{201c}' | '\u{ab}' => out.push_str("``"),
            '\u{94}' | '\u{201d}' | '\u{bb}' => out.push_str("''"),
            _ => out.push(c),
        }
        rest = &rest[skip..];
    }
    out
}

/// `¼ ½ ¾ ⅓ ⅔` spelled out with a slash.
fn spell_fractions(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '\u{bc}' => out.push_str("1/4"),
            '\u{bd}' => out.push_str("1/2"),
            '\u{be}' => out.push_str("3/4"),
            '\u{2153}' => out.push_str("1/3"),
            '\u{2154}' => out.push_str("2/3"),
            _ => out.push(c),
        }
    }
    out
}

/// `¢` → `cents`, `£` → `#`, `¤ € ₠` and U+0080 → `$`; other currency signs stay.
fn normalize_currency(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '\u{a2}' => out.push_str("cents"),
            '\u{a3}' => out.push('#'),
            '\u{80}' | '\u{a4}' | '\u{20a0}' | '\u{20ac}' => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// `(` → `-LRB-`, `)` → `-RRB-`.
fn replace_parens(text: &str) -> String {
    text.replace('(', "-LRB-").replace(')', "-RRB-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(replace_amp("AT&amp;T &AMP; &x"), "AT&T & &x");
        assert_eq!(latex_quotes("\"a'&apos;", true), "``a``");
        assert_eq!(latex_quotes("\u{201c}x\u{2019}", true), "``x'");
        assert_eq!(remove_soft_hyphens("\u{ad}"), "-");
        assert_eq!(remove_soft_hyphens("a\u{ad}b"), "ab");
        assert_eq!(decode(&[0x61, 0xD800, 0x62]), "a?b");
        assert_eq!(trim_trailing_blanks(&[0x61, 0x20, 0x0A]), &[0x61]);
    }
}
