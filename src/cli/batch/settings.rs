//! The settings a `batch` output was made with, in a sidecar `OUT.meta.json`, so that a
//! resume (or a shard, or the merge) under another model or prompt is refused instead of
//! mixing captions of two settings in one file. The output itself stays plain JSON Lines.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use visualglm::pipeline::Question;

use super::output::write_atomic;
use crate::cli::model_args::ModelArgs;

/// What decides the captions of a run: the model, the question and the decoding settings
/// that change answers (the sampling ones only when sampling). The device and the dtypes are
/// not part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// The model directory or file (canonical path; a hub id resolves to its cache snapshot).
    pub model: String,
    /// `--tokenizer` (canonical path), when not the one beside the model.
    pub tokenizer: Option<String>,
    /// `--quantize` (with `+lm_head`, `+embeddings` when those are quantized too).
    pub quantize: Option<String>,
    /// The question asked of every image.
    pub prompt: String,
    /// The English template (`Q:…\nA:`) rather than the Chinese one.
    pub english: bool,
    /// Decoding settings.
    pub decoding: Decoding,
}

/// The decoding settings of [`Settings`]; those of sampling are `None` for greedy and beam
/// search, where they change nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Decoding {
    pub do_sample: bool,
    pub num_beams: usize,
    pub max_new_tokens: usize,
    pub max_length: usize,
    pub repetition_penalty: f32,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
}

/// The sidecar file: the settings and the version that wrote them.
#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    /// `visualglm VERSION`, for people; not compared.
    written_by: String,
    #[serde(flatten)]
    settings: Settings,
}

/// The sidecar of output file `out`: `out` with `.meta.json` appended to its name.
pub(crate) fn sidecar(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".meta.json");
    out.with_file_name(name)
}

/// The canonical form of a path given on the command line (as given when it does not exist).
fn canonical(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

impl Settings {
    /// The settings of a run of the model at `model_path` (resolved from `args`) asking
    /// `question`.
    pub(crate) fn new(model_path: &Path, args: &ModelArgs, question: &Question) -> Self {
        let quantize = args.quantize.as_ref().map(|q| {
            let mut q = q.trim().to_ascii_lowercase();
            if args.quantize_lm_head {
                q.push_str("+lm_head");
            }
            if args.quantize_embeddings {
                q.push_str("+embeddings");
            }
            q
        });
        Self::of(model_path, args.tokenizer.as_deref(), quantize, question)
    }

    /// The settings of a run of the model at `model_path` with `tokenizer` (`None`: the
    /// model's own) and `quantize` asking `question`.
    fn of(
        model_path: &Path,
        tokenizer: Option<&Path>,
        quantize: Option<String>,
        question: &Question,
    ) -> Self {
        let g = &question.generation;
        let sampling = g.do_sample;
        Self {
            model: canonical(model_path),
            tokenizer: tokenizer.map(canonical),
            quantize,
            prompt: question.text().to_string(),
            english: question.english,
            decoding: Decoding {
                do_sample: sampling,
                num_beams: g.num_beams,
                max_new_tokens: g.max_new_tokens,
                max_length: g.max_length,
                repetition_penalty: g.repetition_penalty,
                temperature: sampling.then_some(g.temperature),
                top_p: sampling.then_some(g.top_p),
                top_k: sampling.then_some(g.top_k),
                seed: sampling.then_some(g.seed),
            },
        }
    }

    /// The settings recorded beside output `out`; `None` when it has no sidecar.
    pub(crate) fn read(out: &Path) -> anyhow::Result<Option<Self>> {
        let path = sidecar(out);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let meta: MetaFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not the settings file of a batch output (remove it to start afresh)",
                path.display()
            )
        })?;
        Ok(Some(meta.settings))
    }

    /// Records these settings beside output `out`, atomically.
    pub(crate) fn write(&self, out: &Path) -> anyhow::Result<()> {
        let meta = MetaFile {
            written_by: format!("visualglm {}", env!("CARGO_PKG_VERSION")),
            settings: self.clone(),
        };
        let mut text = serde_json::to_string_pretty(&meta)?;
        text.push('\n');
        write_atomic(&sidecar(out), &text)
    }

    /// What differs from `other`, as `name OURS, this run THEIRS` items.
    fn differences(&self, other: &Self) -> Vec<String> {
        let flat = |s: &Self| {
            let mut out = Vec::new();
            flatten("", &serde_json::to_value(s).unwrap_or_default(), &mut out);
            out
        };
        let (ours, theirs) = (flat(self), flat(other));
        ours.iter()
            .zip(&theirs)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| format!("{} {}, this run {}", a.0, a.1, b.1))
            .collect()
    }

    /// Checks that the output files `outs` (those that hold records) were made with these
    /// settings. A file without a sidecar (written before sidecars existed) is taken as
    /// matching, with a warning; a mismatch is an error unless `force`, then a warning.
    pub(crate) fn check(&self, outs: &[PathBuf], force: bool) -> anyhow::Result<()> {
        for out in outs {
            let Some(recorded) = Self::read(out)? else {
                eprintln!(
                    "warning: {} has no record of the settings it was made with ({} is \
                     missing): taking them to be this run's",
                    out.display(),
                    sidecar(out).display()
                );
                continue;
            };
            let differences = recorded.differences(self);
            if differences.is_empty() {
                continue;
            }
            let message = format!(
                "{} holds captions made with other settings ({}): {}",
                out.display(),
                sidecar(out).display(),
                differences.join("; ")
            );
            if !force {
                bail!("{message}. Use another --out, or --force to add to it anyway");
            }
            eprintln!("warning: {message}; going on (--force): the file mixes both settings");
        }
        Ok(())
    }
}

/// `value` as `(dotted name, JSON text)` pairs, objects flattened, in a fixed order.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        v => out.push((prefix.to_string(), v.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use visualglm_language::GenerationConfig;

    fn settings(prompt: Option<&str>, generation: GenerationConfig) -> Settings {
        let question = Question {
            query: prompt.map(String::from),
            english: true,
            generation,
        };
        Settings::of(Path::new("no/such/model"), None, None, &question)
    }

    #[test]
    fn sidecars_round_trip_and_name_what_differs() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("c.jsonl");
        assert_eq!(sidecar(&out), dir.path().join("c.jsonl.meta.json"));
        let a = settings(None, GenerationConfig::default());
        assert_eq!(Settings::read(&out)?, None);
        a.write(&out)?;
        assert_eq!(Settings::read(&out)?, Some(a.clone()));
        a.check(std::slice::from_ref(&out), false)?;

        let b = settings(Some("What?"), GenerationConfig::default());
        let err = b.check(std::slice::from_ref(&out), false).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("prompt \"Describe the image.\", this run \"What?\"")
                && text.contains("--force"),
            "{text}"
        );
        b.check(std::slice::from_ref(&out), true)?;

        // Sampling settings do not count when decoding greedily.
        let greedy = GenerationConfig::greedy();
        let reseeded = GenerationConfig {
            seed: 7,
            top_p: 0.9,
            ..greedy.clone()
        };
        assert_eq!(settings(None, greedy.clone()), settings(None, reseeded));
        let longer = GenerationConfig {
            max_new_tokens: 3,
            ..greedy.clone()
        };
        let diff = settings(None, greedy).differences(&settings(None, longer));
        assert_eq!(diff.len(), 1);
        assert!(diff[0].starts_with("decoding.max_new_tokens"), "{diff:?}");

        std::fs::write(sidecar(&out), "{}")?;
        assert!(Settings::read(&out).is_err());
        Ok(())
    }
}
