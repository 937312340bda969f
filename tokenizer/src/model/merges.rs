//! BPE segmentation for the lean driver: the same merge rule as `tokenizers`' BPE
//! (`Word::merge_all`: lowest merge rank first, leftmost on ties), for words of up to
//! [`MAX_SYMBOLS`] characters with byte fallback, without building strings. Longer words go
//! to the `tokenizers` model. Checked against it by `tests/it/tokenizer_golden.rs` and the
//! benchmark.

use ahash::AHashMap;

/// Longest word (in characters) handled here; the quadratic scan is only cheap for short words.
pub const MAX_SYMBOLS: usize = 64;

/// A BPE merge table prepared for fast lookup.
#[derive(Debug, Clone)]
pub struct FastBpe {
    /// (left id, right id) → (rank, merged id).
    merges: AHashMap<(u32, u32), (u32, u32)>,
    /// Single-character pieces.
    chars: AHashMap<char, u32>,
    byte_ids: [u32; 256],
}

impl FastBpe {
    /// Builds the table from the vocabulary and the ordered merges; `None` if a merge names a
    /// piece outside the vocabulary.
    pub fn new(
        vocab: &AHashMap<String, u32>,
        merges: &[(String, String)],
        byte_ids: [u32; 256],
    ) -> Option<Self> {
        let mut table = AHashMap::with_capacity(merges.len());
        for (rank, (l, r)) in merges.iter().enumerate() {
            let merged = vocab.get(&format!("{l}{r}"))?;
            let key = (*vocab.get(l)?, *vocab.get(r)?);
            table.entry(key).or_insert((rank as u32, *merged));
        }
        let chars = vocab
            .iter()
            .filter_map(|(p, id)| {
                let mut it = p.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => Some((c, *id)),
                    _ => None,
                }
            })
            .collect();
        Some(Self {
            merges: table,
            chars,
            byte_ids,
        })
    }

    /// Appends the ids of `word` to `out`; `false` (and nothing appended) if the word is too
    /// long for this path.
    pub fn encode(&self, word: &str, out: &mut Vec<u32>) -> bool {
        if word.chars().count() > MAX_SYMBOLS {
            return false;
        }
        let mut syms: Vec<u32> = Vec::with_capacity(word.len());
        for c in word.chars() {
            match self.chars.get(&c) {
                Some(&id) => syms.push(id),
                None => {
                    let mut buf = [0u8; 4];
                    syms.extend(
                        c.encode_utf8(&mut buf)
                            .bytes()
                            .map(|b| self.byte_ids[b as usize]),
                    );
                }
            }
        }
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merges.get(&(syms[i], syms[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, merged));
                    }
                }
            }
            match best {
                Some((_, i, merged)) => {
                    syms[i] = merged;
                    syms.remove(i + 1);
                }
                None => break,
            }
        }
        out.extend_from_slice(&syms);
        true
    }
}
