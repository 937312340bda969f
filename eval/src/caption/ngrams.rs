//! Turns tokenised captions into interned word ids and sorted n-gram count lists, so that the
//! scorers compare integers instead of strings.
//!
//! Interning runs in parallel over a fixed number of hash shards (so ids do not depend on the
//! thread count): words first, then n-grams of order k as `(id of the (k-1)-gram, next word)`.

use std::hash::{BuildHasher, BuildHasherDefault, Hash};

use rayon::prelude::*;

use crate::hash::{FastHasher, FastMap};

/// Largest n-gram order used by BLEU and CIDEr.
pub(crate) const MAX_N: usize = 4;

/// Number of interning shards (fixed for reproducible ids).
const SHARDS: usize = 16;

/// One caption after encoding.
#[derive(Debug, Clone, Default)]
pub(crate) struct Encoded {
    /// Word ids in order (what `str.split()` gives, interned).
    pub words: Vec<u32>,
    /// `(ngram id, count)` for all 1..=4-grams, sorted by id.
    pub grams: Vec<(u32, u32)>,
}

/// All captions of an evaluation set, encoded with one shared vocabulary.
#[derive(Debug, Default)]
pub(crate) struct EncodedSet {
    /// Encoded captions, in the order they were given.
    pub captions: Vec<Encoded>,
    /// N-gram order (1..=4) of every n-gram id.
    pub order: Vec<u8>,
}

fn shard_of(hash: u64) -> usize {
    ((hash >> 40) as usize) % SHARDS
}

/// Assigns dense ids `first_id..` to the distinct keys; returns the id of every key and the
/// number of distinct keys.
fn intern<K: Hash + Eq + Copy + Send + Sync>(keys: &[K], first_id: u32) -> (Vec<u32>, u32) {
    let build = BuildHasherDefault::<FastHasher>::default();
    let shards: Vec<u8> = keys
        .par_iter()
        .map(|k| shard_of(build.hash_one(k)) as u8)
        .collect();
    let mut buckets: Vec<Vec<u32>> = (0..SHARDS)
        .map(|_| Vec::with_capacity(keys.len() / SHARDS + 16))
        .collect();
    for (i, &shard) in shards.iter().enumerate() {
        buckets[usize::from(shard)].push(i as u32);
    }
    // Per shard: the local id of each of its keys (in bucket order) and the distinct count.
    let local: Vec<(Vec<u32>, u32)> = buckets
        .par_iter()
        .map(|bucket| {
            let mut map: FastMap<K, u32> = FastMap::default();
            map.reserve(bucket.len() / 2);
            let ids = bucket
                .iter()
                .map(|&i| {
                    let next = map.len() as u32;
                    *map.entry(keys[i as usize]).or_insert(next)
                })
                .collect();
            (ids, map.len() as u32)
        })
        .collect();
    let mut ids = vec![0u32; keys.len()];
    let mut base = first_id;
    for (bucket, (local_ids, count)) in buckets.iter().zip(&local) {
        for (&i, &l) in bucket.iter().zip(local_ids) {
            ids[i as usize] = base + l;
        }
        base += count;
    }
    (ids, base - first_id)
}

/// Start offsets of each caption's k-grams in a flat array, plus the total.
fn offsets(lens: &[usize], k: usize) -> (Vec<usize>, usize) {
    let mut out = Vec::with_capacity(lens.len());
    let mut total = 0;
    for &l in lens {
        out.push(total);
        total += (l + 1).saturating_sub(k);
    }
    (out, total)
}

