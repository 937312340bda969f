//! The token rules of Stanford CoreNLP 3.4.1's `PTBLexer`, as pycocoevalcap runs it.
//!
//! Over 600 lines: the rule table is one unit, CoreNLP's rules in the lexer's priority order
//! (which decides ties), so it is kept whole rather than split by an order that means nothing.
//!
//! The lexer is a JFlex scanner: at each position the longest match of any rule wins and
//! ties go to the rule listed first; a rule `r1/r2` (trailing context) matches `r1` only
//! when `r2` follows, and the text of `r2` counts toward the match length. The options are
//! the defaults of `PTBTokenizer -preserveLines` in 3.4.1: PTB3 escaping of brackets
//! (`( ) { } [ ]` → `-LRB- -RRB- -LCB- -RCB- -LSB- -RSB-`), LaTeX quotes, `...` and `--`
//! normalisation, no spelling Americanisation, no `/` or `*` escaping, splitting of
//! assimilations (`cannot` → `can not`), newlines as tokens. Matching is ASCII-caseless
//! for literal text but not for character classes, as JFlex's `%caseless`.
//!
//! Rules are listed in the lexer's priority order (see [`rules`]). For text outside ASCII,
//! Java's `Character.isLetter` / `isDigit` are approximated by Rust's Unicode `Alphabetic` /
//! the decimal-digit ranges of the BMP.

use super::nfa::build::*;
use super::nfa::Re;

/// What the lexer does with the text a rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// The matched text is the token.
    Keep,
    /// The token is the matched text minus its last `n` units, which are scanned again.
    KeepFirst(usize),
    /// Spaces inside the token become U+00A0 (markup, fractions).
    SpacesToNbsp,
    /// The token is `--`.
    Dash,
    /// `&amp;` (any case) inside the token becomes `&`.
    Amp,
    /// Soft hyphens (U+00AD) are removed (a token of only soft hyphens becomes `-`).
    SoftHyphens,
    /// Quote characters become LaTeX quotes, read as opening quotes.
    QuoteLeft,
    /// Quote characters become LaTeX quotes, read as closing quotes.
    QuoteRight,
    /// `¼ ½ ¾ ⅓ ⅔` are spelled out (`1/2`).
    Fraction,
    /// `¢` → `cents`, `£` → `#`, other generic currency signs → `$`.
    Currency,
    /// An acronym before a sentence-starting word: the period also ends the sentence.
    Acronym,
    /// The token is the matched text without trailing whitespace.
    TrimSpaces,
    /// The token keeps its final period, and the period is scanned again.
    PeriodAgain,
    /// A phone number: spaces → U+00A0, parentheses → `-LRB-` / `-RRB-`.
    Phone,
    /// The token is the given text.
    Replace(&'static str),
    /// A smiley: parentheses → `-LRB-` / `-RRB-`.
    Smiley,
    /// Three or four hyphens become `--`; other runs stay as they are.
    Hyphens,
    /// The token is `...`.
    Ellipsis,
    /// Whitespace: no token.
    Skip,
    /// A line break: ends the line in `-preserveLines` output.
    Newline,
    /// A character the lexer cannot tokenise: deleted.
    Delete,
}

/// One lexer rule: `body` (the token), an optional trailing context, and the action.
pub(super) struct Rule {
    pub body: Re,
    pub context: Option<Re>,
    pub action: Action,
}

fn rule(body: Re, action: Action) -> Rule {
    Rule {
        body,
        context: None,
        action,
    }
}

fn rule_before(body: Re, context: Re, action: Action) -> Rule {
    Rule {
        body,
        context: Some(context),
        action,
    }
}

// ---------------------------------------------------------------------------------------
// Character predicates (Java's Character classes, on UTF-16 units)
// ---------------------------------------------------------------------------------------

fn as_char(u: u16) -> Option<char> {
    char::from_u32(u32::from(u))
}

/// Java `Character.isLetter` (JFlex `[:letter:]`): ASCII letters exactly, other units by
/// Unicode's `Alphabetic` property (surrogate halves are not letters).
pub(super) fn is_letter(u: u16) -> bool {
    if u < 128 {
        (u as u8).is_ascii_alphabetic()
    } else {
        as_char(u).is_some_and(char::is_alphabetic)
    }
}

