//! Turning a validated request body into a [`Prepared`] prompt for the model: the
//! conversation becomes VisualGLM's history and query, the sampling fields a
//! [`GenerationConfig`] (fields a request leaves unset take the model's defaults, its
//! `generation_config.json`), its images decoded pictures (every `image_url` of every message,
//! in order, up to [`PromptLimits::max_images`]).

use std::sync::atomic::{AtomicU64, Ordering};

use image::DynamicImage;
use visualglm_language::GenerationConfig;

use super::error::ApiError;
use super::images::ImagePolicy;
use super::stop::StopSequences;
use super::types::{ChatCompletionRequest, ContentPart, MessageContent, ReleaseRequest};
use super::unsupported::refuse_unsupported;
use visualglm::pipeline::{Captioner, PromptOptions, DEFAULT_QUERY_ZH};

/// Server-wide limits that shape every prompt.
#[derive(Debug, Clone)]
pub struct PromptLimits {
    /// Most tokens of prompt + answer.
    pub max_length: usize,
    /// New tokens when the request does not say; `None`: the model's `max_new_tokens`
    /// (its `generation_config.json`, else the release's 512).
    pub default_max_tokens: Option<usize>,
    /// Most images in one request (each costs 32 prompt tokens and an encoder pass).
    pub max_images: usize,
}

/// [`PromptLimits::max_images`] unless the server says otherwise.
pub const DEFAULT_MAX_IMAGES: usize = 8;

impl Default for PromptLimits {
    fn default() -> Self {
        Self {
            max_length: 2048,
            default_max_tokens: None,
            max_images: DEFAULT_MAX_IMAGES,
        }
    }
}

/// A request ready to queue.
#[derive(Debug)]
pub struct Prepared {
    /// Prompt ids (each image's 32 placeholders included).
    pub ids: Vec<u32>,
    /// Where each image's placeholders start, in order.
    pub image_starts: Vec<usize>,
    /// The images, in prompt order (squashed to the model's input size).
    pub images: Vec<DynamicImage>,
    /// Decoding settings.
    pub config: GenerationConfig,
    /// English template and suppression of Chinese tokens.
    pub english: bool,
    /// The question asked (for the release's history).
    pub query: String,
    /// The earlier turns.
    pub history: Vec<(String, String)>,
    /// Where the answer stops early (chat completions' `stop`).
    pub stop: StopSequences,
    /// Answers to sample (chat completions' `n`, 1 to [`MAX_CHOICES`]).
    pub n: usize,
    /// Report each token's log-probability with this many alternatives (`logprobs: true`
    /// and `top_logprobs`); `None`: no log-probabilities.
    pub logprobs: Option<usize>,
}

/// `logprobs` (a boolean) and `top_logprobs` (0 to 20, only with `logprobs: true`): the
/// number of alternatives to report, or `None` when log-probabilities are not asked for.
pub fn logprobs(
    logprobs: Option<&serde_json::Value>,
    top: Option<&serde_json::Value>,
) -> Result<Option<usize>, ApiError> {
    use serde_json::Value;
    let on = match logprobs {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            return Err(ApiError::bad_request("`logprobs` must be a boolean").with_param("logprobs"))
        }
    };
    let max = visualglm::generate::MAX_TOP_LOGPROBS;
    let k = match top {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(k) if k <= max as u64 => k as usize,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "`top_logprobs` must be an integer between 0 and {max}"
                ))
                .with_param("top_logprobs"))
            }
        },
    };
    if k > 0 && !on {
        return Err(
            ApiError::bad_request("`top_logprobs` needs `logprobs: true`")
                .with_param("top_logprobs"),
        );
    }
    Ok(on.then_some(k))
}

/// The most answers one request may ask for (`n`).
pub const MAX_CHOICES: u32 = 8;

/// The request's `n`: absent or null is 1; 0 or more than [`MAX_CHOICES`] is a 400.
pub fn choices(n: Option<u32>) -> Result<usize, ApiError> {
    match n {
        None => Ok(1),
        Some(n) if (1..=MAX_CHOICES).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::bad_request(format!(
            "`n` must be between 1 and {MAX_CHOICES} (got {n})"
        ))
        .with_param("n")),
    }
}

