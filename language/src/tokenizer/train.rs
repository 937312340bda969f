//! Training a small SentencePiece unigram tokenizer with ChatGLM's special pieces
//! (`visualglm tokenizer train`).
//!
//! Texts go through ChatGLM's [`text::preprocess`] (newlines, tabs and space runs become
//! `<n>`, `<|tab|>`, `<|blank_N|>`), are cut into words the way the encoder will see them
//! (dummy prefix `▁`, spaces as `▁`, user-defined pieces matched first and left out, a word
//! starting at each `▁`), and `tokenizers`' [`UnigramTrainer`] (SentencePiece's EM + pruning)
//! learns the ordinary pieces. The result is a SentencePiece `ModelProto` laid out like the
//! released `ice_text.model`:
//!
//! | ids | pieces | type |
//! | --- | --- | --- |
//! | 0 | `<unk>` | unknown |
//! | 1–3 | `<s>`, `</s>`, `<pad>` | control |
//! | 4–84 | `<n>`, `<|tab|>`, `<|blank_2|>` … `<|blank_80|>` | user-defined |
//! | (85–340) | `<0x00>` … `<0xFF>`, only with [`TrainerConfig::byte_fallback`] | byte |
//! | … | the trained pieces, best score first | normal |
//! | … | `<unused_K>` fillers, when the texts support fewer pieces than asked | unused |
//! | last 8 | `[MASK] [gMASK] [sMASK] <unused_0> <sop> <eop> <ENC> <dBLOCK>` | user-defined |
//!
//! with identity normalisation, the dummy prefix on and whitespace collapsing off (as in the
//! stand-in models), so [`ChatGlmTokenizer`](super::ChatGlmTokenizer) loads it and encodes
//! like SentencePiece would.
//!
//! Training is deterministic: the same texts and settings give the same bytes (words are
//! counted in sorted order and the trainer runs on a one-thread pool, so its floating-point
//! sums do not depend on the machine's core count).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use aho_corasick::{AhoCorasick, MatchKind};
use prost::Message;
use tokenizers::models::unigram::{Unigram, UnigramTrainer};

use super::chatglm::write_atomic;
use super::error::{Result, TokenizerError};
use super::metaspace::SPACE;
use super::proto::{ModelProto, NormalizerSpec, SentencePiece, TrainerSpec};
use super::text;

/// The ChatGLM special pieces that end the vocabulary, in the released order.
pub const SPECIALS: [&str; 8] = [
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<unused_0>",
    "<sop>",
    "<eop>",
    "<ENC>",
    "<dBLOCK>",
];

/// The pieces before the user-defined ones: `<unk>` and the control pieces.
const HEAD: [&str; 4] = ["<unk>", "<s>", "</s>", "<pad>"];

/// SentencePiece piece types (`ModelProto.SentencePiece.Type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// Settings of [`train_unigram`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerConfig {
    /// Total number of pieces, reserved ones included (`num_pieces` of the result). The 93
    /// reserved pieces (4 head, 81 whitespace, 8 specials; 256 more with byte fallback) plus
    /// one piece per distinct character of the texts must fit.
    pub vocab_size: usize,
    /// Longest trained piece, in characters (SentencePiece's default 16).
    pub max_piece_length: usize,
    /// Add the 256 `<0xXX>` byte pieces, so that characters unseen in training encode as
    /// bytes instead of `<unk>`. Off by default: it costs 256 pieces of a small vocabulary.
    pub byte_fallback: bool,
    /// EM sub-iterations between prunings (SentencePiece's default 2).
    pub n_sub_iterations: u32,
    /// Fraction of pieces kept by each pruning (SentencePiece's default 0.75).
    pub shrinking_factor: f64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            vocab_size: 512,
            max_piece_length: 16,
            byte_fallback: false,
            n_sub_iterations: 2,
            shrinking_factor: 0.75,
        }
    }
}

impl TrainerConfig {
    /// Number of pieces that are not trained: head, whitespace pieces, specials (and bytes).
    pub fn reserved_pieces(&self) -> usize {
        HEAD.len() + whitespace_pieces().len() + SPECIALS.len() + self.byte_pieces()
    }

