//! `visualglm data synth`: write the synthetic shapes data set.

use std::path::PathBuf;

use visualglm::synth::SceneStyle;

/// Data set tools.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Scenes of coloured shapes with captions stating colours, shapes and positions, in the
    /// release's fine-tune format (`train.json`, `val.json`, `images/`).
    Synth(SynthArgs),
}

/// Arguments of `data synth`.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Number of scenes.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Fraction held out in `val.json`.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Smallest shape radius, as a fraction of half the image width.
    #[arg(long, default_value_t = SceneStyle::default().radius_min)]
    radius_min: f32,
    /// Largest shape radius (equal to --radius-min: one size).
    #[arg(long, default_value_t = SceneStyle::default().radius_max)]
    radius_max: f32,
    /// Largest offset of a shape's centre from the middle of its half, as a fraction of its
    /// radius (larger: a harder task).
    #[arg(long, default_value_t = SceneStyle::default().jitter)]
    jitter: f32,
    /// Write two-image records instead (`"img"` is a list): "Which image has more shapes?",
    /// answered "the first" or "the second" (one image holds one shape, the other two).
    #[arg(long)]
    pairs: bool,
}

/// Runs `data`.
pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Synth(a) => {
            let style = SceneStyle {
                radius_min: a.radius_min,
                radius_max: a.radius_max,
                jitter: a.jitter,
            };
            let write = if a.pairs {
                visualglm::synth::write_pairs_dataset
            } else {
                visualglm::synth::write_dataset
            };
            let s = write(&a.out, a.count, a.val_fraction, a.seed, a.size, &style)?;
            eprintln!(
                "wrote {} training and {} validation records: {}, {}",
                s.counts.0,
                s.counts.1,
                s.train.display(),
                s.val.display()
            );
            Ok(())
        }
    }
}
