//! A byte-level double-array trie over a vocabulary: one array load and one compare per
//! input byte when walking from a start position through every piece that begins there.
//! Used by the Unigram lattice search ([`super::lattice`]).

/// Marks a slot that no node owns (and a node that ends no piece).
const NONE: u32 = u32::MAX;

/// How many free slots the placement of one node examines before it gives up looking for a
/// hole and appends at the end of the array (bounds the build time).
const MAX_PROBES: usize = 512;

/// A slot no node owns.
const EMPTY: Slot = Slot {
    base: 0,
    check: NONE,
    value: NONE,
};

/// One double-array slot: `base + byte` is where a child is looked for, `check` the slot of
/// the parent that owns this one, `value` the piece that ends here (or [`NONE`]).
#[derive(Debug, Clone, Copy)]
struct Slot {
    base: u32,
    check: u32,
    value: u32,
}

/// A double-array trie mapping byte strings to `u32` values.
#[derive(Debug, Clone)]
pub struct Trie {
    slots: Vec<Slot>,
}

/// A trie node while building: the range of the sorted keys below it and its depth.
struct Pending {
    slot: u32,
    lo: usize,
    hi: usize,
    depth: usize,
}

impl Trie {
    /// Builds the trie of `keys` (byte string, value). Empty keys are ignored; for a key given
    /// more than once, `pick(old, new)` says whether `new`'s value replaces the value kept so
    /// far (keys are offered in their input order). Fails if the trie outgrows `u32` indices.
    pub fn new(
        keys: &[(&[u8], u32)],
        mut pick: impl FnMut(u32, u32) -> bool,
    ) -> Result<Self, String> {
        // Stable sort keeps equal keys in input order for `pick`.
        let mut sorted: Vec<(&[u8], u32)> = keys
            .iter()
            .copied()
            .filter(|(k, _)| !k.is_empty())
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut keys: Vec<(&[u8], u32)> = Vec::with_capacity(sorted.len());
        for (k, v) in sorted {
            match keys.last_mut() {
                Some(last) if last.0 == k => {
                    if pick(last.1, v) {
                        last.1 = v;
                    }
                }
                _ => keys.push((k, v)),
            }
        }
        // Slot 0 is the root; it is never free (every base is at least 1).
        let mut builder = Builder {
            slots: vec![EMPTY],
            next_free: vec![NONE],
            prev_free: vec![NONE],
            first_free: NONE,
            last_free: NONE,
        };
        let mut stack = vec![Pending {
            slot: 0,
            lo: 0,
            hi: keys.len(),
            depth: 0,
        }];
        let mut labels: Vec<(u8, usize, usize)> = Vec::new();
        while let Some(node) = stack.pop() {
            // Keys in lo..hi share their first `depth` bytes; one of exactly that length ends
            // here (it sorts first), the others are grouped by their next byte.
            let mut i = node.lo;
            if i < node.hi && keys[i].0.len() == node.depth {
                builder.slots[node.slot as usize].value = keys[i].1;
                i += 1;
            }
            labels.clear();
            while i < node.hi {
                let byte = keys[i].0[node.depth];
                let start = i;
                while i < node.hi && keys[i].0[node.depth] == byte {
                    i += 1;
                }
                labels.push((byte, start, i));
            }
            if labels.is_empty() {
                continue;
            }
            let base = builder.place(node.slot, &labels)?;
            builder.slots[node.slot as usize].base = base;
            for &(byte, lo, hi) in &labels {
                stack.push(Pending {
                    slot: base + u32::from(byte),
                    lo,
                    hi,
                    depth: node.depth + 1,
                });
            }
        }
        let mut slots = builder.slots;
        // Every `base + byte` of a node is inside the array: lookups never fall off its end.
        let max_base = slots.iter().map(|s| s.base as usize).max().unwrap_or(0);
        if slots.len() < max_base + 256 {
            slots.resize(max_base + 256, EMPTY);
        }
        slots.shrink_to_fit();
        Ok(Self { slots })
    }

    /// Walks `bytes` from the root; calls `found(len, value)` for every key that is a prefix
    /// of `bytes`, shortest first.
    #[inline]
    pub fn prefixes(&self, bytes: &[u8], mut found: impl FnMut(usize, u32)) {
        let slots = self.slots.as_slice();
        let mut node = 0usize;
        for (i, &b) in bytes.iter().enumerate() {
            let Some(base) = slots.get(node).map(|s| s.base as usize) else {
                return;
            };
            let next = base + b as usize;
            match slots.get(next) {
                Some(s) if s.check as usize == node => {
                    node = next;
                    if s.value != NONE {
                        found(i + 1, s.value);
                    }
                }
                _ => return,
            }
        }
    }
}

/// Double-array placement state. Free slots before the end of the array form a doubly
/// linked list in ascending order (`first_free` .. `last_free`).
struct Builder {
    slots: Vec<Slot>,
    next_free: Vec<u32>,
    prev_free: Vec<u32>,
    first_free: u32,
    last_free: u32,
}

