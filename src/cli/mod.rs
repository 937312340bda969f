//! Command-line interface: one module per subcommand.

use clap::{Parser, Subcommand};

mod batch;
mod batch_shard;
mod bench;
mod bench_memory;
mod bench_train;
mod chat;
mod convert;
mod data;
mod describe;
mod dist;
mod embed;
mod eval_cmd;
mod eval_model;
mod init;
mod inspect;
mod lora_cmd;
mod model_args;
mod output;
mod quantize;
mod selftest;
mod serve;
mod shard;
mod tokenizer_cmd;
mod train;

/// VisualGLM-6B in Rust: describe images, chat, fine-tune, evaluate.
#[derive(Parser, Debug)]
#[command(name = "visualglm", version, about)]
struct Cli {
    /// Log more (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe images (or answer a question about them).
    Describe(describe::Args),
    /// Chat about an image, with history and streaming answers.
    Chat(chat::Args),
    /// Caption a directory or list of images into a JSON Lines file (resumable).
    Batch(batch::Args),
    /// Data set tools (synthetic shapes data).
    #[command(subcommand)]
    Data(data::Command),
    /// Write a randomly initialised model directory to train from scratch.
    Init(init::Args),
    /// Fine-tune on image-text pairs (AR loss, optionally + ITC), resumable.
    Train(train::Args),
    /// Run the model on raw token ids and write every stage to a safetensors file.
    Inspect(inspect::Args),
    /// Convert a checkpoint (HF shards, SAT .pt, safetensors) into one safetensors file.
    Convert(convert::Args),
    /// Convert, encode, decode with, and train the ChatGLM tokenizer.
    #[command(subcommand)]
    Tokenizer(tokenizer_cmd::Command),
    /// Retrieval embeddings of images and texts (a model with ITC heads).
    Embed(embed::Args),
    /// Score captions, VQA answers and retrieval rankings.
    #[command(subcommand)]
    Eval(eval_cmd::Command),
    /// Write a checkpoint as one GGUF file with quantized GLM linears.
    Quantize(quantize::Args),
    /// Time image encoding, prefill and decode at full size with random weights.
    Bench(bench::Args),
    /// Serve the model over HTTP (OpenAI chat completions and the release's API).
    Serve(serve::Args),
    /// Check this build on a device against the golden outputs of the official Python code.
    Selftest(selftest::Args),
    /// Merge LoRA adapters into a checkpoint, or extract them from a SAT fine-tune.
    #[command(subcommand)]
    Lora(lora_cmd::Command),
}

/// Parses the command line, runs the subcommand and turns errors into a one-line message.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `serve` writes its access log (one line per request) by default.
    let also = matches!(cli.command, Command::Serve(_))
        .then(|| format!("{}=info", visualglm_server::access::TARGET));
    init_logging(cli.verbose, also.as_deref());
    let result = match cli.command {
        Command::Describe(args) => describe::run(args, cli.verbose > 0),
        Command::Chat(args) => chat::run(args),
        Command::Batch(args) => batch::run(args, cli.verbose > 0),
        Command::Init(args) => init::run(args),
        Command::Train(args) => train::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Inspect(args) => inspect::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Tokenizer(cmd) => tokenizer_cmd::run(cmd),
        Command::Eval(cmd) => eval_cmd::run(cmd),
        Command::Embed(args) => embed::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Bench(args) if args.train => {
            args.alloc.apply();
            bench_train::run(&args)
        }
        Command::Bench(args) => {
            args.alloc.apply();
            bench::run(args)
        }
        Command::Serve(args) => serve::run(args),
        Command::Selftest(args) => selftest::run(args),
        Command::Lora(cmd) => lora_cmd::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", output::error_message(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to standard error at a level set by `-v`, plus the `also` directive (e.g.
/// `visualglm_server::access=info`); `RUST_LOG`, when set, replaces both. Colours only on a
/// terminal, so that log files and pipes get plain text.
fn init_logging(verbose: u8, also: Option<&str>) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let default = match also {
        Some(d) if verbose == 0 => format!("{level},{d}"),
        _ => level.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .try_init();
}

/// Whether stderr may carry colour codes: it is a terminal and `NO_COLOR` is unset or empty
/// (no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_colour && std::io::stderr().is_terminal()
}
