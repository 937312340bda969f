//! `input_ids` / `labels` exactly as the release's fine-tune script builds them, from
//! token ids (no tokenizer needed here).
//!
//! Rules (spec §7):
//! * `a_ids` (the prompt part, image placeholders included) is cut to
//!   `max_source_length − 1` tokens; `b_ids` (the answer) to `max_target_length − 2`.
//! * `input_ids = a + [gMASK, <sop>] + b + [<eop>]`, right-padded with `pad` to
//!   `max_source_length + max_target_length`.
//! * `labels = [−100] × C + input_ids[C..]` where `C` is the index of `<sop>`, then every
//!   label equal to `pad` becomes −100 (`ignore_pad_token_for_loss`). **Release quirk:** this
//!   also masks genuine answer tokens whose id equals the pad id; see
//!   [`LabelConfig::mask_pad_id_in_answer`].
//! * A batch is then cut back to its longest sequence ([`PadTo::Longest`], [`pad_batch`]) or
//!   kept at the full length ([`PadTo::MaxLength`], the release). The pads are trailing with
//!   label −100 and GLM's prefix-LM mask lets no real token see a later one, so this changes no
//!   real token's loss.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The label value the loss ignores.
pub const IGNORE_INDEX: i64 = -100;

/// The special token ids involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    /// `[gMASK]` (ChatGLM-6B: 130001).
    pub gmask: u32,
    /// `<sop>`, the BOS (ChatGLM-6B: 130004).
    pub sop: u32,
    /// `<eop>`, the EOS (ChatGLM-6B: 130005).
    pub eop: u32,
    /// `<pad>` (ChatGLM-6B: 3).
    pub pad: u32,
}

impl SpecialIds {
    /// The ids of the real ChatGLM-6B tokenizer (`ice_text.model`).
    pub const CHATGLM_6B: Self = Self {
        gmask: 130001,
        sop: 130004,
        eop: 130005,
        pad: 3,
    };
}

/// Lengths and the pad-masking policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelConfig {
    /// Budget of the source part (release: 64). `a_ids` keeps at most `max_source_length − 1`.
    pub max_source_length: usize,
    /// Budget of the target part (release: 256). `b_ids` keeps at most `max_target_length − 2`.
    pub max_target_length: usize,
    /// Mask every label equal to the pad id (release behaviour, default `true`), including
    /// genuine answer tokens that happen to have the pad id. `false` masks only the
    /// padding positions themselves.
    pub mask_pad_id_in_answer: bool,
}

impl Default for LabelConfig {
    fn default() -> Self {
        Self {
            max_source_length: 64,
            max_target_length: 256,
            mask_pad_id_in_answer: true,
        }
    }
}

impl LabelConfig {
    /// The padded sequence length, `max_source_length + max_target_length`.
    pub fn max_seq_len(&self) -> usize {
        self.max_source_length + self.max_target_length
    }
}

/// One built training sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledIds {
    /// `a + [gMASK, <sop>] + b + [<eop>] + pads`, of length [`LabelConfig::max_seq_len`] (less
    /// after [`pad_batch`]).
    pub input_ids: Vec<u32>,
    /// Per position: the id to predict there (before the shift) or [`IGNORE_INDEX`].
    pub labels: Vec<i64>,
    /// Index of `<sop>` (= the context length `C`; positions `< C` are bidirectional).
    pub context_len: usize,
    /// Length before padding.
    pub unpadded_len: usize,
    /// Tokens cut from `a_ids` (a non-zero value may have cut image placeholders).
    pub a_truncated: usize,
    /// Tokens cut from `b_ids`.
    pub b_truncated: usize,
}

/// How far the sequences of a batch are padded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadTo {
    /// To the longest sequence of the batch (`"longest"`).
    #[default]
    Longest,
    /// To [`LabelConfig::max_seq_len`] whatever the batch, as the release (`"max_length"`).
    MaxLength,
}

/// Cuts the trailing padding of `batch` (built by [`build_labeled_ids`]) back to the longest
/// unpadded sequence with [`PadTo::Longest`]; leaves it alone with [`PadTo::MaxLength`].
pub fn pad_batch(batch: &mut [LabeledIds], pad_to: PadTo) {
    if pad_to == PadTo::MaxLength {
        return;
    }
    let longest = batch.iter().map(|x| x.unpadded_len).max().unwrap_or(0);
    for x in batch {
        x.input_ids.truncate(longest);
        x.labels.truncate(longest);
    }
}

