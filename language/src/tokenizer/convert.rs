//! SentencePiece model → `tokenizers::Tokenizer`, and `tokenizer.json` export/import.
//!
//! The pipeline reproduces SentencePiece's segmentation when the caller prepends the dummy
//! prefix `▁` itself (see [`HfPipeline::encode`]):
//! * user-defined pieces are added tokens matched on the raw text (`normalized: false`), so
//!   they are atomic wherever they occur, as in SentencePiece;
//! * normaliser: the model's precompiled charsmap (if any), then `' '` → `▁`;
//! * pre-tokenizer: `Metaspace` (prepend `▁` to the first segment only — what standalone
//!   users of the JSON get as the dummy prefix), splitting before each `▁` when no piece has
//!   an inner `▁`, which is then exact and much faster;
//! * model: BPE with merges ordered by the score of the merged piece (SentencePiece merges the
//!   best-scoring pair, leftmost first), or Unigram; both with byte fallback;
//! * Unigram only: control, unknown, unused and byte pieces get a score far below any real
//!   segmentation, because SentencePiece never matches them in text (its trie holds only
//!   normal and user-defined pieces), while `tokenizers` would.
//!
//! `tokenizers` refuses unknown top-level keys, so the SentencePiece facts the format has no
//! field for (each piece's type, the `<unk>` surface, whitespace collapsing) ride in the
//! post-processor: a `TemplateProcessing` whose templates are ChatGLM's
//! (`$A [gMASK] <sop>`, pair `$A [gMASK] <sop> $B <eop>`) and whose special-token table also
//! holds unused entries named `sentencepiece:<type>` listing the ids and pieces of that type.

use std::collections::HashMap;

use ahash::AHashMap;
use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip as DecoderStrip;
use tokenizers::models::bpe::BPE;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Precompiled, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, Tokenizer,
};

use super::error::{Result, TokenizerError};
use super::fast::FastEncoder;
use super::lattice::FastUnigram;
use super::merges::FastBpe;
use super::pieces::{PieceKind, PieceTable};
use super::spm::{ModelKind, SpModel};

/// The dummy-prefix / whitespace symbol (defined in [`super::metaspace`]).
pub use super::metaspace::SPACE;
/// Prefix of the post-processor entries that carry SentencePiece facts.
pub const ENTRY_PREFIX: &str = "sentencepiece:";

/// SentencePiece facts that the `tokenizers` pipeline does not hold by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SpSection {
    /// `"bpe"` or `"unigram"`.
    pub model_type: String,
    /// Callers prepend `▁` to non-empty input (SentencePiece `add_dummy_prefix`).
    pub add_dummy_prefix: bool,
    /// Callers strip and collapse spaces first (SentencePiece `remove_extra_whitespaces`).
    pub remove_extra_whitespaces: bool,
    /// What `<unk>` decodes to.
    pub unk_surface: String,
    /// Ids of every piece that is not `normal`, by type name.
    pub piece_types: HashMap<String, Vec<u32>>,
}

/// A `tokenizers` pipeline plus what is needed to use it exactly like SentencePiece.
#[derive(Debug, Clone)]
pub struct HfPipeline {
    /// The `tokenizers` pipeline.
    pub tokenizer: Tokenizer,
    /// Piece texts and types.
    pub table: PieceTable,
    /// SentencePiece flags.
    pub section: SpSection,
    /// The lean driver, when the pipeline has no charsmap normaliser.
    pub fast: Option<FastEncoder>,
}

/// BPE merges in SentencePiece priority: by merged-piece score (best first), then id.
fn bpe_merges(model: &SpModel, vocab: &HashMap<String, u32>) -> Vec<(String, String)> {
    let kinds = model.table.kinds();
    let mut normal: Vec<u32> = (0..kinds.len() as u32)
        .filter(|&i| kinds[i as usize] == PieceKind::Normal)
        .collect();
    normal.sort_by(|&a, &b| {
        model.scores[b as usize]
            .total_cmp(&model.scores[a as usize])
            .then(a.cmp(&b))
    });
    let is_normal = |s: &str| {
        vocab
            .get(s)
            .is_some_and(|&i| kinds[i as usize] == PieceKind::Normal)
    };
    let mut merges = Vec::new();
    for id in normal {
        let piece = &model.table.pieces()[id as usize];
        for (k, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(k);
            if is_normal(l) && is_normal(r) {
                merges.push((l.to_string(), r.to_string()));
            }
        }
    }
    merges
}

