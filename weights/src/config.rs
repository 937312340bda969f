//! The whole-model configuration, read from an HF `config.json` or a SAT `model_config.json`.
//!
//! Both files carry the ChatGLM keys at the top level. HF nests the vision parts under
//! `eva_config` / `qformer_config`, SAT under `eva_args` / `qformer_args` (spec §2.1).
//! Unknown keys are ignored.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use visualglm_language::GlmConfig;
use visualglm_qformer::QFormerConfig;
use visualglm_vision::EvaConfig;

/// Largest configuration file accepted (the real ones are a few kB).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Which code base a configuration (and its checkpoint) follows.
///
/// The family decides two numerical conventions (golden README §9 items 1–2): the HF code
/// always uses α = √56 and rounds the rotary `inv_freq` to f16; SAT uses α = √(2·num_layers)
/// and keeps `inv_freq` in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointFamily {
    /// The Hugging Face release (`THUDM/visualglm-6b`, `modeling_chatglm.py`).
    Hf,
    /// The SwissArmyTransformer release (`visualglm-6b.zip`, `VisualGLMModel`).
    Sat,
}

impl CheckpointFamily {
    /// Short lowercase name (`"hf"` / `"sat"`), as stored in converted files.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointFamily::Hf => "hf",
            CheckpointFamily::Sat => "sat",
        }
    }

    /// Parses the output of [`CheckpointFamily::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hf" => Some(CheckpointFamily::Hf),
            "sat" => Some(CheckpointFamily::Sat),
            _ => None,
        }
    }
}

/// Errors while reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any real configuration.
    #[error("config {path} is {size} bytes, more than the {limit} accepted")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not valid JSON.
    #[error("config {path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A required key is absent.
    #[error("config {path}: missing key `{key}`")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key (dotted for nested keys).
        key: String,
    },
    /// A key has a value of the wrong type or out of range.
    #[error("config {path}: bad value for `{key}`: {message}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key (dotted for nested keys).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Neither the HF nor the SAT key set was found.
    #[error(
        "config {path} is neither an HF config.json (with `eva_config`/`qformer_config`) \
         nor a SAT model_config.json (with `eva_args`/`qformer_args`)"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
}

/// Configuration of the whole VisualGLM model.
#[derive(Debug, Clone, PartialEq)]
pub struct VisualGlmConfig {
    /// The ChatGLM language model.
    pub glm: GlmConfig,
    /// The EVA ViT image encoder.
    pub vision: EvaConfig,
    /// The Q-Former.
    pub qformer: QFormerConfig,
    /// Number of image tokens inserted into the prompt (32).
    pub image_length: usize,
}

impl VisualGlmConfig {
    /// The released VisualGLM-6B, with the HF conventions (α = √56, f16-rounded `inv_freq`).
    pub fn visualglm_6b() -> Self {
        let mut cfg = Self {
            glm: GlmConfig::visualglm_6b(),
            vision: EvaConfig::visualglm_6b(),
            qformer: QFormerConfig::visualglm_6b(),
            image_length: 32,
        };
        cfg.apply_family_conventions(CheckpointFamily::Hf);
        cfg
    }

    /// Reads a `config.json` (HF) or `model_config.json` (SAT) and applies the conventions
    /// of the family its key set belongs to. Returns the config and that family.
    pub fn from_file(path: &Path) -> Result<(Self, CheckpointFamily), ConfigError> {
        let text = read_limited(path)?;
        Self::from_json_str(&text, path)
    }

