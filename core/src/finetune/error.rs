//! Errors of the training building blocks, as this crate's error.

use crate::error::VisualGlmError;

/// A `visualglm-train` error as this crate's error.
pub(super) fn train_err(e: visualglm_train::TrainError) -> VisualGlmError {
    VisualGlmError::from(e)
}
