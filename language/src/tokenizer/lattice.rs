//! Unigram segmentation for the lean driver: the same Viterbi search as `tokenizers`'
//! `Unigram::encode_optimized` (same scores, unknown penalty, tie-breaking and unknown
//! fusing), over an Aho-Corasick automaton instead of its hash-map trie, without building
//! strings. Only used for words missing from the word cache; `tests/tokenizer_golden.rs`
//! and the benchmark check it against the `tokenizers` model id for id.

use std::cell::RefCell;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use tokenizers::models::unigram::Unigram;

/// Largest vocabulary searched with a DFA (else a contiguous NFA).
const DFA_MAX_PIECES: usize = 20_000;

/// Penalty of an unknown character below the lowest piece score (SentencePiece, tokenizers).
const UNK_PENALTY: f64 = 10.0;

/// A Unigram model prepared for fast Viterbi search.
#[derive(Debug, Clone)]
pub struct FastUnigram {
    automaton: AhoCorasick,
    scores: Vec<f64>,
    unk_id: u32,
    unk_score: f64,
    byte_ids: Option<[u32; 256]>,
}

/// A lattice edge or path step: start byte, end byte, piece id.
type Edge = (usize, usize, u32);

thread_local! {
    /// Reused per-thread buffers: lattice edges and best paths.
    static SCRATCH: RefCell<(Vec<Edge>, Vec<Best>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

#[derive(Clone, Copy)]
struct Best {
    score: f64,
    start: usize,
    id: u32,
    reached: bool,
}

impl FastUnigram {
    /// Mirrors `model`; `byte_ids` are the byte pieces when byte fallback is on.
    pub fn new(model: &Unigram, unk_id: u32, byte_ids: Option<[u32; 256]>) -> Result<Self, String> {
        let vocab: Vec<&(String, f64)> = model.iter().collect();
        // A DFA is fastest but its size grows with the vocabulary: only for small ones.
        let kind = (vocab.len() <= DFA_MAX_PIECES).then_some(AhoCorasickKind::DFA);
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(kind)
            .build(vocab.iter().map(|(p, _)| p.as_str()))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            automaton,
            scores: vocab.iter().map(|(_, s)| *s).collect(),
            unk_id,
            unk_score: model.min_score - UNK_PENALTY,
            byte_ids: if model.byte_fallback() {
                byte_ids
            } else {
                None
            },
        })
    }

    /// Appends the ids of `word` to `out`.
    pub fn encode(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut s) => {
                let (edges, best) = &mut *s;
                self.search(word, edges, best, out);
            }
            Err(_) => self.search(word, &mut Vec::new(), &mut Vec::new(), out),
        });
    }

    fn search(&self, word: &str, edges: &mut Vec<Edge>, best: &mut Vec<Best>, out: &mut Vec<u32>) {
        let n = word.len();
        edges.clear();
        edges.extend(
            self.automaton
                .find_overlapping_iter(word)
                .map(|m| (m.start(), m.end(), m.pattern().as_u32())),
        );
        edges.sort_unstable();
        let unset = Best {
            score: 0.0,
            start: 0,
            id: 0,
            reached: false,
        };
        best.clear();
        best.resize(n + 1, unset);
        let mut e = 0;
        for (start, ch) in word.char_indices() {
            while e < edges.len() && edges[e].0 < start {
                e += 1;
            }
            let here = best[start].score;
            let mut single = false;
            while e < edges.len() && edges[e].0 == start {
                let (_, end, id) = edges[e];
                let cand = self.scores[id as usize] + here;
                let target = &mut best[end];
                if !target.reached || cand > target.score {
                    *target = Best {
                        score: cand,
                        start,
                        id,
                        reached: true,
                    };
                }
                single |= end - start == ch.len_utf8();
                e += 1;
            }
            if !single {
                let cand = self.unk_score + here;
                let target = &mut best[start + ch.len_utf8()];
                if !target.reached || cand > target.score {
                    *target = Best {
                        score: cand,
                        start,
                        id: self.unk_id,
                        reached: true,
                    };
                }
            }
        }
        // Backtrack, then emit with consecutive unknowns fused (as bytes with fallback).
        // The edge buffer is free again: reuse it for the path.
        let path = edges;
        path.clear();
        let mut end = n;
        while end > 0 && best[end].reached {
            let b = best[end];
            path.push((b.start, end, b.id));
            end = b.start;
        }
        path.reverse();
        let mut i = 0;
        while i < path.len() {
            let (start, mut stop, id) = path[i];
            i += 1;
            if id != self.unk_id {
                out.push(id);
                continue;
            }
            while i < path.len() && path[i].2 == self.unk_id {
                stop = path[i].1;
                i += 1;
            }
            match &self.byte_ids {
                Some(bytes) => out.extend(word[start..stop].bytes().map(|b| bytes[b as usize])),
                None => out.push(self.unk_id),
            }
        }
    }
}
