//! An OpenAI-compatible HTTP server for VisualGLM (`visualglm serve`).
//!
//! Routes:
//! * `POST /v1/chat/completions`: OpenAI chat completions, streaming (server-sent
//!   `chat.completion.chunk` events) or not. Earlier user/assistant messages become the
//!   VisualGLM history; the conversation's image is the last `image_url` part in it. Images
//!   must be `data:image/...;base64,` URLs (local paths only under `--allow-local-dir`;
//!   remote URLs are refused). Chinese or English mode follows the release's `is_chinese`
//!   test on the question.
//!   `model` names the base model (or is absent) or one of the LoRA adapters the server was
//!   started with ([`ServerConfig::adapters`]); another name is a 404 `model_not_found`.
//!   Sampling fields a request leaves unset take the model's defaults
//!   ([`Captioner::defaults`], its `generation_config.json`; see [`request`]); `stop`
//!   sequences end answers early ([`stop`]); `n` asks for up to 8 answers decoded as one
//!   batch (answer `i` sampled with the seed + `i`); `logprobs` / `top_logprobs` report
//!   raw log-probabilities ([`logprobs`]); fields asking for what the server does not do
//!   (`tools`, `response_format` JSON, …) are a 400 naming them ([`unsupported`]).
//! * `GET /v1/models` (the base model and each adapter), `GET /v1/models/{id}`, `GET /health`,
//!   `GET /metrics` (Prometheus text format; see [`metrics`]).
//! * `POST /`: the release's `api.py` request `{"image", "text", "history"}` →
//!   `{"result", "history", "status", "time"}`.
//!
//! Requests go to a queue served by one model worker thread, which decodes up to
//! `max_batch` requests together with continuous (iteration-level) batching: requests join
//! the running batch at its next decode step and leave it when they end (see [`worker`]).
//! Each adapter is a clone of the base model with the adapter attached unmerged, so it shares
//! the base weights and costs only the adapter's memory. Errors are OpenAI-shaped JSON (see
//! [`error`]). Every request writes one access line on the `tracing` target
//! [`access::TARGET`] (see [`access`]).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use visualglm::pipeline::Captioner;
//! use visualglm_server::{Server, ServerConfig};
//! let captioner = Captioner::load("visualglm-6b".as_ref(), &candle_core::Device::Cpu,
//!     candle_core::DType::F32, &Default::default())?;
//! let config = ServerConfig { stop_on_ctrl_c: true, ..ServerConfig::default() };
//! let server = Server::start(captioner, config)?;
//! println!("listening on http://{}", server.addr());
//! server.wait()?;
//! # Ok(()) }
//! ```

pub mod access;
pub mod embeddings;
pub mod error;
pub mod histogram;
pub mod images;
pub mod logprobs;
pub mod metrics;
pub mod request;
pub mod routes;
pub mod stop;
pub mod stream;
pub mod types;
pub mod unsupported;
pub mod worker;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub use error::ApiError;
pub use images::ImagePolicy;
pub use request::{PromptLimits, DEFAULT_MAX_IMAGES};
pub use routes::{router, AppState};
use visualglm::lora::LoraAdapters;
use visualglm::pipeline::Captioner;
pub use worker::{BatchOptions, Scheduler};

