//! Token generation with the KV cache: greedy and sampled decoding of one prompt for one or
//! many images at once, with a per-step callback for streaming, and beam search.

mod batch;
mod beam;
mod logprobs;
mod oneshot;
mod request;

pub use batch::{BatchDecoder, Finished};
pub use beam::beam_search;
pub use logprobs::{token_logprobs, TokenLogprobs, MAX_TOP_LOGPROBS};
pub use oneshot::{generate, generate_many};
pub use request::{token_budget, Flow, GenRequest};
