//! Caption tokenisation as pycocoevalcap does it before scoring.
//!
//! pycocoevalcap's `PTBTokenizer` runs Stanford CoreNLP 3.4.1
//! `PTBTokenizer -preserveLines -lowerCase` (Java) on every caption and then drops the tokens
//! `'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;` (the bracket names never match
//! because the text was already lower-cased, so `-lrb-` survives).
//!
//! [`ptb_tokenize`] is a pure-Rust **emulation** of that pipeline, written from the lexer's
//! documented rules. It reproduces every caption of the golden fixtures and handles the common
//! cases of English captions: lower-casing; splitting off sentence punctuation; repeated `!`/`?`
//! kept as one token (`!!!`); `( )` → `-lrb- -rrb-`, `{ }` → `-lcb- -rcb-`, and `[ ] < >` →
//! `-lrb- -rrb-` as the older CoreNLP lexer does; quotes; clitics (`dog's` → `dog 's`,
//! `don't` → `do n't`, `can't` → `ca n't`, `cannot` → `can not`); numbers and times kept
//! whole (`1,000`, `2.50`, `10:30`); `$`, `#` and `%` split from numbers; currency, fraction,
//! dash, ellipsis and Unicode-quote normalisation; `/` and `*` escaped (`\/`, `\*`);
//! abbreviations (CoreNLP's lists of titles, months, states, company words; single letters;
//! acronyms like `u.s.`) keep their period.
//!
//! Where it may differ from the Java tokenizer on other text: British→American spelling
//! (CoreNLP 3.4.1 `americanize`s, e.g. `colour` → `color`; not emulated), characters the
//! lexer cannot tokenise (it deletes them; kept here), URLs, e-mail addresses, emoticons,
//! SGML/HTML markup and entities other than `&amp;`, phone numbers, `&` between capitals,
//! hyphen runs, whether `[`/`]` become `-lrb-`/`-rrb-` or `-lsb-`/`-rsb-` in 3.4.1 (no fixture
//! shows it), and line separators other than `\n` (CoreNLP starts a new line, which would
//! shift every following caption). Such differences change scores only for the captions
//! involved; pre-tokenise and use [`Tokenizer::None`] when exactness on such text matters.

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
    /// Tokenises one caption into a single-space-joined string.
    pub fn apply(self, text: &str) -> String {
        match self {
            Tokenizer::Ptb => ptb_tokenize(text),
            Tokenizer::Simple => simple_tokenize(text),
            Tokenizer::None => text.split_whitespace().collect::<Vec<_>>().join(" "),
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

/// Abbreviations that keep their final period (any case), after CoreNLP's lists of
/// months, days, states, company words, titles and measures.
const ABBREVIATIONS: &[&str] = &[
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon",
    "tue", "tues", "wed", "thu", "thurs", "fri", "ala", "ariz", "calif", "colo", "conn", "dak",
    "del", "fla", "ga", "ind", "kan", "kans", "ky", "la", "md", "mich", "minn", "mo", "mont",
    "neb", "nev", "okla", "pa", "penn", "tenn", "tex", "va", "vt", "wis", "wisc", "wyo", "inc",
    "co", "cos", "corp", "pty", "ltd", "plc", "bancorp", "dept", "bhd", "assn", "univ", "intl",
    "sys", "no", "nos", "prop", "ph", "tel", "est", "ext", "sq", "ft", "jr", "sr", "bros", "blvd",
    "rd", "esq", "etc", "al", "seq", "mr", "mrs", "ms", "dr", "drs", "prof", "profs", "sen",
    "sens", "rep", "reps", "atty", "attys", "lt", "col", "gen", "messrs", "gov", "govs", "adm",
    "rev", "maj", "sgt", "cpl", "pvt", "mt", "capt", "st", "ste", "ave", "pres", "lieut", "hon",
    "brig", "cmdr", "comdr", "pfc", "spc", "supt", "supts", "det", "vs", "alex", "wm", "jos",
    "cie", "cf", "treas", "invt", "elec", "natl", "mfg", "mtg",
];

/// Abbreviations that keep their period only when capitalised exactly so.
const CASED_ABBREVIATIONS: [&str; 6] = ["Ark", "Ill", "Mass", "Miss", "Ore", "Wash"];

/// Emulates pycocoevalcap's `PTBTokenizer` on one caption (see the module docs for limits).
pub fn ptb_tokenize(text: &str) -> String {
    let normalized = normalize_chars(text);
    let mut out = String::with_capacity(normalized.len() + 8);
    let mut tokens = Vec::new();
    for chunk in normalized.split_whitespace() {
        if let Some(word) = fast_word(chunk) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
            continue;
        }
        tokens.clear();
        split_chunk(chunk, &mut tokens);
        for token in &tokens {
            let token = token.to_lowercase();
            if token.is_empty() || DROPPED.contains(&token.as_str()) {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&token);
        }
    }
    out
}

/// Fast path for the common chunks: an ASCII letters/digits word, optionally followed by one
/// punctuation mark that the full rules would split off and drop. Returns the word.
fn fast_word(chunk: &str) -> Option<&str> {
    let bytes = chunk.as_bytes();
    let (body, last) = match bytes.last() {
        Some(b'.' | b',' | b';' | b'!' | b'?' | b':') => (&chunk[..chunk.len() - 1], true),
        _ => (chunk, false),
    };
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if last && bytes.last() == Some(&b'.') && keeps_period(&chunk.chars().collect::<Vec<_>>()) {
        return None;
    }
    Some(body)
}

/// Character-level normalisations CoreNLP applies by default (`ptb3Escaping`).
fn normalize_chars(text: &str) -> std::borrow::Cow<'_, str> {
    if text.is_ascii() && !text.contains('&') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.replace("&amp;", "&").chars() {
        match c {
            '\u{2018}' | '\u{201B}' => out.push('`'),
            '\u{2019}' => out.push('\''),
            '\u{201C}' | '\u{201E}' => out.push_str(" `` "),
            '\u{201D}' => out.push_str(" '' "),
            '\u{2013}' | '\u{2014}' | '\u{2015}' => out.push_str(" -- "),
            '\u{2026}' => out.push_str(" ... "),
            '\u{00BD}' => out.push_str("1/2"),
            '\u{00BC}' => out.push_str("1/4"),
            '\u{00BE}' => out.push_str("3/4"),
            '\u{00A3}' => out.push('#'),
            '\u{00A2}' => out.push_str(" cents "),
            '\u{20AC}' | '\u{00A4}' | '\u{20A0}' => out.push('$'),
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Splits one whitespace-free chunk into PTB tokens (not yet lower-cased or filtered).
fn split_chunk(chunk: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = chunk.chars().collect();
    let mut start = 0;
    let mut end = chars.len();
    let mut trailing: Vec<String> = Vec::new();

    // Leading punctuation.
    while start < end {
        let c = chars[start];
        let rest: String = chars[start..end].iter().collect();
        if let Some(tok) = opening_token(c) {
            out.push(tok.to_string());
            start += 1;
        } else if rest.starts_with("``") {
            out.push("``".into());
            start += 2;
        } else if c == '"' {
            out.push("``".into());
            start += 1;
        } else if c == '\'' {
            if is_clitic(&rest) {
                break;
            }
            out.push("`".into());
            start += 1;
        } else if c == '`' {
            out.push("`".into());
            start += 1;
        } else if (c == '$' || c == '#') && end - start > 1 {
            out.push(c.to_string());
            start += 1;
        } else if c == '-' && end - start > 1 && !chars[start + 1].is_ascii_digit() {
            let run = chars[start..end].iter().take_while(|&&d| d == '-').count();
            out.push(if run >= 2 { "--".into() } else { "-".into() });
            start += run;
        } else {
            break;
        }
    }

    // Trailing punctuation, collected right to left.
    while end > start {
        let c = chars[end - 1];
        if let Some(tok) = closing_token(c) {
            trailing.push(tok.to_string());
            end -= 1;
        } else if c == '"' {
            trailing.push("''".into());
            end -= 1;
        } else if c == '\'' {
            let run = chars[start..end]
                .iter()
                .rev()
                .take_while(|&&d| d == '\'')
                .count();
            trailing.push(if run >= 2 { "''".into() } else { "'".into() });
            end -= run.min(2);
        } else if c == '!' || c == '?' {
            let run = chars[start..end]
                .iter()
                .rev()
                .take_while(|&&d| d == '!' || d == '?')
                .count();
            trailing.push(chars[end - run..end].iter().collect());
            end -= run;
        } else if c == '.' {
            let run = chars[start..end]
                .iter()
                .rev()
                .take_while(|&&d| d == '.')
                .count();
            if run >= 2 {
                trailing.push("...".into());
                end -= run;
            } else if keeps_period(&chars[start..end]) {
                break;
            } else {
                trailing.push(".".into());
                end -= 1;
            }
        } else if matches!(c, ',' | ';' | ':' | '%') {
            trailing.push(c.to_string());
            end -= 1;
        } else if c == '-' && end - start > 1 {
            let run = chars[start..end]
                .iter()
                .rev()
                .take_while(|&&d| d == '-')
                .count();
            trailing.push(if run >= 2 { "--".into() } else { "-".into() });
            end -= run;
        } else {
            break;
        }
    }

    if start < end {
        split_core(&chars[start..end], out);
    }
    out.extend(trailing.into_iter().rev());
}

/// Splits the core of a chunk at inner punctuation, then splits clitics off each word.
fn split_core(chars: &[char], out: &mut Vec<String>) {
    let mut word = String::new();
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
        let next_digit = i + 1 < n && chars[i + 1].is_ascii_digit();
        let separator: Option<String> = match c {
            '(' | '[' | '{' | '<' => opening_token(c).map(str::to_string),
            ')' | ']' | '}' | '>' => closing_token(c).map(str::to_string),
            '"' => Some(if word.is_empty() { "``" } else { "''" }.to_string()),
            ';' => Some(";".into()),
            ',' | ':' if !(prev_digit && next_digit) => Some(c.to_string()),
            '-' if i + 1 < n && chars[i + 1] == '-' => {
                let run = chars[i..].iter().take_while(|&&d| d == '-').count();
                i += run - 1;
                Some("--".into())
            }
            '!' | '?' => {
                let run = chars[i..]
                    .iter()
                    .take_while(|&&d| d == '!' || d == '?')
                    .count();
                let tok: String = chars[i..i + run].iter().collect();
                i += run - 1;
                Some(tok)
            }
            _ => None,
        };
        match separator {
            Some(tok) => {
                flush_word(&mut word, out);
                out.push(tok);
            }
            None => match c {
                '/' => word.push_str("\\/"),
                '*' => word.push_str("\\*"),
                _ => word.push(c),
            },
        }
        i += 1;
    }
    flush_word(&mut word, out);
}

/// Pushes `word` (if any) with its clitics split off, and clears it.
fn flush_word(word: &mut String, out: &mut Vec<String>) {
    if word.is_empty() {
        return;
    }
    let lower = word.to_lowercase();
    let special: Option<(usize, usize)> = match lower.as_str() {
        "cannot" => Some((3, 3)),
        "gonna" | "gotta" | "wanna" | "lemme" | "gimme" => Some((3, 2)),
        _ => None,
    };
    if let Some((a, _)) = special {
        let (left, right) = word.split_at(a);
        out.push(left.to_string());
        out.push(right.to_string());
        word.clear();
        return;
    }
    let cut = ["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"]
        .iter()
        .filter(|s| word.len() > s.len())
        .map(|s| word.len() - s.len())
        .find(|&cut| {
            word.is_char_boundary(cut)
                && ["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"]
                    .iter()
                    .any(|s| word[cut..].eq_ignore_ascii_case(s))
        });
    match cut {
        // "can't" → "ca n't" and "won't" → "wo n't": the split is before "n't".
        Some(cut) => {
            let (left, right) = word.split_at(cut);
            out.push(left.to_string());
            out.push(right.to_string());
        }
        None => out.push(word.clone()),
    }
    word.clear();
}

/// True when `text` is a clitic on its own or a word ending in one (`'s`, `n't`, ...).
fn is_clitic(text: &str) -> bool {
    let lower = text.to_lowercase();
    ["'s", "'re", "'ve", "'ll", "'d", "'m", "n't"]
        .iter()
        .any(|s| lower.ends_with(s))
}

/// True when a final period belongs to the word: abbreviations, initials-with-periods
/// (`u.s.`, `a.m.`), single initials.
fn keeps_period(chars: &[char]) -> bool {
    let body: String = chars[..chars.len() - 1].iter().collect();
    if body.is_empty() {
        return false;
    }
    let lower = body.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) || CASED_ABBREVIATIONS.contains(&body.as_str()) {
        return true;
    }
    // Single letters ("B.") and acronyms such as "U.S." / "a.m.": letters separated by periods.
    lower
        .split('.')
        .all(|part| part.chars().count() == 1 && part.chars().all(char::is_alphabetic))
}

fn opening_token(c: char) -> Option<&'static str> {
    match c {
        '(' => Some("-LRB-"),
        '[' | '<' => Some("-LRB-"),
        '{' => Some("-LCB-"),
        _ => None,
    }
}