    fn byte_pieces(&self) -> usize {
        if self.byte_fallback {
            256
        } else {
            0
        }
    }
}

/// What [`train_unigram`] made, with the ids a model config needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrainSummary {
    /// Total pieces (= [`TrainerConfig::vocab_size`]).
    pub vocab_size: usize,
    /// Pieces learned from the texts (normal pieces).
    pub trained_pieces: usize,
    /// `<unused_K>` fillers added because the texts support fewer pieces than asked.
    pub unused_pieces: usize,
    /// Non-empty texts trained on.
    pub texts: usize,
    /// Distinct words (pre-tokenised units) in them.
    pub distinct_words: usize,
    /// Distinct characters in them (each is a piece).
    pub characters: usize,
    /// Whether the 256 byte pieces are present.
    pub byte_fallback: bool,
    /// `<unk>`.
    pub unk_id: u32,
    /// `<pad>`.
    pub pad_id: u32,
    /// `[MASK]`.
    pub mask_id: u32,
    /// `[gMASK]`.
    pub gmask_id: u32,
    /// `<sop>` (bos).
    pub sop_id: u32,
    /// `<eop>` (eos).
    pub eop_id: u32,
}

/// A trained model: the SentencePiece protobuf and its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    /// The `.model` contents.
    pub proto: ModelProto,
    /// Sizes and special ids.
    pub summary: TrainSummary,
}

impl TrainedModel {
    /// The serialised `.model` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }
}

/// `<n>`, `<|tab|>`, `<|blank_2|>` … `<|blank_80|>`.
fn whitespace_pieces() -> Vec<String> {
    let mut v = vec![text::NEWLINE.to_string(), text::TAB.to_string()];
    v.extend((2..=text::MAX_BLANK).map(text::blank_piece));
    v
}

fn train_error(reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Train {
        reason: reason.into(),
    }
}

/// Cuts texts into the words the encoder will segment, counting them.
struct WordCounter {
    user_defined: AhoCorasick,
    words: BTreeMap<String, u32>,
    segments: BTreeSet<String>,
    texts: usize,
}

impl WordCounter {
    fn new() -> Result<Self> {
        let mut pieces = whitespace_pieces();
        pieces.extend(SPECIALS.iter().map(|s| s.to_string()));
        let user_defined = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&pieces)
            .map_err(|e| train_error(format!("user-defined piece matcher: {e}")))?;
        Ok(Self {
            user_defined,
            words: BTreeMap::new(),
            segments: BTreeSet::new(),
            texts: 0,
        })
    }

    /// Adds one text: ChatGLM preprocessing, dummy prefix, spaces as `▁`, user-defined pieces
    /// left out, a word starting at each `▁`.
    fn add(&mut self, raw: &str) {
        if raw.is_empty() {
            return;
        }
        self.texts += 1;
        let prepared = format!("{SPACE}{}", text::preprocess(raw)).replace(' ', &SPACE.to_string());
        let mut start = 0;
        let cuts: Vec<(usize, usize)> = self
            .user_defined
            .find_iter(&prepared)
            .map(|m| (m.start(), m.end()))
            .collect();
        for (from, to) in cuts {
            self.add_segment(&prepared[start..from]);
            start = to;
        }
        self.add_segment(&prepared[start..]);
    }

    fn add_segment(&mut self, segment: &str) {
        if segment.is_empty() {
            return;
        }
        if !self.segments.contains(segment) {
            self.segments.insert(segment.to_string());
        }
        let mut word_start = 0;
        for (i, c) in segment.char_indices() {
            if c == SPACE && i > word_start {
                self.count(&segment[word_start..i]);
                word_start = i;
            }
        }
        if word_start < segment.len() {
            self.count(&segment[word_start..]);
        }
    }

    fn count(&mut self, word: &str) {
        match self.words.get_mut(word) {
            Some(n) => *n = n.saturating_add(1),
            None => {
                self.words.insert(word.to_string(), 1);
            }
        }
    }
}

