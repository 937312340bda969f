//! Where the time of a captioning call went.

use std::ops::AddAssign;

use serde::Serialize;

/// Where the time went (`+=` sums calls).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Images encoded.
    pub images: usize,
    /// Milliseconds spent encoding images (ViT + Q-Former + projection).
    pub encode_ms: f64,
    /// Prompt tokens processed in prefill (all rows).
    pub prefill_tokens: usize,
    /// Milliseconds of prefill (up to the first new token).
    pub prefill_ms: f64,
    /// Tokens decoded after the first (all rows).
    pub decode_tokens: usize,
    /// Milliseconds of decoding after the first token.
    pub decode_ms: f64,
}

impl AddAssign for Timings {
    /// Sums two calls' timings.
    fn add_assign(&mut self, other: Self) {
        self.images += other.images;
        self.encode_ms += other.encode_ms;
        self.prefill_tokens += other.prefill_tokens;
        self.prefill_ms += other.prefill_ms;
        self.decode_tokens += other.decode_tokens;
        self.decode_ms += other.decode_ms;
    }
}

impl Timings {
    /// A one-line human summary: encode ms per image, prefill and decode tokens per second.
    pub fn summary(&self) -> String {
        let per_s = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
        format!(
            "image encode {:.1} ms/image, prefill {:.1} tok/s, decode {:.1} tok/s",
            if self.images > 0 {
                self.encode_ms / self.images as f64
            } else {
                0.0
            },
            per_s(self.prefill_tokens, self.prefill_ms),
            per_s(self.decode_tokens, self.decode_ms)
        )
    }
}
