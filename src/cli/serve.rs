//! `visualglm serve`: an OpenAI-compatible HTTP server (see `visualglm::server`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use visualglm::server::{BatchOptions, ImagePolicy, PromptLimits, Server, ServerConfig};
use visualglm_vision::preprocess::DecodeLimits;

use super::model_args::ModelArgs;

/// Arguments of `visualglm serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on. Only this machine can connect unless you change it; the server
    /// has no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Name clients pass as `model` (default: the model directory's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Most requests decoded together (1: one at a time).
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Most requests waiting for the model; more get 503.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// How long (ms) an idle model waits for more requests to batch with the first.
    #[arg(long, default_value_t = 5)]
    batch_window_ms: u64,
    /// Most images encoded in one call (0: all images of a batch together). Default: 1 on
    /// the CPU (measured faster there), 0 on a GPU.
    #[arg(long)]
    image_batch: Option<usize>,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = 20 << 20)]
    max_body_bytes: usize,
    /// Largest image in pixels (width × height; larger: 413).
    #[arg(long, default_value_t = 50_000_000)]
    max_image_pixels: u64,
    /// Allow `image_url` to name local files under this directory (never outside it).
    #[arg(long)]
    allow_local_dir: Option<PathBuf>,
    /// Most tokens of prompt + answer.
    #[arg(long, default_value_t = 2048)]
    max_length: usize,
    /// New tokens when a request has no `max_tokens`.
    #[arg(long, default_value_t = 512)]
    default_max_tokens: usize,
}

/// Runs `serve` until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.max_batch == 0 {
        anyhow::bail!("--max-batch must be at least 1");
    }
    let local_dir = match &args.allow_local_dir {
        Some(d) => Some(
            d.canonicalize()
                .with_context(|| format!("--allow-local-dir {}", d.display()))?,
        ),
        None => None,
    };
    let model_name = args.served_model_name.clone().unwrap_or_else(|| {
        std::path::Path::new(&args.model.model)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "visualglm-6b".into())
    });
    let captioner = args.model.load()?;
    let image_batch = args
        .image_batch
        .unwrap_or(if captioner.model().device().is_cpu() {
            1
        } else {
            0
        });
    let config = ServerConfig {
        addr: SocketAddr::new(args.host, args.port),
        model_name,
        batch: BatchOptions {
            max_batch: args.max_batch,
            max_queue: args.max_queue,
            window: Duration::from_millis(args.batch_window_ms),
            image_batch,
        },
        max_body_bytes: args.max_body_bytes,
        images: ImagePolicy {
            limits: DecodeLimits {
                max_pixels: args.max_image_pixels,
                max_alloc: (args.max_image_pixels.saturating_mul(4)).max(1 << 20),
            },
            local_dir,
        },
        limits: PromptLimits {
            max_length: args.max_length,
            default_max_tokens: args.default_max_tokens,
        },
        stop_on_ctrl_c: true,
    };
    if !args.host.is_loopback() {
        tracing::warn!(
            "listening on {} : other machines can reach this server, which has no \
             authentication",
            args.host
        );
    }
    let name = config.model_name.clone();
    let server = Server::start(captioner, config)
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    // The address line is the contract for scripts that start the server on port 0.
    eprintln!(
        "serving `{name}` on http://{} (Ctrl-C to stop)",
        server.addr()
    );
    server.wait()?;
    Ok(())
}