/// Whether some segmentable piece has a `▁` after its first character (then the input may
/// not be split before each `▁`).
fn has_inner_space(model: &SpModel) -> bool {
    model
        .table
        .pieces()
        .iter()
        .zip(model.table.kinds())
        .filter(|(_, k)| matches!(k, PieceKind::Normal | PieceKind::UserDefined))
        .any(|(p, _)| p.chars().skip(1).any(|c| c == SPACE))
}

impl HfPipeline {
    /// Builds the pipeline for a SentencePiece model; `path` names the file in errors.
    pub fn from_sp(model: &SpModel, path: &Path) -> Result<Self> {
        let bad = |reason: String| TokenizerError::CorruptModel {
            path: path.to_path_buf(),
            reason,
        };
        let pieces = model.table.pieces();
        let kinds = model.table.kinds();
        let unk_id = model.table.unk_id();
        let mut tokenizer = match model.kind {
            ModelKind::Bpe => {
                let vocab: HashMap<String, u32> = pieces
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.clone(), i as u32))
                    .collect();
                let merges = bpe_merges(model, &vocab);
                let bpe = BPE::builder()
                    .vocab_and_merges(
                        vocab
                            .into_iter()
                            .collect::<tokenizers::models::bpe::Vocab>(),
                        merges,
                    )
                    .unk_token(pieces[unk_id as usize].clone())
                    .fuse_unk(true)
                    .byte_fallback(model.byte_fallback)
                    .build()
                    .map_err(|e| bad(format!("BPE: {e}")))?;
                Tokenizer::new(bpe)
            }
            ModelKind::Unigram => {
                let min_normal = model
                    .scores
                    .iter()
                    .zip(kinds)
                    .filter(|(_, k)| **k == PieceKind::Normal)
                    .map(|(s, _)| f64::from(*s))
                    .fold(0.0f64, f64::min);
                let longest = pieces.iter().map(|p| p.chars().count()).max().unwrap_or(1);
                let excluded = (min_normal - 10.0) * (longest as f64 + 2.0) - 1000.0;
                let vocab: Vec<(String, f64)> = pieces
                    .iter()
                    .zip(kinds)
                    .zip(&model.scores)
                    .map(|((p, k), s)| {
                        let score = match k {
                            PieceKind::Normal | PieceKind::UserDefined => f64::from(*s),
                            _ => excluded,
                        };
                        (p.clone(), score)
                    })
                    .collect();
                let unigram = Unigram::from(vocab, Some(unk_id as usize), model.byte_fallback)
                    .map_err(|e| bad(format!("Unigram: {e}")))?;
                Tokenizer::new(unigram)
            }
        };

        let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
        if !model.charsmap.is_empty() {
            let pre =
                Precompiled::from(&model.charsmap).map_err(|e| bad(format!("charsmap: {e}")))?;
            normalizers.push(pre.into());
        }
        let space = Replace::new(" ", SPACE.to_string()).map_err(|e| bad(e.to_string()))?;
        normalizers.push(space.into());
        tokenizer
            .with_normalizer(Some(NormalizerSequence::new(normalizers)))
            .map_err(|e| bad(format!("normaliser: {e}")))?;
        let scheme = if model.add_dummy_prefix {
            PrependScheme::First
        } else {
            PrependScheme::Never
        };
        tokenizer.with_pre_tokenizer(Some(Metaspace::new(SPACE, scheme, !has_inner_space(model))));
        let decoders: Vec<DecoderWrapper> = vec![
            Replace::new(SPACE.to_string(), " ")
                .map_err(|e| bad(e.to_string()))?
                .into(),
            ByteFallback::default().into(),
            Fuse::default().into(),
            DecoderStrip::new(' ', usize::from(model.add_dummy_prefix), 0).into(),
        ];
        tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
        let user: Vec<AddedToken> = pieces
            .iter()
            .zip(kinds)
            .filter(|(_, k)| **k == PieceKind::UserDefined)
            .map(|(p, _)| AddedToken::from(p.clone(), false).normalized(false))
            .collect();
        tokenizer
            .add_tokens(user)
            .map_err(|e| bad(format!("user-defined pieces: {e}")))?;

        let mut piece_types: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, k) in kinds.iter().enumerate() {
            if *k != PieceKind::Normal {
                piece_types
                    .entry(k.name().to_string())
                    .or_default()
                    .push(id as u32);
            }
        }
        let section = SpSection {
            model_type: match model.kind {
                ModelKind::Bpe => "bpe".into(),
                ModelKind::Unigram => "unigram".into(),
            },
            add_dummy_prefix: model.add_dummy_prefix,
            remove_extra_whitespaces: model.remove_extra_whitespaces,
            unk_surface: model.table.unk_surface().to_string(),
            piece_types,
        };
        let post = post_processor(&model.table, &section)
            .map_err(|e| bad(format!("post-processor: {e}")))?;
        tokenizer.with_post_processor(Some(post));
        let fast = fast_encoder(&tokenizer, &model.table, model.charsmap.is_empty())
            .map_err(|e| bad(format!("user-defined pieces: {e}")))?;
        Ok(Self {
            tokenizer,
            table: model.table.clone(),
            section,
            fast,
        })
    }

    /// The `tokenizer.json` text (pretty-printed).
    pub fn to_json(&self, path: &Path) -> Result<String> {
        self.tokenizer
            .to_string(true)
            .map_err(|e| TokenizerError::BadJson {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Reads a `tokenizer.json` written by [`HfPipeline::to_json`].
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| TokenizerError::BadJson {
            path: path.to_path_buf(),
            reason,
        };
        // Syntax first: `tokenizers` 0.23 panics (`expect("Helper")`) on a cut-off or
        // malformed `decoder` value instead of returning its error (found by fuzzing).
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let tokenizer: Tokenizer = text.parse().map_err(|e| bad(format!("{e}")))?;
        let entries = &value["post_processor"]["special_tokens"];
        let entry = |name: &str| entries.get(format!("{ENTRY_PREFIX}{name}"));
        let entry_ids = |name: &str| -> std::result::Result<Vec<u32>, String> {
            let Some(e) = entry(name) else {
                return Ok(Vec::new());
            };
            e["ids"]
                .as_array()
                .ok_or_else(|| format!("entry {ENTRY_PREFIX}{name} has no ids"))?
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| format!("entry {ENTRY_PREFIX}{name}: bad id {v}"))
                })
                .collect()
        };
        if entry("unknown").is_none() {
            return Err(bad(format!(
                "no {ENTRY_PREFIX}* entries in the post-processor: not written by \
                 `visualglm tokenizer convert`; convert the SentencePiece .model with it"
            )));
        }
        let vocab = tokenizer.get_vocab(false);
        let size = vocab.len();
        let mut pieces = vec![String::new(); size];
        for (piece, id) in vocab {
            match pieces.get_mut(id as usize) {
                Some(slot) => *slot = piece,
                None => return Err(bad(format!("id {id} of {piece:?} is not below {size}"))),
            }
        }
        if let Some(id) = pieces.iter().position(String::is_empty) {
            return Err(bad(format!("no piece has id {id}")));
        }
        let mut kinds = vec![PieceKind::Normal; size];
        let mut piece_types = HashMap::new();
        for kind in [
            PieceKind::Unknown,
            PieceKind::Control,
            PieceKind::UserDefined,
            PieceKind::Unused,
            PieceKind::Byte,
        ] {
            let ids = entry_ids(kind.name()).map_err(&bad)?;
            for &id in &ids {
                match kinds.get_mut(id as usize) {
                    Some(slot) => *slot = kind,
                    None => return Err(bad(format!("{} id {id} >= {size}", kind.name()))),
                }
            }
            piece_types.insert(kind.name().to_string(), ids);
        }
        let unk_surface = entry("unk_surface")
            .and_then(|e| e["tokens"][0].as_str())
            .unwrap_or(" \u{2047} ")
            .to_string();
        let add_dummy_prefix = value["pre_tokenizer"]["prepend_scheme"].as_str() != Some("never");
        let model_type = value["model"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let section = SpSection {
            model_type,
            add_dummy_prefix,
            remove_extra_whitespaces: entry("remove_extra_whitespaces").is_some(),
            unk_surface: unk_surface.clone(),
            piece_types,
        };
        let table = PieceTable::new(pieces, kinds, unk_surface).map_err(bad)?;
        let plain = value["normalizer"]["normalizers"]
            .as_array()
            .is_some_and(|n| n.len() == 1 && n[0]["type"] == "Replace");
        let fast = fast_encoder(&tokenizer, &table, plain).map_err(bad)?;
        Ok(Self {
            tokenizer,
            table,
            section,
            fast,
        })
    }

    /// SentencePiece `EncodeAsIds` of already-normalised-by-the-caller text: whitespace
    /// cleanup and the dummy prefix per the section flags, then the lean driver (or the
    /// pipeline when there is none).
    pub fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        self.encode_prepared(text, false)
    }

    /// As [`HfPipeline::encode`], always through the full `tokenizers` pipeline (the
    /// reference the lean driver is tested against).
    pub fn encode_reference(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        self.encode_prepared(text, true)
    }

    fn encode_prepared(
        &self,
        text: &str,
        reference: bool,
    ) -> std::result::Result<Vec<u32>, String> {
        let mut owned;
        let mut text = text;
        if self.section.remove_extra_whitespaces {
            owned = collapse_spaces(text);
            text = owned.as_str();
        }
        if text.is_empty() {
            return Ok(Vec::new());
        }
        if self.section.add_dummy_prefix {
            owned = format!("{SPACE}{text}");
            text = owned.as_str();
        }
        match &self.fast {
            Some(fast) if !reference => fast.encode(self.tokenizer.get_model(), text),
            _ => self.encode_pipeline(text),
        }
    }

    /// The same through the full `tokenizers` pipeline (`encode_fast`), without the caller
    /// steps (whitespace cleanup, dummy prefix).
    pub fn encode_pipeline(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| e.to_string())?;
        Ok(enc.get_ids().to_vec())
    }
}