/// A LoRA adapter served under its own model name.
#[derive(Debug, Clone)]
pub struct ServedAdapter {
    /// The name clients pass as `model` to use it.
    pub name: String,
    /// The adapters (ChatGLM layer linears only: they are applied unmerged).
    pub adapters: LoraAdapters,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (default `127.0.0.1:8080`; port 0 picks a free port).
    pub addr: SocketAddr,
    /// The name clients use in `model` (default `visualglm-6b`).
    pub model_name: String,
    /// LoRA adapters served beside the base model, each under its own name.
    pub adapters: Vec<ServedAdapter>,
    /// Batching and queue size.
    pub batch: BatchOptions,
    /// Largest request body in bytes (default 20 MiB).
    pub max_body_bytes: usize,
    /// Image size limits and the local directory, if any.
    pub images: ImagePolicy,
    /// Prompt length limits.
    pub limits: PromptLimits,
    /// Stop gracefully on Ctrl-C (the CLI; off for servers embedded in other programs).
    pub stop_on_ctrl_c: bool,
    /// The model's ITC heads: `POST /v1/embeddings` serves retrieval embeddings with them.
    pub itc: Option<Arc<visualglm::itc::ItcHeads>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            model_name: "visualglm-6b".into(),
            adapters: Vec::new(),
            batch: BatchOptions::default(),
            max_body_bytes: 20 << 20,
            images: ImagePolicy::default(),
            limits: PromptLimits::default(),
            stop_on_ctrl_c: false,
            itc: None,
        }
    }
}

/// A running server: HTTP on a background thread, the model on the worker thread.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Binds `config.addr`, starts the model worker and serves until [`Server::stop`], drop,
    /// or Ctrl-C when `config.stop_on_ctrl_c` is set. An adapter with an empty or repeated
    /// name (or the base model's), or one that does not fit the model, is an
    /// [`std::io::ErrorKind::InvalidInput`] error naming it.
    pub fn start(captioner: Captioner, config: ServerConfig) -> std::io::Result<Self> {
        let mut models = Vec::with_capacity(config.adapters.len() + 1);
        let mut names = Vec::with_capacity(config.adapters.len());
        for a in &config.adapters {
            check_adapter_name(&a.name, &config.model_name, &names)?;
            let variant = captioner.with_adapters(&a.adapters).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("LoRA adapter `{}`: {e}", a.name),
                )
            })?;
            models.push(Arc::new(variant));
            names.push(a.name.clone());
        }
        let listener = TcpListener::bind(config.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let captioner = Arc::new(captioner);
        models.insert(0, captioner.clone());
        let (queue, _worker) = worker::Queue::start(models, config.batch)?;
        let state = Arc::new(AppState {
            captioner,
            queue,
            model_name: config.model_name,
            adapters: names,
            created: routes::unix_now(),
            images: config.images,
            limits: config.limits,
            max_body_bytes: config.max_body_bytes,
            http_metrics: Arc::default(),
            itc: config.itc,
        });
        let (tx, rx) = oneshot::channel::<()>();
        let ctrl_c = config.stop_on_ctrl_c;
        let thread = std::thread::Builder::new()
            .name("visualglm-http".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("visualglm-http-rt")
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let stop = async move {
                        if ctrl_c {
                            tokio::select! {
                                _ = rx => {}
                                _ = tokio::signal::ctrl_c() => {
                                    tracing::info!("Ctrl-C: shutting down");
                                }
                            }
                        } else {
                            let _ = rx.await;
                        }
                    };
                    axum::serve(listener, router(state))
                        .with_graceful_shutdown(stop)
                        .await
                })
            })?;
        tracing::info!("serving on http://{addr}");
        Ok(Self {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the server stops (Ctrl-C with `stop_on_ctrl_c`) and returns its result.
    pub fn wait(mut self) -> std::io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the HTTP thread panicked"))),
            None => Ok(()),
        }
    }

    /// Stops accepting connections, lets open requests finish, and waits for that.
    pub fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait()
    }
}

fn check_adapter_name(name: &str, base: &str, taken: &[String]) -> std::io::Result<()> {
    let problem = if name.trim().is_empty() {
        Some("an adapter name must not be empty".to_string())
    } else if name == base {
        Some(format!(
            "the adapter name `{name}` is the base model's name; choose another"
        ))
    } else if taken.iter().any(|t| t == name) {
        Some(format!("two adapters are named `{name}`"))
    } else {
        None
    };
    match problem {
        Some(p) => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, p)),
        None => Ok(()),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