/// Builds one training sequence from the prompt ids `a_ids` and the answer ids `b_ids`.
pub fn build_labeled_ids(
    a_ids: &[u32],
    b_ids: &[u32],
    special: &SpecialIds,
    cfg: &LabelConfig,
) -> Result<LabeledIds> {
    if cfg.max_source_length < 1 || cfg.max_target_length < 2 {
        return Err(TrainError::Config(format!(
            "max_source_length ({}) must be >= 1 and max_target_length ({}) >= 2",
            cfg.max_source_length, cfg.max_target_length
        )));
    }
    let a_keep = a_ids.len().min(cfg.max_source_length - 1);
    let b_keep = b_ids.len().min(cfg.max_target_length - 2);
    let (a, b) = (&a_ids[..a_keep], &b_ids[..b_keep]);
    let total = cfg.max_seq_len();
    let mut input_ids = Vec::with_capacity(total);
    input_ids.extend_from_slice(a);
    input_ids.extend_from_slice(&[special.gmask, special.sop]);
    input_ids.extend_from_slice(b);
    input_ids.push(special.eop);
    let unpadded_len = input_ids.len();
    let context_len = a.len() + 1;
    input_ids.resize(total, special.pad);
    let labels = input_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let is_padding = i >= unpadded_len;
            let pad_masked = if cfg.mask_pad_id_in_answer {
                id == special.pad
            } else {
                is_padding
            };
            if i < context_len || pad_masked {
                IGNORE_INDEX
            } else {
                i64::from(id)
            }
        })
        .collect();
    Ok(LabeledIds {
        input_ids,
        labels,
        context_len,
        unpadded_len,
        a_truncated: a_ids.len() - a_keep,
        b_truncated: b_ids.len() - b_keep,
    })
}

/// The release's prompt part: `encode("<img>") + [placeholder] × image_len +
/// encode("</img>问：" + prompt + "\n答：")` (spec §6.2, §7), from the two encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIds {
    /// The assembled `a_ids`.
    pub ids: Vec<u32>,
    /// Index of the first image placeholder (`pre_image`).
    pub pre_image: usize,
    /// Number of placeholders (32 for VisualGLM).
    pub image_len: usize,
}

impl SourceIds {
    /// Assembles `prefix + [placeholder] × image_len + suffix`. The placeholder is 3 (SAT
    /// `<pad>`) or 0 (HF `<unk>`); the model overwrites those rows with image embeddings.
    pub fn assemble(prefix: &[u32], image_len: usize, placeholder: u32, suffix: &[u32]) -> Self {
        let mut ids = Vec::with_capacity(prefix.len() + image_len + suffix.len());
        ids.extend_from_slice(prefix);
        ids.resize(prefix.len() + image_len, placeholder);
        ids.extend_from_slice(suffix);
        Self {
            ids,
            pre_image: prefix.len(),
            image_len,
        }
    }

    /// Whether all image placeholders survive the release's cut to `max_source_length − 1`
    /// (if not, the release silently trains on a partial image; callers may skip such
    /// examples).
    pub fn image_fits(&self, cfg: &LabelConfig) -> bool {
        self.pre_image + self.image_len < cfg.max_source_length
    }
}

