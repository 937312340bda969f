//! `visualglm train --config run.toml`: fine-tune with the autoregressive loss, resumably; as
//! one rank of a data-parallel job when started by `mpirun` or `srun` (rank 0 writes the
//! metrics, the loss curve and the checkpoints). One run per `out` (a lock in it); Ctrl-C or
//! SIGTERM saves the last completed update and exits at once; progress goes to a bar on a
//! terminal and to plain lines in a log.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use visualglm::finetune::{
    config_template, finetune_with, run_checkpoints, FinetuneConfig, ProgressLog,
};
use visualglm_train::last_update::LastUpdate;
use visualglm_train::run_lock::RunLock;

/// Arguments of `visualglm train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run configuration (TOML; keys as `FinetuneConfig`: data, model, out, trainable, steps,
    /// batch_size, grad_accum, lr, warmup_steps, …; `--print-config` lists them). Relative
    /// paths in it resolve against its folder. Flags below override it (their paths relative
    /// to the current directory).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training data file.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Base model: a directory, a weights file, a training run directory (its exported
    /// model) or a hub id. Default: `run.toml`'s `model`, else `VISUALGLM_MODEL`.
    #[arg(long, short = 'm')]
    model: Option<String>,
    #[command(flatten)]
    hub: super::model_args::HubArgs,
    #[command(flatten)]
    alloc: super::model_args::AllocArgs,
    /// Tokenizer file or directory.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output directory (checkpoints, metrics.jsonl); an existing run there is resumed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name prefix of weights to train (repeatable).
    #[arg(long)]
    trainable: Vec<String>,
    /// Optimiser updates.
    #[arg(long)]
    steps: Option<u64>,
    /// Examples per micro-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// λ of `AR + λ·ITC` (0 turns the contrastive loss off).
    #[arg(long)]
    itc_weight: Option<f64>,
    /// Rank of trainable LoRA adapters on the ChatGLM attention linears (0: none).
    #[arg(long)]
    lora_rank: Option<usize>,
    /// Dtype of the frozen linear weights and embedding tables: f32, f16 (bf16 on a GPU).
    #[arg(long)]
    base_dtype: Option<String>,
    /// Hold the frozen ChatGLM linears as GGML blocks (QLoRA): q8_0, q4_0, q4k, …
    #[arg(long)]
    base_quantize: Option<String>,
    /// Recompute each ChatGLM and ViT block (and Q-Former layer, ViT frozen) in the backward
    /// pass (less memory, ~1/3 more time).
    #[arg(long)]
    checkpoint_activations: bool,
    /// Print the memory plan (parameters, bytes, optimiser state, activations) and exit.
    #[arg(long)]
    dry_run: bool,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Data-parallel runs: seconds a rank waits in a collective for the others before the
    /// job is ended as hung (longer than one update of the slowest rank).
    #[arg(long, default_value_t = 1800)]
    dist_timeout: u64,
    /// Stop after this many updates of this invocation, at a checkpoint-resumable point (to
    /// fit a scheduler's time limit; the next `train` with the same `out` goes on).
    #[arg(long)]
    stop_after: Option<u64>,
    /// When stderr is not a terminal (a batch job's log): seconds between progress lines
    /// (step, loss, lr, elapsed, ETA); the first and the last update always get one.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    progress_every: f64,
    /// Print every key of `run.toml` with its default and what it does (a valid starting
    /// `run.toml`), and exit.
    #[arg(long)]
    print_config: bool,
}