fn closing_token(c: char) -> Option<&'static str> {
    match c {
        ')' => Some("-RRB-"),
        ']' | '>' => Some("-RRB-"),
        '}' => Some("-RCB-"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_cases() {
        assert_eq!(
            ptb_tokenize("A cat sitting on a wooden table."),
            "a cat sitting on a wooden table"
        );
        assert_eq!(
            ptb_tokenize("A PUPPY, running on a grassy field!!! (really?)"),
            "a puppy running on a grassy field !!! -lrb- really -rrb-"
        );
        assert_eq!(ptb_tokenize(" ! "), "");
        assert_eq!(ptb_tokenize("..."), "");
        assert_eq!(ptb_tokenize("The dog's ball."), "the dog 's ball");
        assert_eq!(ptb_tokenize("I don't know"), "i do n't know");
        assert_eq!(ptb_tokenize("It can't be"), "it ca n't be");
        assert_eq!(
            ptb_tokenize("\"Hello,\" she said; 1,000 at 10:30"),
            "hello she said 1,000 at 10:30"
        );
        assert_eq!(
            ptb_tokenize("It costs $2.50, i.e. 50% off"),
            "it costs $ 2.50 i.e. 50 % off"
        );
        assert_eq!(
            ptb_tokenize("a well-known and/or [odd] thing"),
            "a well-known and\\/or -lrb- odd -rrb- thing"
        );
        assert_eq!(
            ptb_tokenize("Plan B. It says no. Wash. wash."),
            "plan b. it says no. wash. wash"
        );
        assert_eq!(
            ptb_tokenize("Mr. Smith went to the U.S. today."),
            "mr. smith went to the u.s. today"
        );
        assert_eq!(ptb_tokenize("the players' bags"), "the players bags");
        assert_eq!(ptb_tokenize("wait -- what?!"), "wait what ?!");
        assert_eq!(ptb_tokenize(""), "");
        assert_eq!(ptb_tokenize("Etc. and so on, etc."), "etc. and so on etc.");
        assert_eq!(
            ptb_tokenize("AT&amp;T \u{201C}quoted\u{201D} caf\u{e9}\u{2026}"),
            "at&t quoted caf\u{e9}"
        );
    }

    #[test]
    fn never_panics_on_odd_text() {
        let alphabet: Vec<char> =
            "aZ9'\".,;:!?()[]{}-/*$%#&` \u{130}\u{212A}\u{2019}\u{201C}\u{2026}\u{e9}\u{4e2d}\t\n"
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
        assert_eq!(ptb_tokenize("DON'T"), "do n't");
    }

    #[test]
    fn other_tokenizers() {
        assert_eq!(Tokenizer::Simple.apply("  A Cat,  sat. "), "a cat, sat.");
        assert_eq!(Tokenizer::None.apply("  A Cat,\tsat. "), "A Cat, sat.");
    }
}