/// Trains a unigram vocabulary of `cfg.vocab_size` pieces (reserved ones included) on
/// `texts` and lays it out like ChatGLM's `ice_text.model` (see the module docs).
///
/// Every character of the texts gets a piece, so every training text encodes without
/// `<unk>`. When the texts support fewer pieces than asked (a small corpus), the rest are
/// `<unused_K>` pieces that encoding never produces, so that the vocabulary still has exactly
/// `vocab_size` pieces and the specials keep the last 8 ids.
pub fn train_unigram(
    texts: impl Iterator<Item = String>,
    cfg: &TrainerConfig,
) -> Result<TrainedModel> {
    if cfg.max_piece_length == 0 {
        return Err(train_error("max_piece_length must be at least 1"));
    }
    if !(cfg.shrinking_factor > 0.0 && cfg.shrinking_factor < 1.0) {
        return Err(train_error(format!(
            "shrinking_factor must be between 0 and 1 (exclusive), not {}",
            cfg.shrinking_factor
        )));
    }
    if cfg.n_sub_iterations == 0 {
        return Err(train_error("n_sub_iterations must be at least 1"));
    }
    let mut counter = WordCounter::new()?;
    for t in texts {
        counter.add(&t);
    }
    if counter.words.is_empty() {
        return Err(train_error("no training text (every text is empty)"));
    }
    let chars: BTreeSet<char> = counter.words.keys().flat_map(|w| w.chars()).collect();
    let reserved = cfg.reserved_pieces();
    let min_vocab = reserved + chars.len();
    if cfg.vocab_size < min_vocab {
        return Err(train_error(format!(
            "vocab_size {} is too small: the texts have {} distinct characters (each needs a \
             piece) and {reserved} pieces are reserved for ChatGLM's specials; use at least \
             {min_vocab}",
            cfg.vocab_size,
            chars.len()
        )));
    }
    // SentencePiece stores the size as an int32.
    let vocab_i32 = i32::try_from(cfg.vocab_size)
        .map_err(|_| train_error(format!("vocab_size {} is too large", cfg.vocab_size)))?;
    let target = cfg.vocab_size - reserved;
    tracing::info!(
        texts = counter.texts,
        words = counter.words.len(),
        characters = chars.len(),
        target_pieces = target,
        "training a unigram tokenizer"
    );

    // Each character also as a one-character sentence: its expected count is then at least
    // 1, so the EM never drops it, and the trainer's final step never has to invent a score
    // for a missing character (it would do so in hash order, breaking determinism).
    let mut sentences = counter.words.clone();
    for c in &chars {
        let n = sentences.entry(c.to_string()).or_insert(0);
        *n = n.saturating_add(1);
    }
    // The distinct segments (whole texts between user-defined pieces) go in with count 0:
    // they change no EM statistic, but the trainer seeds its pieces from the substrings
    // that repeat (and are followed by different characters) in what it is given, and among
    // distinct words alone a whole word never does. With the segments, each followed by a
    // `▁` so that their last word is followed by something else than in its own entry, the
    // seeds are the substrings that repeat in the texts, as in SentencePiece (those spanning
    // a `▁` can never match a word and die in the first EM step).
    for seg in &counter.segments {
        sentences.entry(format!("{seg}{SPACE}")).or_insert(0);
    }
    let sentences: Vec<(String, u32)> = sentences.into_iter().collect();

    let trainer = UnigramTrainer::builder()
        .show_progress(false)
        .vocab_size((target + 1) as u32)
        .n_sub_iterations(cfg.n_sub_iterations)
        .shrinking_factor(cfg.shrinking_factor)
        .max_piece_length(cfg.max_piece_length)
        .unk_token(Some(HEAD[0].to_string()))
        .build()
        .map_err(|e| train_error(format!("trainer settings: {e}")))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| train_error(format!("thread pool: {e}")))?;
    let mut model = Unigram::default();
    pool.install(|| trainer.do_train(sentences, &mut model))
        .map_err(|e| train_error(e.to_string()))?;

    let reserved_names: HashSet<String> = reserved_names(cfg);
    let mut trained: Vec<(String, f32)> = model
        .iter()
        .skip(1) // the trainer's `<unk>`
        .filter(|(p, _)| !reserved_names.contains(p))
        .map(|(p, s)| (p.clone(), if s.is_finite() { *s as f32 } else { 0.0 }))
        .collect();
    // Best first; ties by text, whatever order the trainer's hash sets gave.
    trained.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    trained.truncate(target);
    let missing: Vec<char> = chars
        .iter()
        .copied()
        .filter(|c| {
            let mut buf = [0u8; 4];
            let s: &str = c.encode_utf8(&mut buf);
            !trained.iter().any(|(p, _)| p == s)
        })
        .collect();
    if !missing.is_empty() {
        return Err(train_error(format!(
            "the trainer dropped the characters {missing:?}; training text would encode to <unk>"
        )));
    }
    let unused = target - trained.len();
    if unused > 0 {
        tracing::warn!(
            trained = trained.len(),
            unused,
            "the texts support fewer pieces than asked; filling with <unused_K> pieces (a \
             smaller --vocab-size avoids them)"
        );
    }

    let piece = |text: &str, score: f32, kind: i32| SentencePiece {
        piece: Some(text.to_string()),
        score: Some(score),
        r#type: Some(kind),
    };
    let mut pieces = Vec::with_capacity(cfg.vocab_size);
    pieces.push(piece(HEAD[0], 0.0, UNKNOWN));
    for name in &HEAD[1..] {
        pieces.push(piece(name, 0.0, CONTROL));
    }
    for name in whitespace_pieces() {
        pieces.push(piece(&name, 0.0, USER_DEFINED));
    }
    if cfg.byte_fallback {
        for b in 0..=255u8 {
            pieces.push(piece(&byte_piece(b), 0.0, BYTE));
        }
    }
    let trained_pieces = trained.len();
    for (text, score) in trained {
        pieces.push(piece(&text, score, NORMAL));
    }
    let taken: HashSet<String> = pieces.iter().filter_map(|p| p.piece.clone()).collect();
    // `<unused_0>` is a special; fillers count from 1, skipping names a trained piece took.
    let fillers = (1usize..)
        .map(|k| format!("<unused_{k}>"))
        .filter(|name| !taken.contains(name));
    for name in fillers.take(unused) {
        pieces.push(piece(&name, 0.0, UNUSED));
    }
    let first_special = pieces.len() as u32;
    for name in SPECIALS {
        pieces.push(piece(name, 0.0, USER_DEFINED));
    }
    debug_assert_eq!(pieces.len(), cfg.vocab_size);
    // Indices into SPECIALS.
    let special = |index: u32| first_special + index;

    let proto = ModelProto {
        pieces,
        trainer_spec: Some(TrainerSpec {
            model_type: Some(1),
            vocab_size: Some(vocab_i32),
            byte_fallback: Some(cfg.byte_fallback),
            unk_id: Some(0),
            bos_id: Some(1),
            eos_id: Some(2),
            pad_id: Some(3),
            ..Default::default()
        }),
        normalizer_spec: Some(NormalizerSpec {
            name: Some("identity".into()),
            precompiled_charsmap: Some(Vec::new()),
            add_dummy_prefix: Some(true),
            remove_extra_whitespaces: Some(false),
            escape_whitespaces: Some(true),
        }),
    };
    let summary = TrainSummary {
        vocab_size: cfg.vocab_size,
        trained_pieces,
        unused_pieces: unused,
        texts: counter.texts,
        distinct_words: counter.words.len(),
        characters: chars.len(),
        byte_fallback: cfg.byte_fallback,
        unk_id: 0,
        pad_id: 3,
        mask_id: special(0),
        gmask_id: special(1),
        sop_id: special(4),
        eop_id: special(5),
    };
    Ok(TrainedModel { proto, summary })
}

/// `<0xXX>`.
fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// Every piece text the layout reserves, which a trained piece must not repeat.
fn reserved_names(cfg: &TrainerConfig) -> HashSet<String> {
    let mut names: HashSet<String> = HEAD.iter().map(|s| s.to_string()).collect();
    names.extend(whitespace_pieces());
    names.extend(SPECIALS.iter().map(|s| s.to_string()));
    if cfg.byte_fallback {
        names.extend((0..=255u8).map(byte_piece));
    }
    names
}

/// Writes a trained model to `path` atomically (temporary sibling, then rename).
pub fn write_model(path: &Path, model: &TrainedModel) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TokenizerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write_atomic(path, &model.to_bytes())
}

#[cfg(test)]
mod tests;
