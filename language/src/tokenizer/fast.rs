//! A lean driver for the `tokenizers` model, used by [`super::convert::HfPipeline::encode`]
//! when the pipeline is the plain one (no charsmap): it does what the added-token split,
//! `' '` → `▁` normaliser and `Metaspace` pre-tokenizer do, without their offset bookkeeping,
//! and memoises each word's ids. The segmentation itself is still the `tokenizers` model's.
//! `tests/tokenizer_golden.rs` and the benchmark check it gives the same ids as the pipeline.

use std::sync::Mutex;

use ahash::AHashMap;
use aho_corasick::{AhoCorasick, MatchKind};
use tokenizers::{Model, ModelWrapper};

use super::convert::SPACE;
use super::lattice::FastUnigram;
use super::merges::FastBpe;

/// Words memoised before the cache is emptied (bounds memory on endless distinct input).
const CACHE_LIMIT: usize = 1 << 19;

/// Splits on user-defined pieces and `▁` word starts, then asks the model per word.
#[derive(Debug)]
pub struct FastEncoder {
    matcher: Option<AhoCorasick>,
    user_ids: Vec<u32>,
    split_words: bool,
    unigram: Option<FastUnigram>,
    bpe: Option<FastBpe>,
    cache: Mutex<AHashMap<Box<str>, Box<[u32]>>>,
}

impl Clone for FastEncoder {
    fn clone(&self) -> Self {
        Self {
            matcher: self.matcher.clone(),
            user_ids: self.user_ids.clone(),
            split_words: self.split_words,
            unigram: self.unigram.clone(),
            bpe: self.bpe.clone(),
            cache: Mutex::new(AHashMap::new()),
        }
    }
}

impl FastEncoder {
    /// `user` are the user-defined pieces with their ids; `split_words` whether the input may
    /// be cut before each `▁` (the `Metaspace` `split` flag); `unigram` the fast Viterbi
    /// search and `bpe` the merge loop to use instead of the model's own.
    pub fn new(
        user: Vec<(String, u32)>,
        split_words: bool,
        unigram: Option<FastUnigram>,
        bpe: Option<FastBpe>,
    ) -> Result<Self, String> {
        let matcher = if user.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(user.iter().map(|(p, _)| p.as_str()))
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Self {
            matcher,
            user_ids: user.into_iter().map(|(_, id)| id).collect(),
            split_words,
            unigram,
            bpe,
            cache: Mutex::new(AHashMap::new()),
        })
    }

    /// Ids of `text` (the dummy prefix already applied by the caller).
    pub fn encode(&self, model: &ModelWrapper, text: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut buf = String::new();
        let mut last = 0;
        if let Some(m) = &self.matcher {
            for hit in m.find_iter(text) {
                self.segment(model, &text[last..hit.start()], &mut buf, &mut out)?;
                out.push(self.user_ids[hit.pattern().as_usize()]);
                last = hit.end();
            }
        }
        self.segment(model, &text[last..], &mut buf, &mut out)?;
        Ok(out)
    }

    fn segment(
        &self,
        model: &ModelWrapper,
        seg: &str,
        buf: &mut String,
        out: &mut Vec<u32>,
    ) -> Result<(), String> {
        if seg.is_empty() {
            return Ok(());
        }
        buf.clear();
        buf.extend(seg.chars().map(|c| if c == ' ' { SPACE } else { c }));
        if !self.split_words {
            return self.word(model, buf, out);
        }
        let mut start = 0;
        for (i, _) in buf.match_indices(SPACE) {
            if i > start {
                self.word(model, &buf[start..i], out)?;
            }
            start = i;
        }
        self.word(model, &buf[start..], out)
    }

    fn word(&self, model: &ModelWrapper, word: &str, out: &mut Vec<u32>) -> Result<(), String> {
        if let Ok(cache) = self.cache.lock() {
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                return Ok(());
            }
        }
        let mut ids = Vec::new();
        let done = match (&self.unigram, &self.bpe) {
            (Some(u), _) => {
                u.encode(word, &mut ids);
                true
            }
            (None, Some(b)) => b.encode(word, &mut ids),
            (None, None) => false,
        };
        if !done {
            ids = model
                .tokenize(word)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| t.id)
                .collect();
        }
        out.extend_from_slice(&ids);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(word.into(), ids.into_boxed_slice());
        }
        Ok(())
    }
}
