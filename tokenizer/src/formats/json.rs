//! `tokenizer.json` read and write: the `tokenizers` serialisation plus the SentencePiece
//! facts of [`super::section`], so that a converted file loads back into the same pipeline.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::Tokenizer;

use super::section::ENTRY_PREFIX;
use crate::error::{Result, TokenizerError};
use crate::model::pipeline::{fast_encoder, HfPipeline, SpSection};
use crate::vocab::{PieceKind, PieceTable};

impl HfPipeline {
    /// The `tokenizer.json` text (pretty-printed).
    pub fn to_json(&self, path: &Path) -> Result<String> {
        self.tokenizer
            .to_string(true)
            .map_err(|e| TokenizerError::BadJson {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Reads a `tokenizer.json` written by [`HfPipeline::to_json`].
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| TokenizerError::BadJson {
            path: path.to_path_buf(),
            reason,
        };
        // Syntax first: `tokenizers` 0.23 panics (`expect("Helper")`) on a cut-off or
        // malformed `decoder` value instead of returning its error (found by fuzzing).
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let tokenizer: Tokenizer = text.parse().map_err(|e| bad(format!("{e}")))?;
        let entries = &value["post_processor"]["special_tokens"];
        let entry = |name: &str| entries.get(format!("{ENTRY_PREFIX}{name}"));
        let entry_ids = |name: &str| -> std::result::Result<Vec<u32>, String> {
            let Some(e) = entry(name) else {
                return Ok(Vec::new());
            };
            e["ids"]
                .as_array()
                .ok_or_else(|| format!("entry {ENTRY_PREFIX}{name} has no ids"))?
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| format!("entry {ENTRY_PREFIX}{name}: bad id {v}"))
                })
                .collect()
        };
        if entry("unknown").is_none() {
            return Err(bad(format!(
                "no {ENTRY_PREFIX}* entries in the post-processor: not written by \
                 `visualglm tokenizer convert`; convert the SentencePiece .model with it"
            )));
        }
        let vocab = tokenizer.get_vocab(false);
        let size = vocab.len();
        let mut pieces = vec![String::new(); size];
        for (piece, id) in vocab {
            match pieces.get_mut(id as usize) {
                Some(slot) => *slot = piece,
                None => return Err(bad(format!("id {id} of {piece:?} is not below {size}"))),
            }
        }
        if let Some(id) = pieces.iter().position(String::is_empty) {
            return Err(bad(format!("no piece has id {id}")));
        }
        let mut kinds = vec![PieceKind::Normal; size];
        let mut piece_types = HashMap::new();
        for kind in [
            PieceKind::Unknown,
            PieceKind::Control,
            PieceKind::UserDefined,
            PieceKind::Unused,
            PieceKind::Byte,
        ] {
            let ids = entry_ids(kind.name()).map_err(&bad)?;
            for &id in &ids {
                match kinds.get_mut(id as usize) {
                    Some(slot) => *slot = kind,
                    None => return Err(bad(format!("{} id {id} >= {size}", kind.name()))),
                }
            }
            piece_types.insert(kind.name().to_string(), ids);
        }
        let unk_surface = entry("unk_surface")
            .and_then(|e| e["tokens"][0].as_str())
            .unwrap_or(" \u{2047} ")
            .to_string();
        let add_dummy_prefix = value["pre_tokenizer"]["prepend_scheme"].as_str() != Some("never");
        let model_type = value["model"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let section = SpSection {
            model_type,
            add_dummy_prefix,
            remove_extra_whitespaces: entry("remove_extra_whitespaces").is_some(),
            unk_surface: unk_surface.clone(),
            piece_types,
        };
        let table = PieceTable::new(pieces, kinds, unk_surface).map_err(bad)?;
        let plain = value["normalizer"]["normalizers"]
            .as_array()
            .is_some_and(|n| n.len() == 1 && n[0]["type"] == "Replace");
        let fast = fast_encoder(&tokenizer, &table, plain).map_err(bad)?;
        Ok(Self {
            tokenizer,
            table,
            section,
            fast,
        })
    }
}