impl Builder {
    /// Finds a base for the children `labels` of `parent`, claims their slots and returns it.
    fn place(&mut self, parent: u32, labels: &[(u8, usize, usize)]) -> Result<u32, String> {
        let first = u32::from(labels[0].0);
        let mut base = None;
        let mut probe = self.first_free;
        let mut probes = 0;
        while probe != NONE && probes < MAX_PROBES {
            probes += 1;
            if probe > first {
                let b = probe - first;
                if labels
                    .iter()
                    .all(|&(c, _, _)| self.is_free(b + u32::from(c)))
                {
                    base = Some(b);
                    break;
                }
            }
            probe = self.next_free[probe as usize];
        }
        let base = match base {
            Some(b) => b,
            None => {
                let end = u32::try_from(self.slots.len()).map_err(|_| "vocabulary too large")?;
                end.max(first + 1) - first
            }
        };
        let top = base as usize + labels[labels.len() - 1].0 as usize;
        if top >= (NONE - 256) as usize {
            return Err("vocabulary too large for the trie".into());
        }
        self.grow(top + 1);
        for &(c, _, _) in labels {
            self.claim(base + u32::from(c), parent);
        }
        Ok(base)
    }

    fn is_free(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_none_or(|s| s.check == NONE)
    }

    /// Extends the array to `len` slots, appending the new ones to the free list.
    fn grow(&mut self, len: usize) {
        let old = self.slots.len();
        if len <= old {
            return;
        }
        self.slots.resize(len, EMPTY);
        self.next_free.resize(len, NONE);
        self.prev_free.resize(len, NONE);
        for i in old as u32..len as u32 {
            self.prev_free[i as usize] = self.last_free;
            match self.last_free {
                NONE => self.first_free = i,
                last => self.next_free[last as usize] = i,
            }
            self.last_free = i;
        }
    }

    /// Takes the free `slot` out of the free list and gives it to `parent`.
    fn claim(&mut self, slot: u32, parent: u32) {
        let (prev, next) = (self.prev_free[slot as usize], self.next_free[slot as usize]);
        match prev {
            NONE => self.first_free = next,
            p => self.next_free[p as usize] = next,
        }
        match next {
            NONE => self.last_free = prev,
            n => self.prev_free[n as usize] = prev,
        }
        self.slots[slot as usize].check = parent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key that is a prefix of `text`, shortest first, by brute force.
    fn naive(keys: &[(Vec<u8>, u32)], text: &[u8]) -> Vec<(usize, u32)> {
        let mut hits: Vec<(usize, u32)> = Vec::new();
        for (k, v) in keys {
            if !k.is_empty() && text.starts_with(k) {
                // The last of equal keys wins.
                hits.retain(|(len, _)| *len != k.len());
                hits.push((k.len(), *v));
            }
        }
        hits.sort_unstable();
        hits
    }

    #[test]
    fn prefixes_match_brute_force() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        // Few distinct bytes (deep, narrow trie) plus the extremes 0 and 255 (wide nodes).
        let alphabet = [0u8, 1, 2, b'a', b'b', 0x80, 0xE2, 0xFF];
        let mut keys: Vec<(Vec<u8>, u32)> = Vec::new();
        for v in 0..2000u32 {
            let len = next(7);
            let key: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            keys.push((key, v));
        }
        // Wide nodes: all 256 bytes under the root and under one child.
        for b in 0..=255u8 {
            keys.push((vec![b], 5000 + u32::from(b)));
            keys.push((vec![b'a', b], 6000 + u32::from(b)));
        }
        let refs: Vec<(&[u8], u32)> = keys.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        let trie = Trie::new(&refs, |_, _| true).unwrap();
        for _ in 0..5000 {
            let len = next(10);
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    if next(4) == 0 {
                        next(256) as u8
                    } else {
                        alphabet[next(alphabet.len())]
                    }
                })
                .collect();
            let mut got = Vec::new();
            trie.prefixes(&text, |len, v| got.push((len, v)));
            assert_eq!(got, naive(&keys, &text), "{text:?}");
        }
    }

    #[test]
    fn duplicates_follow_pick_and_empty_keys_are_ignored() {
        let keys: [(&[u8], u32); 4] = [(b"ab", 1), (b"", 9), (b"ab", 2), (b"a", 3)];
        let first = Trie::new(&keys, |_, _| false).unwrap();
        let mut got = Vec::new();
        first.prefixes(b"abc", |len, v| got.push((len, v)));
        assert_eq!(got, [(1, 3), (2, 1)]);
        let last = Trie::new(&keys, |_, _| true).unwrap();
        got.clear();
        last.prefixes(b"abc", |len, v| got.push((len, v)));
        assert_eq!(got, [(1, 3), (2, 2)]);
        got.clear();
        last.prefixes(b"", |len, v| got.push((len, v)));
        assert!(got.is_empty());
    }
}
