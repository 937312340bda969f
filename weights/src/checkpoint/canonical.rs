//! The canonical tensor names: HF names, SAT prefixes mapped, rotary buffers dropped.

use std::path::Path;

use super::error::CheckpointError;
use crate::config::CheckpointFamily;

/// SAT prefix of the image encoder (BLIP-2: ViT, Q-Former, projection).
pub const SAT_IMAGE_PREFIX: &str = "mixins.eva.model.";
/// HF prefix of the image encoder.
pub const HF_IMAGE_PREFIX: &str = "image_encoder.";
/// SAT name of the output projection.
pub const SAT_LM_HEAD: &str = "mixins.chatglm-final.lm_head.weight";
/// HF (canonical) name of the output projection.
pub const LM_HEAD: &str = "lm_head.weight";
/// Name of the GLM input embedding, which `lm_head` is tied to.
pub const WORD_EMBEDDINGS: &str = "transformer.word_embeddings.weight";

/// Maps a stored tensor name to its canonical name; `None` for the rotary `inv_freq`
/// buffers, which both loaders ignore.
pub fn canonical_name(stored: &str) -> Option<String> {
    if stored.ends_with("rotary_emb.inv_freq") {
        return None;
    }
    if let Some(rest) = stored.strip_prefix(SAT_IMAGE_PREFIX) {
        return Some(format!("{HF_IMAGE_PREFIX}{rest}"));
    }
    if stored == SAT_LM_HEAD {
        return Some(LM_HEAD.to_string());
    }
    Some(stored.to_string())
}

/// Maps a canonical name back to the SAT name.
pub fn sat_name(canonical: &str) -> String {
    if let Some(rest) = canonical.strip_prefix(HF_IMAGE_PREFIX) {
        return format!("{SAT_IMAGE_PREFIX}{rest}");
    }
    if canonical == LM_HEAD {
        return SAT_LM_HEAD.to_string();
    }
    canonical.to_string()
}

/// Whether a canonical name is a ChatGLM fused QKV weight or bias (the only tensors whose
/// row layout differs between releases). LoRA `*.original.*` base weights count too.
pub fn is_glm_qkv(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("transformer.layers.") else {
        return false;
    };
    let Some((layer, tail)) = rest.split_once('.') else {
        return false;
    };
    !layer.is_empty()
        && layer.bytes().all(|b| b.is_ascii_digit())
        && matches!(
            tail,
            "attention.query_key_value.weight"
                | "attention.query_key_value.bias"
                | "attention.query_key_value.original.weight"
                | "attention.query_key_value.original.bias"
        )
}

/// The family the stored names belong to: SAT prefixes ⇒ SAT, `image_encoder.` ⇒ HF,
/// neither ⇒ `None`; both ⇒ an error.
pub fn family_from_names<'a>(
    names: impl Iterator<Item = &'a str>,
    path: &Path,
) -> Result<Option<CheckpointFamily>, CheckpointError> {
    let mut hf = None;
    let mut sat = None;
    for n in names {
        if n.starts_with("mixins.eva.") || n.starts_with("mixins.chatglm-") {
            sat.get_or_insert_with(|| n.to_string());
        } else if n.starts_with(HF_IMAGE_PREFIX) {
            hf.get_or_insert_with(|| n.to_string());
        }
    }
    match (hf, sat) {
        (Some(hf_name), Some(sat_name)) => Err(CheckpointError::MixedNaming {
            path: path.to_path_buf(),
            hf_name,
            sat_name,
        }),
        (Some(_), None) => Ok(Some(CheckpointFamily::Hf)),
        (None, Some(_)) => Ok(Some(CheckpointFamily::Sat)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        let sat = "mixins.eva.model.vit.transformer.layers.0.attention.dense.weight";
        let hf = canonical_name(sat).unwrap();
        assert_eq!(
            hf,
            "image_encoder.vit.transformer.layers.0.attention.dense.weight"
        );
        assert_eq!(sat_name(&hf), sat);
        assert_eq!(canonical_name(SAT_LM_HEAD).unwrap(), LM_HEAD);
        assert_eq!(
            canonical_name("mixins.chatglm-attn.rotary_emb.inv_freq"),
            None
        );
        assert_eq!(
            canonical_name("transformer.layers.1.attention.rotary_emb.inv_freq"),
            None
        );
    }

    #[test]
    fn only_glm_qkv_is_permuted() {
        assert!(is_glm_qkv(
            "transformer.layers.12.attention.query_key_value.weight"
        ));
        assert!(is_glm_qkv(
            "transformer.layers.0.attention.query_key_value.bias"
        ));
        assert!(!is_glm_qkv(
            "image_encoder.vit.transformer.layers.0.attention.query_key_value.weight"
        ));
        assert!(!is_glm_qkv(
            "transformer.layers.x.attention.query_key_value.weight"
        ));
        assert!(!is_glm_qkv("transformer.layers.0.attention.dense.weight"));
    }

    #[test]
    fn mixed_names_are_refused() {
        let names = [
            "image_encoder.glm_proj.weight",
            "mixins.eva.model.glm_proj.bias",
        ];
        assert!(family_from_names(names.into_iter(), Path::new("x")).is_err());
        let hf = [
            "image_encoder.glm_proj.weight",
            "transformer.final_layernorm.weight",
        ];
        assert_eq!(
            family_from_names(hf.into_iter(), Path::new("x")).unwrap(),
            Some(CheckpointFamily::Hf)
        );
    }
}