/// Java `Character.isDigit` (JFlex `[:digit:]`): decimal digits of the BMP.
pub(super) fn is_digit(u: u16) -> bool {
    /// First units of the runs of ten decimal digits (Unicode `Nd`) above ASCII in the BMP.
    const ZEROS: [u16; 36] = [
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
        0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
        0xAA50, 0xABF0, 0xFF10,
    ];
    if u < 128 {
        (u as u8).is_ascii_digit()
    } else {
        ZEROS.iter().any(|&z| (z..z + 10).contains(&u))
    }
}

/// Java `Character.isUpperCase` (JFlex `[:uppercase:]`).
fn is_upper(u: u16) -> bool {
    as_char(u).is_some_and(char::is_uppercase)
}

/// Units that the lexer's `LETTER` adds to the letters: the soft hyphen, modifier symbols,
/// combining diacritics, Greek and Cyrillic additions, and the combining marks (vowel
/// signs, viramas, ...) of Hebrew, Arabic, Syriac, Thaana, NKo, Indic scripts, Thai and Lao.
#[rustfmt::skip]
const WORD_UNIT_RANGES: [(u16, u16); 62] = [
    (0x00AD, 0x00AD), (0x0237, 0x024F), (0x02C2, 0x02C5), (0x02D2, 0x02DF), (0x02E5, 0x02FF),
    (0x0300, 0x036F), (0x0370, 0x037D), (0x0384, 0x0385), (0x03CF, 0x03CF), (0x03F6, 0x03F6),
    (0x03FC, 0x03FF), (0x0483, 0x0487), (0x04CF, 0x04CF), (0x04F6, 0x04FF), (0x0510, 0x0525),
    (0x055A, 0x055F), (0x0591, 0x05BD), (0x05BF, 0x05BF), (0x05C1, 0x05C2), (0x05C4, 0x05C5),
    (0x05C7, 0x05C7), (0x0615, 0x061A), (0x063B, 0x063F), (0x064B, 0x065E), (0x0670, 0x0670),
    (0x06D6, 0x06EF), (0x06FA, 0x06FF), (0x070F, 0x070F), (0x0711, 0x0711), (0x0730, 0x074F),
    (0x0750, 0x077F), (0x07A6, 0x07B1), (0x07CA, 0x07F5), (0x07FA, 0x07FA), (0x0900, 0x0903),
    (0x093C, 0x093C), (0x093E, 0x094E), (0x0951, 0x0955), (0x0962, 0x0963), (0x0981, 0x0983),
    (0x09BC, 0x09C4), (0x09C7, 0x09C8), (0x09CB, 0x09CD), (0x09D7, 0x09D7), (0x09E2, 0x09E3),
    (0x0A01, 0x0A03), (0x0A3C, 0x0A3C), (0x0A3E, 0x0A4F), (0x0A81, 0x0A83), (0x0ABC, 0x0ACF),
    (0x0B82, 0x0B82), (0x0BBE, 0x0BC2), (0x0BC6, 0x0BC8), (0x0BCA, 0x0BCD), (0x0C01, 0x0C03),
    (0x0C3E, 0x0C56), (0x0D3E, 0x0D44), (0x0D46, 0x0D48), (0x0E30, 0x0E3A), (0x0E47, 0x0E4E),
    (0x0EB1, 0x0EBC), (0x0EC8, 0x0ECD),
];

/// One unit of the lexer's `LETTER`: a letter or one of [`WORD_UNIT_RANGES`].
fn is_word_unit(u: u16) -> bool {
    is_letter(u) || WORD_UNIT_RANGES.iter().any(|&(lo, hi)| lo <= u && u <= hi)
}

fn is_letter_or_digit(u: u16) -> bool {
    is_letter(u) || is_digit(u)
}

// ---------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------

fn digit() -> Re {
    unit(is_digit)
}

fn ascii_digits(min: u32, max: u32) -> Re {
    rep(class("0-9"), min, max)
}

/// Horizontal whitespace.
fn space() -> Re {
    class(" \t\u{a0}\u{2000}-\u{200a}\u{3000}")
}

/// One line break (`\r\n` counts as one).
fn newline() -> Re {
    alt([
        exact("\r"),
        seq([opt(exact("\r")), exact("\n")]),
        class("\u{2028}\u{2029}\u{b}\u{c}\u{85}"),
    ])
}

fn space_or_newline() -> Re {
    alt([space(), newline()])
}

/// An SGML/XML name.
fn sgml_name() -> Re {
    seq([class("A-Za-z"), star(class("A-Za-z0-9_:.-"))])
}

