//! `POST /v1/embeddings`: retrieval embeddings from the model's ITC heads (a model trained
//! with `itc_weight` > 0 has `itc.safetensors`). OpenAI's `input` has no image type, so an
//! input item is a string (a text) or an object `{"type": "text", "text"}` /
//! `{"type": "image_url", "image_url": {"url"}}` (a data URL, or an allowed local file). A text's
//! embedding is a unit vector `[d]`; an image's is `[32][d]`, one unit vector per Q-Former
//! query. An image and a text score as the largest of the 32 query–text dot products, as
//! `eval retrieval` and `visualglm embed` do.

use std::sync::Arc;

use base64::Engine;
use image::DynamicImage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use visualglm::itc::ItcHeads;
use visualglm::retrieval::{embed_images, embed_texts};

use visualglm::pipeline::Captioner;

use crate::error::ApiError;
use crate::images::ImagePolicy;

/// Most inputs in one request.
pub const MAX_INPUTS: usize = 256;

/// The request body.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// The base model's name (adapters change the text side the heads were trained with).
    #[serde(default)]
    pub model: Option<String>,
    /// A string, or a list of strings and `{"type": "text"|"image_url", …}` objects.
    pub input: Value,
    /// `float` (default) or `base64` (little-endian f32, row-major).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Not supported: a value other than `null` is refused.
    #[serde(default)]
    pub dimensions: Option<Value>,
}

/// One input item.
enum Input {
    Text(String),
    Image(String),
}

/// One embedding of the response.
#[derive(Debug, Serialize)]
pub struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: Value,
}

/// The response body.
#[derive(Debug, Serialize)]
pub struct EmbeddingList {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

/// Token counts (the texts' tokens, 32 per image).
#[derive(Debug, Serialize)]
pub struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

impl EmbeddingList {
    /// The request's tokens (for the access log).
    pub fn prompt_tokens(&self) -> usize {
        self.usage.prompt_tokens
    }
}

fn parse_inputs(input: &Value) -> Result<Vec<Input>, ApiError> {
    let bad = |m: &str| ApiError::bad_request(m.to_string()).with_param("input");
    let items: Vec<&Value> = match input {
        Value::String(_) => vec![input],
        Value::Array(a) if a.is_empty() => return Err(bad("`input` is empty")),
        Value::Array(a) => a.iter().collect(),
        _ => return Err(bad("`input` must be a string or a list")),
    };
    if items.len() > MAX_INPUTS {
        return Err(bad(&format!("at most {MAX_INPUTS} inputs per request")));
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(Input::Text(s.clone())),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("text") => o
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|t| Input::Text(t.to_string()))
                    .ok_or_else(|| bad("a text input needs `text`")),
                Some("image_url") => o
                    .get("image_url")
                    .and_then(|u| u.get("url"))
                    .and_then(Value::as_str)
                    .map(|u| Input::Image(u.to_string()))
                    .ok_or_else(|| bad("an image input needs `image_url.url`")),
                _ => Err(bad("an input object's `type` is `text` or `image_url`")),
            },
            _ => Err(bad(
                "an input is a string or a {\"type\": \"text\"|\"image_url\"} object",
            )),
        })
        .collect()
}

/// What an embeddings request needs from the server.
#[derive(Clone)]
pub struct EmbedContext {
    /// The base model.
    pub captioner: Arc<Captioner>,
    /// Its ITC heads, if it has any.
    pub heads: Option<Arc<ItcHeads>>,
    /// Which images are accepted.
    pub images: ImagePolicy,
    /// The base model's name.
    pub model_name: String,
    /// The served adapters' names (refused: the heads belong to the base model).
    pub adapters: Vec<String>,
}

/// Answers one embeddings request (decoding its images, running the model off the async
/// threads).
pub async fn embed(ctx: EmbedContext, req: EmbeddingRequest) -> Result<EmbeddingList, ApiError> {
    let state = ctx;
    let heads: Arc<ItcHeads> = state.heads.clone().ok_or_else(|| {
        ApiError::bad_request(
            "this model has no ITC heads (itc.safetensors, from a training run with \
             itc_weight > 0): it serves no embeddings",
        )
        .with_code("embeddings_unavailable")
    })?;
    match req.model.as_deref() {
        None => {}
        Some(n) if n == state.model_name => {}
        Some(n) if state.adapters.iter().any(|a| a == n) => {
            return Err(ApiError::bad_request(
                "embeddings are served for the base model only (the heads were trained with it)",
            )
            .with_param("model"))
        }
        Some(n) => return Err(ApiError::model_not_found(n)),
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`encoding_format` is `float` or `base64`, not `{other}`"
            ))
            .with_param("encoding_format"))
        }
    };
    if req.dimensions.as_ref().is_some_and(|d| !d.is_null()) {
        return Err(ApiError::bad_request(
            "`dimensions` is not supported: the heads' width is fixed",
        )
        .with_param("dimensions"));
    }
    let inputs = parse_inputs(&req.input)?;
    let model_name = state.model_name.clone();
    tokio::task::spawn_blocking(move || compute(&state, &heads, &inputs, base64, model_name))
        .await
        .map_err(|e| ApiError::internal(format!("embedding failed: {e}")))?
}

fn compute(
    state: &EmbedContext,
    heads: &ItcHeads,
    inputs: &[Input],
    base64: bool,
    model: String,
) -> Result<EmbeddingList, ApiError> {
    let captioner = &state.captioner;
    let internal = |e: visualglm::VisualGlmError| ApiError::internal(e.to_string());
    let mut images: Vec<DynamicImage> = Vec::new();
    let mut texts: Vec<&str> = Vec::new();
    for input in inputs {
        match input {
            Input::Text(t) => texts.push(t),
            Input::Image(url) => images.push(state.images.load_url(url)?),
        }
    }
    let image_rows = if images.is_empty() {
        Vec::new()
    } else {
        embed_images(captioner, heads, &images, 16)
            .and_then(|e| Ok(e.to_vec3::<f32>()?))
            .map_err(internal)?
    };
    let text_rows = if texts.is_empty() {
        Vec::new()
    } else {
        embed_texts(captioner, heads, &texts, 16)
            .and_then(|e| Ok(e.to_vec2::<f32>()?))
            .map_err(internal)?
    };
    let mut tokens = 32 * image_rows.len();
    for t in &texts {
        tokens += captioner
            .tokenizer()
            .encode(t)
            .map(|ids| ids.len())
            .unwrap_or(0);
    }
    let encode = |values: Vec<f32>, nested: Value| -> Value {
        if base64 {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            nested
        }
    };
    let (mut image_rows, mut text_rows) = (image_rows.into_iter(), text_rows.into_iter());
    let mut data = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let embedding = match input {
            Input::Image(_) => {
                let rows = image_rows.next().unwrap_or_default();
                let flat = rows.iter().flatten().copied().collect();
                encode(flat, serde_json::json!(rows))
            }
            Input::Text(_) => {
                let row = text_rows.next().unwrap_or_default();
                encode(row.clone(), serde_json::json!(row))
            }
        };
        data.push(EmbeddingData {
            object: "embedding",
            index,
            embedding,
        });
    }
    Ok(EmbeddingList {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}
