//! Loading a [`ChatGlmTokenizer`] from a `.model`, a `tokenizer.json` or a model directory,
//! and saving it as `tokenizer.json`.

use std::path::{Path, PathBuf};

use super::tokenizer::ChatGlmTokenizer;
use crate::error::{Result, TokenizerError};
use crate::files::write_atomic;
use crate::formats::spm::SpModel;
use crate::model::pipeline::HfPipeline;

impl ChatGlmTokenizer {
    /// Loads a `.model` (SentencePiece protobuf) or `.json` (`tokenizer.json`) file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let pipeline = match ext.as_deref() {
            Some("model") => HfPipeline::from_sp(&SpModel::from_file(path)?, path)?,
            Some("json") => {
                let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                HfPipeline::from_json(&text, path)?
            }
            _ => {
                return Err(TokenizerError::UnknownFileKind {
                    path: path.to_path_buf(),
                })
            }
        };
        Self::from_pipeline(pipeline, path)
    }

    /// Loads the tokenizer of a model directory: `tokenizer.json` if present, else
    /// `ice_text.model`, else the first `*.model` file by name.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        for name in ["tokenizer.json", "ice_text.model"] {
            let p = dir.join(name);
            if p.is_file() {
                return Self::from_file(p);
            }
        }
        let entries = std::fs::read_dir(dir).map_err(|source| TokenizerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut models: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "model"))
            .collect();
        models.sort();
        match models.into_iter().next() {
            Some(p) => Self::from_file(p),
            None => Err(TokenizerError::NoTokenizerInDir {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// Loads from a `.model`/`.json` file or a model directory, whichever `path` is.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            Self::from_dir(path)
        } else {
            Self::from_file(path)
        }
    }

    /// The `tokenizer.json` text (with the extra `sentencepiece` section).
    pub fn to_tokenizer_json_string(&self) -> Result<String> {
        self.pipeline.to_json(&self.source)
    }

    /// Writes `tokenizer.json` atomically (temporary file in the same directory, then rename).
    pub fn to_tokenizer_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = self.to_tokenizer_json_string()?;
        write_atomic(path, json.as_bytes())
    }
}