/// A quoted attribute value (may contain anything but its quote).
fn sgml_value() -> Re {
    alt([
        seq([exact("'"), star(not_class("'")), exact("'")]),
        seq([exact("\""), star(not_class("\"")), exact("\"")]),
    ])
}

/// Markup: `<!...>`, `<?...>`, `<name attr="v" ...>`, `<name/>`, `</name>`.
fn sgml() -> Re {
    let attribute = alt([
        sgml_name(),
        seq([
            sgml_name(),
            star(exact(" ")),
            exact("="),
            star(exact(" ")),
            sgml_value(),
        ]),
    ]);
    let inner = alt([
        seq([class("!?"), class("A-Za-z-"), star(not_class(">\r\n"))]),
        seq([
            sgml_name(),
            star(seq([plus(exact(" ")), attribute])),
            star(exact(" ")),
            opt(exact("/")),
        ]),
        seq([exact("/"), sgml_name()]),
    ]);
    seq([exact("<"), inner, star(exact(" ")), exact(">")])
}

/// `&xyz;` with one of the given names.
fn entity(names: &[&str]) -> Re {
    seq([exact("&"), words(names), exact(";")])
}

/// Accented-letter entities such as `&eacute;`.
fn letter_entity() -> Re {
    seq([
        exact("&"),
        class("aeiouAEIOU"),
        words(&["acute", "grave", "uml"]),
        exact(";"),
    ])
}

/// The lexer's `LETTER`: a letter-like unit or an accented-letter entity.
fn word_letter() -> Re {
    alt([unit(is_word_unit), letter_entity()])
}

fn word_letter_or_digit() -> Re {
    alt([word_letter(), digit()])
}

/// Letters and digits, with `.`, `!` or `?` allowed before a letter (`Yahoo!s`, `e.g`).
fn word() -> Re {
    let rest = star(word_letter_or_digit());
    seq([
        word_letter(),
        rest.clone(),
        star(seq([class(".!?"), word_letter(), rest])),
    ])
}

/// Apostrophes (`'`, U+0092, U+2019, `&apos;`).
fn apos() -> Re {
    alt([class("'\u{92}\u{2019}"), lit("&apos;")])
}

/// Apostrophes and the backquote-like characters found inside words.
fn apos_like() -> Re {
    alt([apos(), class("`\u{91}\u{2018}\u{201b}")])
}

/// Reduced auxiliaries: `'s 'm 'd 're 've 'll`.
fn reduced_aux() -> Re {
    seq([apos(), alt([class("msdMSD"), words(&["re", "ve", "ll"])])])
}

/// `n't` (with any apostrophe-like character).
fn negation() -> Re {
    seq([lit("n"), apos_like(), lit("t")])
}

/// A word that may precede `n't`: letters, not ending in `n`.
fn negated_stem() -> Re {
    seq([
        star(class("A-Za-z\u{ad}")),
        class("A-MO-Za-mo-z"),
        star(exact("\u{ad}")),
    ])
}

fn java_letter() -> Re {
    unit(is_letter)
}

/// Words with an inner apostrophe that stay whole (`o'clock`, `y'all` aside).
fn apostrophe_word() -> Re {
    let letters2 = seq([java_letter(), java_letter(), star(java_letter())]);
    alt([
        seq([apos(), lit("n"), opt(apos())]),
        seq([class("lLdDjJ"), apos()]),
        seq([words(&["Dunkin", "somethin", "ol"]), apos()]),
        seq([apos(), lit("em")]),
        seq([class("A-HJ-XZn"), apos_like(), letters2]),
        seq([apos(), class("2-9"), exact("0"), lit("s")]),
        seq([apos(), lit("til"), opt(lit("l"))]),
        seq([
            java_letter(),
            star(java_letter()),
            class("aeiouyAEIOUY"),
            apos_like(),
            class("aeiouA-Z"),
            star(java_letter()),
        ]),
        seq([apos(), lit("cause")]),
        seq([lit("cont'd"), opt(exact("."))]),
        words(&[
            "'twas",
            "nor'easter",
            "c'mon",
            "e'er",
            "s'mores",
            "ev'ry",
            "li'l",
            "nat'l",
        ]),
        seq([lit("o"), apos_like(), lit("o")]),
    ])
}

/// `http://...` and `https://...`, not ending in sentence punctuation.
fn full_url() -> Re {
    seq([
        lit("http"),
        opt(lit("s")),
        exact("://"),
        plus(not_class(" \t\n\u{c}\r\"<>|(){}")),
        not_class(" \t\n\u{c}\r\"<>|.!?(){},-"),
    ])
}