/// A chat reduced to VisualGLM's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The last user message's text.
    pub query: String,
    /// Earlier (user, assistant) turns.
    pub history: Vec<(String, String)>,
    /// The URLs of the conversation's images, in message order.
    pub image_urls: Vec<String>,
}

/// Reduces OpenAI messages to a query, a history and the images (all of them, in order: the
/// prompt holds one `<img>` block per image before the turns, as the release holds its one).
///
/// System messages are ignored (VisualGLM has no system prompt). Consecutive user messages
/// are joined with a newline; an assistant message must follow a user message; the last
/// message must be the user's. A user message with only an image asks the release's default
/// question (`描述这张图片。`).
pub fn conversation(messages: &[super::types::ChatMessage]) -> Result<Conversation, ApiError> {
    conversation_asking(messages, DEFAULT_QUERY_ZH)
}

/// [`conversation`], with `default_query` asked when the last user message has no text.
pub fn conversation_asking(
    messages: &[super::types::ChatMessage],
    default_query: &str,
) -> Result<Conversation, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_request("`messages` must not be empty").with_param("messages"));
    }
    let mut history = Vec::new();
    let mut pending: Option<String> = None;
    let mut image_urls = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let mut texts = Vec::new();
        match &m.content {
            None => {}
            Some(MessageContent::Text(t)) => texts.push(t.as_str()),
            Some(MessageContent::Parts(parts)) => {
                for p in parts {
                    match p {
                        ContentPart::Text { text } => texts.push(text.as_str()),
                        ContentPart::ImageUrl { image_url: u } => image_urls.push(u.url.clone()),
                    }
                }
            }
        }
        let text = texts.join("\n");
        match m.role.as_str() {
            "system" | "developer" => {}
            "user" => {
                pending = Some(match pending.take() {
                    Some(prev) if !text.is_empty() => format!("{prev}\n{text}"),
                    Some(prev) => prev,
                    None => text,
                })
            }
            "assistant" => match pending.take() {
                Some(q) => history.push((q, text)),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}]: an assistant message must follow a user message"
                    ))
                    .with_param(format!("messages[{i}]")))
                }
            },
            other => {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}]: unsupported role `{other}` (use system, user or assistant)"
                ))
                .with_param(format!("messages[{i}].role")))
            }
        }
    }
    let Some(query) = pending else {
        return Err(
            ApiError::bad_request("the last message must come from the user")
                .with_param("messages"),
        );
    };
    let query = if query.trim().is_empty() {
        default_query.to_string()
    } else {
        query
    };
    Ok(Conversation {
        query,
        history,
        image_urls,
    })
}

/// The release's language switch (`is_chinese`): Chinese mode when the query has a CJK
/// ideograph (U+4E00–U+9FA5), English mode otherwise.
pub fn is_chinese(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fa5}').contains(&c))
}

/// A seed for requests that do not give one.
fn random_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of the mix, so consecutive requests get unrelated seeds.
    let mut z = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sampling settings shared by both endpoints; unset ones take the model's defaults.
struct Sampling {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    repetition_penalty: Option<f32>,
    seed: Option<i64>,
}

impl Sampling {
    /// The decoding settings: the request's, else `defaults` (the model's). Temperature 0 is
    /// greedy; so is an unset temperature when the model does not sample. The model's
    /// `num_beams` is not used (the server does not run beam search).
    fn config(
        &self,
        defaults: &GenerationConfig,
        max_new_tokens: usize,
        max_length: usize,
    ) -> Result<GenerationConfig, ApiError> {
        let temperature = match self.temperature {
            Some(t) if !(0.0..=2.0).contains(&t) => {
                return Err(
                    ApiError::bad_request("`temperature` must be between 0 and 2")
                        .with_param("temperature"),
                )
            }
            Some(t) => t,
            None if defaults.do_sample => defaults.temperature,
            None => 0.0,
        };
        let top_p = self.top_p.unwrap_or(defaults.top_p);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_request("`top_p` must be in (0, 1]").with_param("top_p"));
        }
        let repetition_penalty = self
            .repetition_penalty
            .unwrap_or(defaults.repetition_penalty);
        if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
            return Err(
                ApiError::bad_request("`repetition_penalty` must be positive")
                    .with_param("repetition_penalty"),
            );
        }
        let sample = temperature > 0.0;
        Ok(GenerationConfig {
            max_new_tokens,
            max_length,
            do_sample: sample,
            temperature: if sample { temperature } else { 1.0 },
            top_p,
            top_k: self.top_k.unwrap_or(defaults.top_k),
            repetition_penalty,
            num_beams: 1,
            seed: self.seed.map(|s| s as u64).unwrap_or_else(random_seed),
        })
    }
}

