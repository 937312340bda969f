//! Reading a list of JSON records from either a JSON document or a JSONL file.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{EvalError, Result};

/// One record of an input file and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// Where the record is: `line N` for JSONL, `record N` (1-based) for a JSON array.
    pub location: String,
    /// The parsed record.
    pub value: T,
}

/// Reads a whole file as UTF-8 text (a leading byte-order mark is dropped).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Reads records from `path`: a JSON array, a JSON object holding the array under
/// `array_key`, or JSONL (one object per line; blank lines skipped).
pub(crate) fn read_records<T: DeserializeOwned>(
    path: &Path,
    array_key: Option<&str>,
) -> Result<Vec<Record<T>>> {
    let text = read_text(path)?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(EvalError::Content {
            path: path.to_path_buf(),
            message: "file is empty".into(),
        });
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => from_array(path, items),
        Ok(Value::Object(mut map)) => {
            if let Some(key) = array_key {
                if let Some(inner) = map.remove(key) {
                    return match inner {
                        Value::Array(items) => from_array(path, items),
                        _ => Err(EvalError::Content {
                            path: path.to_path_buf(),
                            message: format!("\"{key}\" is not an array"),
                        }),
                    };
                }
            }
            // A JSONL file with a single line.
            let lead = &text[..text.len() - trimmed.len()];
            let line = lead.matches('\n').count() + 1;
            let value =
                serde_json::from_value(Value::Object(map)).map_err(|e| EvalError::Line {
                    path: path.to_path_buf(),
                    line,
                    message: e.to_string(),
                })?;
            Ok(vec![Record {
                location: format!("line {line}"),
                value,
            }])
        }
        Ok(_) => Err(EvalError::Content {
            path: path.to_path_buf(),
            message: "expected a JSON array, an object or JSON lines".into(),
        }),
        Err(whole_err) => {
            let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let looks_like_jsonl = matches!(
                serde_json::from_str::<Value>(first_line),
                Ok(Value::Object(_))
            );
            if looks_like_jsonl {
                from_lines(path, &text)
            } else {
                Err(EvalError::Json {
                    path: path.to_path_buf(),
                    source: whole_err,
                })
            }
        }
    }
}

/// serde_json's message with its "at line 1 column N" replaced by "(column N)".
fn line_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(msg) if e.column() > 0 => format!("{msg} (column {})", e.column()),
        Some(msg) => msg.to_string(),
        None => text,
    }
}

fn from_array<T: DeserializeOwned>(path: &Path, items: Vec<Value>) -> Result<Vec<Record<T>>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let location = format!("record {}", i + 1);
            serde_json::from_value(item)
                .map(|value| Record {
                    location: location.clone(),
                    value,
                })
                .map_err(|e| EvalError::Content {
                    path: path.to_path_buf(),
                    message: format!("{location}: {e}"),
                })
        })
        .collect()
}

fn from_lines<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Vec<Record<T>>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).map_err(|e| EvalError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            message: line_message(&e),
        })?;
        out.push(Record {
            location: format!("line {}", i + 1),
            value,
        });
    }
    Ok(out)
}
