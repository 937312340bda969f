//! Cutting training texts into the words the encoder will segment, and counting them.

use std::collections::{BTreeMap, BTreeSet};

use aho_corasick::{AhoCorasick, MatchKind};

use super::layout::{whitespace_pieces, SPECIALS};
use crate::normalize::chatglm::preprocess;
use crate::normalize::sentencepiece::SPACE;

/// Cuts texts into the words the encoder will segment, counting them.
pub struct WordCounter {
    user_defined: AhoCorasick,
    /// Each word (with its leading `▁`, if any) and how often it occurs.
    pub words: BTreeMap<String, u32>,
    /// The distinct segments: texts between user-defined pieces, prepared as for encoding.
    pub segments: BTreeSet<String>,
    /// Non-empty texts added.
    pub texts: usize,
}

impl WordCounter {
    /// An empty counter; fails (with the reason) if the user-defined piece matcher cannot be
    /// built.
    pub fn new() -> Result<Self, String> {
        let mut pieces = whitespace_pieces();
        pieces.extend(SPECIALS.iter().map(|s| s.to_string()));
        let user_defined = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&pieces)
            .map_err(|e| format!("user-defined piece matcher: {e}"))?;
        Ok(Self {
            user_defined,
            words: BTreeMap::new(),
            segments: BTreeSet::new(),
            texts: 0,
        })
    }

    /// Adds one text: ChatGLM preprocessing, dummy prefix, spaces as `▁`, user-defined pieces
    /// left out, a word starting at each `▁`.
    pub fn add(&mut self, raw: &str) {
        if raw.is_empty() {
            return;
        }
        self.texts += 1;
        let prepared = format!("{SPACE}{}", preprocess(raw)).replace(' ', &SPACE.to_string());
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
