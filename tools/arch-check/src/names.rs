//! Rule 6: the layer crate ([`rules::LAYER_CRATE_DIR`]) has no VisualGLM names
//! ([`rules::LAYER_DENIED_NAMES`]) anywhere under its `src/`: code, comments and strings.

use std::fs;
use std::path::Path;

use crate::{rules, workspace};

/// Whether a name may start or end between bytes `a` and `b`: not both alphanumeric, or a
/// `camelCase` step (lower or digit, then upper), or a step between a letter and a digit.
/// `_`, `.`, `:` and spaces are boundaries, so snake_case segments match.
fn boundary(a: Option<u8>, b: Option<u8>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return true;
    };
    if !a.is_ascii_alphanumeric() || !b.is_ascii_alphanumeric() {
        return true;
    }
    let camel = (a.is_ascii_lowercase() || a.is_ascii_digit()) && b.is_ascii_uppercase();
    camel || a.is_ascii_digit() != b.is_ascii_digit()
}

/// The denied names in `line`, as written (original case), in order. Matching ignores case and
/// wants a boundary on both sides (see `boundary`).
pub fn find_names(line: &str, names: &[&str]) -> Vec<String> {
    let b = line.as_bytes();
    let lower = line.to_ascii_lowercase();
    let mut hits: Vec<(usize, String)> = Vec::new();
    for name in names {
        let name = name.to_ascii_lowercase();
        let mut from = 0;
        while let Some(k) = lower[from..].find(&name) {
            let start = from + k;
            let end = start + name.len();
            let before = start.checked_sub(1).map(|p| b[p]);
            if boundary(before, b.get(start).copied())
                && boundary(b.get(end - 1).copied(), b.get(end).copied())
            {
                hits.push((start, line[start..end].to_string()));
            }
            from = start + 1;
        }
    }
    hits.sort();
    hits.into_iter().map(|(_, s)| s).collect()
}

/// Rule 6's violations: `path:line: name, name`, one line per source line with hits.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join(rules::LAYER_CRATE_DIR);
    if !dir.join("Cargo.toml").is_file() {
        return Err(format!(
            "layer crate `{}` not found: update LAYER_CRATE_DIR in tools/arch-check/src/rules.rs",
            rules::LAYER_CRATE_DIR
        ));
    }
    let mut out = Vec::new();
    for path in workspace::rs_files(&dir.join("src")) {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let mut line = line.to_string();
            for allowed in rules::LAYER_ALLOWED_WORDS {
                line = line.replace(allowed, "");
            }
            let hits = find_names(&line, rules::LAYER_DENIED_NAMES);
            if !hits.is_empty() {
                out.push(format!(
                    "{}:{}: {}",
                    workspace::display(root, &path),
                    n + 1,
                    hits.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(line: &str) -> Vec<String> {
        find_names(line, rules::LAYER_DENIED_NAMES)
    }

    #[test]
    fn whole_words_and_segments() {
        assert_eq!(find("use visualglm_testing::max_abs;"), ["visualglm"]);
        assert_eq!(find("/// the ChatGLM-6B layers"), ["ChatGLM"]);
        assert_eq!(find("pub query_key_value: Linear,"), ["query_key_value"]);
        assert_eq!(find("BlipQFormerConfig"), ["QFormer"]);
        assert_eq!(
            find("\"transformer.layers.0.attention\""),
            ["transformer.layers"]
        );
        assert!(find("my_transformer_layers").is_empty());
    }

    #[test]
    fn sat_only_as_a_word_or_segment() {
        assert_eq!(find("fn sat_names() {} // SAT state dicts"), ["sat", "SAT"]);
        assert_eq!(find("TensorNaming::Sat => x"), ["Sat"]);
        assert_eq!(find("SatNames"), ["Sat"]);
        assert!(find("saturate(x); is_saturated; SATURATE; unsat; sated").is_empty());
    }

    #[test]
    fn several_on_one_line_in_order() {
        assert_eq!(
            find("dense_4h_to_h(act(dense_h_to_4h(x))) ChatGLM"),
            ["dense_4h_to_h", "dense_h_to_4h", "ChatGLM"]
        );
    }
}
