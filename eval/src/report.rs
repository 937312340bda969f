//! The caption evaluation report: JSON (pycocoevalcap metric names) and Markdown.

use serde::Serialize;

use crate::caption::bleu::BleuStats;
use crate::caption::exact::exact_match;
use crate::caption::item::{CaptionItem, ImageId};
use crate::caption::tokenize::Tokenizer;

/// Corpus-level caption scores, serialised under pycocoevalcap's names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusScores {
    /// BLEU-1..4 (corpus statistics, closest reference length).
    pub bleu: [f64; 4],
    /// Mean ROUGE-L over images.
    pub rouge_l: f64,
    /// Mean CIDEr-D over images.
    pub cider: f64,
}

/// Scores of one image, serialised under pycocoevalcap's names.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemScores {
    /// The image.
    pub image_id: ImageId,
    /// Smoothed per-image BLEU-1..4.
    pub bleu: [f64; 4],
    /// ROUGE-L.
    pub rouge_l: f64,
    /// CIDEr-D (depends on the whole evaluation set through the document frequencies).
    pub cider: f64,
}

/// Metric names in report order.
pub const METRIC_NAMES: [&str; 6] = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"];

impl CorpusScores {
    /// `(name, value)` pairs in [`METRIC_NAMES`] order.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        let b = self.bleu;
        let v = [b[0], b[1], b[2], b[3], self.rouge_l, self.cider];
        let mut out = [("", 0.0); 6];
        for (slot, (name, value)) in out.iter_mut().zip(METRIC_NAMES.iter().zip(v)) {
            *slot = (name, value);
        }
        out
    }
}

impl Serialize for CorpusScores {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.named())
    }
}

impl Serialize for ItemScores {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(7))?;
        map.serialize_entry("image_id", &self.image_id)?;
        let b = self.bleu;
        let v = [b[0], b[1], b[2], b[3], self.rouge_l, self.cider];
        for (name, value) in METRIC_NAMES.iter().zip(v) {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

/// BLEU corpus statistics as pycocoevalcap logs them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BleuLog {
    /// Summed statistics.
    #[serde(flatten)]
    pub stats: BleuStats,
    /// `testlen / reflen` (smoothed).
    pub ratio: f64,
}

/// Scores of every item plus the summed BLEU statistics: what
/// [`score_captions`](crate::caption::score_captions) hands to [`CaptionReport::new`].
pub(crate) struct RawScores {
    pub per_item: Vec<ItemScores>,
    pub corpus: CorpusScores,
    pub bleu_totals: BleuStats,
}

/// Full result of a caption evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionReport {
    /// Tokenisation applied before scoring.
    pub tokenizer: Tokenizer,
    /// Number of images scored.
    pub num_images: usize,
    /// Number of reference captions used.
    pub num_references: usize,
    /// Corpus scores.
    pub corpus: CorpusScores,
    /// BLEU's summed statistics.
    pub bleu_log: BleuLog,
    /// Share of candidates equal to one of their references ([`crate::exact_match`]).
    pub exact_match: f64,
    /// Per-image scores in input order.
    pub per_image: Vec<ItemScores>,
}

/// The corpus scores plus exact match: what the CLI prints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CaptionSummary {
    /// Corpus scores under pycocoevalcap's names.
    #[serde(flatten)]
    pub corpus: CorpusScores,
    /// Share of exact matches (0–1).
    pub exact_match: f64,
}

impl CaptionReport {
    pub(crate) fn new(tokenizer: Tokenizer, items: &[CaptionItem], raw: RawScores) -> Self {
        CaptionReport {
            tokenizer,
            num_images: items.len(),
            num_references: items.iter().map(|i| i.references.len()).sum(),
            corpus: raw.corpus,
            bleu_log: BleuLog {
                stats: raw.bleu_totals,
                ratio: raw.bleu_totals.ratio(),
            },
            exact_match: exact_match(items),
            per_image: raw.per_item,
        }
    }

    /// The corpus scores and exact match.
    pub fn summary(&self) -> CaptionSummary {
        CaptionSummary {
            corpus: self.corpus,
            exact_match: self.exact_match,
        }
    }

    /// The corpus scores as a Markdown table (`| metric | score |`).
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("| metric | score |\n| --- | ---: |\n");
        for (name, value) in self.corpus.named() {
            out.push_str(&format!("| {name} | {value:.4} |\n"));
        }
        out.push_str(&format!("| exact match | {:.4} |\n", self.exact_match));
        out.push_str(&format!(
            "\n{} images, {} references, tokenizer `{}`; METEOR and SPICE not computed.\n",
            self.num_images,
            self.num_references,
            self.tokenizer.name()
        ));
        out
    }
}
