//! [`TrainerConfig`]: the settings of the unigram trainer.

use super::layout::reserved_pieces;

/// Settings of [`train_unigram`](super::train_unigram).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerConfig {
    /// Total number of pieces, reserved ones included (`num_pieces` of the result). The 93
    /// reserved pieces (4 head, 81 whitespace, 8 specials; 256 more with byte fallback) plus
    /// one piece per distinct character of the texts must fit.
    pub vocab_size: usize,
    /// Longest trained piece, in characters (SentencePiece's default 16).
    pub max_piece_length: usize,
    /// Add the 256 `<0xXX>` byte pieces, so that characters unseen in training encode as
    /// bytes instead of `<unk>`. Off by default: it costs 256 pieces of a small vocabulary.
    pub byte_fallback: bool,
    /// EM sub-iterations between prunings (SentencePiece's default 2).
    pub n_sub_iterations: u32,
    /// Fraction of pieces kept by each pruning (SentencePiece's default 0.75).
    pub shrinking_factor: f64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            vocab_size: 512,
            max_piece_length: 16,
            byte_fallback: false,
            n_sub_iterations: 2,
            shrinking_factor: 0.75,
        }
    }
}

impl TrainerConfig {
    /// Number of pieces that are not trained: head, whitespace pieces, specials (and bytes).
    pub fn reserved_pieces(&self) -> usize {
        reserved_pieces(self.byte_fallback)
    }

    /// Checks the settings the trainer needs; the reason when one is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_piece_length == 0 {
            return Err("max_piece_length must be at least 1".into());
        }
        if !(self.shrinking_factor > 0.0 && self.shrinking_factor < 1.0) {
            return Err(format!(
                "shrinking_factor must be between 0 and 1 (exclusive), not {}",
                self.shrinking_factor
            ));
        }
        if self.n_sub_iterations == 0 {
            return Err("n_sub_iterations must be at least 1".into());
        }
        Ok(())
    }
}