/// Validates an OpenAI chat request and builds its prompt (decoding its image).
pub fn prepare_chat(
    captioner: &Captioner,
    req: &ChatCompletionRequest,
    policy: &ImagePolicy,
    limits: &PromptLimits,
) -> Result<Prepared, ApiError> {
    refuse_unsupported(req)?;
    let n = choices(req.n)?;
    let logprobs = logprobs(req.logprobs.as_ref(), req.top_logprobs.as_ref())?;
    let stop = StopSequences::parse(req.stop.as_ref())?;
    let defaults = captioner.defaults();
    let max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        None => limits
            .default_max_tokens
            .unwrap_or(defaults.generation.max_new_tokens),
        Some(0) => {
            return Err(
                ApiError::bad_request("`max_tokens` must be at least 1").with_param("max_tokens")
            )
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let conv = conversation_asking(&req.messages, defaults.question(None).text())?;
    let sampling = Sampling {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        repetition_penalty: req.repetition_penalty,
        seed: req.seed,
    };
    let config = sampling.config(&defaults.generation, max_tokens, limits.max_length)?;
    if conv.image_urls.len() > limits.max_images {
        return Err(ApiError::bad_request(format!(
            "the request has {} images, more than this server's maximum of {} per request",
            conv.image_urls.len(),
            limits.max_images
        ))
        .with_param("messages")
        .with_code("too_many_images"));
    }
    let images = conv
        .image_urls
        .iter()
        .map(|u| policy.load_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let english = !is_chinese(&conv.query);
    let mut prepared = build(captioner, conv.query, conv.history, images, config, english)?;
    prepared.stop = stop;
    prepared.n = n;
    prepared.logprobs = logprobs;
    Ok(prepared)
}

/// Validates a release `POST /` request and builds its prompt (decoding its image).
pub fn prepare_release(
    captioner: &Captioner,
    req: &ReleaseRequest,
    policy: &ImagePolicy,
    limits: &PromptLimits,
) -> Result<Prepared, ApiError> {
    let max_length = req.max_length.unwrap_or(limits.max_length);
    if max_length == 0 || max_length > limits.max_length {
        return Err(ApiError::bad_request(format!(
            "`max_length` must be between 1 and {}",
            limits.max_length
        ))
        .with_param("max_length"));
    }
    let sampling = Sampling {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        repetition_penalty: None,
        seed: req.seed,
    };
    // The release generates until `max_length` (prompt + answer) or `<eop>`.
    let config = sampling.config(&captioner.defaults().generation, max_length, max_length)?;
    let images = match req.image.as_deref() {
        Some(s) if !s.trim().is_empty() => vec![policy.load_base64(s)?],
        _ => Vec::new(),
    };
    let english = !is_chinese(&req.text);
    let history = req.history.clone().unwrap_or_default();
    build(
        captioner,
        req.text.clone(),
        history,
        images,
        config,
        english,
    )
}

fn build(
    captioner: &Captioner,
    query: String,
    history: Vec<(String, String)>,
    images: Vec<DynamicImage>,
    config: GenerationConfig,
    english: bool,
) -> Result<Prepared, ApiError> {
    // Leave room for at least one new token, within the model's own limit too.
    let limit = captioner.model().length_limit(config.max_length);
    let room = limit.saturating_sub(1);
    // Squash to the model's input size here, on the request's thread, so the model worker
    // only normalizes (the resize of an image already at that size is the identity).
    let images: Vec<DynamicImage> = images
        .iter()
        .map(|i| DynamicImage::ImageRgb8(captioner.preprocessor().to_rgb_resized(i)))
        .collect();
    let prompt = captioner
        .prompt(
            &query,
            &history,
            room,
            &PromptOptions {
                english,
                images: images.len(),
                ..Default::default()
            },
        )
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{e}; the maximum length (prompt + answer) is {limit} tokens"
            ))
            .with_param("messages")
            .with_code("context_length_exceeded")
        })?;
    Ok(Prepared {
        ids: prompt.ids,
        image_starts: prompt.image_starts,
        images,
        config,
        english,
        query,
        history,
        stop: StopSequences::default(),
        n: 1,
        logprobs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ChatMessage;

    fn msgs(v: serde_json::Value) -> Vec<ChatMessage> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn messages_become_history_query_and_every_image_in_order() {
        let c = conversation(&msgs(serde_json::json!([
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:a"}},
                {"type": "text", "text": "what is it?"}]},
            {"role": "assistant", "content": "a cat"},
            {"role": "user", "content": [
                {"type": "text", "text": "and"},
                {"type": "image_url", "image_url": {"url": "data:b"}},
                {"type": "text", "text": "this?"}]},
        ])))
        .unwrap();
        assert_eq!(c.history, vec![("what is it?".into(), "a cat".into())]);
        assert_eq!(c.query, "and\nthis?");
        assert_eq!(c.image_urls, ["data:a", "data:b"]);

        let only_image = conversation(&msgs(serde_json::json!([
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}
        ])))
        .unwrap();
        assert_eq!(only_image.query, DEFAULT_QUERY_ZH);

        for bad in [
            serde_json::json!([]),
            serde_json::json!([{"role": "assistant", "content": "hi"}]),
            serde_json::json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]),
            serde_json::json!([{"role": "tool", "content": "x"}, {"role": "user", "content": "hi"}]),
        ] {
            let e = conversation(&msgs(bad.clone())).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
    }

    #[test]
    fn sampling_defaults_and_ranges() {
        let release = GenerationConfig::default();
        let s = Sampling {
            temperature: None,
            top_p: None,
            top_k: None,
            repetition_penalty: None,
            seed: Some(7),
        };
        let c = s.config(&release, 10, 100).unwrap();
        assert!(c.do_sample);
        assert_eq!(
            (
                c.temperature,
                c.top_p,
                c.top_k,
                c.repetition_penalty,
                c.seed
            ),
            (0.8, 0.4, 100, 1.2, 7)
        );
        assert_eq!((c.max_new_tokens, c.max_length, c.num_beams), (10, 100, 1));
        let greedy = Sampling {
            temperature: Some(0.0),
            ..s
        };
        assert!(!greedy.config(&release, 10, 100).unwrap().do_sample);
        let hot = Sampling {
            temperature: Some(3.0),
            ..greedy
        };
        assert_eq!(
            hot.config(&release, 1, 2).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        assert!(is_chinese("描述") && !is_chinese("Describe the image."));
    }

    #[test]
    fn unset_fields_take_the_models_defaults_and_set_ones_win() {
        let model = GenerationConfig {
            do_sample: false,
            temperature: 0.5,
            top_p: 0.9,
            top_k: 7,
            repetition_penalty: 1.0,
            num_beams: 3,
            ..GenerationConfig::default()
        };
        let unset = Sampling {
            temperature: None,
            top_p: None,
            top_k: None,
            repetition_penalty: None,
            seed: Some(1),
        };
        let c = unset.config(&model, 4, 50).unwrap();
        assert!(!c.do_sample, "the model does not sample");
        assert_eq!((c.top_p, c.top_k, c.repetition_penalty), (0.9, 7, 1.0));
        assert_eq!(c.num_beams, 1, "no beam search in the server");
        let sampling_model = GenerationConfig {
            do_sample: true,
            ..model.clone()
        };
        let c = unset.config(&sampling_model, 4, 50).unwrap();
        assert!(c.do_sample);
        assert_eq!(c.temperature, 0.5);
        let set = Sampling {
            temperature: Some(1.5),
            top_p: Some(0.3),
            top_k: Some(0),
            repetition_penalty: Some(1.1),
            seed: Some(1),
        };
        let c = set.config(&model, 4, 50).unwrap();
        assert!(
            c.do_sample,
            "the request's temperature wins over do_sample: false"
        );
        assert_eq!(
            (c.temperature, c.top_p, c.top_k, c.repetition_penalty),
            (1.5, 0.3, 0, 1.1)
        );
        let zero = Sampling {
            temperature: Some(0.0),
            ..set
        };
        assert!(!zero.config(&sampling_model, 4, 50).unwrap().do_sample);
    }
}
