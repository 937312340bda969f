//! The HTTP routes: OpenAI chat completions and model list, health, and the release's
//! `POST /`. Handlers validate and prepare the request off the async threads, queue it for
//! the model worker, and answer from the worker's events. Every request gets one access line
//! (see [`crate::access`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::access::{log_requests, AccessInfo, StreamAccess};
use super::embeddings::{embed, EmbedContext, EmbeddingRequest};
use super::error::ApiError;
use super::images::ImagePolicy;
use super::logprobs::entry;
use super::metrics::{render, track, HttpMetrics, CONTENT_TYPE};
use super::request::{prepare_chat, prepare_release, Prepared, PromptLimits};
use super::stop::{visible_text, StopSequences};
use super::stream::{chunks, ChunkHeader};
use super::types::{
    AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, ChoiceLogprobs, FinishReason,
    Health, ModelCard, ModelList, ReleaseRequest, ReleaseResponse, Usage,
};
use super::worker::{Event, Job, Queue};
use visualglm::generate::TokenLogprobs;
use visualglm::pipeline::Captioner;

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The model and tokenizer (the handlers only tokenize; the worker runs the model).
    pub captioner: Arc<Captioner>,
    /// The model worker's queue.
    pub queue: Queue,
    /// The name clients use for the base model.
    pub model_name: String,
    /// The names of the LoRA variants, in the worker's order (model `i + 1`).
    pub adapters: Vec<String>,
    /// Unix seconds when the server started.
    pub created: u64,
    /// Which images are accepted.
    pub images: ImagePolicy,
    /// Prompt length limits.
    pub limits: PromptLimits,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Requests by route and status, and their latency (`GET /metrics`).
    pub http_metrics: Arc<HttpMetrics>,
    /// The model's ITC heads, for `POST /v1/embeddings`.
    pub itc: Option<Arc<visualglm::itc::ItcHeads>>,
}

impl AppState {
    /// The worker's index of the model a request names: 0 for the base model (its name or no
    /// name), `i + 1` for adapter `i`; another name is a 404 `model_not_found`.
    pub fn model_index(&self, name: Option<&str>) -> Result<usize, ApiError> {
        match name {
            None => Ok(0),
            Some(n) if n == self.model_name => Ok(0),
            Some(n) => self
                .adapters
                .iter()
                .position(|a| a == n)
                .map(|i| i + 1)
                .ok_or_else(|| ApiError::model_not_found(n)),
        }
    }

    /// Every served model name: the base, then the adapters.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.model_name.as_str()).chain(self.adapters.iter().map(String::as_str))
    }
}

/// The router with every route; unknown paths and methods get OpenAI-shaped errors.
pub fn router(state: Arc<AppState>) -> Router {
    let metrics = state.http_metrics.clone();
    Router::new()
        .route("/", post(release))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read (and limited) by `read_json`.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(log_requests))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
        .with_state(state)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn completion_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("chatcmpl-{:08x}{n:08x}", nanos)
}

/// How much of an over-limit body is still read (and thrown away) before answering 413, so
/// that clients which send the whole body before reading get the 413 instead of a reset.
const DRAIN_BYTES: usize = 4 << 20;

/// Reads the body up to the limit (413 beyond it) and parses it as JSON (400 if malformed).
async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than the limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drain_to = limit.saturating_add(DRAIN_BYTES);
    if declared.is_some_and(|n| n > drain_to as u64) {
        return Err(too_large());
    }
    let mut over = declared.is_some_and(|n| n > limit as u64);
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) if over => return Err(too_large()),
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "cannot read the request body: {e}"
                )))
            }
        };
        total = total.saturating_add(chunk.len());
        if total > limit {
            over = true;
            bytes = Vec::new();
        }
        if over {
            if total > drain_to {
                break;
            }
            continue;
        }
        bytes.extend_from_slice(&chunk);
    }
    if over {
        return Err(too_large());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON for this endpoint: {e}"
        ))
        .with_code("invalid_json")
    })
}

/// Runs `prepare` (tokenizing, image decoding) on a blocking thread.
async fn prepare_off_thread<F>(prepare: F) -> Result<Prepared, ApiError>
where
    F: FnOnce() -> Result<Prepared, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(prepare)
        .await
        .map_err(|e| ApiError::internal(format!("request preparation failed: {e}")))?
}

