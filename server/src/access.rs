//! The access log: one `tracing` event per request at level INFO on target [`TARGET`], with
//! the method and path as its message and the fields `status` (HTTP status), `ms` (latency
//! in milliseconds), `model` (the model that answered, quoted; `"-"` when none did),
//! `prompt_tokens`, `completion_tokens` (0 when no model ran) and `finish` (`stop`,
//! `length`, `error` or `cancelled` for completions, `-` otherwise). With the CLI's
//! formatter a line reads:
//!
//! ```text
//! 2025-01-01T00:00:00.000000Z  INFO visualglm_server::access: POST /v1/chat/completions status=200 ms=412 model="visualglm-6b" prompt_tokens=48 completion_tokens=12 finish="stop"
//! ```
//!
//! [`log_requests`] (a middleware on every route) writes the line when the response is
//! ready; handlers describe what ran with an [`AccessInfo`] response extension. A streamed
//! answer's line is written by its stream when it ends (or when the client goes away), so
//! its latency and token counts cover the whole answer. A request whose client goes away
//! before its answer is ready is logged with status 499 and finish `cancelled`.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// The `tracing` target of access lines (filter with `RUST_LOG=visualglm_server::access=info`).
pub const TARGET: &str = "visualglm_server::access";

/// What a handler tells the access log about its request (a response extension).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessInfo {
    /// The model that answered (or that the request named), if any.
    pub model: Option<String>,
    /// Prompt tokens, the 32 image tokens included.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Why a completion ended: `stop`, `length`, `error`, `cancelled`.
    pub finish: Option<&'static str>,
    /// The answer is streamed: its stream writes the line when it ends.
    pub streamed: bool,
}

/// Writes one access line.
pub fn log(method: &str, path: &str, status: u16, elapsed: Duration, info: &AccessInfo) {
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let model = info.model.as_deref().unwrap_or("-");
    tracing::info!(
        target: TARGET,
        status,
        ms,
        model,
        prompt_tokens = info.prompt_tokens,
        completion_tokens = info.completion_tokens,
        finish = info.finish.unwrap_or("-"),
        "{method} {path}"
    );
}

/// The status logged for a request whose client went away before its answer was ready
/// (nginx's "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// Middleware: times the request and writes its access line, unless the handler streams
/// (see [`AccessInfo::streamed`]). A request dropped before its response was ready (the
/// client went away) is logged with status [`CLIENT_CLOSED`] and finish `cancelled`.
pub async fn log_requests(req: Request, next: Next) -> Response {
    let mut pending = Pending {
        start: Instant::now(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        done: false,
    };
    let response = next.run(req).await;
    pending.done = true;
    let info = response
        .extensions()
        .get::<AccessInfo>()
        .cloned()
        .unwrap_or_default();
    if !info.streamed {
        let status = response.status().as_u16();
        log(
            &pending.method,
            &pending.path,
            status,
            pending.start.elapsed(),
            &info,
        );
    }
    response
}

/// A request in [`log_requests`]: logged on drop if it never got its response.
struct Pending {
    start: Instant,
    method: String,
    path: String,
    done: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let info = AccessInfo {
                finish: Some("cancelled"),
                ..AccessInfo::default()
            };
            log(
                &self.method,
                &self.path,
                CLIENT_CLOSED,
                self.start.elapsed(),
                &info,
            );
        }
    }
}

/// The access line of a streamed answer, written once: when the stream ends, or when it is
/// dropped before (the client went away).
#[derive(Debug)]
pub struct StreamAccess {
    started: Instant,
    info: AccessInfo,
    written: bool,
}

impl StreamAccess {
    /// For a stream of `model`'s answer to a `prompt_tokens` prompt, requested at `started`.
    pub fn new(started: Instant, model: String, prompt_tokens: usize) -> Self {
        Self {
            started,
            info: AccessInfo {
                model: Some(model),
                prompt_tokens,
                ..AccessInfo::default()
            },
            written: false,
        }
    }

    /// Writes the line with the final token count and reason (once; later calls do nothing).
    pub fn finish(&mut self, completion_tokens: usize, finish: &'static str) {
        if !self.written {
            self.written = true;
            self.info.completion_tokens = completion_tokens;
            self.info.finish = Some(finish);
            log(
                "POST",
                "/v1/chat/completions",
                200,
                self.started.elapsed(),
                &self.info,
            );
        }
    }

    /// Counts a generated token (reported if the stream ends early).
    pub fn count_token(&mut self) {
        self.info.completion_tokens += 1;
    }

    /// Tokens counted so far.
    pub fn tokens(&self) -> usize {
        self.info.completion_tokens
    }
}

impl Drop for StreamAccess {
    fn drop(&mut self) {
        let n = self.info.completion_tokens;
        self.finish(n, "cancelled");
    }
}