/// `www.host.tld[/path]` and `host.com|net|org|edu[/path]`.
fn likely_url() -> Re {
    let www = seq([
        lit("www."),
        plus(seq([
            plus(not_class(" \t\n\u{c}\r\"<>|.!?(){},")),
            exact("."),
        ])),
        rep(class("a-zA-Z"), 2, 4),
    ]);
    // The excluded set holds the range `,-_` (`,` to `_`: digits, capitals, most symbols).
    let label = not_class(" \t\n\u{c}\r\"`'<>|.!?(){},-_$");
    let dotcom = seq([
        plus(seq([plus(label), exact(".")])),
        words(&["com", "net", "org", "edu"]),
    ]);
    let path = seq([
        exact("/"),
        plus(not_class(" \t\n\u{c}\r\"<>|()")),
        not_class(" \t\n\u{c}\r\"<>|.!?(){},-"),
    ]);
    seq([alt([www, dotcom]), opt(path)])
}

fn email() -> Re {
    let part = || not_class(" \t\n\u{c}\r\"<>|(){}.\u{a0}");
    seq([
        opt(alt([lit("&lt;"), exact("<")])),
        class("a-zA-Z0-9"),
        star(not_class(" \t\n\u{c}\r\"<>|()\u{a0}{}")),
        exact("@"),
        star(seq([plus(part()), exact(".")])),
        plus(part()),
        opt(alt([lit("&gt;"), exact(">")])),
    ])
}

/// `@name` and `#topic`.
fn twitter() -> Re {
    alt([
        seq([exact("@"), class("a-zA-Z_"), star(class("a-zA-Z_0-9"))]),
        seq([exact("#"), plus(word_letter())]),
    ])
}

/// `12/25/2014`, `1-2-99`.
fn date() -> Re {
    seq([
        rep(digit(), 1, 2),
        class("-/"),
        rep(digit(), 1, 2),
        class("-/"),
        rep(digit(), 2, 4),
    ])
}

/// Optionally signed numbers with `.`, `:` or `,` between digit groups.
fn number() -> Re {
    let num = alt([
        plus(digit()),
        seq([
            star(digit()),
            plus(seq([class(".:,\u{ad}\u{66b}\u{66c}"), plus(digit())])),
        ]),
    ]);
    seq([opt(class("-+")), num])
}

/// Superscript or subscript numbers.
fn sub_sup_number() -> Re {
    seq([
        opt(class("\u{207a}\u{207b}\u{208a}\u{208b}")),
        alt([
            plus(class("\u{2070}\u{b9}\u{b2}\u{b3}\u{2074}-\u{2079}")),
            plus(class("\u{2080}-\u{2089}")),
        ]),
    ])
}

/// `3/4`, `5 3/4`, `5-3/4` (at most four digits per part).
fn fraction() -> Re {
    let slash = alt([seq([opt(exact("\\")), exact("/")]), exact("\u{2044}")]);
    seq([
        opt(seq([rep(digit(), 1, 4), class("- \u{a0}")])),
        rep(digit(), 1, 4),
        slash,
        rep(digit(), 1, 4),
    ])
}

/// Letters and digits joined by hyphens, with `d'`, `o'`, `l'` prefixes allowed.
fn hyphenated_thing() -> Re {
    let alnum = || unit(is_letter_or_digit);
    let part = || {
        seq([
            opt(seq([class("dDoOlL"), apos_like(), alnum()])),
            plus(alnum()),
        ])
    };
    seq([
        part(),
        star(seq([class("-_\u{58a}\u{2010}\u{2011}"), part()])),
    ])
}

/// Capitals joined by `&` or `+` (`AT&T`).
fn capitals_with_amp() -> Re {
    seq([
        plus(class("A-Z")),
        plus(seq([alt([class("+&"), lit("&amp;")]), plus(class("A-Z"))])),
    ])
}

/// `a/b`, `and/or`, `x-ray/y` (one or two slashes).
fn slashed_thing() -> Re {
    let part = || {
        seq([
            plus(class("A-Za-z0-9")),
            rep(seq([exact("-"), plus(class("A-Za-z"))]), 0, 2),
        ])
    };
    seq([
        part(),
        rep(seq([opt(exact("\\")), exact("/"), part()]), 1, 2),
    ])
}

