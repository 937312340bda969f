//! The lean encoder's word cache: raw word text → ids, in two arenas and an open-addressing
//! table, so that memoising a word allocates nothing.

/// Words memoised before the cache is emptied. Small on purpose: the cache (about 1 MB)
/// stays in the CPU caches, where a lookup is cheaper than segmenting the word again; a
/// lookup that has to go to main memory costs about as much as segmenting a short word, so
/// a large cache only slows down text with many distinct words.
pub const CACHE_LIMIT: usize = 1 << 15;

/// Most bytes of word text and most ids the cache holds before it is emptied.
const CACHE_ARENA_LIMIT: usize = 1 << 22;

/// Slots a cache lookup probes at most (bounds the cost of colliding words).
const MAX_PROBES: usize = 16;

/// A word's cache hash (not keyed: [`MAX_PROBES`] bounds what collisions cost).
pub fn cache_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut a = [0u8; 8];
        a[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(K).rotate_left(29);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 32)
}

/// One open-addressing slot of [`WordCache`]; `key_len == 0` marks an empty one (words are
/// never empty).
#[derive(Debug, Clone, Copy, Default)]
struct CacheSlot {
    tag: u32,
    key_at: u32,
    ids_at: u32,
    key_len: u16,
    ids_len: u16,
}

/// Words (raw text) → ids, with the texts and ids in two arenas: no allocation per word.
/// Emptied when full.
#[derive(Debug)]
pub struct WordCache {
    limit: usize,
    slots: Vec<CacheSlot>,
    bytes: Vec<u8>,
    ids: Vec<u32>,
    len: usize,
}

impl WordCache {
    /// A cache of at most `limit` words (0: caches nothing).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            slots: Vec::new(),
            bytes: Vec::new(),
            ids: Vec::new(),
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The ids of `key` (whose hash is `hash`), if it is cached.
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<&[u32]> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let tag = hash as u32;
        let mut at = (hash >> 32) as usize & mask;
        for _ in 0..MAX_PROBES {
            let s = self.slots[at];
            if s.key_len == 0 {
                return None;
            }
            if s.tag == tag && s.key_len as usize == key.len() {
                let k = s.key_at as usize;
                if self.bytes.get(k..k + key.len()) == Some(key) {
                    let i = s.ids_at as usize;
                    return self.ids.get(i..i + s.ids_len as usize);
                }
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Caches `ids` for `key`; empties the cache first when it is full.
    pub fn insert(&mut self, hash: u64, key: &[u8], ids: &[u32]) {
        if self.limit == 0 || key.is_empty() || key.len() > usize::from(u16::MAX) {
            return;
        }
        if ids.len() > usize::from(u16::MAX) {
            return;
        }
        if self.len >= self.limit
            || self.bytes.len() + key.len() > CACHE_ARENA_LIMIT
            || self.ids.len() + ids.len() > CACHE_ARENA_LIMIT
        {
            self.clear();
        }
        if self.slots.is_empty() {
            self.slots = vec![CacheSlot::default(); (2 * self.limit).next_power_of_two()];
        }
        let mask = self.mask();
        let mut at = (hash >> 32) as usize & mask;
        for _ in 0..MAX_PROBES {
            if self.slots[at].key_len == 0 {
                self.slots[at] = CacheSlot {
                    tag: hash as u32,
                    key_at: self.bytes.len() as u32,
                    ids_at: self.ids.len() as u32,
                    key_len: key.len() as u16,
                    ids_len: ids.len() as u16,
                };
                self.bytes.extend_from_slice(key);
                self.ids.extend_from_slice(ids);
                self.len += 1;
                return;
            }
            at = (at + 1) & mask;
        }
    }

    /// Forgets every word.
    pub fn clear(&mut self) {
        self.slots.fill(CacheSlot::default());
        self.bytes.clear();
        self.ids.clear();
        self.len = 0;
    }
}
