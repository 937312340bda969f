//! The keys of `run.toml` with one line of meaning each, kept next to [`FinetuneConfig`]:
//! `visualglm train --print-config` prints them with their defaults ([`config_template`]) as
//! a commented TOML file that is a valid starting `run.toml`. The keys come from the struct
//! itself ([`config_keys`]), the defaults from [`FinetuneConfig::default`]; tests check that
//! [`KEY_DOCS`] describes exactly those keys, and that `docs/training.md`'s table lists them.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::config::FinetuneConfig;

/// One key of `run.toml`: its name, one line of meaning, and for a key that is unset by
/// default, an example value (printed commented out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// The key.
    pub key: &'static str,
    /// What it does, one line.
    pub meaning: &'static str,
    /// For a key unset by default: an example value, as TOML.
    pub example: Option<&'static str>,
}

const fn key(key: &'static str, meaning: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        meaning,
        example: None,
    }
}

const fn unset(key: &'static str, meaning: &'static str, example: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        meaning,
        example: Some(example),
    }
}

/// Every key of `run.toml`, in the order of [`FinetuneConfig`]'s fields.
pub const KEY_DOCS: &[KeyDoc] = &[
    key("data", "training data: the release's JSON list [{\"img\", \"prompt\", \"label\"}], JSONL, or COCO captions (required)"),
    unset("image_root", "folder relative image paths resolve against (unset: the data file's folder)", "\"images\""),
    key("model", "base model directory or checkpoint file (required)"),
    unset("tokenizer", "tokenizer file or directory (unset: beside the model)", "\"tokenizer.model\""),
    key("out", "output directory: checkpoints, metrics.jsonl, loss.png, model/; an existing run there is resumed"),
    key("trainable", "name prefixes of the weights that train (f32); every other weight stays frozen"),
    key("base_dtype", "how the frozen linears and embedding tables are held: \"f32\", \"f16\" or \"bf16\" (GPU only)"),
    unset("base_quantize", "hold the frozen ChatGLM linears as GGML blocks (QLoRA): \"q8_0\", \"q4_0\", \"q4k\", … (unset: dense)", "\"q4_0\""),
    key("steps", "optimiser updates of the whole run"),
    key("batch_size", "examples per micro-batch (per rank when data-parallel)"),
    key("grad_accum", "micro-batches accumulated into each update"),
    key("lr", "peak learning rate"),
    key("warmup_steps", "updates of linear warmup to lr"),
    key("min_lr_ratio", "the cosine decay ends at min_lr_ratio · lr"),
    key("auto_warmup_steps", "SAT's fine-tune-mode cap: the first auto_warmup_steps updates run at auto_warmup_rate · lr (0: off; the release: 100)"),
    key("auto_warmup_rate", "the cap of auto_warmup_steps, as a fraction of lr"),
    key("weight_decay", "AdamW's decoupled weight decay"),
    key("clip", "global gradient-norm clip (0: no clipping)"),
    key("seed", "seed of the data order (and of the ITC heads' initialisation)"),
    key("checkpoint_activations", "recompute each ChatGLM and ViT block (and Q-Former layer, ViT frozen) in the backward pass: less memory, about a third more time"),
    key("save_every", "write a checkpoint every this many updates (and at the end, and on Ctrl-C / SIGTERM)"),
    key("keep_last", "checkpoints kept (the oldest are removed)"),
    key("max_source_length", "token budget of the prompt with the 32 image tokens, as the release's max_source_length"),
    key("max_target_length", "token budget of the answer, as the release's max_target_length"),
    key("pad_to", "pad each micro-batch to its \"longest\" example, or every example to \"max_length\" (the release); same losses"),
    key("english", "use the English prompt template (Q:…\\nA:) instead of the Chinese one"),
    key("skip_malformed", "skip (and count) malformed data records instead of stopping"),
    unset("embedding_grad_shrink", "GLM-130B's embedding gradient shrink α on the word embeddings (unset: off)", "0.1"),
    unset("val_data", "held-out data (same formats) for the validation loss (unset: none)", "\"val.json\""),
    key("val_every", "compute the validation loss every this many updates (0: only at the end)"),
    key("itc_weight", "λ of AR + λ·ITC, BLIP-2's image-text contrastive loss (0: off, the release)"),
    key("itc_dim", "width of the ITC projections"),
    key("itc_detach", "train the ITC heads on detached image features: the encoder learns from the AR loss alone"),
    key("itc_caption_layout", "how the frozen language model reads a caption for ITC: \"context\" (caption [gMASK] <sop>) or \"answer\" ([gMASK] <sop> caption)"),
    key("itc_queue", "also rank each image against this many earlier training captions (0: in-batch only)"),
    key("itc_ramp_steps", "λ grows linearly from 0 to itc_weight over this many updates (0: constant)"),
    key("lora_rank", "rank of trainable LoRA adapters on ChatGLM's query_key_value and dense (0: none; the release: 10)"),
    key("lora_alpha", "LoRA alpha: the update is scaled by lora_alpha / lora_rank"),
    unset("lora_layers", "ChatGLM layers that get adapters (unset: every layer)", "[0, 14]"),
    key("lora_mlp", "also adapt the two MLP linears of those layers"),
    key("export", "write out/model (LoRA merged) at the end, loadable by describe, serve and eval"),
];