/// Encodes whitespace-separated token strings (empty string = no tokens), split as Python's
/// `str.split()` splits them.
pub(crate) fn encode(texts: &[&str]) -> EncodedSet {
    let split: Vec<Vec<&str>> = texts
        .par_iter()
        .map(|t| {
            t.split(super::tokenize::is_python_space)
                .filter(|w| !w.is_empty())
                .collect()
        })
        .collect();
    let lens: Vec<usize> = split.iter().map(Vec::len).collect();
    let flat_words: Vec<&str> = split.into_iter().flatten().collect();
    let (word_ids, vocab) = intern(&flat_words, 0);
    drop(flat_words);

    let mut order: Vec<u8> = vec![1; vocab as usize];
    let (word_off, _) = offsets(&lens, 1);
    // ids of every order, flat, with their per-caption offsets; index 0 = unigrams.
    let mut levels: Vec<(Vec<u32>, Vec<usize>)> = vec![(word_ids, word_off.clone())];
    for k in 2..=MAX_N {
        let (prev_ids, prev_off) = &levels[k - 2];
        let words = &levels[0].0;
        let word_off = &word_off;
        let keys: Vec<u64> = (0..lens.len())
            .into_par_iter()
            .flat_map_iter(|c| {
                let n = (lens[c] + 1).saturating_sub(k);
                (0..n).map(move |i| {
                    let prefix = prev_ids[prev_off[c] + i];
                    let next = words[word_off[c] + i + k - 1];
                    (u64::from(prefix) << 32) | u64::from(next)
                })
            })
            .collect();
        let (ids, count) = intern(&keys, order.len() as u32);
        order.extend(std::iter::repeat_n(k as u8, count as usize));
        let (off, _) = offsets(&lens, k);
        levels.push((ids, off));
    }

    let captions = (0..lens.len())
        .into_par_iter()
        .map(|c| {
            let l = lens[c];
            let words = levels[0].0[word_off[c]..word_off[c] + l].to_vec();
            let mut ids: Vec<u32> = Vec::with_capacity(4 * l);
            for (k, (level_ids, level_off)) in levels.iter().enumerate() {
                let n = (l + 1).saturating_sub(k + 1);
                ids.extend_from_slice(&level_ids[level_off[c]..level_off[c] + n]);
            }
            ids.sort_unstable();
            let mut grams: Vec<(u32, u32)> = Vec::with_capacity(ids.len());
            for id in ids {
                match grams.last_mut() {
                    Some((last, count)) if *last == id => *count += 1,
                    _ => grams.push((id, 1)),
                }
            }
            Encoded { words, grams }
        })
        .collect();
    EncodedSet { captions, order }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_all_orders() {
        let set = encode(&["a b a b", "b a", ""]);
        let first = &set.captions[0];
        // unigrams a, b (2 each), bigrams ab (2), ba (1), trigrams aba, bab, 4-gram abab.
        assert_eq!(first.grams.len(), 7);
        let total: u32 = first.grams.iter().map(|g| g.1).sum();
        assert_eq!(total, 4 + 3 + 2 + 1);
        let per_order = |o: u8| {
            first
                .grams
                .iter()
                .filter(|g| set.order[g.0 as usize] == o)
                .count()
        };
        assert_eq!(
            (per_order(1), per_order(2), per_order(3), per_order(4)),
            (2, 2, 2, 1)
        );
        // "b a" shares its ids with the first caption's "b", "a" and "b a".
        let ba = &set.captions[1].grams;
        assert_eq!(ba.len(), 3);
        assert!(ba.iter().all(|g| first.grams.iter().any(|f| f.0 == g.0)));
        assert!(set.captions[2].grams.is_empty());
        assert_eq!(set.captions[1].words, vec![first.words[1], first.words[0]]);
    }

    #[test]
    fn ids_are_dense_and_distinct() {
        let texts: Vec<String> = (0..200)
            .map(|i| format!("w{} w{} w{}", i % 7, i % 11, i % 13))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let set = encode(&refs);
        let mut seen = vec![false; set.order.len()];
        for c in &set.captions {
            for &(id, _) in &c.grams {
                seen[id as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        let mut distinct: Vec<&str> = refs.iter().flat_map(|t| t.split(' ')).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            set.order.iter().filter(|&&o| o == 1).count(),
            distinct.len()
        );
    }
}