/// The lean driver for a pipeline whose normaliser is only `' '` → `▁` (`plain`).
fn fast_encoder(
    tokenizer: &Tokenizer,
    table: &PieceTable,
    plain: bool,
) -> std::result::Result<Option<FastEncoder>, String> {
    if !plain {
        return Ok(None);
    }
    let split = match tokenizer.get_pre_tokenizer() {
        Some(PreTokenizerWrapper::Metaspace(m)) => m.get_split(),
        _ => return Ok(None),
    };
    let user = table
        .pieces()
        .iter()
        .zip(table.kinds())
        .enumerate()
        .filter(|(_, (_, k))| **k == PieceKind::UserDefined)
        .map(|(id, (p, _))| (p.clone(), id as u32))
        .collect();
    let unigram = match tokenizer.get_model() {
        ModelWrapper::Unigram(u) => Some(FastUnigram::new(u, table.unk_id(), table.byte_ids())?),
        _ => None,
    };
    let bpe = match (tokenizer.get_model(), table.byte_ids()) {
        (ModelWrapper::BPE(b), Some(bytes)) if b.byte_fallback && b.dropout.is_none() => {
            let value = serde_json::to_value(b).map_err(|e| e.to_string())?;
            let merges: Vec<(String, String)> =
                serde_json::from_value(value["merges"].clone()).map_err(|e| e.to_string())?;
            let vocab: AHashMap<String, u32> = b.get_vocab().into_iter().collect();
            FastBpe::new(&vocab, &merges, bytes)
        }
        _ => None,
    };
    FastEncoder::new(user, split, unigram, bpe).map(Some)
}

