//! `visualglm tokenizer`: convert ChatGLM's SentencePiece model to tokenizer.json, encode or
//! decode text with either file, and train a small tokenizer with ChatGLM's special pieces.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use visualglm_tokenizer::{
    train_unigram, write_model, ChatGlmTokenizer, DecodeOptions, TrainerConfig,
};
use visualglm_train::data::{load_data_file, LoadOptions};

/// Subcommands of `visualglm tokenizer`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert a SentencePiece model (ice_text.model) into tokenizer.json.
    Convert(ConvertArgs),
    /// Print the token ids of TEXT as a JSON list.
    Encode(EncodeArgs),
    /// Print the text of IDS (a JSON list or comma-separated ids).
    Decode(DecodeArgs),
    /// Train a small unigram tokenizer (SentencePiece .model) with ChatGLM's special pieces.
    Train(TrainArgs),
}

/// Where the tokenizer comes from.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// Tokenizer file: a SentencePiece `.model` or a converted `tokenizer.json`.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Model directory holding tokenizer.json, ice_text.model or another *.model.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
}

impl Source {
    fn load(&self) -> Result<ChatGlmTokenizer> {
        let tok = match (&self.tokenizer, &self.model) {
            (Some(file), _) => ChatGlmTokenizer::from_file(file)?,
            (None, Some(dir)) => ChatGlmTokenizer::from_dir(dir)?,
            (None, None) => bail!("give --tokenizer FILE or --model DIR"),
        };
        Ok(tok)
    }
}

/// Arguments of `tokenizer convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The SentencePiece model (or a model directory holding one).
    input: PathBuf,
    /// Where to write tokenizer.json (written atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Arguments of `tokenizer encode`.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    #[command(flatten)]
    source: Source,
    /// Append [gMASK] and <sop>, as the official `encode(text)` does by default.
    #[arg(long)]
    special_tokens: bool,
    /// The text to encode.
    text: String,
}

/// Arguments of `tokenizer decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    #[command(flatten)]
    source: Source,
    /// Drop <sop>, <eop>, <unk>, <pad> and [MASK] (HF `skip_special_tokens`).
    #[arg(long)]
    skip_special_tokens: bool,
    /// Keep the spaces HF's `clean_up_tokenization_spaces` would remove.
    #[arg(long)]
    no_cleanup: bool,
    /// Ids as a JSON list (`[5, 74874]`) or comma-separated (`5,74874`).
    ids: String,
}

/// Arguments of `tokenizer train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training data: the release's JSON list / JSONL of {"img", "prompt", "label"} or COCO
    /// captions (prompts and labels are used; `visualglm data synth` writes such a
    /// train.json), or a .txt file with one text per line. Repeatable. The prompt template's
    /// own text (`<img>`, `</img>`, `Q:`/`A:`, `问：`/`答：`) is always added.
    #[arg(long, value_name = "FILE", num_args = 1.., required_unless_present = "text")]
    data: Vec<PathBuf>,
    /// An extra training text (repeatable).
    #[arg(long, value_name = "TEXT")]
    text: Vec<String>,
    /// Total number of pieces, ChatGLM's 93 reserved ones included.
    #[arg(long, default_value_t = 512)]
    vocab_size: usize,
    /// Add the 256 byte pieces, so that unseen characters encode as bytes, not <unk>.
    #[arg(long)]
    byte_fallback: bool,
    /// Where to write the SentencePiece model (a `.model` file, written atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// The training texts of one `--data` file: lines of a `.txt` file, else the prompts and
/// labels of a data file in the release's formats.
fn read_texts(path: &Path) -> Result<Vec<String>> {
    let is_txt = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"));
    if is_txt {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect());
    }
    let (examples, _) = load_data_file(path, None, &LoadOptions::default())
        .with_context(|| format!("cannot read training data {}", path.display()))?;
    Ok(examples
        .into_iter()
        .flat_map(|e| [e.prompt, e.label])
        .filter(|t| !t.is_empty())
        .collect())
}

