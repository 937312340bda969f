//! The names of a VisualGLM GGUF file: metadata keys, the tensors that may be quantized, the
//! file extension, and the layout constants both the writer and the reader use.

use std::path::Path;

/// `general.architecture` of our files.
pub const ARCHITECTURE: &str = "visualglm";
/// Metadata key of the requested quantization type.
pub const KEY_QUANTIZATION: &str = "visualglm.quantization";
/// Metadata key saying whether `lm_head` was quantized.
pub const KEY_LM_HEAD: &str = "visualglm.lm_head_quantized";
/// Metadata key saying whether the word embeddings were quantized.
pub const KEY_EMBEDDINGS: &str = "visualglm.embeddings_quantized";
/// Metadata key saying that `lm_head.weight` is not stored because it is the (quantized)
/// word-embedding table.
pub const KEY_LM_HEAD_TIED: &str = "visualglm.lm_head_tied";
/// Canonical name of the output projection.
pub(super) const LM_HEAD: &str = "lm_head.weight";
/// Canonical name of the word-embedding table.
pub(super) const WORD_EMBEDDINGS: &str = "transformer.word_embeddings.weight";
/// Alignment of the tensor data (and of the data section) in our files.
pub(super) const ALIGNMENT: u64 = 32;
/// The first four bytes of every GGUF file.
pub(super) const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Whether `path` names a GGUF file (by its `.gguf` extension).
pub fn is_gguf_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Whether the canonical tensor `name` is a GLM layer linear weight (quantized in our files).
pub fn is_glm_linear_weight(name: &str) -> bool {
    name.starts_with("transformer.layers.")
        && [
            ".attention.query_key_value.weight",
            ".attention.dense.weight",
            ".mlp.dense_h_to_4h.weight",
            ".mlp.dense_4h_to_h.weight",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}