    /// Parses configuration JSON text; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<(Self, CheckpointFamily), ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_value(&value, path)
    }

    /// Builds the config from a parsed JSON object, detecting HF or SAT keys.
    pub fn from_value(value: &Value, path: &Path) -> Result<(Self, CheckpointFamily), ConfigError> {
        let obj = value.as_object().ok_or_else(|| ConfigError::BadValue {
            path: path.to_path_buf(),
            key: "<top level>".into(),
            message: "expected a JSON object".into(),
        })?;
        let family = if obj.contains_key("eva_args") || obj.contains_key("qformer_args") {
            CheckpointFamily::Sat
        } else if obj.contains_key("eva_config") || obj.contains_key("qformer_config") {
            CheckpointFamily::Hf
        } else {
            return Err(ConfigError::UnknownFormat {
                path: path.to_path_buf(),
            });
        };
        let (eva_key, qformer_key) = match family {
            CheckpointFamily::Hf => ("eva_config", "qformer_config"),
            CheckpointFamily::Sat => ("eva_args", "qformer_args"),
        };
        let glm: GlmConfig = parse_part(value, "", path)?;
        let vision: EvaConfig = parse_part(nested(obj, eva_key, path)?, eva_key, path)?;
        let qformer: QFormerConfig =
            parse_part(nested(obj, qformer_key, path)?, qformer_key, path)?;
        let image_length = match obj.get("image_length") {
            None | Some(Value::Null) => qformer.num_queries(),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| bad(path, "image_length", "expected a non-negative integer"))?,
        };
        let mut cfg = Self {
            glm,
            vision,
            qformer,
            image_length,
        };
        cfg.check(path)?;
        cfg.apply_family_conventions(family);
        Ok((cfg, family))
    }

    /// Sets `residual_alpha` and `rotary_inv_freq_f16` as the code of `family` does:
    /// HF → α = √56 whatever the depth, f16 `inv_freq`; SAT → α = √(2·num_layers), f32.
    pub fn apply_family_conventions(&mut self, family: CheckpointFamily) {
        match family {
            CheckpointFamily::Hf => {
                self.glm.residual_alpha = Some(56f64.sqrt());
                self.glm.rotary_inv_freq_f16 = true;
            }
            CheckpointFamily::Sat => {
                self.glm.residual_alpha = Some((2.0 * self.glm.num_layers as f64).sqrt());
                self.glm.rotary_inv_freq_f16 = false;
            }
        }
    }

    /// The configuration as HF-style `config.json` keys (GLM keys at the top level plus
    /// `eva_config`, `qformer_config` and `image_length`).
    pub fn to_hf_json(&self) -> Value {
        let g = &self.glm;
        let v = &self.vision;
        let q = &self.qformer;
        json!({
            "model_type": "chatglm",
            "num_layers": g.num_layers,
            "vocab_size": g.vocab_size,
            "hidden_size": g.hidden_size,
            "num_attention_heads": g.num_attention_heads,
            "max_sequence_length": g.max_sequence_length,
            "layernorm_epsilon": g.layernorm_epsilon,
            "inner_hidden_size": g.inner_hidden_size,
            "bos_token_id": g.bos_token_id,
            "eos_token_id": g.eos_token_id,
            "pad_token_id": g.pad_token_id,
            "mask_token_id": g.mask_token_id,
            "gmask_token_id": g.gmask_token_id,
            "position_encoding_2d": g.position_encoding_2d,
            "image_length": self.image_length,
            "eva_config": {
                "num_layers": v.num_layers,
                "hidden_size": v.hidden_size,
                "num_attention_heads": v.num_attention_heads,
                "inner_hidden_size": v.inner_hidden_size,
                "layernorm_epsilon": v.layernorm_epsilon,
                "image_size": v.image_size,
                "patch_size": v.patch_size,
                "in_channels": v.in_channels,
                "pre_len": v.pre_len,
                "use_final_layernorm": v.use_final_layernorm,
            },
            "qformer_config": {
                "num_layers": q.num_layers,
                "hidden_size": q.hidden_size,
                "num_attention_heads": q.num_attention_heads,
                "vocab_size": q.vocab_size,
                "inner_hidden_size": q.inner_hidden_size,
                "is_decoder": q.is_decoder,
                "cross_attn_hidden_size": q.cross_attn_hidden_size,
                "layernorm_epsilon": q.layernorm_epsilon,
            },
        })
    }

    /// Rejects zero, inconsistent or absurd sizes before anything is allocated from them.
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let g = &self.glm;
        let v = &self.vision;
        let q = &self.qformer;
        let limits: [(&str, usize, usize); 12] = [
            ("num_layers", g.num_layers, 1024),
            ("hidden_size", g.hidden_size, 1 << 16),
            ("num_attention_heads", g.num_attention_heads, 1024),
            ("vocab_size", g.vocab_size, 1 << 24),
            ("eva.num_layers", v.num_layers, 1024),
            ("eva.hidden_size", v.hidden_size, 1 << 16),
            ("eva.num_attention_heads", v.num_attention_heads, 1024),
            ("eva.patch_size", v.patch_size, 4096),
            ("qformer.num_layers", q.num_layers, 1024),
            ("qformer.hidden_size", q.hidden_size, 1 << 16),
            ("qformer.num_attention_heads", q.num_attention_heads, 1024),
            ("qformer.vocab_size", q.vocab_size, 1 << 16),
        ];
        for (key, value, max) in limits {
            if value == 0 || value > max {
                return Err(bad(path, key, &format!("{value} is not in 1..={max}")));
            }
        }
        let widths = [
            ("inner_hidden_size", g.inner_hidden_size),
            ("eva.inner_hidden_size", v.inner_hidden_size),
            ("qformer.inner_hidden_size", q.inner_hidden_size),
        ];
        for (key, value) in widths {
            if let Some(w) = value {
                if w == 0 || w > 1 << 20 {
                    return Err(bad(path, key, &format!("{w} is not in 1..={}", 1 << 20)));
                }
            }
        }
        for (key, hidden, heads) in [
            ("hidden_size", g.hidden_size, g.num_attention_heads),
            ("eva.hidden_size", v.hidden_size, v.num_attention_heads),
            ("qformer.hidden_size", q.hidden_size, q.num_attention_heads),
        ] {
            if !hidden.is_multiple_of(heads) {
                return Err(bad(
                    path,
                    key,
                    &format!("{hidden} is not divisible by {heads} heads"),
                ));
            }
        }
        if q.is_decoder.len() != q.num_layers {
            return Err(bad(
                path,
                "qformer.is_decoder",
                &format!(
                    "has {} entries for {} layers",
                    q.is_decoder.len(),
                    q.num_layers
                ),
            ));
        }
        if v.image_size.iter().any(|&s| s == 0 || s > 1 << 14) {
            return Err(bad(path, "eva.image_size", "sides must be in 1..=16384"));
        }
        if v.image_size[0] != v.image_size[1] {
            return Err(bad(
                path,
                "eva.image_size",
                "only square images are supported",
            ));
        }
        if self.image_length > 1 << 16 {
            return Err(bad(path, "image_length", "larger than 65536"));
        }
        Ok(())
    }
}

