//! COCO caption metrics: BLEU-1..4, ROUGE-L and CIDEr-D, as pycocoevalcap computes them
//! (METEOR and SPICE are not implemented: both need Java).

pub mod bleu;
pub(crate) mod cider;
pub mod exact;
pub mod item;
pub(crate) mod ngrams;
pub mod rouge;
pub mod tokenize;

use rayon::prelude::*;

use crate::error::{EvalError, Result};
use crate::report::{CaptionReport, CorpusScores, ItemScores, RawScores};
use bleu::BleuStats;
pub use exact::{exact_match, normalize_caption};
pub use item::{CaptionItem, ImageId};
use ngrams::Encoded;
pub use tokenize::Tokenizer;

/// Tokenises and scores every item; per-item scores follow the order of `items`.
///
/// The CIDEr document frequencies come from the references of exactly these items, as in
/// `COCOEvalCap.evaluate`. Fails if `items` is empty or an item has no reference.
pub fn score_captions(items: &[CaptionItem], tokenizer: Tokenizer) -> Result<CaptionReport> {
    if items.is_empty() {
        return Err(EvalError::Input("no captions to score".into()));
    }
    if let Some(bad) = items.iter().find(|it| it.references.is_empty()) {
        return Err(EvalError::Input(format!(
            "image {} has no reference captions",
            bad.image_id
        )));
    }
    let tokenized = tokenize_items(items, tokenizer);
    let scores = score_tokenized_flat(items, &tokenized);
    Ok(CaptionReport::new(tokenizer, items, scores))
}

/// Tokenises as `COCOEvalCap` does, with one tokenizer call for all references (image by
/// image) and one for all candidates, and lays the result out as
/// `[cand_0, refs_0.., cand_1, refs_1..]`.
fn tokenize_items(items: &[CaptionItem], tokenizer: Tokenizer) -> Vec<String> {
    let refs: Vec<&str> = items
        .iter()
        .flat_map(|it| it.references.iter().map(String::as_str))
        .collect();
    let cands: Vec<&str> = items.iter().map(|it| it.candidate.as_str()).collect();
    let mut refs = tokenizer.apply_all(&refs).into_iter();
    let cands = tokenizer.apply_all(&cands);
    let mut out = Vec::with_capacity(items.len() + refs.len());
    for (it, cand) in items.iter().zip(cands) {
        out.push(cand);
        out.extend(refs.by_ref().take(it.references.len()));
    }
    out
}

/// Scores already-tokenised text laid out as `[cand_0, refs_0.., cand_1, refs_1..]`.
fn score_tokenized_flat(items: &[CaptionItem], tokenized: &[String]) -> RawScores {
    let texts: Vec<&str> = tokenized.iter().map(String::as_str).collect();
    let set = ngrams::encode(&texts);
    let mut spans = Vec::with_capacity(items.len());
    let mut offset = 0;
    for it in items {
        spans.push(offset);
        offset += 1 + it.references.len();
    }
    let texts_of = |i: usize| &texts[spans[i]..spans[i] + 1 + items[i].references.len()];
    let image = |i: usize| -> (&Encoded, &[Encoded]) {
        let start = spans[i];
        let n_refs = items[i].references.len();
        (
            &set.captions[start],
            &set.captions[start + 1..start + 1 + n_refs],
        )
    };

    // BLEU statistics, ROUGE-L and the per-image reference n-gram union (max counts).
    let first: Vec<FirstPass> = (0..items.len())
        .into_par_iter()
        .map(|i| {
            let (cand, refs) = image(i);
            let union = ref_max_counts(refs);
            let lens: Vec<usize> = refs.iter().map(|r| r.words.len()).collect();
            let stats = bleu::item_stats(cand, &union, &lens, &set.order);
            let rouge = if texts_of(i).iter().any(|t| has_other_space(t)) {
                rouge_split_on_space(texts_of(i))
            } else {
                let ref_words: Vec<&[u32]> = refs.iter().map(|r| r.words.as_slice()).collect();
                rouge::rouge_l(&cand.words, &ref_words)
            };
            FirstPass {
                stats,
                rouge,
                ref_max: union,
            }
        })
        .collect();
    let df = cider::document_frequency(first.iter().map(|f| f.ref_max.as_slice()), set.order.len());
    let idf = cider::idf(&df, items.len());
    let ciders: Vec<f64> = (0..items.len())
        .into_par_iter()
        .map(|i| {
            let (cand, refs) = image(i);
            cider::item_cider(cand, refs, &idf, &set.order)
        })
        .collect();

    let mut totals = BleuStats::default();
    let mut per_item = Vec::with_capacity(items.len());
    for ((it, pass), cider) in items.iter().zip(&first).zip(&ciders) {
        totals.add(&pass.stats);
        per_item.push(ItemScores {
            image_id: it.image_id.clone(),
            bleu: pass.stats.scores(),
            rouge_l: pass.rouge,
            cider: *cider,
        });
    }
    let rouges: Vec<f64> = first.iter().map(|f| f.rouge).collect();
    let corpus = CorpusScores {
        bleu: totals.scores(),
        rouge_l: crate::stats::mean(&rouges),
        cider: crate::stats::mean(&ciders),
    };
    RawScores {
        per_item,
        corpus,
        bleu_totals: totals,
    }
}

/// Whether a tokenised text holds whitespace other than single spaces between tokens (such
/// as the U+00A0 CoreNLP puts inside `3 1/2`), where ROUGE's tokens differ from BLEU's.
fn has_other_space(text: &str) -> bool {
    text.contains(|c: char| c != ' ' && tokenize::is_python_space(c))
        || text.contains("  ")
        || text.starts_with(' ')
        || text.ends_with(' ')
}

/// ROUGE-L of `[candidate, references..]` with pycocoevalcap's `Rouge` tokens: the texts
/// split on `" "` only (BLEU and CIDEr split on any whitespace).
fn rouge_split_on_space(texts: &[&str]) -> f64 {
    let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut encoded: Vec<Vec<u32>> = Vec::with_capacity(texts.len());
    for text in texts {
        let words = text.split(' ').map(|w| {
            let next = ids.len() as u32;
            *ids.entry(w).or_insert(next)
        });
        encoded.push(words.collect());
    }
    let refs: Vec<&[u32]> = encoded[1..].iter().map(Vec::as_slice).collect();
    rouge::rouge_l(&encoded[0], &refs)
}

/// Per-image results of the first (CIDEr-independent) pass.
struct FirstPass {
    stats: BleuStats,
    rouge: f64,
    /// Sorted `(ngram id, max count over references)`: BLEU's clipping counts, and the
    /// image's distinct reference n-grams for CIDEr's document frequency.
    ref_max: Vec<(u32, u32)>,
}

/// Sorted `(ngram id, max count over references)`, by merging the sorted reference lists.
fn ref_max_counts(refs: &[Encoded]) -> Vec<(u32, u32)> {
    let mut acc: Vec<(u32, u32)> = Vec::new();
    for reference in refs {
        let other = &reference.grams;
        let mut merged = Vec::with_capacity(acc.len() + other.len());
        let (mut i, mut j) = (0, 0);
        while i < acc.len() && j < other.len() {
            let (a, b) = (acc[i], other[j]);
            match a.0.cmp(&b.0) {
                std::cmp::Ordering::Less => {
                    merged.push(a);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    merged.push(b);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    merged.push((a.0, a.1.max(b.1)));
                    i += 1;
                    j += 1;
                }
            }
        }
        merged.extend_from_slice(&acc[i..]);
        merged.extend_from_slice(&other[j..]);
        acc = merged;
    }
    acc
}