/// Stacks built sequences into `input_ids` `[B, T]` (u32) and `labels` `[B, T]` (i64).
pub fn collate(batch: &[LabeledIds], device: &Device) -> Result<(Tensor, Tensor)> {
    let t = batch.first().map_or(0, |x| x.input_ids.len());
    if batch.is_empty()
        || batch
            .iter()
            .any(|x| x.input_ids.len() != t || x.labels.len() != t)
    {
        return Err(TrainError::Config(
            "collate needs a non-empty batch of equally long sequences".into(),
        ));
    }
    let ids: Vec<u32> = batch
        .iter()
        .flat_map(|x| x.input_ids.iter().copied())
        .collect();
    let labels: Vec<i64> = batch
        .iter()
        .flat_map(|x| x.labels.iter().copied())
        .collect();
    Ok((
        Tensor::from_vec(ids, (batch.len(), t), device)?,
        Tensor::from_vec(labels, (batch.len(), t), device)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: SpecialIds = SpecialIds {
        gmask: 45,
        sop: 46,
        eop: 47,
        pad: 3,
    };

    #[test]
    fn truncates_source_to_budget_minus_one_and_target_to_budget_minus_two() {
        let cfg = LabelConfig {
            max_source_length: 4,
            max_target_length: 4,
            mask_pad_id_in_answer: true,
        };
        let out = build_labeled_ids(&[10, 11, 12, 13, 14], &[20, 21, 22, 23], &SP, &cfg).unwrap();
        assert_eq!(out.input_ids, [10, 11, 12, 45, 46, 20, 21, 47]);
        assert_eq!(out.labels, [-100, -100, -100, -100, 46, 20, 21, 47]);
        assert_eq!((out.a_truncated, out.b_truncated), (2, 2));
        assert_eq!(out.context_len, 4);
    }

    #[test]
    fn pad_id_in_answer_is_masked_only_in_release_mode() {
        let mut cfg = LabelConfig {
            max_source_length: 3,
            max_target_length: 6,
            mask_pad_id_in_answer: true,
        };
        let out = build_labeled_ids(&[10], &[3, 20], &SP, &cfg).unwrap();
        assert_eq!(out.input_ids, [10, 45, 46, 3, 20, 47, 3, 3, 3]);
        assert_eq!(out.labels, [-100, -100, 46, -100, 20, 47, -100, -100, -100]);
        cfg.mask_pad_id_in_answer = false;
        let out = build_labeled_ids(&[10], &[3, 20], &SP, &cfg).unwrap();
        assert_eq!(out.labels, [-100, -100, 46, 3, 20, 47, -100, -100, -100]);
    }

    #[test]
    fn source_assembly_and_collation() {
        let src = SourceIds::assemble(&[5, 6], 3, 0, &[7, 8, 9]);
        assert_eq!(src.ids, [5, 6, 0, 0, 0, 7, 8, 9]);
        assert_eq!(src.pre_image, 2);
        let cfg = LabelConfig {
            max_source_length: 6,
            max_target_length: 4,
            mask_pad_id_in_answer: true,
        };
        assert!(src.image_fits(&cfg));
        let tight = LabelConfig {
            max_source_length: 5,
            ..cfg
        };
        assert!(!src.image_fits(&tight));
        let a = build_labeled_ids(&src.ids, &[20], &SP, &cfg).unwrap();
        let b = build_labeled_ids(&[1], &[21, 22], &SP, &cfg).unwrap();
        let (ids, labels) = collate(&[a.clone(), b], &Device::Cpu).unwrap();
        assert_eq!(ids.dims(), [2, 10]);
        assert_eq!(labels.to_vec2::<i64>().unwrap()[0], a.labels);
        assert!(collate(&[], &Device::Cpu).is_err());
    }

    #[test]
    fn longest_padding_cuts_only_trailing_pads() {
        let cfg = LabelConfig {
            max_source_length: 4,
            max_target_length: 8,
            mask_pad_id_in_answer: true,
        };
        let a = build_labeled_ids(&[10, 11], &[20], &SP, &cfg).unwrap();
        let b = build_labeled_ids(&[10], &[20, 21, 22], &SP, &cfg).unwrap();
        assert_eq!((a.unpadded_len, b.unpadded_len), (6, 7));
        let mut full = vec![a.clone(), b.clone()];
        pad_batch(&mut full, PadTo::MaxLength);
        assert_eq!(full, [a.clone(), b.clone()]);
        let mut longest = vec![a.clone(), b.clone()];
        pad_batch(&mut longest, PadTo::Longest);
        assert_eq!(longest[0].input_ids, [10, 11, 45, 46, 20, 47, 3]);
        assert_eq!(longest[0].labels, [-100, -100, -100, 46, 20, 47, -100]);
        assert_eq!(longest[1].input_ids, &b.input_ids[..7]);
        for (cut, whole) in longest.iter().zip([&a, &b]) {
            assert!(whole.labels[7..].iter().all(|&l| l == IGNORE_INDEX));
            assert!(whole.input_ids[7..].iter().all(|&i| i == SP.pad));
            assert_eq!(cut.labels, &whole.labels[..7]);
        }
        let keys: Vec<PadTo> = serde_json::from_str(r#"["longest", "max_length"]"#).unwrap();
        assert_eq!(keys, [PadTo::Longest, PadTo::MaxLength]);
        assert_eq!(PadTo::default(), PadTo::Longest);
    }

    #[test]
    fn rejects_impossible_budgets() {
        let cfg = LabelConfig {
            max_source_length: 0,
            max_target_length: 4,
            mask_pad_id_in_answer: true,
        };
        assert!(build_labeled_ids(&[1], &[2], &SP, &cfg).is_err());
    }
}