fn bad(path: &Path, key: &str, message: &str) -> ConfigError {
    ConfigError::BadValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn nested<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<&'a Value, ConfigError> {
    match obj.get(key) {
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(bad(path, key, "expected a JSON object")),
        None => Err(ConfigError::MissingKey {
            path: path.to_path_buf(),
            key: key.to_string(),
        }),
    }
}

/// Deserialises one part; a missing field becomes `MissingKey` with its dotted name.
fn parse_part<T: DeserializeOwned>(
    value: &Value,
    prefix: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    T::deserialize(value).map_err(|e| {
        let msg = e.to_string();
        let dotted = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match msg
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(field) => ConfigError::MissingKey {
                path: path.to_path_buf(),
                key: dotted(field),
            },
            None => ConfigError::BadValue {
                path: path.to_path_buf(),
                key: if prefix.is_empty() {
                    "<top level>".into()
                } else {
                    prefix.into()
                },
                message: msg,
            },
        }
    })
}

fn read_limited(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_CONFIG_BYTES,
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HF: &str = r#"{"num_layers":2,"vocab_size":1024,"hidden_size":64,"num_attention_heads":4,
        "image_length":32,"note":"extra keys are ignored",
        "eva_config":{"num_layers":2,"hidden_size":64,"num_attention_heads":4},
        "qformer_config":{"num_layers":2,"hidden_size":32,"num_attention_heads":4,"vocab_size":32,
                          "is_decoder":[true,false],"cross_attn_hidden_size":64}}"#;

    #[test]
    fn hf_keys_give_hf_conventions() {
        let (cfg, fam) = VisualGlmConfig::from_json_str(HF, Path::new("c.json")).unwrap();
        assert_eq!(fam, CheckpointFamily::Hf);
        assert_eq!(cfg.glm.residual_alpha, Some(56f64.sqrt()));
        assert!(cfg.glm.rotary_inv_freq_f16);
        assert_eq!(cfg.image_length, 32);
    }

    #[test]
    fn sat_keys_give_sat_conventions() {
        let sat = HF
            .replace("eva_config", "eva_args")
            .replace("qformer_config", "qformer_args");
        let (cfg, fam) = VisualGlmConfig::from_json_str(&sat, Path::new("m.json")).unwrap();
        assert_eq!(fam, CheckpointFamily::Sat);
        assert_eq!(cfg.glm.residual_alpha, Some(2.0));
        assert!(!cfg.glm.rotary_inv_freq_f16);
    }

    #[test]
    fn missing_nested_key_is_named() {
        let broken = HF.replace(",\"num_attention_heads\":4}", "}");
        let err = VisualGlmConfig::from_json_str(&broken, Path::new("c.json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("eva_config.num_attention_heads"), "{msg}");
        assert!(msg.contains("c.json"), "{msg}");
    }

    #[test]
    fn absurd_and_inconsistent_values_are_refused() {
        let big = HF.replace("\"vocab_size\":1024", "\"vocab_size\":99999999999");
        assert!(VisualGlmConfig::from_json_str(&big, Path::new("c.json")).is_err());
        let odd = HF.replace(
            "\"hidden_size\":64,\"num_attention_heads\":4,\n",
            "\"hidden_size\":66,\"num_attention_heads\":4,\n",
        );
        let err = VisualGlmConfig::from_json_str(&odd, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("hidden_size"), "{err}");
        let neither = r#"{"num_layers":2}"#;
        assert!(matches!(
            VisualGlmConfig::from_json_str(neither, Path::new("c.json")),
            Err(ConfigError::UnknownFormat { .. })
        ));
    }

    #[test]
    fn hf_json_round_trips() {
        let cfg = VisualGlmConfig::visualglm_6b();
        let text = cfg.to_hf_json().to_string();
        let (back, fam) = VisualGlmConfig::from_json_str(&text, Path::new("x")).unwrap();
        assert_eq!(fam, CheckpointFamily::Hf);
        assert_eq!(back, cfg);
    }
}