/// Queues a prepared request, one job per answer asked for (`n`; answer `i` samples with
/// the seed + `i`); returns their event receivers, in order.
fn enqueue(
    state: &AppState,
    p: &mut Prepared,
    model: usize,
) -> Result<Vec<UnboundedReceiver<Event>>, ApiError> {
    let n = p.n.max(1);
    let mut receivers = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = unbounded_channel();
        let last = i + 1 == n;
        let mut config = p.config.clone();
        config.seed = config.seed.wrapping_add(i as u64);
        // Dropping the receivers already made cancels their jobs if this one is refused.
        state.queue.submit(Job {
            ids: if last {
                std::mem::take(&mut p.ids)
            } else {
                p.ids.clone()
            },
            image_starts: p.image_starts.clone(),
            images: if last {
                std::mem::take(&mut p.images)
            } else {
                p.images.clone()
            },
            config,
            english: p.english,
            stop: p.stop.clone(),
            model,
            events: tx,
            submitted: Instant::now(),
            logprobs: p.logprobs,
        })?;
        receivers.push(rx);
    }
    Ok(receivers)
}

/// A whole answer: its tokens, why it ended, and its tokens' log-probabilities (if asked).
type Answer = (Vec<u32>, FinishReason, Vec<TokenLogprobs>);

/// Waits for the whole answer.
async fn collect(mut rx: UnboundedReceiver<Event>) -> Result<Answer, ApiError> {
    let mut logprobs = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token(_) => {}
            Event::Logprobs(lp) => logprobs.push(lp),
            Event::Done { tokens, finish } => return Ok((tokens, finish, logprobs)),
            Event::Failed(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the model worker dropped the request"))
}

/// Waits for every answer of a request, in order.
async fn collect_all(receivers: Vec<UnboundedReceiver<Event>>) -> Result<Vec<Answer>, ApiError> {
    futures_util::future::join_all(receivers.into_iter().map(collect))
        .await
        .into_iter()
        .collect()
}

/// The answer's text: decoded, trimmed, cut before the first stop sequence; and whether one
/// was found.
fn decode_answer(
    captioner: &Captioner,
    tokens: &[u32],
    stops: &StopSequences,
) -> Result<(String, bool), ApiError> {
    let visible = visible_text(captioner, tokens, stops)?;
    Ok((visible.text.trim_end().to_string(), visible.stopped))
}

/// Answers the response with `info` attached for the access line.
fn with_access(result: Result<Response, ApiError>, info: AccessInfo) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(info);
    response
}

async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut info = AccessInfo {
        model: Some(state.model_name.clone()),
        ..AccessInfo::default()
    };
    let result = async {
        let req: EmbeddingRequest = read_json(&headers, body, state.max_body_bytes).await?;
        let ctx = EmbedContext {
            captioner: state.captioner.clone(),
            heads: state.itc.clone(),
            images: state.images.clone(),
            model_name: state.model_name.clone(),
            adapters: state.adapters.clone(),
        };
        embed(ctx, req).await
    }
    .await;
    if let Ok(list) = &result {
        info.prompt_tokens = list.prompt_tokens();
    }
    with_access(result.map(|l| Json(l).into_response()), info)
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let mut info = AccessInfo::default();
    let result = chat(state, headers, body, start, &mut info).await;
    if result.is_err() {
        info.finish = Some("error");
    }
    with_access(result, info)
}

