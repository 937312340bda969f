//! `GET /metrics`: Prometheus counters, gauges and histograms in the text exposition format
//! (version 0.0.4). The HTTP layer counts requests by route and status and times them
//! ([`track`], a middleware); the model worker counts tokens, decode batch sizes, time to
//! first token and the queue ([`crate::worker::Queue`]); the image cache counts its hits
//! and misses. Names (all prefixed `visualglm_`) are listed in `docs/server.md`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;

use super::access::AccessInfo;
use super::histogram::{self, escape, header, scalar, Histogram};
use super::worker::Queue;
use visualglm::image_cache::ImageCache;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the HTTP layer measures.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Histogram,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(&histogram::SECONDS),
        }
    }
}

impl HttpMetrics {
    fn count(&self, route: String, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route, status)).or_insert(0) += 1;
    }

    /// Requests answered on `route` (the matched route pattern) with `status`.
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(route.to_string(), status)).copied().unwrap_or(0)
    }
}

/// Middleware: counts each request under its route pattern ([`route_of`])
/// and status when its response is ready, and observes its latency then, or, for a streamed
/// answer, when its stream ends (or the client goes away).
pub async fn track(State(m): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = route_of(req.uri().path()).to_string();
    let response = next.run(req).await;
    m.count(route, response.status().as_u16());
    let streamed = response
        .extensions()
        .get::<AccessInfo>()
        .is_some_and(|i| i.streamed);
    if !streamed {
        m.latency.observe(start.elapsed().as_secs_f64());
        return response;
    }
    let (parts, body) = response.into_parts();
    let timer = Timer { metrics: m, start };
    let body = body.into_data_stream().map(move |chunk| {
        let _ = &timer;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// The routes, as labelled.
pub const ROUTES: [&str; 6] = [
    "/",
    "/v1/chat/completions",
    "/v1/models",
    "/v1/models/{id}",
    "/health",
    "/metrics",
];

/// The route label of a path: the route pattern it matches, or `unmatched`.
pub fn route_of(path: &str) -> &'static str {
    if let Some(r) = ROUTES.iter().find(|r| **r == path) {
        return r;
    }
    match path.strip_prefix("/v1/models/") {
        Some(id) if !id.is_empty() && !id.contains('/') => "/v1/models/{id}",
        _ => "unmatched",
    }
}

/// Observes a streamed request's latency when its body is dropped.
struct Timer {
    metrics: Arc<HttpMetrics>,
    start: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        let secs = self.start.elapsed().as_secs_f64();
        self.metrics.latency.observe(secs);
    }
}

/// Every metric in the text format.
pub fn render(http: &HttpMetrics, queue: &Queue, cache: Option<&Arc<ImageCache>>) -> String {
    let mut out = String::new();
    let name = "visualglm_http_requests_total";
    header(
        &mut out,
        name,
        "HTTP requests by route and status.",
        "counter",
    );
    {
        let m = http.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, status), n) in m.iter() {
            let route = escape(route);
            let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
    }
    http.latency.render(
        &mut out,
        "visualglm_http_request_duration_seconds",
        "Time from a request's arrival to the end of its response (a stream's last event).",
    );
    queue.time_to_first_token().render(
        &mut out,
        "visualglm_time_to_first_token_seconds",
        "Time from a completion's submission to its first generated token.",
    );
    queue.batch_sizes().render(
        &mut out,
        "visualglm_decode_batch_size",
        "Rows decoded together in each decode step.",
    );
    let counters = [
        (
            "visualglm_prompt_tokens_total",
            "Prompt tokens prefilled (image tokens included; each row of an n > 1 request).",
            queue.prompt_tokens(),
        ),
        (
            "visualglm_prefill_rows_total",
            "Prompt rows run through the model (the n rows of one request share one prefill).",
            queue.prefill_rows(),
        ),
        (
            "visualglm_completion_tokens_total",
            "Tokens generated, over all requests.",
            queue.tokens_generated(),
        ),
        (
            "visualglm_decode_steps_total",
            "Decode steps (forward passes over a running batch).",
            queue.decode_steps(),
        ),
    ];
    for (name, help, v) in counters {
        scalar(&mut out, name, help, "counter", v);
    }
    let gauges = [
        (
            "visualglm_queue_depth",
            "Requests waiting for the model worker.",
            queue.queue_depth(),
        ),
        (
            "visualglm_requests_running",
            "Requests (rows) decoding now.",
            queue.running(),
        ),
    ];
    for (name, help, v) in gauges {
        scalar(&mut out, name, help, "gauge", v as u64);
    }
    if let Some(cache) = cache {
        let s = cache.stats();
        let help = "Image-embedding cache lookups that found the embedding.";
        scalar(
            &mut out,
            "visualglm_image_cache_hits_total",
            help,
            "counter",
            s.hits,
        );
        let help = "Image-embedding cache lookups that had to run the encoder.";
        let name = "visualglm_image_cache_misses_total";
        scalar(&mut out, name, help, "counter", s.misses);
        let help = "Embeddings in the image cache.";
        let entries = s.entries as u64;
        scalar(
            &mut out,
            "visualglm_image_cache_entries",
            help,
            "gauge",
            entries,
        );
        let help = "Bytes held by the image cache.";
        let bytes = s.bytes as u64;
        scalar(
            &mut out,
            "visualglm_image_cache_bytes",
            help,
            "gauge",
            bytes,
        );
    }
    out
}
