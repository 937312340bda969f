//! Retrieval score files: one JSON object
//! `{"scores_i2t": [[..]], "scores_t2i": [[..]], "txt2img": [..], "img2txt": [[..]]}`.

use std::path::Path;

use super::records::read_text;
use crate::error::{EvalError, Result};
use crate::retrieval::RetrievalScores;

/// Reads a retrieval score file (extra keys are ignored).
pub fn read_retrieval_scores(path: &Path) -> Result<RetrievalScores> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| EvalError::Json {
        path: path.to_path_buf(),
        source,
    })
}