/// Words with inner periods or commas and hyphens (`U.S.-based`, `1,000-strong`).
fn hyphenated_with_periods() -> Re {
    seq([
        class("A-Za-z0-9"),
        star(class("A-Za-z0-9.,\u{ad}")),
        plus(seq([
            exact("-"),
            alt([
                plus(class("A-Za-z0-9\u{ad}")),
                seq([acronym(true), exact(".")]),
            ]),
        ])),
    ])
}

/// `C.D`, `U.S`, special compounds (`Canada-U.S`); with `dotted`, at least one period.
fn acronym(dotted: bool) -> Re {
    let letter = || class("A-Za-z");
    let letters = if dotted {
        seq([letter(), plus(seq([exact("."), letter()]))])
    } else {
        seq([letter(), star(seq([exact("."), letter()]))])
    };
    alt([
        letters,
        seq([
            words(&["Canada", "Sino", "Korean", "EU", "Japan", "non"]),
            lit("-U.S"),
        ]),
        seq([lit("U.S.-"), words(&["U.K", "U.S.S.R"])]),
    ])
}

/// Words whose first letter must be a capital and the rest may be any case.
fn capitalised(words_list: &[&str]) -> Re {
    Re::Alt(
        words_list
            .iter()
            .map(|w| {
                let (first, rest) = w.split_at(1);
                seq([exact(first), lit(rest)])
            })
            .collect(),
    )
}

/// Abbreviations usually followed by a lower-case word (months, states, companies, ...).
fn abbrev_lowercase_next() -> Re {
    let any_case = words(&[
        "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "Mon",
        "Tue", "Tues", "Wed", "Thu", "Thurs", "Fri", "Ala", "Ariz", "Calif", "Colo", "Conn", "Ct",
        "Dak", "Fla", "Ga", "Ind", "Kan", "Kans", "Ky", "Md", "Mich", "Minn", "Mo", "Mont", "Neb",
        "Nev", "Okla", "Penn", "Tenn", "Va", "Vt", "Wis", "Wisc", "Wyo", "Inc", "Co", "Cos",
        "Corp", "Ltd", "Plc", "Rt", "Bancorp", "Bhd", "Assn", "Univ", "Intl", "Sys", "tel", "est",
        "ext", "sq", "Jr", "Sr", "Bros", "Ed.D", "Ph.D", "Blvd", "Rd", "Esq", "etc", "al", "seq",
        "Bldg",
    ]);
    let cased = capitalised(&[
        "Az", "Ark", "Del", "Ill", "La", "Mass", "Miss", "Ore", "Pa", "Tex", "Wash",
    ]);
    // Pty, Ptys, Pte, Ptes, Ppty, ...: the `y`/`e` is lower case only.
    let pty = seq([
        lit("p"),
        opt(lit("p")),
        lit("t"),
        class("ye"),
        opt(lit("s")),
    ]);
    seq([alt([any_case, cased, pty]), exact(".")])
}

/// Abbreviations usually followed by a capitalised word (titles, acronyms, ...), without
/// their period.
fn abbrev_uppercase_next() -> Re {
    let titles = words(&[
        "Mr", "Mrs", "Ms", "Dr", "Drs", "Prof", "Profs", "Sen", "Sens", "Rep", "Reps", "Atty",
        "Attys", "Lt", "Col", "Gen", "Messrs", "Gov", "Govs", "Adm", "Rev", "Maj", "Sgt", "Cpl",
        "Pvt", "Capt", "St", "Ste", "Ave", "Pres", "Lieut", "Hon", "Brig", "Cmdr", "Comdr", "Pfc",
        "Spc", "Supt", "Supts", "Det", "Mt", "Ft", "Adj", "Adv", "Asst", "Assoc", "Ens", "Insp",
        "Mlle", "Mme", "Msgr", "Sfc", "vs", "Alex", "Wm", "Jos", "Cie", "a.k.a", "cf", "TREAS",
        "Ph", "Invt", "Elec", "Natl", "Dept",
    ]);
    let miss = capitalised(&["Miss"]);
    let mfg = seq([lit("m"), class("ft"), lit("g")]);
    alt([titles, miss, acronym(false), mfg])
}

/// Abbreviations kept only before a number (`fig. 3`, `ca. 1900`).
fn abbrev_before_number() -> Re {
    seq([
        words(&[
            "ca", "fig", "figs", "prop", "no", "nos", "art", "bldg", "pp", "op",
        ]),
        exact("."),
    ])
}