/// Runs `tokenizer train`.
fn train(args: TrainArgs) -> Result<()> {
    if !args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("model"))
    {
        bail!(
            "--out {}: the tokenizer is a SentencePiece model and must end in .model",
            args.out.display()
        );
    }
    let mut texts = Vec::new();
    for path in &args.data {
        let before = texts.len();
        texts.extend(read_texts(path)?);
        tracing::info!(file = %path.display(), texts = texts.len() - before, "read training texts");
    }
    texts.extend(args.text.iter().cloned());
    // The prompt template's own text (`<img>`, `Q:`, `问：`…) must never meet `<unk>`.
    texts.extend(visualglm_language::prompt::template_texts());
    let cfg = TrainerConfig {
        vocab_size: args.vocab_size,
        byte_fallback: args.byte_fallback,
        ..Default::default()
    };
    let trained = train_unigram(texts.into_iter(), &cfg)?;
    write_model(&args.out, &trained)?;
    // The file must load as a ChatGLM tokenizer; check it now rather than at training time.
    let tok = ChatGlmTokenizer::from_file(&args.out)?;
    let s = &trained.summary;
    eprintln!(
        "wrote {}: {} pieces ({} trained, {} unused) from {} texts; [MASK]={} [gMASK]={} \
         <sop>={} <eop>={} <pad>={} <unk>={}",
        args.out.display(),
        tok.num_pieces(),
        s.trained_pieces,
        s.unused_pieces,
        s.texts,
        s.mask_id,
        s.gmask_id,
        s.sop_id,
        s.eop_id,
        s.pad_id,
        s.unk_id
    );
    println!("{}", serde_json::to_string(s)?);
    Ok(())
}

/// Parses `[1, 2]` or `1,2` (an empty list is allowed).
fn parse_ids(text: &str) -> Result<Vec<u32>> {
    let text = text.trim();
    let raw: Vec<String> = if text.starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).context("IDS is not a valid JSON list")?;
        values.iter().map(|v| v.to_string()).collect()
    } else if text.is_empty() {
        Vec::new()
    } else {
        text.split(',').map(|s| s.trim().to_string()).collect()
    };
    raw.iter()
        .map(|s| {
            s.parse::<u32>()
                .with_context(|| format!("bad id {s:?}: ids are integers from 0 to {}", u32::MAX))
        })
        .collect()
}

/// Runs the subcommand.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Convert(args) => {
            let tok = ChatGlmTokenizer::from_path(&args.input)?;
            tok.to_tokenizer_json(&args.out)?;
            eprintln!(
                "wrote {} ({} pieces, from {})",
                args.out.display(),
                tok.num_pieces(),
                tok.source().display()
            );
        }
        Command::Encode(args) => {
            let tok = args.source.load()?;
            let ids = if args.special_tokens {
                tok.encode_with_special_tokens(&args.text)?
            } else {
                tok.encode(&args.text)?
            };
            println!("{}", serde_json::to_string(&ids)?);
        }
        Command::Decode(args) => {
            let ids = parse_ids(&args.ids)?;
            let tok = args.source.load()?;
            let opts = DecodeOptions {
                skip_special_tokens: args.skip_special_tokens,
                clean_up_tokenization_spaces: !args.no_cleanup,
            };
            println!("{}", tok.decode(&ids, &opts)?);
        }
        Command::Train(args) => train(args)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ids;

    #[test]
    fn ids_parse_from_json_or_commas() {
        assert_eq!(parse_ids("[1, 2,3]").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_ids(" 4, 5 ").unwrap(), vec![4, 5]);
        assert_eq!(parse_ids("[]").unwrap(), Vec::<u32>::new());
        assert!(parse_ids("[1, -2]").is_err());
        assert!(parse_ids("1,x").unwrap_err().to_string().contains("\"x\""));
        assert!(parse_ids("[1.5]").is_err());
        assert!(parse_ids("[1,").is_err());
    }
}
