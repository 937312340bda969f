//! A lean driver for the `tokenizers` model, used by [`super::pipeline::HfPipeline::encode`]
//! when the pipeline is the plain one (no charsmap): it does what the added-token split,
//! `' '` → `▁` normaliser and `Metaspace` pre-tokenizer do, without their offset bookkeeping,
//! and memoises each word's ids. The segmentation itself is the `tokenizers` model's or an
//! id-exact copy of it ([`FastUnigram`], [`FastBpe`]).
//! `tests/it/tokenizer_golden.rs` and the benchmark check it gives the same ids as the pipeline.

use std::sync::{Mutex, TryLockError};

use aho_corasick::{AhoCorasick, MatchKind};
use tokenizers::{Model, ModelWrapper};

use super::cache::{cache_hash, WordCache, CACHE_LIMIT};
use super::lattice::{FastUnigram, Scratch};
use super::merges::FastBpe;
use crate::normalize::sentencepiece::SPACE;

/// The UTF-8 bytes of `▁` (U+2581).
const SPACE_UTF8: [u8; 3] = [0xE2, 0x96, 0x81];

/// Splits on user-defined pieces and `▁` word starts, then asks the model per word.
#[derive(Debug)]
pub struct FastEncoder {
    matcher: Option<AhoCorasick>,
    user_ids: Vec<u32>,
    split_words: bool,
    unigram: Option<FastUnigram>,
    bpe: Option<FastBpe>,
    state: Mutex<State>,
}

impl Clone for FastEncoder {
    fn clone(&self) -> Self {
        Self {
            matcher: self.matcher.clone(),
            user_ids: self.user_ids.clone(),
            split_words: self.split_words,
            unigram: self.unigram.clone(),
            bpe: self.bpe.clone(),
            state: Mutex::new(State::new(true)),
        }
    }
}

/// What one `encode` call works with: the word cache and reusable buffers. Calls that find
/// it in use by another thread use a fresh one without a cache.
#[derive(Debug)]
struct State {
    cache: WordCache,
    scratch: Scratch,
    norm: String,
}

impl State {
    fn new(cached: bool) -> Self {
        Self {
            cache: WordCache::new(if cached { CACHE_LIMIT } else { 0 }),
            scratch: Scratch::default(),
            norm: String::new(),
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
            state: Mutex::new(State::new(true)),
        })
    }

    /// Ids of `text` (the dummy prefix already applied by the caller).
    pub fn encode(&self, model: &ModelWrapper, text: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        match self.state.try_lock() {
            Ok(mut state) => self.encode_into(model, text, &mut state, &mut out)?,
            Err(TryLockError::WouldBlock) => {
                self.encode_into(model, text, &mut State::new(false), &mut out)?
            }
            Err(TryLockError::Poisoned(poisoned)) => {
                // A panic left the state half-updated: start from an empty cache.
                let mut state = poisoned.into_inner();
                *state = State::new(true);
                self.state.clear_poison();
                self.encode_into(model, text, &mut state, &mut out)?
            }
        }
        Ok(out)
    }

    fn encode_into(
        &self,
        model: &ModelWrapper,
        text: &str,
        state: &mut State,
        out: &mut Vec<u32>,
    ) -> Result<(), String> {
        let mut last = 0;
        if let Some(m) = &self.matcher {
            for hit in m.find_iter(text) {
                self.segment(model, &text[last..hit.start()], state, out)?;
                out.push(self.user_ids[hit.pattern().as_usize()]);
                last = hit.end();
            }
        }
        self.segment(model, &text[last..], state, out)
    }

    /// Cuts `seg` before every space or `▁` (which the normaliser makes the same) when words
    /// may be split, and encodes each piece.
    fn segment(
        &self,
        model: &ModelWrapper,
        seg: &str,
        state: &mut State,
        out: &mut Vec<u32>,
    ) -> Result<(), String> {
        if seg.is_empty() {
            return Ok(());
        }
        if !self.split_words {
            return self.word(model, seg, state, out);
        }
        let bytes = seg.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let step = match bytes[i] {
                b' ' => 1,
                0xE2 if bytes[i..].starts_with(&SPACE_UTF8) => SPACE_UTF8.len(),
                _ => {
                    i += 1;
                    continue;
                }
            };
            if i > start {
                self.word(model, &seg[start..i], state, out)?;
            }
            start = i;
            i += step;
        }
        self.word(model, &seg[start..], state, out)
    }

    /// Appends the ids of `raw` (a word before the `' '` → `▁` normalisation).
    fn word(
        &self,
        model: &ModelWrapper,
        raw: &str,
        state: &mut State,
        out: &mut Vec<u32>,
    ) -> Result<(), String> {
        let State {
            cache,
            scratch,
            norm,
        } = state;
        let hash = cache_hash(raw.as_bytes());
        if let Some(ids) = cache.get(hash, raw.as_bytes()) {
            out.extend_from_slice(ids);
            return Ok(());
        }
        let word = if raw.as_bytes().contains(&b' ') {
            norm.clear();
            for (i, part) in raw.split(' ').enumerate() {
                if i > 0 {
                    norm.push(SPACE);
                }
                norm.push_str(part);
            }
            norm.as_str()
        } else {
            raw
        };
        let mark = out.len();
        let done = match (&self.unigram, &self.bpe) {
            (Some(u), _) => {
                u.encode(word, scratch, out);
                true
            }
            (None, Some(b)) => b.encode(word, out),
            (None, None) => false,
        };
        if !done {
            let tokens = model.tokenize(word).map_err(|e| e.to_string())?;
            out.extend(tokens.into_iter().map(|t| t.id));
        }
        cache.insert(hash, raw.as_bytes(), &out[mark..]);
        Ok(())
    }
}