async fn chat(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
    start: Instant,
    info: &mut AccessInfo,
) -> Result<Response, ApiError> {
    let req: ChatCompletionRequest = read_json(&headers, body, state.max_body_bytes).await?;
    info.model = req.model.clone();
    let model = state.model_index(req.model.as_deref())?;
    let model_name = match model {
        0 => state.model_name.clone(),
        _ => req.model.clone().unwrap_or_default(),
    };
    info.model = Some(model_name.clone());
    let stream = req.stream.unwrap_or(false);
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let s = state.clone();
    let mut prepared =
        prepare_off_thread(move || prepare_chat(&s.captioner, &req, &s.images, &s.limits)).await?;
    let prompt_tokens = prepared.ids.len();
    info.prompt_tokens = prompt_tokens;
    let receivers = enqueue(&state, &mut prepared, model)?;
    let id = completion_id();
    let created = unix_now();
    if stream {
        info.streamed = true;
        let access = StreamAccess::new(start, model_name.clone(), prompt_tokens);
        let header = ChunkHeader {
            logprobs: prepared.logprobs.is_some(),
            id,
            created,
            model: model_name,
            prompt_tokens,
            include_usage,
        };
        let events = chunks(
            state.captioner.clone(),
            receivers,
            header,
            prepared.stop,
            access,
        );
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let answers = collect_all(receivers).await?;
    let mut choices = Vec::with_capacity(answers.len());
    let mut completion_tokens = 0;
    for (index, (tokens, finish, logprobs)) in answers.into_iter().enumerate() {
        completion_tokens += tokens.len();
        let (content, stopped) = decode_answer(&state.captioner, &tokens, &prepared.stop)?;
        let finish = if stopped { FinishReason::Stop } else { finish };
        info.finish = Some(finish.as_str());
        choices.push(Choice {
            index,
            message: AssistantMessage {
                role: "assistant",
                content,
            },
            finish_reason: finish,
            logprobs: prepared.logprobs.map(|_| ChoiceLogprobs {
                content: logprobs
                    .iter()
                    .map(|lp| entry(&state.captioner, lp))
                    .collect(),
            }),
        });
    }
    info.completion_tokens = completion_tokens;
    let usage = Usage::new(prompt_tokens, completion_tokens);
    Ok(Json(ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model: model_name,
        choices,
        usage,
    })
    .into_response())
}

async fn release(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let mut info = AccessInfo {
        model: Some(state.model_name.clone()),
        ..AccessInfo::default()
    };
    let result = release_answer(state, headers, body, &mut info).await;
    info.finish = Some(info.finish.unwrap_or("error"));
    with_access(result.map(IntoResponse::into_response), info)
}

async fn release_answer(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
    info: &mut AccessInfo,
) -> Result<Json<ReleaseResponse>, ApiError> {
    let req: ReleaseRequest = read_json(&headers, body, state.max_body_bytes).await?;
    let s = state.clone();
    let mut prepared =
        prepare_off_thread(move || prepare_release(&s.captioner, &req, &s.images, &s.limits))
            .await?;
    info.prompt_tokens = prepared.ids.len();
    let receivers = enqueue(&state, &mut prepared, 0)?;
    let mut answers = collect_all(receivers).await?;
    if answers.is_empty() {
        return Err(ApiError::internal("no answer"));
    }
    let (tokens, finish, _) = answers.swap_remove(0);
    info.completion_tokens = tokens.len();
    info.finish = Some(finish.as_str());
    let (result, _) = decode_answer(&state.captioner, &tokens, &StopSequences::default())?;
    let mut history = std::mem::take(&mut prepared.history);
    history.push((std::mem::take(&mut prepared.query), result.clone()));
    Ok(Json(ReleaseResponse {
        result,
        history,
        status: 200,
        time: format_utc(unix_now()),
    }))
}

async fn models(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: state.model_names().map(|n| card(&state, n)).collect(),
    })
}

async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    state.model_index(Some(&id))?;
    Ok(Json(card(&state, &id)))
}

fn card(state: &AppState, name: &str) -> ModelCard {
    ModelCard {
        id: name.to_string(),
        object: "model",
        created: state.created,
        owned_by: "visualglm",
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        model: state.model_name.clone(),
        in_flight: state.queue.in_flight(),
        tokens_generated: state.queue.tokens_generated(),
        batches: state.queue.batches(),
        decode_steps: state.queue.decode_steps(),
        peak_batch: state.queue.peak_batch(),
        adapters: state.adapters.clone(),
    })
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let text = render(
        &state.http_metrics,
        &state.queue,
        state.captioner.image_cache(),
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: Some("method_not_allowed"),
        ..ApiError::bad_request(format!("method not allowed for `{}`", uri.path()))
    }
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time, in UTC (the release prints its local time).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_764_142_496), "2025-11-26 07:34:56");
    }
}
