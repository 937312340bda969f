//! Segmentation: text (after the [`crate::normalize`] rules) to piece ids.
//!
//! * [`pipeline`]: [`pipeline::HfPipeline`], the `tokenizers` pipeline with SentencePiece's
//!   encode semantics, and the choice of the lean encoder for it;
//! * [`encoder`]: the lean encoder — user-defined pieces and `▁` word starts split without
//!   offset bookkeeping, each word segmented once and memoised (word cache in `cache`);
//! * [`lattice`]: the unigram Viterbi search, id-exact with `tokenizers`', over the
//!   double-array trie of [`trie`];
//! * [`merges`]: the same for BPE merges on short words.

mod cache;
pub mod encoder;
pub mod lattice;
pub mod merges;
pub mod pipeline;
pub mod trie;
