//! A model's own decoding defaults: `generation_config.json` beside its weights.
//!
//! The file follows the transformers convention: decoding settings under their transformers
//! names (`do_sample`, `max_new_tokens`, `max_length`, `temperature`, `top_p`, `top_k`,
//! `repetition_penalty`, `num_beams`), and this project's own keys under `"visualglm"`:
//! `"language"` (`"en"` or `"zh"`, the prompt template) and `"question"` (asked when the user
//! asks none). Other keys (`bos_token_id`, …) are ignored. A key the file lacks, and a model
//! without the file (the released VisualGLM-6B), keep the release demo's defaults (spec §6.6):
//! Chinese, sampling at temperature 0.8, top-p 0.4, top-k 100, repetition penalty 1.2.
//!
//! ```
//! use visualglm::defaults::ModelDefaults;
//! let d = ModelDefaults::from_json(
//!     r#"{"do_sample": false, "repetition_penalty": 1.0, "visualglm": {"language": "en"}}"#,
//! )?;
//! assert!(d.english && !d.generation.do_sample);
//! assert_eq!(d.question(None).text(), "Describe the image.");
//! # Ok::<(), visualglm::defaults::DefaultsError>(())
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use visualglm_language::GenerationConfig;

/// The file name, as transformers spells it.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// Largest `generation_config.json` read (real ones are a few hundred bytes).
const MAX_BYTES: u64 = 1 << 20;

/// A `generation_config.json` that could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum DefaultsError {
    /// The file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON object described in [`crate::defaults`].
    #[error("{}{}", path_prefix(.path), message)]
    Invalid {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

/// What a model answers with when the user chooses nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDefaults {
    /// Decoding settings.
    pub generation: GenerationConfig,
    /// Use the English template (`Q:…\nA:`) and suppress Chinese tokens.
    pub english: bool,
    /// The question asked when the user asks none (`None`: the release's, per language).
    pub question: Option<String>,
}

impl Default for ModelDefaults {
    /// The release demo's defaults (`cli_demo.py`): Chinese, sampling.
    fn default() -> Self {
        Self {
            generation: GenerationConfig::default(),
            english: false,
            question: None,
        }
    }
}

/// The file's keys; every one optional.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FileKeys {
    #[serde(skip_serializing_if = "Option::is_none")]
    do_sample: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_new_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_length: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repetition_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_beams: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    visualglm: Option<OwnKeys>,
}

/// The `"visualglm"` namespace.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnKeys {
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    question: Option<String>,
}

impl ModelDefaults {
    /// The defaults of the model in `dir` (a model directory, or a weights file whose folder
    /// is used): its `generation_config.json`, or the release's when there is none.
    pub fn for_model(path: &Path) -> Result<Self, DefaultsError> {
        let file = visualglm_weights::model_dir::folder_of(path).join(GENERATION_CONFIG_FILE);
        match std::fs::metadata(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(DefaultsError::Io { path: file, source }),
            Ok(m) if m.len() > MAX_BYTES => Err(DefaultsError::Invalid {
                path: Some(file),
                message: format!("{} bytes, more than the {MAX_BYTES} accepted", m.len()),
            }),
            Ok(_) => Self::read(&file),
        }
    }

    /// Reads one `generation_config.json`.
    pub fn read(file: &Path) -> Result<Self, DefaultsError> {
        let text = std::fs::read_to_string(file).map_err(|source| DefaultsError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| match e {
            DefaultsError::Invalid { message, .. } => DefaultsError::Invalid {
                path: Some(file.to_path_buf()),
                message,
            },
            other => other,
        })
    }

    /// Parses the file's text; absent keys keep the release's defaults.
    pub fn from_json(text: &str) -> Result<Self, DefaultsError> {
        let invalid = |message: String| DefaultsError::Invalid {
            path: None,
            message,
        };
        let keys: FileKeys = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut d = Self::default();
        let g = &mut d.generation;
        if let Some(v) = keys.do_sample {
            g.do_sample = v;
        }
        if let Some(v) = keys.max_new_tokens {
            g.max_new_tokens = v;
        }
        if let Some(v) = keys.max_length {
            g.max_length = v;
        }
        if let Some(v) = keys.temperature {
            g.temperature = v;
        }
        if let Some(v) = keys.top_p {
            g.top_p = v;
        }
        if let Some(v) = keys.top_k {
            g.top_k = v;
        }
        if let Some(v) = keys.repetition_penalty {
            g.repetition_penalty = v;
        }
        if let Some(v) = keys.num_beams {
            g.num_beams = v;
        }
        check_generation(g).map_err(invalid)?;
        if let Some(own) = keys.visualglm {
            if let Some(lang) = own.language {
                d.english = match lang.trim().to_ascii_lowercase().as_str() {
                    "en" | "english" => true,
                    "zh" | "chinese" => false,
                    other => {
                        return Err(invalid(format!(
                            "visualglm.language is `{other}`; expected \"en\" or \"zh\""
                        )))
                    }
                };
            }
            d.question = own.question.filter(|q| !q.trim().is_empty());
        }
        Ok(d)
    }

    /// The file's text for these defaults (every key written).
    pub fn to_json(&self) -> String {
        let g = &self.generation;
        let keys = FileKeys {
            do_sample: Some(g.do_sample),
            max_new_tokens: Some(g.max_new_tokens),
            max_length: Some(g.max_length),
            temperature: Some(g.temperature),
            top_p: Some(g.top_p),
            top_k: Some(g.top_k),
            repetition_penalty: Some(g.repetition_penalty),
            num_beams: Some(g.num_beams),
            visualglm: Some(OwnKeys {
                language: Some(if self.english { "en" } else { "zh" }.into()),
                question: self.question.clone(),
            }),
        };
        // Serializing plain options and strings cannot fail.
        serde_json::to_string_pretty(&keys).unwrap_or_default() + "\n"
    }

    /// Writes `dir/generation_config.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), DefaultsError> {
        let path = dir.join(GENERATION_CONFIG_FILE);
        visualglm_files::write_atomic_bytes(&path, self.to_json().as_bytes()).map_err(|e| {
            DefaultsError::Io {
                path,
                source: e.into(),
            }
        })
    }
}

/// Checks decoding settings that would make generation fail or loop.
pub fn check_generation(g: &GenerationConfig) -> Result<(), String> {
    if g.do_sample && !(g.temperature > 0.0 && g.temperature.is_finite()) {
        return Err(format!("temperature {} must be above 0", g.temperature));
    }
    if !(g.top_p > 0.0 && g.top_p <= 1.0) {
        return Err(format!("top_p {} must be in (0, 1]", g.top_p));
    }
    if !(g.repetition_penalty > 0.0 && g.repetition_penalty.is_finite()) {
        return Err(format!(
            "repetition_penalty {} must be above 0",
            g.repetition_penalty
        ));
    }
    if g.num_beams == 0 {
        return Err("num_beams must be at least 1".into());
    }
    if g.max_new_tokens == 0 || g.max_length == 0 {
        return Err("max_new_tokens and max_length must be at least 1".into());
    }
    Ok(())
}
