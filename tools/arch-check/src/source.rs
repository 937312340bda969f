//! Reading Rust source just enough for the checks: blanking comments and literals, a token
//! stream with line numbers, and dropping `#[cfg(test)]` items.

/// `src` with every comment (`//`, nested `/* */`, doc comments) and the contents of every
/// string, raw string, byte string and char literal replaced by spaces. Byte offsets and
/// newlines are kept, so positions and line numbers still match `src`; a string literal keeps
/// a `"` at each end (so it still reads as one literal), a char literal becomes all spaces.
pub fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let n = b.len();
    let mut out = b.to_vec();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while i < n {
        match b[i] {
            b'/' if at(i + 1) == b'/' => {
                let end = src[i..].find('\n').map_or(n, |k| i + k);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if at(i + 1) == b'*' => {
                let (mut j, mut depth) = (i + 2, 1);
                while j < n && depth > 0 {
                    if b[j] == b'/' && at(j + 1) == b'*' {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && at(j + 1) == b'/' {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'"' => i = string(b, &mut out, i, i),
            b'\'' => {
                if at(i + 1) == b'\\' {
                    // An escaped char literal: '\n', '\'', '\u{1F600}'.
                    let mut j = i + 3;
                    while j < n && b[j] != b'\'' && b[j] != b'\n' {
                        j += 1;
                    }
                    let end = (j + 1).min(n);
                    blank(&mut out, i, end);
                    i = end;
                } else {
                    let len = src[i + 1..].chars().next().map_or(0, char::len_utf8);
                    if len > 0 && at(i + 1 + len) == b'\'' {
                        blank(&mut out, i, i + 2 + len);
                        i += 2 + len;
                    } else {
                        i += 1; // a lifetime or a label
                    }
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < n && is_ident_byte(b[i]) {
                    i += 1;
                }
                let word = &src[start..i];
                if matches!(word, "r" | "br" | "cr") {
                    let mut j = i;
                    while at(j) == b'#' {
                        j += 1;
                    }
                    if at(j) == b'"' {
                        i = raw_string(b, &mut out, start, j, j - i);
                    } else if j > i && is_ident_start(at(j)) {
                        i = j; // a raw identifier, r#type
                    }
                } else if matches!(word, "b" | "c") && at(i) == b'"' {
                    i = string(b, &mut out, start, i);
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("only whole characters are blanked")
}

/// Blanks a `"..."` literal whose opening quote is at `quote` (its prefix starts at `start`);
/// returns the offset after it.
fn string(b: &[u8], out: &mut [u8], start: usize, quote: usize) -> usize {
    let mut j = quote + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => break,
            _ => j += 1,
        }
    }
    let end = (j + 1).min(b.len());
    literal(out, start, end);
    end
}

/// Blanks a raw string whose opening quote is at `quote`, with `hashes` `#`s; returns the
/// offset after it.
fn raw_string(b: &[u8], out: &mut [u8], start: usize, quote: usize, hashes: usize) -> usize {
    let mut j = quote + 1;
    let end = loop {
        if j >= b.len() {
            break b.len();
        }
        if b[j] == b'"'
            && b[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            break j + 1 + hashes;
        }
        j += 1;
    };
    literal(out, start, end);
    end
}

/// Blanks `out[start..end]` but keeps a `"` at both ends.
fn literal(out: &mut [u8], start: usize, end: usize) {
    blank(out, start, end);
    out[start] = b'"';
    if end - start >= 2 {
        out[end - 1] = b'"';
    }
}

fn blank(out: &mut [u8], start: usize, end: usize) {
    for c in &mut out[start..end] {
        if *c != b'\n' {
            *c = b' ';
        }
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// What a [`Token`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword (`r#` kept on raw identifiers).
    Ident(String),
    /// `::`.
    PathSep,
    /// A (stripped) string literal; read its value from the original text.
    Str,
    /// A number.
    Number,
    /// Any other single character.
    Punct(char),
}

/// One token of [`strip`]ped source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: Kind,
    /// Byte range in the source.
    pub span: std::ops::Range<usize>,
    /// 1-based line.
    pub line: usize,
}

impl Token {
    /// The identifier, if this is one.
    pub fn ident(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ident(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is the identifier or keyword `word`.
    pub fn is(&self, word: &str) -> bool {
        self.ident() == Some(word)
    }

    /// Whether this is the punctuation character `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }
}

/// The tokens of [`strip`]ped source.
pub fn tokenize(stripped: &str) -> Vec<Token> {
    let b = stripped.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b'\n' => {
                line += 1;
                i += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'"' => {
                let first_line = line;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    line += usize::from(b[i] == b'\n');
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push(Token {
                    kind: Kind::Str,
                    span: start..i,
                    line: first_line,
                });
                continue;
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                i += 2;
                Kind::PathSep
            }
            c if is_ident_start(c) => {
                while i < b.len() && is_ident_byte(b[i]) {
                    i += 1;
                }
                if &stripped[start..i] == "r" && b.get(i) == Some(&b'#') {
                    i += 1;
                    while i < b.len() && is_ident_byte(b[i]) {
                        i += 1;
                    }
                }
                Kind::Ident(stripped[start..i].to_string())
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (is_ident_byte(b[i]) || b[i] == b'.' && is_digit_at(b, i + 1))
                {
                    i += 1;
                }
                Kind::Number
            }
            c => {
                i += 1;
                Kind::Punct(char::from(c))
            }
        };
        out.push(Token {
            kind,
            span: start..i,
            line,
        });
    }
    out
}

fn is_digit_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_digit)
}

/// The value of the string literal at `span` of the original source (plain or raw; the usual
/// escapes `\\`, `\"`, `\n`, `\t` are undone).
pub fn string_value(src: &str, span: &std::ops::Range<usize>) -> String {
    let lit = &src[span.clone()];
    let (Some(open), Some(close)) = (lit.find('"'), lit.rfind('"')) else {
        return String::new();
    };
    if close <= open {
        return String::new();
    }
    let inner = &lit[open + 1..close];
    if lit.starts_with('r') || lit.starts_with("br") {
        return inner.to_string();
    }
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// `tokens` without the items gated by `#[cfg(test)]` (the attribute, any further attributes,
/// and the item up to its `;` or through its `{ ... }` body), so tests that import siblings do
/// not count. A file-level `#![cfg(test)]` drops everything.
pub fn drop_cfg_test(tokens: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.is_punct('#') {
            let inner = tokens.get(i + 1).is_some_and(|t| t.is_punct('!'));
            let open = i + 1 + usize::from(inner);
            if tokens.get(open).is_some_and(|t| t.is_punct('[')) {
                let close = matching(&tokens, open);
                if is_cfg_test(&tokens[open + 1..close]) {
                    if inner {
                        if depth == 0 {
                            return Vec::new();
                        }
                        i = close + 1;
                        continue;
                    }
                    let mut k = close + 1;
                    while tokens.get(k).is_some_and(|t| t.is_punct('#'))
                        && tokens.get(k + 1).is_some_and(|t| t.is_punct('['))
                    {
                        k = matching(&tokens, k + 1) + 1;
                    }
                    i = item_end(&tokens, k);
                    continue;
                }
            }
        }
        if t.is_punct('{') {
            depth += 1;
        } else if t.is_punct('}') {
            depth = depth.saturating_sub(1);
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

fn is_cfg_test(attr: &[Token]) -> bool {
    attr.len() == 4
        && attr[0].is("cfg")
        && attr[1].is_punct('(')
        && attr[2].is("test")
        && attr[3].is_punct(')')
}

/// The index of the bracket closing the one at `open` (`(`, `[` or `{`), counting all three
/// kinds; `tokens.len() - 1` if unbalanced.
pub fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

/// The index after the item starting at `k`: after its `;`, after its `{ ... }` body, or at an
/// unmatched closing bracket (the end of the enclosing block).
fn item_end(tokens: &[Token], mut k: usize) -> usize {
    while k < tokens.len() {
        match tokens[k].kind {
            Kind::Punct('(' | '[') => k = matching(tokens, k) + 1,
            Kind::Punct('{') => return matching(tokens, k) + 1,
            Kind::Punct(')' | ']' | '}') => return k,
            Kind::Punct(';') => return k + 1,
            _ => k += 1,
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<String> {
        tokenize(&strip(src))
            .into_iter()
            .filter_map(|t| t.ident().map(str::to_string))
            .collect()
    }

    #[test]
    fn comments_and_strings_are_blanked() {
        let src = "a // crate::x\n/* b /* nested crate::y */ still */ c \"crate::z \\\" q\" d";
        let s = strip(src);
        assert_eq!(s.len(), src.len());
        assert_eq!(s.lines().count(), src.lines().count());
        assert_eq!(idents(src), ["a", "c", "d"]);
    }

    #[test]
    fn raw_byte_and_char_literals() {
        let src = r####"let x = r#"crate::a "quoted" "#; let y = br"crate::b"; let z = b"c"; let c = '"'; let e = '\''; let l: &'static str = r"x"; r#type"####;
        assert_eq!(
            idents(src),
            [
                "let", "x", "let", "y", "let", "z", "let", "c", "let", "e", "let", "l", "static",
                "str", "r#type"
            ]
        );
    }

    #[test]
    fn lifetimes_are_not_chars() {
        assert_eq!(
            idents("fn f<'a>(x: &'a T) -> 'b' {}"),
            ["fn", "f", "a", "x", "a", "T"]
        );
    }

    #[test]
    fn multibyte_text_in_comments_and_strings() {
        let src = "// é — ü\nlet s = \"日本\"; let c = 'é'; x";
        assert_eq!(idents(src), ["let", "s", "let", "c", "x"]);
        let toks = tokenize(&strip(src));
        assert_eq!(toks.last().unwrap().line, 2);
    }

    #[test]
    fn string_values() {
        let src = r##"#[path = "a/b.rs"] #[path = r#"c.rs"#]"##;
        let toks = tokenize(&strip(src));
        let strs: Vec<String> = toks
            .iter()
            .filter(|t| t.kind == Kind::Str)
            .map(|t| string_value(src, &t.span))
            .collect();
        assert_eq!(strs, ["a/b.rs", "c.rs"]);
    }

    #[test]
    fn cfg_test_items_are_dropped() {
        let src = "use a;\n#[cfg(test)]\n#[allow(x)]\nmod tests { use super::*; fn f() { g(); } }\nuse b;\n#[cfg(test)] use c;\nfn h() { #[cfg(test)] let q = 1; k(); }";
        let toks = drop_cfg_test(tokenize(&strip(src)));
        let ids: Vec<&str> = toks.iter().filter_map(Token::ident).collect();
        assert_eq!(ids, ["use", "a", "use", "b", "fn", "h", "k"]);
        assert_eq!(toks.iter().find(|t| t.is("b")).unwrap().line, 5);
    }

    #[test]
    fn file_level_cfg_test_drops_everything() {
        let toks = drop_cfg_test(tokenize(&strip("//! Tests.\n#![cfg(test)]\nuse crate::a;")));
        assert!(toks.is_empty());
    }
}
