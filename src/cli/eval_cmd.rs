//! `visualglm eval`: score captions, VQA answers and retrieval rankings from files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use visualglm_eval::io::{
    read_caption_set_with, retrieval::read_retrieval_scores, vqa, CaptionSetOptions,
};
use visualglm_eval::{retrieval, score_captions, Tokenizer};

/// Subcommands of `visualglm eval`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Caption metrics (BLEU-1..4, ROUGE-L, CIDEr-D, as pycocoevalcap) of predictions.
    Score(ScoreArgs),
    /// VQA accuracy (official VQA evaluation) of predicted answers.
    VqaScore(VqaArgs),
    /// Retrieval Recall@1/5/10 (as LAVIS) from a similarity score file.
    RetrievalScore(RetrievalArgs),
    /// Caption a dataset with the model (batched) and score the captions.
    Captions(Box<super::eval_model::CaptionArgs>),
    /// Image-text retrieval Recall@K of a model trained with ITC (`visualglm train` with
    /// `itc_weight > 0`) on a dataset.
    Retrieval(Box<super::eval_model::RetrievalModelArgs>),
}

/// Tokenisation before caption scoring.
#[derive(ValueEnum, Clone, Copy, Debug, Default)]
pub enum TokenizerArg {
    /// Emulation of pycocoevalcap's PTBTokenizer (COCO standard).
    #[default]
    Ptb,
    /// Lower-case and split on whitespace.
    Simple,
    /// Already tokenised: split on whitespace only.
    None,
}

/// Arguments of `eval score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Predictions: JSONL `{"image_id"|"id", "caption"}` or COCO result JSON, or records
    /// naming the image by path, `{"image", "caption"}` (`visualglm batch`'s output).
    #[arg(long)]
    predictions: PathBuf,
    /// References: COCO annotation JSON, JSONL `{"image_id", "captions": [...]}`, or the
    /// release's `[{"img", "prompt", "label"}]` list (or JSONL), as `data synth` writes: the
    /// labels of an image are its references; predictions match it by path (or image_id).
    #[arg(long)]
    references: PathBuf,
    /// Directory the references' relative `img` paths are resolved against (default: the
    /// references file's), as `eval captions --images`.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Fail when some referenced images have no prediction (default: a warning, and the
    /// scores cover the images that have one).
    #[arg(long)]
    strict: bool,
    /// Write the full report (corpus and per-image scores) to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print a Markdown table instead of JSON.
    #[arg(long)]
    markdown: bool,
    /// Tokenisation applied to both sides.
    #[arg(long, value_enum, default_value_t = TokenizerArg::Ptb)]
    tokenizer: TokenizerArg,
}

/// Arguments of `eval vqa-score`.
#[derive(Args, Debug)]
pub struct VqaArgs {
    /// Predictions: JSON `[{"question_id", "answer"}]` or JSONL of the same objects.
    #[arg(long)]
    predictions: PathBuf,
    /// Annotations: official VQA JSON, or a JSON array / JSONL of
    /// `{"question_id", "question_type", "answer_type", "answers"}`.
    #[arg(long)]
    annotations: PathBuf,
    /// Decimals of the reported accuracies (LAVIS uses 2).
    #[arg(long, default_value_t = 2)]
    digits: usize,
    /// Write the full report (aggregates and per-question results) to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print a Markdown table instead of JSON.
    #[arg(long)]
    markdown: bool,
}

/// Arguments of `eval retrieval-score`.
#[derive(Args, Debug)]
pub struct RetrievalArgs {
    /// JSON `{"scores_i2t": [[..]], "scores_t2i": [[..]], "txt2img": [..], "img2txt": [[..]]}`.
    #[arg(long)]
    scores: PathBuf,
    /// Write the full report (metrics and ranks) to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print a Markdown table instead of JSON.
    #[arg(long)]
    markdown: bool,
}

/// Runs the subcommand.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Score(args) => score(args),
        Command::VqaScore(args) => vqa_score(args),
        Command::RetrievalScore(args) => retrieval_score(args),
        Command::Captions(args) => super::eval_model::run_captions(*args),
        Command::Retrieval(args) => super::eval_model::run_retrieval(*args),
    }
}

fn score(args: ScoreArgs) -> Result<()> {
    let opts = CaptionSetOptions {
        image_root: args.images.clone(),
    };
    let set = read_caption_set_with(&args.predictions, &args.references, &opts)?;
    if !set.unpredicted.is_empty() {
        let missing = set.unpredicted.len();
        let total = missing + set.items.len();
        let first: Vec<String> = set
            .unpredicted
            .iter()
            .take(3)
            .map(|id| id.to_string())
            .collect();
        let more = if missing > first.len() { ", …" } else { "" };
        let message = format!(
            "{missing} of the {total} images of {} have no prediction in {} ({}{more})",
            args.references.display(),
            args.predictions.display(),
            first.join(", ")
        );
        if args.strict {
            anyhow::bail!("{message}");
        }
        eprintln!(
            "warning: {message}; scoring the {} that have one (--strict: fail instead)",
            set.items.len()
        );
    }
    let items = set.items;
    let tokenizer = match args.tokenizer {
        TokenizerArg::Ptb => Tokenizer::Ptb,
        TokenizerArg::Simple => Tokenizer::Simple,
        TokenizerArg::None => Tokenizer::None,
    };
    let report = score_captions(&items, tokenizer)?;
    write_report(args.out.as_deref(), &report)?;
    if args.markdown {
        print!("{}", report.to_markdown());
    } else {
        println!("{}", serde_json::to_string_pretty(&report.summary())?);
    }
    Ok(())
}

fn vqa_score(args: VqaArgs) -> Result<()> {
    let questions = vqa::read_vqa_annotations(&args.annotations)?;
    let predictions = vqa::read_vqa_predictions(&args.predictions)?;
    let report = visualglm_eval::vqa::evaluate(&questions, &predictions, args.digits)
        .with_context(|| {
            format!(
                "{} vs {}",
                args.predictions.display(),
                args.annotations.display()
            )
        })?;
    write_report(args.out.as_deref(), &report)?;
    if args.markdown {
        print!("{}", report.to_markdown());
    } else {
        println!("{}", serde_json::to_string_pretty(&report.accuracy)?);
    }
    Ok(())
}

fn retrieval_score(args: RetrievalArgs) -> Result<()> {
    let scores = read_retrieval_scores(&args.scores)?;
    let report = retrieval::evaluate(&scores).with_context(|| args.scores.display().to_string())?;
    write_report(args.out.as_deref(), &report)?;
    if args.markdown {
        print!("{}", report.metrics.to_markdown());
    } else {
        println!("{}", serde_json::to_string_pretty(&report.metrics)?);
    }
    Ok(())
}

/// Writes `report` as pretty JSON, atomically, when a path is given.
fn write_report<T: Serialize>(out: Option<&Path>, report: &T) -> Result<()> {
    if let Some(path) = out {
        let mut text = serde_json::to_string_pretty(report)?;
        text.push('\n');
        visualglm_files::write_atomic_bytes(path, text.as_bytes())?;
    }
    Ok(())
}