/// Runs `train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", config_template());
        return Ok(());
    }
    // Paths in the file resolve against its folder; paths given as flags against the
    // current directory.
    let mut cfg = match &args.config {
        Some(path) => FinetuneConfig::from_file(path)?,
        None => FinetuneConfig::default(),
    };
    if let Some(v) = args.data {
        cfg.data = v;
    }
    match (&args.model, std::env::var_os("VISUALGLM_MODEL")) {
        (Some(v), _) => cfg.model = PathBuf::from(v),
        (None, Some(v)) if cfg.model.as_os_str().is_empty() => cfg.model = PathBuf::from(v),
        _ => {}
    }
    if !cfg.model.exists() {
        if let Some(spec) = cfg.model.to_str().filter(|s| !s.is_empty()) {
            cfg.model = args.hub.resolve(spec)?;
        }
    } else {
        cfg.model = visualglm::model_dir::model_of_run(&cfg.model)?;
    }
    args.alloc.apply();
    if let Some(v) = args.tokenizer {
        cfg.tokenizer = Some(v);
    }
    if let Some(v) = args.out {
        cfg.out = v;
    }
    if !args.trainable.is_empty() {
        cfg.trainable = args.trainable;
    }
    if let Some(v) = args.steps {
        cfg.steps = v;
    }
    if let Some(v) = args.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = args.lr {
        cfg.lr = v;
    }
    if let Some(v) = args.itc_weight {
        cfg.itc_weight = v;
    }
    if let Some(v) = args.lora_rank {
        cfg.lora_rank = v;
    }
    if let Some(v) = args.base_dtype {
        cfg.base_dtype = v;
    }
    if let Some(v) = args.base_quantize {
        cfg.base_quantize = Some(v);
    }
    if args.checkpoint_activations {
        cfg.checkpoint_activations = true;
    }
    if cfg.model.as_os_str().is_empty() {
        anyhow::bail!("give the base model (--model or the config)");
    }
    let device = visualglm::runtime::parse_device(&args.device)?;
    let plan = visualglm::finetune::model_config(&cfg.model).and_then(|config| {
        visualglm::finetune::memory_plan(&cfg, &config, &cfg.base_weights(&device)?)
    });
    if args.dry_run {
        println!("{}", plan?);
        return Ok(());
    }
    cfg.check_data_files()?;
    if !(args.progress_every.is_finite() && args.progress_every >= 0.0) {
        anyhow::bail!("--progress-every takes seconds, at least 0");
    }
    let comm = super::dist::from_launcher(std::time::Duration::from_secs(args.dist_timeout))?;
    let main = comm.is_main();
    if comm.world_size() > 1 {
        eprintln!(
            "rank {} of {} ({}): batch_size {} per rank, global batch {}",
            comm.rank(),
            comm.world_size(),
            comm.backend(),
            cfg.batch_size,
            cfg.batch_size * comm.world_size()
        );
    }
    match (&plan, main) {
        (Ok(plan), true) => eprintln!("{plan}"),
        (Err(e), true) => eprintln!("no memory plan: {e}"),
        (_, false) => {}
    }
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    // One run per `out`: held until this function returns (or the process ends, however).
    let _lock = if main {
        match RunLock::acquire(&cfg.out) {
            Ok(lock) => Some(lock),
            Err(e) => {
                // The other ranks would wait for this one in their first collective.
                comm.fail(&e.to_string());
                return Err(e.into());
            }
        }
    } else {
        None
    };
    let checkpoints = Arc::new(run_checkpoints(&cfg)?);
    #[cfg(unix)]
    exit_on_signals(main.then(|| checkpoints.clone()))?;
    let metrics_path = cfg.out.join("metrics.jsonl");
    // Rank 0 keeps the metrics log; the others only train.
    let mut metrics = if main {
        let resumed = visualglm::finetune::resume_metrics(&cfg.out, &metrics_path)?;
        if resumed > 0 {
            eprintln!("resuming from step {resumed}");
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("cannot write {}", metrics_path.display()))?;
        Some(file)
    } else {
        None
    };
    let log_lines = main && !std::io::stderr().is_terminal();
    let bar = if main && !log_lines {
        ProgressBar::new(cfg.steps)
    } else {
        ProgressBar::hidden()
    };
    let mut progress = ProgressLog::new(
        cfg.steps,
        Duration::from_secs_f64(args.progress_every),
        Instant::now(),
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut write_error = None;
    let stop_after = args.stop_after;
    let mut done = 0u64;
    let last: &LastUpdate = &checkpoints;
    let reports = finetune_with(&cfg, &device, comm.clone(), Some(last), &mut |r| {
        done += 1;
        let go_on = stop_after.is_none_or(|n| done < n);
        bar.set_position(r.step);
        bar.set_message(format!("loss {:.4} lr {:.2e}", r.loss, r.lr));
        if log_lines {
            if let Some(line) = progress.line(r, Instant::now()) {
                eprintln!("{line}");
            }
        }
        let Some(metrics) = metrics.as_mut() else {
            return go_on;
        };
        let line = serde_json::to_string(r).unwrap_or_default();
        if let Err(e) = writeln!(metrics, "{line}") {
            write_error = Some(e);
            return false;
        }
        go_on
    });
    let reports = match reports {
        Ok(r) => r,
        Err(e) if comm.world_size() > 1 => {
            // The other ranks would wait for this one: end the job.
            comm.fail(&format!("{e:#}"));
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    bar.finish();
    if let Some(e) = write_error {
        return Err(e).with_context(|| format!("writing {}", metrics_path.display()));
    }
    if !main {
        return Ok(());
    }
    let skipped = reports.iter().filter(|r| r.skipped).count();
    let curve = cfg.out.join("loss.png");
    crate::plot::write_loss_curve(&metrics_path, &curve)
        .with_context(|| format!("drawing {}", curve.display()))?;
    eprintln!(
        "{} updates ({} skipped); checkpoints in {}, metrics in {}, loss curve in {}",
        reports.len(),
        skipped,
        cfg.out.display(),
        metrics_path.display(),
        curve.display()
    );
    if let Some(peak) = visualglm::finetune::peak_rss_mib() {
        eprintln!("peak resident memory: {:.2} GiB", peak / 1024.0);
    }
    if cfg.export && cfg.base_quantize.is_none() {
        eprintln!(
            "trained model: {} (try `visualglm describe IMAGE --model {}`)",
            cfg.out.join("model").display(),
            cfg.out.join("model").display()
        );
    }
    Ok(())
}

/// How long a rank other than the main one waits, after a signal, for the launcher to end it
/// before it exits by itself: the main rank saves meanwhile, and a launcher that sees one
/// rank exit ends the others (a second signal), which must not cut the main rank's save.
#[cfg(unix)]
const RANK_GRACE: Duration = Duration::from_secs(30);

/// Ctrl-C (SIGINT) and SIGTERM end the run at once, without waiting for the running update:
/// with `checkpoints` (the main rank), the last completed update's checkpoint is written
/// first, from this thread, while the training thread is still inside the next update.
/// The exit status is the shell's for the signal (130, 143). A second signal exits at once.
#[cfg(unix)]
fn exit_on_signals(checkpoints: Option<Arc<LastUpdate>>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::atomic::AtomicBool;
    use visualglm_train::last_update::SavedLast;

    let armed = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // In this order: the first signal finds the exit disarmed and arms it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, armed.clone())
            .context("installing the signal handlers")?;
        signal_hook::flag::register(signal, armed.clone())
            .context("installing the signal handlers")?;
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the signal handlers")?;
    std::thread::Builder::new()
        .name("train-signals".into())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else {
                return;
            };
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            match &checkpoints {
                Some(checkpoints) => {
                    eprintln!("\n{name}: saving the last completed update (a second signal exits at once)");
                    match checkpoints.save_last() {
                        Ok(SavedLast::Written { step, dir }) => eprintln!(
                            "{name}: saved step {step} in {}; the same command resumes there",
                            dir.display()
                        ),
                        Ok(SavedLast::AlreadySaved { step }) => eprintln!(
                            "{name}: step {step}, the last completed update, was saved already"
                        ),
                        Ok(SavedLast::NoUpdate) => {
                            eprintln!("{name}: no update completed in this run: nothing to save")
                        }
                        Err(e) => eprintln!("{name}: saving the last update failed: {e}"),
                    }
                }
                None => std::thread::sleep(RANK_GRACE),
            }
            signal_hook::low_level::exit(128 + signal);
        })
        .context("starting the signal thread")?;
    Ok(())
}