/// Capitalised words that start a new sentence after an acronym (`U.S. The ...`).
fn sentence_starter() -> Re {
    alt([
        capitalised(&[
            "About",
            "According",
            "Additionally",
            "After",
            "An",
            "A",
            "As",
            "At",
            "But",
            "Earlier",
            "He",
            "Her",
            "Here",
            "However",
            "If",
            "In",
            "It",
            "Last",
            "Many",
            "More",
            "Mr.",
            "Ms.",
            "Now",
            "Once",
            "One",
            "Other",
            "Our",
            "She",
            "Since",
            "So",
            "Some",
            "Such",
            "That",
            "The",
            "Their",
            "Then",
            "There",
            "These",
            "They",
            "This",
            "We",
            "When",
            "While",
            "What",
            "Yet",
            "You",
        ]),
        sgml(),
    ])
}

/// Phone numbers: `(555) 123-4567`, `555-1234`, `+1 555 123 4567`, `555.123.4567`.
fn phone() -> Re {
    let sep = || class("- \u{a0}");
    let plus_signs = || seq([exact("+"), opt(exact("+"))]);
    let area = alt([
        seq([
            exact("("),
            ascii_digits(2, 3),
            exact(")"),
            opt(class(" \u{a0}")),
        ]),
        seq([
            opt(plus_signs()),
            opt(seq([ascii_digits(2, 4), sep()])),
            ascii_digits(2, 4),
            sep(),
        ]),
    ]);
    let spaced = seq([area, ascii_digits(3, 4), opt(sep()), ascii_digits(3, 5)]);
    let dotted = seq([
        opt(seq([opt(plus_signs()), ascii_digits(2, 4), exact(".")])),
        ascii_digits(2, 4),
        exact("."),
        ascii_digits(3, 4),
        exact("."),
        ascii_digits(3, 5),
    ]);
    alt([spaced, dotted])
}

/// Ellipses: `...` to `.....`, `. . .`, U+2026, U+0085.
fn ellipsis() -> Re {
    alt([
        rep(exact("."), 3, 5),
        seq([rep(seq([exact("."), class(" \u{a0}")]), 2, 4), exact(".")]),
        class("\u{85}\u{2026}"),
    ])
}

/// Quote marks other than `"`: apostrophes, `''`, one or two backquote/curly quotes.
fn quotes() -> Re {
    alt([
        apos(),
        exact("''"),
        rep(
            class("`\u{2018}\u{2019}\u{201a}\u{201b}\u{201c}\u{201d}\u{91}\u{92}\u{93}\u{94}\u{201e}\u{201f}\u{2039}\u{203a}\u{ab}\u{bb}"),
            1,
            2,
        ),
    ])
}

fn double_quote() -> Re {
    alt([exact("\""), lit("&quot;")])
}

/// Tokens kept as they are: escaped brackets, `pro-`, `anti-`, `S&P-500`, `Cap'n`, ...
fn treebank_special() -> Re {
    let amp = || alt([exact("&"), lit("&amp;")]);
    alt([
        seq([
            exact("-"),
            words(&["RRB", "LRB", "RCB", "LCB", "RSB", "LSB"]),
            exact("-"),
        ]),
        words(&["C.D.s", "pro-", "anti-"]),
        seq([lit("S"), amp(), lit("P-500")]),
        seq([lit("S"), amp(), lit("Ls")]),
        seq([lit("Cap"), apos(), lit("n")]),
        seq([lit("c"), apos(), lit("est")]),
    ])
}

/// `'90s`-style years: an apostrophe and two digits.
fn apostrophe_year() -> Re {
    seq([apos(), class("0-9"), class("0-9")])
}

fn filename() -> Re {
    let alnum = || plus(alt([word_letter(), digit()]));
    seq([
        alnum(),
        star(seq([exact("."), alnum()])),
        exact("."),
        words(&[
            "bat", "bmp", "c", "class", "cgi", "cpp", "dll", "doc", "docx", "exe", "gif", "gz",
            "h", "htm", "html", "jar", "java", "jpeg", "jpg", "mov", "mp3", "pdf", "php", "pl",
            "png", "ppt", "ps", "py", "sql", "tar", "txt", "wav", "x", "xml", "zip",
        ]),
    ])
}

