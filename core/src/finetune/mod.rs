//! Fine-tuning VisualGLM on image-text pairs with the autoregressive loss (the release's
//! recipe), using the building blocks of `visualglm-train`.
//!
//! Which weights train is chosen by name prefix (`image_encoder.glm_proj`, `image_encoder.
//! qformer`, `transformer.layers.0.`, …); every other weight is a plain tensor, gets no
//! gradient and stays bit-identical.
//!
//! `config` holds the run's settings, `base` how the frozen weights are held, `trainable` the model with its trainable variables
//! (and LoRA adapters), `batch` the examples-to-loss path, `slots` where a batch's images go (several per example when
//! its `"img"` is a list), `head` the loss through `lm_head` (a
//! chunk of rows of logits at a time), `run` the training loop, `resume` the metrics log of a
//! resumed run, `memory` the run's memory plan and `export` the trained model directory;
//! `config_file` reads `run.toml` (paths relative to its folder), `config_doc` describes its
//! keys (`--print-config`), `progress` writes progress lines for logs.

mod base;
mod batch;
mod config;
mod config_doc;
mod config_file;
mod data_parallel;
mod error;
mod export;
mod head;
mod memory;
mod progress;
mod resume;
mod run;
mod slots;
mod trainable;

pub use base::{BaseWeights, FrozenForm};
pub use batch::{
    batch_forward, batch_hidden, batch_loss, example_ids, example_ids_images, BatchHidden,
};
pub use config::FinetuneConfig;
pub use config_doc::{config_keys, config_template, KeyDoc, KEY_DOCS};
pub use head::{lm_loss, LmHead};
pub use memory::{memory_plan, model_config, peak_rss_mib, Footprint, MemoryPlan};
pub use progress::ProgressLog;
pub use resume::resume_metrics;
pub use run::{finetune, finetune_on, finetune_with, gradients, run_checkpoints, StepReport};
pub use slots::ImageSlots;
pub use trainable::{load_trainable, load_trainable_with, trainable_from_tensors, TrainableModel};
