//! A tiny, explicitly serialisable, counter-based random number generator.
//!
//! Training must resume bit-exactly, so all randomness the crate uses (data order, and
//! whatever the root's loop draws, e.g. dropout masks) comes from a generator whose whole
//! state is two integers: a seed and a counter. The mixing function is the SplitMix64
//! finaliser (Steele, Lea & Flood, 2014).

use serde::{Deserialize, Serialize};

/// The SplitMix64 increment (2^64 / golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The full state of a [`TrainRng`]: saved in checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The seed the stream was started from.
    pub seed: u64,
    /// How many 64-bit values have been drawn so far.
    pub counter: u64,
}

/// A counter-based generator: the `n`-th output is a pure function of `(seed, n)`.
#[derive(Debug, Clone)]
pub struct TrainRng {
    state: RngState,
}

impl TrainRng {
    /// A fresh stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self::from_state(RngState { seed, counter: 0 })
    }

    /// Continues a stream exactly where `state` left it.
    pub fn from_state(state: RngState) -> Self {
        Self { state }
    }

    /// The current state, for a checkpoint.
    pub fn state(&self) -> RngState {
        self.state
    }

    /// The next uniformly distributed 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        let base = mix64(self.state.seed ^ 0x5EED_0000_0000_0000);
        let out = mix64(base.wrapping_add(self.state.counter.wrapping_add(1).wrapping_mul(GOLDEN)));
        self.state.counter = self.state.counter.wrapping_add(1);
        out
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n`, without modulo bias; `0` (drawing nothing) when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's widening multiply with rejection.
        loop {
            let x = self.next_u64();
            let m = (x as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }
}

/// A permutation of `0..len` that depends only on `(seed, epoch)` (Fisher–Yates).
pub fn permutation(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
    let mut rng = TrainRng::new(mix64(seed ^ mix64(epoch.wrapping_add(GOLDEN))));
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumed_stream_continues_exactly() {
        let mut a = TrainRng::new(42);
        for _ in 0..10 {
            a.next_u64();
        }
        let mut b = TrainRng::from_state(a.state());
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_eq!(a.state().counter, 15);
    }

    #[test]
    fn permutation_is_deterministic_and_complete() {
        let p = permutation(7, 3, 100);
        assert_eq!(p, permutation(7, 3, 100));
        assert_ne!(p, permutation(7, 4, 100));
        assert_ne!(p, permutation(8, 3, 100));
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn floats_and_bounded_ints_are_in_range() {
        let mut r = TrainRng::new(1);
        for _ in 0..1000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert!(r.below(3) < 3);
            assert_eq!(r.below(0), 0);
        }
    }
}