/// `:)`, `;-P`, `=]`, `>:(`.
fn smiley() -> Re {
    seq([
        opt(class("<>")),
        class(":;="),
        opt(class("-o*'")),
        class("()DPdpO\\{@|[]"),
    ])
}

/// `^_^`, `(^-^)`, `o_O`-style faces.
fn asian_smiley() -> Re {
    let eye = || class("-^x=~<>'");
    alt([
        // As written in the lexer, the first form is the literal text `.[^x=~<>]` after
        // one eye character.
        seq([class("^x=~<>"), exact(".[^"), lit("x"), exact("=~<>]")]),
        seq([eye(), exact("_"), eye()]),
        seq([exact("("), eye(), opt(class("_.")), eye(), exact(")")]),
        seq([
            exact("("),
            class("^x=~<>'"),
            exact("-"),
            class("^x=~<>'`"),
            exact(")"),
        ]),
    ])
}

/// Symbols that stand alone as tokens.
fn misc_symbol() -> Re {
    class(concat!(
        "+%&~^|\\\u{a6}\u{a7}\u{a8}\u{a9}\u{ac}\u{ae}\u{af}\u{b0}-\u{ba}\u{d7}\u{f7}\u{387}",
        "\u{5be}\u{5c0}\u{5c3}\u{5c6}\u{5f3}\u{5f4}\u{600}-\u{603}\u{606}-\u{60a}\u{60c}\u{614}",
        "\u{61b}\u{61e}\u{66a}\u{66d}\u{703}-\u{70d}\u{7f6}-\u{7f8}\u{964}\u{965}\u{e4f}",
        "\u{1fbd}\u{2016}\u{2017}\u{2020}-\u{2023}\u{2030}-\u{2038}\u{203b}\u{203e}-\u{2042}",
        "\u{2044}\u{207a}-\u{207f}\u{208a}-\u{208e}\u{2100}-\u{214f}\u{2190}-\u{21ff}",
        "\u{2200}-\u{2bff}\u{3012}\u{30fb}\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff20}\u{ff3b}-\u{ff40}",
        "\u{ff5b}-\u{ff65}",
    ))
}

/// In-sentence punctuation.
fn in_sentence_punct() -> Re {
    class(",;:\u{3001}")
}

/// Whitespace and invisible characters that separate tokens.
fn blank() -> Re {
    alt([
        exact("\0"),
        plus(space()),
        class("\u{200b}\u{200e}\u{200f}\u{feff}"),
    ])
}