/// A deserializer that only records the field names a derived `Deserialize` asks for.
struct FieldNames(Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for &mut FieldNames {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The keys of `run.toml`: [`FinetuneConfig`]'s fields as its `Deserialize` reads them.
pub fn config_keys() -> &'static [&'static str] {
    let mut names = FieldNames(None);
    // The derive asks for the struct (with its field names) and fails as intended.
    let _ = FinetuneConfig::deserialize(&mut names);
    names.0.unwrap_or(&[])
}

/// [`FinetuneConfig::default`] as a TOML table (unset keys absent).
fn default_table() -> toml::Table {
    match toml::Value::try_from(FinetuneConfig::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// `run.toml` with every key at its default and a comment line saying what it does; keys
/// unset by default are commented out with an example value. Parses to
/// [`FinetuneConfig::default`].
pub fn config_template() -> String {
    let defaults = default_table();
    let mut out = String::from(
        "# run.toml for `visualglm train --config run.toml`: every key at its default\n\
         # (`visualglm train --print-config`). Relative paths resolve against this file's\n\
         # folder; flags (--data, --model, --out, --steps, …) override the keys.\n",
    );
    for name in config_keys() {
        let doc = KEY_DOCS.iter().find(|d| d.key == *name);
        out.push('\n');
        if let Some(doc) = doc {
            out.push_str(&format!("# {}\n", doc.meaning));
        }
        match (defaults.get(*name), doc.and_then(|d| d.example)) {
            (Some(value), _) => out.push_str(&format!("{name} = {value}\n")),
            (None, Some(example)) => out.push_str(&format!("# {name} = {example}\n")),
            (None, None) => out.push_str(&format!("# {name} =\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_field_is_described_once_in_order() {
        let keys = config_keys();
        assert!(keys.len() > 30, "{keys:?}");
        let documented: Vec<&str> = KEY_DOCS.iter().map(|d| d.key).collect();
        assert_eq!(
            documented, keys,
            "KEY_DOCS must follow FinetuneConfig's fields"
        );
        // The serialized defaults hold every key but the unset ones, which carry an example.
        let defaults = default_table();
        let serialized: BTreeSet<&str> = defaults.keys().map(String::as_str).collect();
        for doc in KEY_DOCS {
            assert_eq!(
                serialized.contains(doc.key),
                doc.example.is_none(),
                "{}: an example exactly when unset by default",
                doc.key
            );
            assert!(!doc.meaning.contains('\n'), "{}: one line", doc.key);
        }
        assert!(serialized.iter().all(|k| keys.contains(k)));
    }

    #[test]
    fn the_template_parses_to_the_defaults_and_its_examples_parse() {
        let text = config_template();
        for key in [
            "english",
            "max_target_length",
            "clip",
            "save_every",
            "keep_last",
            "seed",
        ] {
            assert!(
                text.contains(&format!("\n{key} = ")),
                "{key} missing:\n{text}"
            );
        }
        let cfg: FinetuneConfig = toml::from_str(&text).unwrap();
        assert_eq!(cfg, FinetuneConfig::default());
        // Uncommented, each example is a valid value of its key.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if KEY_DOCS
                        .iter()
                        .any(|d| rest.starts_with(&format!("{} = ", d.key))) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cfg: FinetuneConfig = toml::from_str(&uncommented).unwrap();
        assert_eq!(cfg.lora_layers, Some(vec![0, 14]));
        assert_eq!(cfg.base_quantize.as_deref(), Some("q4_0"));
        assert_eq!(cfg.embedding_grad_shrink, Some(0.1));
        assert!(cfg.image_root.is_some() && cfg.tokenizer.is_some() && cfg.val_data.is_some());
    }
}
