//! The subset of SentencePiece's `ModelProto` (sentencepiece_model.proto, proto2) this port
//! reads, as hand-written `prost` messages. Unknown fields are skipped by `prost`.

/// `ModelProto`: the whole `.model` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The vocabulary, in id order.
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<SentencePiece>,
    /// Training settings (model type, byte fallback, special ids).
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    /// Text normalisation settings.
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
}

/// `ModelProto.SentencePiece`: one vocabulary entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SentencePiece {
    /// The piece text (`▁` for a space).
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    /// Its score (log-probability for unigram, minus merge rank for BPE).
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// Its type: 1 normal (default), 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
}

/// `TrainerSpec`: the fields that change encoding, plus the special ids and vocabulary size
/// that [`crate::train`] records for other SentencePiece readers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainerSpec {
    /// 1 unigram (default), 2 BPE, 3 word, 4 char.
    #[prost(int32, optional, tag = "3")]
    pub model_type: Option<i32>,
    /// The vocabulary size the model was trained for (informational).
    #[prost(int32, optional, tag = "4")]
    pub vocab_size: Option<i32>,
    /// Whether `▁` ends pieces instead of starting them.
    #[prost(bool, optional, tag = "24")]
    pub treat_whitespace_as_suffix: Option<bool>,
    /// Whether unknown characters become `<0xXX>` byte pieces.
    #[prost(bool, optional, tag = "35")]
    pub byte_fallback: Option<bool>,
    /// Id of `<unk>` (default 0; informational here, the piece types rule).
    #[prost(int32, optional, tag = "40")]
    pub unk_id: Option<i32>,
    /// Id of `<s>` (default 1; informational).
    #[prost(int32, optional, tag = "41")]
    pub bos_id: Option<i32>,
    /// Id of `</s>` (default 2; informational).
    #[prost(int32, optional, tag = "42")]
    pub eos_id: Option<i32>,
    /// Id of `<pad>` (default -1, none; informational).
    #[prost(int32, optional, tag = "43")]
    pub pad_id: Option<i32>,
    /// What `<unk>` decodes to (default `" ⁇ "`).
    #[prost(string, optional, tag = "44")]
    pub unk_surface: Option<String>,
}

/// `NormalizerSpec`: how text is normalised before segmentation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NormalizerSpec {
    /// Rule name (`identity`, `nmt_nfkc`, ...).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Compiled normalisation rules; empty for identity.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    /// Prepend `▁` to the input (default true).
    #[prost(bool, optional, tag = "3")]
    pub add_dummy_prefix: Option<bool>,
    /// Strip and collapse whitespace (default true).
    #[prost(bool, optional, tag = "4")]
    pub remove_extra_whitespaces: Option<bool>,
    /// Replace spaces by `▁` (default true).
    #[prost(bool, optional, tag = "5")]
    pub escape_whitespaces: Option<bool>,
}
