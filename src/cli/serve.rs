//! `visualglm serve`: an OpenAI-compatible HTTP server (see `visualglm_server`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use visualglm_server::{
    BatchOptions, ImagePolicy, PromptLimits, Scheduler, ServedAdapter, Server, ServerConfig,
};
use visualglm_vision::decode::DecodeLimits;

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
    /// Serve a LoRA adapter as the model NAME: PATH is an adapter directory (or its
    /// `adapter_model.safetensors`) or a SAT LoRA fine-tune directory (read once, only its
    /// adapters are kept). Repeatable. Adapters run unmerged over the shared base weights.
    #[arg(long = "lora", value_name = "NAME=PATH", value_parser = parse_lora)]
    lora: Vec<(String, PathBuf)>,
    /// When waiting requests join the decoding: `continuous` (at the next decode step) or
    /// `static` (when the running batch has ended).
    #[arg(long, value_enum, default_value_t = SchedulerArg::Continuous)]
    scheduler: SchedulerArg,
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
    /// Most tokens of prompt + answer (never more than the model's `max_sequence_length`).
    /// Default: the model's `max_length` (its generation_config.json, else 2048).
    #[arg(long)]
    max_length: Option<usize>,
    /// New tokens when a request has no `max_tokens`. Default: the model's `max_new_tokens`
    /// (its generation_config.json, else 512).
    #[arg(long)]
    default_max_tokens: Option<usize>,
    /// Most images in one request: every `image_url` of every message is used, in order
    /// (more is a 400 `too_many_images`).
    #[arg(long, default_value_t = visualglm_server::DEFAULT_MAX_IMAGES)]
    max_images: usize,
    /// ITC heads for `POST /v1/embeddings` (default: `itc.safetensors` in the model
    /// directory, when there is one; without heads the route answers 400).
    #[arg(long)]
    itc: Option<PathBuf>,
}

/// `--scheduler` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum SchedulerArg {
    /// Requests join the running batch at its next decode step.
    Continuous,
    /// A batch runs until its last request ends.
    Static,
}

/// Parses `--lora NAME=PATH`.
fn parse_lora(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.trim().is_empty() && !path.is_empty() => {
            Ok((name.trim().to_string(), PathBuf::from(path)))
        }
        _ => Err(format!(
            "`{s}` is not NAME=PATH (e.g. --lora captions=./my-adapter)"
        )),
    }
}

/// Runs `serve` until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.max_batch == 0 {
        anyhow::bail!("--max-batch must be at least 1");
    }
    if args.default_max_tokens == Some(0) {
        anyhow::bail!("--default-max-tokens must be at least 1");
    }
    if args.max_length == Some(0) {
        anyhow::bail!("--max-length must be at least 1");
    }
    let local_dir = match &args.allow_local_dir {
        Some(d) => Some(
            d.canonicalize()
                .with_context(|| format!("--allow-local-dir {}", d.display()))?,
        ),
        None => None,
    };
    let model_name = args.served_model_name.clone().unwrap_or_else(|| {
        std::path::Path::new(&args.model.source.model)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "visualglm-6b".into())
    });
    // Only the SAT layout flag applies to a SAT LoRA fine-tune; `--config` is the base's.
    let load_opts = visualglm::LoadOptions {
        sat_qkv_layout: args
            .model
            .sat_interleaved_qkv
            .then_some(visualglm::QkvLayout::Interleaved),
        ..visualglm::LoadOptions::default()
    };
    let mut adapters = Vec::with_capacity(args.lora.len());
    for (name, path) in &args.lora {
        if name == &model_name {
            anyhow::bail!(
                "--lora {name}={}: `{name}` is the base model's name; choose another",
                path.display()
            );
        }
        if adapters.iter().any(|a: &ServedAdapter| &a.name == name) {
            anyhow::bail!("--lora: two adapters are named `{name}`");
        }
        let read = visualglm::lora::read_any_adapters(path, &load_opts)
            .with_context(|| format!("--lora {name}={}", path.display()))?;
        adapters.push(ServedAdapter {
            name: name.clone(),
            adapters: read,
        });
    }
    let captioner = args.model.load()?;
    let itc = match &args.itc {
        Some(p) => Some(p.clone()),
        None => args.model.itc_path(None).ok(),
    };
    let itc = itc
        .map(|p| visualglm::itc::ItcHeads::from_file(&p, captioner.model().device()))
        .transpose()?
        .map(std::sync::Arc::new);
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
        adapters,
        batch: BatchOptions {
            max_batch: args.max_batch,
            max_queue: args.max_queue,
            window: Duration::from_millis(args.batch_window_ms),
            image_batch,
            scheduler: match args.scheduler {
                SchedulerArg::Continuous => Scheduler::Continuous,
                SchedulerArg::Static => Scheduler::Static,
            },
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
            max_length: captioner.model().length_limit(
                args.max_length
                    .unwrap_or(captioner.defaults().generation.max_length),
            ),
            default_max_tokens: args.default_max_tokens,
            max_images: args.max_images,
        },
        stop_on_ctrl_c: true,
        itc,
    };
    if !args.host.is_loopback() {
        tracing::warn!(
            "listening on {} : other machines can reach this server, which has no \
             authentication",
            args.host
        );
    }
    let name = config.model_name.clone();
    let served: Vec<String> = config.adapters.iter().map(|a| a.name.clone()).collect();
    let server = Server::start(captioner, config)
        .with_context(|| format!("cannot serve on {}:{}", args.host, args.port))?;
    if !served.is_empty() {
        eprintln!("LoRA adapters: {}", served.join(", "));
    }
    // The address line is the contract for scripts that start the server on port 0.
    eprintln!(
        "serving `{name}` on http://{} (Ctrl-C to stop)",
        server.addr()
    );
    server.wait()?;
    Ok(())
}
