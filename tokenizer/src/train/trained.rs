//! What the trainer returns: the `.model` protobuf and a summary with the special ids.

use prost::Message;

use crate::formats::proto::ModelProto;

/// What [`train_unigram`](super::train_unigram) made, with the ids a model config needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrainSummary {
    /// Total pieces (= [`TrainerConfig::vocab_size`](super::TrainerConfig::vocab_size)).
    pub vocab_size: usize,
    /// Pieces learned from the texts (normal pieces).
    pub trained_pieces: usize,
    /// `<unused_K>` fillers added because the texts support fewer pieces than asked.
    pub unused_pieces: usize,
    /// Non-empty texts trained on.
    pub texts: usize,
    /// Distinct words (pre-tokenised units) in them.
    pub distinct_words: usize,
    /// Distinct characters in them (each is a piece).
    pub characters: usize,
    /// Whether the 256 byte pieces are present.
    pub byte_fallback: bool,
    /// `<unk>`.
    pub unk_id: u32,
    /// `<pad>`.
    pub pad_id: u32,
    /// `[MASK]`.
    pub mask_id: u32,
    /// `[gMASK]`.
    pub gmask_id: u32,
    /// `<sop>` (bos).
    pub sop_id: u32,
    /// `<eop>` (eos).
    pub eop_id: u32,
}

/// A trained model: the SentencePiece protobuf and its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    /// The `.model` contents.
    pub proto: ModelProto,
    /// Sizes and special ids.
    pub summary: TrainSummary,
}

impl TrainedModel {
    /// The serialised `.model` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }
}
