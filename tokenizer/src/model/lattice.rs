//! Unigram segmentation for the lean driver: the same Viterbi search as `tokenizers`'
//! `Unigram::encode_optimized` (same scores, unknown penalty, tie-breaking and unknown
//! fusing), over a byte-level double-array trie ([`super::trie`]) instead of its hash-map
//! trie, without building strings. Only used for words missing from the word cache;
//! `tests/it/tokenizer_golden.rs` and the benchmark check it against the `tokenizers` model id
//! for id.

use tokenizers::models::unigram::Unigram;

use super::trie::Trie;

/// Penalty of an unknown character below the lowest piece score (SentencePiece, tokenizers).
const UNK_PENALTY: f64 = 10.0;

/// `Best::start` of a lattice position no path reaches yet.
const UNREACHED: u32 = u32::MAX;

/// A Unigram model prepared for fast Viterbi search.
#[derive(Debug, Clone)]
pub struct FastUnigram {
    trie: Trie,
    scores: Vec<f64>,
    unk_id: u32,
    unk_score: f64,
    byte_ids: Option<[u32; 256]>,
}

/// Reusable buffers of the search (one per caller, so that words allocate nothing).
#[derive(Debug, Default)]
pub struct Scratch {
    best: Vec<Best>,
    path: Vec<(u32, u32, u32)>,
}

/// The best path found so far to a lattice position: its score and last piece.
#[derive(Debug, Clone, Copy)]
struct Best {
    score: f64,
    start: u32,
    id: u32,
}

/// Length of the UTF-8 character whose first byte is `lead`.
#[inline]
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

impl FastUnigram {
    /// Mirrors `model`; `byte_ids` are the byte pieces when byte fallback is on.
    pub fn new(model: &Unigram, unk_id: u32, byte_ids: Option<[u32; 256]>) -> Result<Self, String> {
        let vocab: Vec<&(String, f64)> = model.iter().collect();
        let scores: Vec<f64> = vocab.iter().map(|(_, s)| *s).collect();
        let id = |i: usize| u32::try_from(i).map_err(|_| "vocabulary too large".to_string());
        let keys = vocab
            .iter()
            .enumerate()
            .map(|(i, (p, _))| Ok((p.as_bytes(), id(i)?)))
            .collect::<Result<Vec<_>, String>>()?;
        // A piece listed twice: `tokenizers` maps its text to the last id (and that id's score).
        let trie = Trie::new(&keys, |_, _| true)?;
        Ok(Self {
            trie,
            scores,
            unk_id,
            unk_score: model.min_score - UNK_PENALTY,
            byte_ids: if model.byte_fallback() {
                byte_ids
            } else {
                None
            },
        })
    }

    /// Appends the ids of `word` to `out`, reusing `scratch`'s buffers (a fresh
    /// `&mut Scratch::default()` works too, at the cost of allocating them).
    pub fn encode(&self, word: &str, scratch: &mut Scratch, out: &mut Vec<u32>) {
        let w = word.as_bytes();
        let n = w.len();
        if n == 0 {
            return;
        }
        let Scratch { best, path } = scratch;
        best.clear();
        best.resize(
            n + 1,
            Best {
                score: 0.0,
                start: UNREACHED,
                id: 0,
            },
        );
        let mut start = 0;
        while start < n {
            let here = best[start].score;
            let ch = char_len(w[start]);
            let mut single = false;
            // Pieces starting here, shortest first (the order `tokenizers` tries them in).
            self.trie.prefixes(&w[start..], |len, id| {
                let cand = self.scores[id as usize] + here;
                let target = &mut best[start + len];
                if target.start == UNREACHED || cand > target.score {
                    *target = Best {
                        score: cand,
                        start: start as u32,
                        id,
                    };
                }
                single |= len == ch;
            });
            let end = (start + ch).min(n);
            if !single {
                let cand = self.unk_score + here;
                let target = &mut best[end];
                if target.start == UNREACHED || cand > target.score {
                    *target = Best {
                        score: cand,
                        start: start as u32,
                        id: self.unk_id,
                    };
                }
            }
            start = end;
        }
        // Backtrack, then emit with consecutive unknowns fused (as bytes with fallback).
        path.clear();
        let mut end = n;
        while end > 0 && best[end].start != UNREACHED {
            let b = best[end];
            path.push((b.start, end as u32, b.id));
            end = b.start as usize;
        }
        let mut i = path.len();
        while i > 0 {
            i -= 1;
            let (start, mut stop, id) = path[i];
            if id != self.unk_id {
                out.push(id);
                continue;
            }
            while i > 0 && path[i - 1].2 == self.unk_id {
                i -= 1;
                stop = path[i].1;
            }
            match &self.byte_ids {
                Some(bytes) => out.extend(
                    w[start as usize..stop as usize]
                        .iter()
                        .map(|&b| bytes[b as usize]),
                ),
                None => out.push(self.unk_id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokenizers::Model;

    use super::*;

    /// A small deterministic generator (tests only).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % n
        }
    }

    fn random_text(rng: &mut Lcg, alphabet: &[char], max: usize) -> String {
        let len = rng.below(max) + 1;
        (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect()
    }

    /// The fast search gives `tokenizers`' ids on random words, with duplicated pieces,
    /// unknown characters, and with and without byte fallback.
    #[test]
    fn matches_tokenizers_unigram() {
        let alphabet: Vec<char> = "ab\u{2581}cé字😀\0".chars().collect();
        let pieces_alphabet: Vec<char> = "ab\u{2581}cé字".chars().collect();
        for byte_fallback in [false, true] {
            let mut rng = Lcg(7 + u64::from(byte_fallback));
            let mut vocab: Vec<(String, f64)> = vec![("<unk>".into(), 0.0)];
            for _ in 0..300 {
                let piece = random_text(&mut rng, &pieces_alphabet, 4);
                vocab.push((piece, -(rng.below(2000) as f64) / 100.0));
            }
            let mut byte_ids = [0u32; 256];
            if byte_fallback {
                for (b, id) in byte_ids.iter_mut().enumerate() {
                    *id = vocab.len() as u32;
                    vocab.push((format!("<0x{b:02X}>"), -30.0));
                }
            }
            let model = Unigram::from(vocab, Some(0), byte_fallback).unwrap();
            let fast = FastUnigram::new(&model, 0, Some(byte_ids)).unwrap();
            let mut scratch = Scratch::default();
            for _ in 0..2000 {
                let word = random_text(&mut rng, &alphabet, 12);
                let want: Vec<u32> = model
                    .tokenize(&word)
                    .unwrap()
                    .into_iter()
                    .map(|t| t.id)
                    .collect();
                let mut got = Vec::new();
                fast.encode(&word, &mut scratch, &mut got);
                assert_eq!(got, want, "{word:?} (byte fallback {byte_fallback})");
                let mut again = Vec::new();
                fast.encode(&word, &mut Scratch::default(), &mut again);
                assert_eq!(again, want);
            }
        }
    }
}
