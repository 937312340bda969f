//! Stop sequences (OpenAI's `stop`): generation ends when the answer's text contains one of
//! them, and the answer ends before it.
//!
//! The text searched is the answer as the client sees it: the generated tokens decoded, with
//! leading whitespace trimmed. The model worker checks it after every token and ends the
//! request at the first match; the handlers cut the answer there ([`visible_text`]); a
//! stream holds back the end of the text while it could still be the start of a stop
//! sequence ([`StopSequences::held_back`]), as vLLM and llama.cpp do.

use serde_json::Value;

use super::error::ApiError;
use visualglm::pipeline::Captioner;

/// Most stop sequences in one request (OpenAI's limit).
pub const MAX_STOP_SEQUENCES: usize = 4;

/// Longest stop sequence, in bytes (it bounds the work done per generated token).
pub const MAX_STOP_BYTES: usize = 256;

/// A request's stop sequences: up to [`MAX_STOP_SEQUENCES`] non-empty strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopSequences(Vec<String>);

impl StopSequences {
    /// Reads a request's `stop`: absent or null (none), a string, or an array of strings.
    /// More than [`MAX_STOP_SEQUENCES`], an empty or over-long string, or another type is a
    /// 400 naming `stop`.
    pub fn parse(value: Option<&Value>) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::bad_request(m).with_param("stop");
        let list: Vec<&Value> = match value {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(v @ Value::String(_)) => vec![v],
            Some(Value::Array(items)) => items.iter().collect(),
            Some(other) => {
                return Err(bad(format!(
                    "`stop` must be a string or an array of strings, not {}",
                    json_type(other)
                )))
            }
        };
        if list.len() > MAX_STOP_SEQUENCES {
            return Err(bad(format!(
                "`stop` has {} sequences; at most {MAX_STOP_SEQUENCES} are allowed",
                list.len()
            )));
        }
        let mut stops = Vec::with_capacity(list.len());
        for (i, v) in list.into_iter().enumerate() {
            let Value::String(s) = v else {
                return Err(bad(format!(
                    "`stop[{i}]` must be a string, not {}",
                    json_type(v)
                )));
            };
            if s.is_empty() {
                return Err(bad("`stop` sequences must not be empty".into()));
            }
            if s.len() > MAX_STOP_BYTES {
                return Err(bad(format!(
                    "`stop` sequences must be at most {MAX_STOP_BYTES} bytes"
                )));
            }
            stops.push(s.clone());
        }
        Ok(Self(stops))
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sequences.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Where the earliest stop sequence in `text` starts, if any does.
    pub fn find(&self, text: &str) -> Option<usize> {
        self.0.iter().filter_map(|s| text.find(s.as_str())).min()
    }

    /// How many bytes at the end of `text` could be the start of a stop sequence: the
    /// longest suffix that is a proper prefix of one (0 when there is none). A stream holds
    /// them back until the next token tells whether the sequence completes.
    pub fn held_back(&self, text: &str) -> usize {
        let mut longest = 0;
        for s in &self.0 {
            let most = (s.len() - 1).min(text.len());
            for k in (longest + 1..=most).rev() {
                let start = text.len() - k;
                if text.is_char_boundary(start)
                    && s.as_bytes().starts_with(&text.as_bytes()[start..])
                {
                    longest = k;
                    break;
                }
            }
        }
        longest
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An answer's text as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visible {
    /// The decoded tokens, leading whitespace trimmed, cut before the first stop sequence.
    pub text: String,
    /// Whether a stop sequence was found (and cut off).
    pub stopped: bool,
}

/// Decodes `tokens` as the client sees them: leading whitespace trimmed, and cut before the
/// first of `stops` (see [`Visible`]).
pub fn visible_text(
    captioner: &Captioner,
    tokens: &[u32],
    stops: &StopSequences,
) -> Result<Visible, ApiError> {
    let full = captioner
        .tokenizer()
        .decode(tokens, &Default::default())
        .map_err(|e| ApiError::internal(format!("cannot decode the answer: {e}")))?;
    let text = full.trim_start();
    Ok(match stops.find(text) {
        Some(at) => Visible {
            text: text[..at].to_string(),
            stopped: true,
        },
        None => Visible {
            text: text.to_string(),
            stopped: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stops(v: Value) -> StopSequences {
        StopSequences::parse(Some(&v)).unwrap()
    }

    #[test]
    fn parses_strings_and_arrays_and_refuses_the_rest() {
        assert!(StopSequences::parse(None).unwrap().is_empty());
        assert!(stops(Value::Null).is_empty());
        assert_eq!(stops(json!("\n")).as_slice(), ["\n"]);
        assert_eq!(stops(json!(["a", "bc"])).as_slice(), ["a", "bc"]);
        assert!(stops(json!([])).is_empty());
        let long = "x".repeat(MAX_STOP_BYTES + 1);
        for bad in [
            json!(["a", "b", "c", "d", "e"]),
            json!(""),
            json!(["a", ""]),
            json!(3),
            json!({"a": 1}),
            json!(["a", 1]),
            json!(true),
            json!(long),
        ] {
            let e = StopSequences::parse(Some(&bad)).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
            assert_eq!(e.param.as_deref(), Some("stop"), "{bad}");
        }
    }

    #[test]
    fn finds_the_earliest_stop() {
        let s = stops(json!(["world", "lo"]));
        assert_eq!(s.find("hello world"), Some(3));
        assert_eq!(s.find("say world"), Some(4));
        assert_eq!(s.find("nothing"), None);
        assert_eq!(StopSequences::default().find("x"), None);
    }

    #[test]
    fn holds_back_what_could_start_a_stop() {
        let s = stops(json!(["END!", "猫咪"]));
        assert_eq!(s.held_back("the E"), 1);
        assert_eq!(s.held_back("the EN"), 2);
        assert_eq!(s.held_back("the END"), 3);
        // A complete stop is found by `find`, not held back.
        assert_eq!(s.held_back("the END!"), 0);
        assert_eq!(s.held_back("the cat"), 0);
        assert_eq!(s.held_back("一只猫"), "猫".len());
        assert_eq!(s.held_back(""), 0);
        assert_eq!(StopSequences::default().held_back("abc"), 0);
        // Multi-byte text never splits a character.
        let s = stops(json!(["\u{00e9}x"]));
        assert_eq!(s.held_back("caf\u{00e9}"), 2);
        assert_eq!(s.held_back("日本"), 0);
    }
}
