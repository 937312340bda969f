//! The JSON shapes of the API: OpenAI chat completions, the model list, and the release's
//! own `POST /` request and response.

use serde::{Deserialize, Serialize};

/// `POST /v1/chat/completions` body. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model to use: absent or the served name (the base model), or a served LoRA
    /// adapter's name.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation; the last message must come from the user.
    pub messages: Vec<ChatMessage>,
    /// Most new tokens (OpenAI's older name). Default: `--default-max-tokens`, else the
    /// model's `max_new_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Most new tokens (OpenAI's newer name; wins over `max_tokens`).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature in `[0, 2]`; 0 means greedy. Default: the model's
    /// (`generation_config.json`; greedy when it says `do_sample: false`), else the
    /// release's 0.8.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus threshold in `(0, 1]`. Default: the model's, else the release's 0.4.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Keep the k most likely tokens (extension; 0 disables). Default: the model's, else the
    /// release's 100.
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Repetition penalty (extension; 1 disables). Default: the model's, else the release's
    /// 1.2.
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Seed for reproducible sampling.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Answer with server-sent `chat.completion.chunk` events (null or absent: no).
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is supported.
    #[serde(default)]
    pub n: Option<u32>,
    /// Stop sequences: a string or up to 4 strings (checked by
    /// [`crate::stop::StopSequences::parse`]).
    #[serde(default)]
    pub stop: Option<serde_json::Value>,
    /// Only `{"type": "text"}` is supported (see [`crate::unsupported`]).
    #[serde(default)]
    pub response_format: Option<serde_json::Value>,
    /// Only 0 is supported.
    #[serde(default)]
    pub frequency_penalty: Option<serde_json::Value>,
    /// Only 0 is supported.
    #[serde(default)]
    pub presence_penalty: Option<serde_json::Value>,
    /// Only `false` is supported.
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
    /// Only 0 is supported.
    #[serde(default)]
    pub top_logprobs: Option<serde_json::Value>,
    /// Only an empty map is supported.
    #[serde(default)]
    pub logit_bias: Option<serde_json::Value>,
    /// Function calling is not supported: only an empty list.
    #[serde(default)]
    pub tools: Option<serde_json::Value>,
    /// Only `"none"` or `"auto"` (with no tools).
    #[serde(default)]
    pub tool_choice: Option<serde_json::Value>,
    /// OpenAI's older function calling: only an empty list.
    #[serde(default)]
    pub functions: Option<serde_json::Value>,
    /// Only `"none"` or `"auto"` (with no functions).
    #[serde(default)]
    pub function_call: Option<serde_json::Value>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// A string or a list of parts.
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// Message content: plain text or typed parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

/// One part of a message.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{"type": "text", "text": ...}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{"type": "image_url", "image_url": {"url": ...}}`.
    ImageUrl {
        /// Where the image is.
        image_url: ImageUrl,
    },
}

/// `image_url` of an image part.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageUrl {
    /// A `data:` URL (or a local path when `--allow-local-dir` is set).
    pub url: String,
    /// OpenAI's detail hint; ignored (the model always sees 224×224).
    #[serde(default)]
    pub detail: Option<String>,
}

/// Token counts of one completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, including the 32 image tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (without the final `<eop>`).
    pub completion_tokens: usize,
    /// The sum.
    pub total_tokens: usize,
}

impl Usage {
    /// Counts for a prompt and an answer.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer, or the answer reached a stop sequence.
    Stop,
    /// The token budget ran out.
    Length,
}

impl FinishReason {
    /// The name OpenAI gives it: `stop` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// A non-streaming answer.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: String,
    /// One choice.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: Usage,
}

/// A choice of a non-streaming answer.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// 0.
    pub index: usize,
    /// The assistant's message.
    pub message: AssistantMessage,
    /// `stop` or `length`.
    pub finish_reason: FinishReason,
    /// The tokens' log-probabilities when the request asked for them (`logprobs: true`).
    pub logprobs: Option<ChoiceLogprobs>,
}

/// A choice's log-probabilities (OpenAI's `choices[i].logprobs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChoiceLogprobs {
    /// One entry per generated token, in order.
    pub content: Vec<LogprobEntry>,
}

/// A generated token with its raw log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogprobEntry {
    /// The token's text, decoded alone.
    pub token: String,
    /// Its log-probability (log-softmax of the model's logits, before any sampling setting).
    pub logprob: f32,
    /// The UTF-8 bytes of `token`.
    pub bytes: Vec<u8>,
    /// The `top_logprobs` most likely tokens at this step, most likely first.
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative of a [`LogprobEntry`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLogprob {
    /// The token's text, decoded alone.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// The UTF-8 bytes of `token`.
    pub bytes: Vec<u8>,
}

/// The assistant's answer.
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// One server-sent event of a streaming answer.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionChunk {
    /// The same id in every chunk of one answer.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: String,
    /// Zero or one choice.
    pub choices: Vec<ChunkChoice>,
    /// Token counts, on the last chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A choice of a chunk.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    /// 0.
    pub index: usize,
    /// What is new.
    pub delta: Delta,
    /// Set on the last chunk.
    pub finish_reason: Option<FinishReason>,
    /// The log-probabilities of the tokens whose text this chunk brings (or held back
    /// until it), when the request asked for them.
    pub logprobs: Option<ChoiceLogprobs>,
}

/// The new part of the answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    /// `assistant`, in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    /// `list`.
    pub object: &'static str,
    /// The base model, then each LoRA adapter.
    pub data: Vec<ModelCard>,
}

/// One model of the list.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    /// The served name.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// Unix seconds when the server started.
    pub created: u64,
    /// `visualglm`.
    pub owned_by: &'static str,
}

/// The release's `POST /` body (`api.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReleaseRequest {
    /// The image as base64 (a `data:` URL is accepted too); absent or null: text only.
    #[serde(default)]
    pub image: Option<String>,
    /// The question.
    pub text: String,
    /// Earlier turns as `[question, answer]` pairs.
    #[serde(default)]
    pub history: Option<Vec<(String, String)>>,
    /// Most tokens of prompt + answer (default 2048).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Nucleus threshold (default: the model's, else 0.4).
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Top-k (default: the model's, else 100).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Temperature (default: the model's, else 0.8; 0 is greedy).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Seed (extension; default random).
    #[serde(default)]
    pub seed: Option<i64>,
}

/// The release's `POST /` answer.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseResponse {
    /// The answer.
    pub result: String,
    /// The history with this turn appended.
    pub history: Vec<(String, String)>,
    /// 200.
    pub status: u16,
    /// `YYYY-MM-DD HH:MM:SS` (UTC).
    pub time: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The served model name.
    pub model: String,
    /// Requests waiting or running.
    pub in_flight: usize,
    /// Tokens generated since the start, over all requests.
    pub tokens_generated: u64,
    /// Groups of requests the model worker has prefilled together since the start.
    pub batches: u64,
    /// Decode steps since the start (each makes one token for every running request).
    pub decode_steps: u64,
    /// Most requests decoding at once since the start.
    pub peak_batch: usize,
    /// The names of the served LoRA adapters.
    pub adapters: Vec<String>,
}
