//! Reading `run.toml`: relative paths in it resolve against the file's folder (not the
//! current directory), and the data files a run needs are checked before it starts.

use std::path::{Path, PathBuf};

use super::config::FinetuneConfig;
use visualglm_train::TrainError;

use crate::error::{Result, VisualGlmError};

impl FinetuneConfig {
    /// Reads the run configuration at `path` (TOML, keys as [`FinetuneConfig`]); relative
    /// paths in it resolve against its folder ([`FinetuneConfig::resolve_paths`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                missing("run configuration", path)
            } else {
                VisualGlmError::from(TrainError::io(path, "read", e))
            }
        })?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| {
            VisualGlmError::from(TrainError::Config(format!("{}: {e}", path.display())))
        })?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new("")));
        Ok(cfg)
    }

    /// Makes the relative paths of a configuration read from a file in `dir` relative to
    /// `dir`: `data`, `image_root`, `tokenizer`, `out` and `val_data` always; `model` when
    /// that path exists (otherwise it stays as written, for a name the model loader resolves
    /// itself). Empty and absolute paths stay as they are.
    pub fn resolve_paths(&mut self, dir: &Path) {
        if dir.as_os_str().is_empty() {
            return;
        }
        let join = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        join(&mut self.data);
        join(&mut self.out);
        for p in [
            &mut self.image_root,
            &mut self.tokenizer,
            &mut self.val_data,
        ]
        .into_iter()
        .flatten()
        {
            join(p);
        }
        if self.model.is_relative() && dir.join(&self.model).exists() {
            join(&mut self.model);
        }
    }

    /// Checks that the training data (and the validation data, when set) exist, naming them
    /// as such.
    pub fn check_data_files(&self) -> Result<()> {
        if self.data.as_os_str().is_empty() {
            return Err(VisualGlmError::Input(
                "give the training data (--data or `data` in the run configuration)".into(),
            ));
        }
        if !self.data.exists() {
            return Err(missing("training data", &self.data));
        }
        match &self.val_data {
            Some(val) if !val.exists() => Err(missing("validation data", val)),
            _ => Ok(()),
        }
    }
}

/// [`TrainError::MissingFile`] as this crate's error.
fn missing(what: &'static str, path: &Path) -> VisualGlmError {
    VisualGlmError::from(TrainError::MissingFile {
        what,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("exp");
        std::fs::create_dir_all(sub.join("base")).unwrap();
        let toml = "data = \"train.json\"\nval_data = \"../val.json\"\nout = \"runs/a\"\n\
                    tokenizer = \"tok/tokenizer.model\"\nimage_root = \"/abs/images\"\n\
                    model = \"base\"\n";
        let path = sub.join("run.toml");
        std::fs::write(&path, toml).unwrap();
        let cfg = FinetuneConfig::from_file(&path).unwrap();
        assert_eq!(cfg.data, sub.join("train.json"));
        assert_eq!(cfg.val_data, Some(sub.join("../val.json")));
        assert_eq!(cfg.out, sub.join("runs/a"));
        assert_eq!(cfg.tokenizer, Some(sub.join("tok/tokenizer.model")));
        assert_eq!(cfg.image_root, Some(PathBuf::from("/abs/images")));
        assert_eq!(cfg.model, sub.join("base"));
        // A model name that is no path beside the file stays as written.
        std::fs::write(&path, "model = \"hub-name\"\n").unwrap();
        let cfg = FinetuneConfig::from_file(&path).unwrap();
        assert_eq!(cfg.model, PathBuf::from("hub-name"));
        assert_eq!(cfg.data, PathBuf::new(), "an unset path stays empty");
        assert_eq!(cfg.out, sub.join("runs/finetune"), "the default out too");
    }

    #[test]
    fn unreadable_and_invalid_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        let err = FinetuneConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("run.toml"),
            "{err}"
        );
        std::fs::write(&path, "stepz = 3\n").unwrap();
        let err = FinetuneConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("invalid configuration") && err.contains("stepz"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_data_file_is_named_as_the_training_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FinetuneConfig {
            data: dir.path().join("nope.json"),
            ..FinetuneConfig::default()
        };
        let err = cfg.check_data_files().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "training data file {} does not exist",
                dir.path().join("nope.json").display()
            )
        );
        std::fs::write(&cfg.data, "[]").unwrap();
        cfg.val_data = Some(dir.path().join("val.json"));
        let err = cfg.check_data_files().unwrap_err().to_string();
        assert!(err.starts_with("validation data file"), "{err}");
        cfg.val_data = None;
        cfg.check_data_files().unwrap();
    }
}