/// ChatGLM's templates plus the `sentencepiece:*` entries (see the module doc).
fn post_processor(
    table: &PieceTable,
    section: &SpSection,
) -> std::result::Result<TemplateProcessing, String> {
    let id_of = |piece: &str| {
        table
            .pieces()
            .iter()
            .position(|p| p == piece)
            .map(|i| i as u32)
    };
    let mut tokens: Vec<SpecialToken> = Vec::new();
    let (single, pair) = match (id_of("[gMASK]"), id_of("<sop>"), id_of("<eop>")) {
        (Some(g), Some(s), Some(e)) => {
            tokens.push(("[gMASK]", g).into());
            tokens.push(("<sop>", s).into());
            tokens.push(("<eop>", e).into());
            ("$A [gMASK] <sop>", "$A [gMASK] <sop> $B:1 <eop>:1")
        }
        _ => ("$A", "$A $B:1"),
    };
    let mut names: Vec<&String> = section.piece_types.keys().collect();
    names.sort();
    for name in names {
        let ids = section.piece_types[name].clone();
        let pieces = ids
            .iter()
            .map(|&i| table.piece(i).unwrap_or_default().to_string())
            .collect();
        tokens.push(
            SpecialToken::new(format!("{ENTRY_PREFIX}{name}"), ids, pieces)
                .map_err(|e| e.to_string())?,
        );
    }
    tokens.push(
        SpecialToken::new(
            format!("{ENTRY_PREFIX}unk_surface"),
            vec![table.unk_id()],
            vec![section.unk_surface.clone()],
        )
        .map_err(|e| e.to_string())?,
    );
    if section.remove_extra_whitespaces {
        tokens.push(
            SpecialToken::new(
                format!("{ENTRY_PREFIX}remove_extra_whitespaces"),
                vec![],
                vec![],
            )
            .map_err(|e| e.to_string())?,
        );
    }
    TemplateProcessing::builder()
        .try_single(single)?
        .try_pair(pair)?
        .special_tokens(tokens)
        .build()
        .map_err(|e| e.to_string())
}

/// SentencePiece `remove_extra_whitespaces`: strip spaces at both ends, collapse inner runs.
fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_collapse_like_sentencepiece() {
        assert_eq!(collapse_spaces("  a   b c  "), "a b c");
        assert_eq!(collapse_spaces("   "), "");
    }
}
