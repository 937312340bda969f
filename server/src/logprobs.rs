//! Log-probabilities in OpenAI's shape (`choices[i].logprobs.content[j]`): the model's raw
//! log-probabilities (log-softmax of the logits, before repetition penalty, temperature,
//! suppressed ids and top-k/top-p), computed by the model worker for requests with
//! `logprobs: true` (see [`visualglm::generate::TokenLogprobs`]).

use super::types::{LogprobEntry, TopLogprob};
use visualglm::generate::TokenLogprobs;
use visualglm::pipeline::Captioner;

/// The text of one token decoded alone (empty when it cannot be decoded).
pub fn token_text(captioner: &Captioner, id: u32) -> String {
    captioner
        .tokenizer()
        .decode(&[id], &Default::default())
        .unwrap_or_default()
}

/// One token's entry: its text, log-probability and bytes, and its alternatives.
pub fn entry(captioner: &Captioner, lp: &TokenLogprobs) -> LogprobEntry {
    let token = token_text(captioner, lp.token);
    LogprobEntry {
        bytes: token.as_bytes().to_vec(),
        token,
        logprob: lp.logprob,
        top_logprobs: lp
            .top
            .iter()
            .map(|&(id, logprob)| {
                let token = token_text(captioner, id);
                TopLogprob {
                    bytes: token.as_bytes().to_vec(),
                    token,
                    logprob,
                }
            })
            .collect(),
    }
}
