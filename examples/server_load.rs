//! Throughput of `visualglm serve` with batching versus one request at a time.
//!
//! Starts the server in-process on a free loopback port once per `--max-batch` value and
//! `--scheduler` (continuous, static), fires `--requests` chat completions (each with an image
//! and its own question, greedy, `--max-tokens` new tokens) and reports requests/s, generated
//! tokens/s and latency. All requests start at once unless `--arrival-ms` spaces them out;
//! `--lengths mixed` gives request `i` `max_tokens · (1 + i mod 4) / 4` new tokens, and
//! `--lengths long-tail` gives every 8th request `max_tokens` and the others `max_tokens / 8`,
//! so requests end at different steps. By default it serves the tiny golden model with the
//! test tokenizer; `--model`/`--tokenizer` serve a real checkpoint instead. Loopback only.
//!
//! ```sh
//! cargo run --example server_load -- --requests 64 --max-batch 1,16 \
//!     --scheduler continuous,static --arrival-ms 10 --lengths long-tail
//! ```

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use clap::Parser;
use serde_json::{json, Value};
use visualglm::pipeline::{Captioner, CaptionerOptions};
use visualglm_server::{BatchOptions, Scheduler, Server, ServerConfig};

/// Load-test options.
#[derive(Parser, Debug)]
struct Args {
    /// Concurrent requests per run.
    #[arg(long, default_value_t = 64)]
    requests: usize,
    /// New tokens per request.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// `--max-batch` values to compare, comma-separated.
    #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
    max_batch: Vec<usize>,
    /// Schedulers to compare (`continuous`, `static`), comma-separated; with `--max-batch 1`
    /// only the first is run (one at a time is the same for both).
    #[arg(long, default_value = "continuous", value_delimiter = ',', value_parser = parse_scheduler)]
    scheduler: Vec<Scheduler>,
    /// Milliseconds between two requests' starts (0: all at once).
    #[arg(long, default_value_t = 0)]
    arrival_ms: u64,
    /// New tokens per request: `same` (all `--max-tokens`), `mixed` (request `i`:
    /// `max_tokens · (1 + i mod 4) / 4`), `long-tail` (every 8th `max_tokens`, the others
    /// `max_tokens / 8`).
    #[arg(long, default_value = "same")]
    lengths: String,
    /// Model directory (default: the tiny golden model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Tokenizer (default: the tiny test tokenizer for the golden model).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Device: cpu, cuda, auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Most images encoded in one call (0: all of a batch).
    #[arg(long, default_value_t = 0)]
    image_batch: usize,
    /// Send questions without an image (measures decoding alone).
    #[arg(long)]
    text_only: bool,
    /// Image sent with every request.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !["same", "mixed", "long-tail"].contains(&args.lengths.as_str()) {
        anyhow::bail!("--lengths must be same, mixed or long-tail");
    }
    // RUST_LOG=visualglm_server=debug shows each batch's encode/decode time.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let scratch =
        std::env::temp_dir().join(format!("visualglm-server-load-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| support::golden("checkpoints/hf"));
    let tokenizer = match &args.tokenizer {
        Some(t) => t.clone(),
        None => support::tiny_tokenizer(&scratch),
    };
    let device = visualglm::runtime::parse_device(&args.device)?;
    let dtype = visualglm::runtime::parse_dtype("auto", &device)?;
    let opts = CaptionerOptions {
        tokenizer: Some(tokenizer),
        ..Default::default()
    };
    let captioner = Captioner::load(&model, &device, dtype, &opts)
        .with_context(|| format!("loading {}", model.display()))?;
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| support::golden("images/chelsea.png"));
    let url = if args.text_only {
        String::new()
    } else {
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(&image)?)
        )
    };
    println!(
        "model {} on {device:?}, {} requests {}, {} new tokens each (greedy, {}), \
         --image-batch {}",
        model.display(),
        args.requests,
        if args.arrival_ms == 0 {
            "all at once".to_string()
        } else {
            format!("one every {} ms", args.arrival_ms)
        },
        match args.lengths.as_str() {
            "mixed" => format!("{}/4 to {}", args.max_tokens, args.max_tokens),
            "long-tail" => format!("{} (every 8th) or {}", args.max_tokens, args.max_tokens / 8),
            _ => args.max_tokens.to_string(),
        },
        if args.text_only {
            "text only"
        } else {
            "image + question"
        },
        args.image_batch
    );
    println!(
        "| --max-batch | scheduler | wall s | requests/s | generated tok/s | p50 latency s | \
         p95 latency s | prefill groups | decode steps |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut reference: Option<Vec<String>> = None;
    let mut runs = Vec::new();
    for &max_batch in &args.max_batch {
        for (k, &scheduler) in args.scheduler.iter().enumerate() {
            if max_batch > 1 || k == 0 {
                runs.push((max_batch, scheduler));
            }
        }
    }
    for (max_batch, scheduler) in runs {
        let server = Server::start(
            captioner.clone(),
            ServerConfig {
                addr: "127.0.0.1:0".parse()?,
                batch: BatchOptions {
                    max_batch,
                    max_queue: args.requests.max(1) * 2,
                    window: Duration::from_millis(5),
                    image_batch: args.image_batch,
                    scheduler,
                },
                ..ServerConfig::default()
            },
        )?;
        let base = format!("http://{}", server.addr());
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(args.timeout))
            .build();
        // Warm-up.
        request(&agent, &base, &url, 0, 2)?;
        let before = health(&agent, &base)?;
        let start = Instant::now();
        let handles: Vec<_> = (0..args.requests)
            .map(|i| {
                let (agent, base, url) = (agent.clone(), base.clone(), url.clone());
                let n = match args.lengths.as_str() {
                    "mixed" => (args.max_tokens * (1 + i % 4) / 4).max(1),
                    "long-tail" if i % 8 != 0 => (args.max_tokens / 8).max(1),
                    _ => args.max_tokens,
                };
                let delay = Duration::from_millis(args.arrival_ms * i as u64);
                std::thread::spawn(move || {
                    std::thread::sleep(delay.saturating_sub(start.elapsed()));
                    let t = Instant::now();
                    request(&agent, &base, &url, i, n).map(|r| (r, t.elapsed()))
                })
            })
            .collect();
        let mut answers = Vec::new();
        let mut latencies = Vec::new();
        let mut tokens = 0u64;
        for h in handles {
            let ((text, n), latency) = h
                .join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
            answers.push(text);
            tokens += n;
            latencies.push(latency.as_secs_f64());
        }
        let wall = start.elapsed().as_secs_f64();
        let after = health(&agent, &base)?;
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        let delta =
            |key: &str| after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0);
        println!(
            "| {max_batch} | {} | {wall:.2} | {:.1} | {:.0} | {:.2} | {:.2} | {} | {} |",
            match scheduler {
                Scheduler::Continuous => "continuous",
                Scheduler::Static => "static",
            },
            args.requests as f64 / wall,
            tokens as f64 / wall,
            pct(0.5),
            pct(0.95),
            delta("batches"),
            delta("decode_steps"),
        );
        match &reference {
            None => reference = Some(answers),
            Some(r) if *r != answers => {
                let differ = r.iter().zip(&answers).filter(|(a, b)| a != b).count();
                println!("(note: {differ} answers differ from the first run)");
            }
            Some(_) => {}
        }
        server.stop()?;
    }
    if reference.is_some() {
        println!("(every run's answers are compared with the first run's; a note above lists any that differ)");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn parse_scheduler(s: &str) -> Result<Scheduler, String> {
    match s {
        "continuous" => Ok(Scheduler::Continuous),
        "static" => Ok(Scheduler::Static),
        other => Err(format!("unknown scheduler `{other}` (continuous, static)")),
    }
}

fn request(
    agent: &ureq::Agent,
    base: &str,
    url: &str,
    i: usize,
    max_tokens: usize,
) -> anyhow::Result<(String, u64)> {
    let mut content = vec![json!({"type": "text",
                                  "text": format!("Question number {i}: what is in the image?")})];
    if !url.is_empty() {
        content.push(json!({"type": "image_url", "image_url": {"url": url}}));
    }
    let body = json!({
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    });
    let v: Value = agent
        .post(&format!("{base}/v1/chat/completions"))
        .send_json(body)?
        .into_json()?;
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .with_context(|| format!("bad answer: {v}"))?
        .to_string();
    Ok((text, v["usage"]["completion_tokens"].as_u64().unwrap_or(0)))
}

fn health(agent: &ureq::Agent, base: &str) -> anyhow::Result<Value> {
    Ok(agent.get(&format!("{base}/health")).call()?.into_json()?)
}