/// The rules in priority order (earlier wins a tie in length).
pub(super) fn rules() -> Vec<Rule> {
    use Action::*;
    let sentence_end = seq([
        space_or_newline(),
        alt([space_or_newline(), unit(is_upper), sgml()]),
    ]);
    vec![
        rule(lit("c++"), Keep),
        rule(seq([class("cCfF"), exact("#")]), Keep),
        rule(lit("cannot"), KeepFirst(3)),
        rule(lit("'twas"), KeepFirst(3)),
        rule(lit("'tis"), KeepFirst(2)),
        rule(words(&["gonna", "gotta", "lemme", "gimme", "wanna"]), KeepFirst(2)),
        rule(sgml(), SpacesToNbsp),
        rule(
            alt([
                entity(&["MD", "mdash", "ndash"]),
                class("\u{96}\u{97}\u{2013}\u{2014}\u{2015}"),
            ]),
            Dash,
        ),
        rule(lit("&amp;"), Amp),
        rule(
            seq([
                exact("&"),
                alt([
                    words(&["HT", "TL", "UR", "LR", "QC", "QL", "QR", "odq", "cdq"]),
                    seq([exact("#"), plus(class("0-9"))]),
                ]),
                exact(";"),
            ]),
            Keep,
        ),
        rule_before(word(), reduced_aux(), SoftHyphens),
        rule_before(negated_stem(), negation(), SoftHyphens),
        rule(word(), SoftHyphens),
        rule(apostrophe_word(), Keep),
        rule_before(seq([lit("y"), apos()]), java_letter(), Keep),
        rule(full_url(), Keep),
        rule(likely_url(), Keep),
        rule(email(), Keep),
        rule(twitter(), Keep),
        rule_before(reduced_aux(), not_class("A-Za-z"), QuoteRight),
        rule_before(negation(), not_class("A-Za-z"), QuoteRight),
        rule(date(), Keep),
        rule(number(), SoftHyphens),
        rule(sub_sup_number(), Keep),
        rule(fraction(), SpacesToNbsp),
        rule(class("\u{bc}\u{bd}\u{be}\u{2153}-\u{215e}"), Fraction),
        rule(treebank_special(), Amp),
        rule(slashed_thing(), Keep),
        rule(alt([seq([star(class("A-Z")), exact("$")]), exact("#")]), Keep),
        rule(
            class("\u{a2}\u{a3}\u{a4}\u{a5}\u{80}\u{20a0}\u{20ac}\u{60b}\u{e3f}\u{20a4}\u{ffe0}\u{ffe1}\u{ffe5}\u{ffe6}"),
            Currency,
        ),
        rule_before(
            seq([acronym(false), exact(".")]),
            seq([plus(space_or_newline()), sentence_starter(), space_or_newline()]),
            Acronym,
        ),
        rule_before(
            abbrev_before_number(),
            seq([opt(space_or_newline()), digit()]),
            TrimSpaces,
        ),
        rule_before(
            seq([alt([seq([lit("pt"), class("eyEY")]), lit("co")]), exact(".")]),
            seq([space(), words(&["ltd", "lim"])]),
            Keep,
        ),
        rule_before(abbrev_lowercase_next(), sentence_end, PeriodAgain),
        rule_before(abbrev_lowercase_next(), seq([any(), any()]), Keep),
        rule(abbrev_lowercase_next(), PeriodAgain),
        rule(seq([abbrev_uppercase_next(), exact(".")]), Keep),
        rule_before(abbrev_uppercase_next(), space(), Keep),
        rule_before(acronym(false), space_or_newline(), Keep),
        rule_before(apostrophe_year(), space_or_newline(), Keep),
        rule_before(filename(), alt([space_or_newline(), class(".?!,")]), Keep),
        rule_before(seq([word(), exact(".")]), in_sentence_punct(), SoftHyphens),
        rule(phone(), Phone),
        rule_before(double_quote(), class("A-Za-z0-9$"), QuoteLeft),
        rule(double_quote(), QuoteRight),
        rule(exact("\u{7f}"), Skip),
        rule(alt([exact("<"), lit("&lt;")]), Replace("<")),
        rule(alt([exact(">"), lit("&gt;")]), Replace(">")),
        rule_before(smiley(), not_class("A-Za-z0-9"), Smiley),
        rule(asian_smiley(), Smiley),
        rule(exact("{"), Replace("-LCB-")),
        rule(exact("}"), Replace("-RCB-")),
        rule(exact("["), Replace("-LSB-")),
        rule(exact("]"), Replace("-RSB-")),
        rule(exact("("), Replace("-LRB-")),
        rule(exact(")"), Replace("-RRB-")),
        rule(plus(exact("-")), Hyphens),
        rule(ellipsis(), Ellipsis),
        rule(
            alt([plus(exact("@")), plus(exact("#")), plus(exact("_"))]),
            Keep,
        ),
        rule(alt([plus(exact("*")), rep(exact("\\*"), 1, 3)]), Keep),
        rule(in_sentence_punct(), Keep),
        rule(plus(class("?!")), Keep),
        rule(
            class(".\u{a1}\u{bf}\u{37e}\u{589}\u{61f}\u{6d4}\u{700}-\u{702}\u{7fa}\u{3002}"),
            Keep,
        ),
        rule(exact("="), Keep),
        rule(exact("/"), Keep),
        rule_before(
            seq([hyphenated_with_periods(), exact(".")]),
            in_sentence_punct(),
            SoftHyphens,
        ),
        rule(hyphenated_with_periods(), SoftHyphens),
        rule_before(
            seq([hyphenated_thing(), exact(".")]),
            in_sentence_punct(),
            Keep,
        ),
        rule(hyphenated_thing(), Keep),
        rule_before(
            seq([capitals_with_amp(), exact(".")]),
            in_sentence_punct(),
            Amp,
        ),
        rule(capitals_with_amp(), Amp),
        rule_before(
            exact("'"),
            seq([class("A-Za-z"), not_class(" \t\n\r\u{a0}")]),
            QuoteLeft,
        ),
        rule(reduced_aux(), QuoteRight),
        rule(negation(), QuoteRight),
        rule(quotes(), QuoteRight),
        rule(alt([exact("<<"), exact(">>")]), Keep),
        rule(misc_symbol(), Keep),
        rule(blank(), Skip),
        rule(newline(), Newline),
        rule(lit("&nbsp;"), Skip),
        rule(not_class("\n"), Delete),
    ]
}
