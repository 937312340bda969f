//! SentencePiece model → `tokenizers::Tokenizer` ([`HfPipeline::from_sp`]).
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
//! The SentencePiece facts the format has no field for ride in the post-processor
//! ([`super::section`]).

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip as DecoderStrip;
use tokenizers::models::bpe::BPE;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Precompiled, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, Tokenizer};

use super::section::post_processor;
use super::spm::{ModelKind, SpModel};
use crate::error::{Result, TokenizerError};
use crate::model::pipeline::{fast_encoder, HfPipeline, SpSection};
use crate::normalize::sentencepiece::SPACE;
use crate::vocab::PieceKind;

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
}
