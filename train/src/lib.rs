//! Fine-tuning building blocks for VisualGLM-6B, independent of the model code.
//!
//! * [`data`]: the release's data formats, a resumable shuffled sampler, an image prefetcher.
//! * [`labels`]: `input_ids`/`labels` construction exactly as the release's fine-tune script.
//! * [`losses`]: the autoregressive loss and BLIP-2's image-text contrastive loss.
//! * [`chunked_ce`]: the autoregressive loss fused with a frozen output projection, a chunk of
//!   rows of logits at a time.
//! * [`optim`], [`grads`], [`schedule`]: AdamW with saveable state, gradient accumulation,
//!   clipping and skipping, the warmup + cosine learning-rate schedule.
//! * [`checkpoint`]: atomic, verified, resumable training checkpoints.
//! * [`last_update`]: the last completed update, saved on demand from another thread (a
//!   signal) while the next one runs.
//! * [`run_lock`]: one training run per output directory (an advisory lock).
//! * [`step`]: one guarded optimiser step (skip non-finite, clip, AdamW at the scheduled lr).
//! * [`rng`]: a counter-based RNG whose whole state is `(seed, counter)`.

pub mod checkpoint;
pub mod chunked_ce;
pub mod data;
pub mod error;
pub mod grads;
pub mod itc_rows;
pub mod labels;
pub mod last_update;
pub mod losses;
pub mod optim;
pub mod params;
pub mod rng;
pub mod run_lock;
pub mod schedule;
pub mod step;

pub use error::{Result, TrainError};
