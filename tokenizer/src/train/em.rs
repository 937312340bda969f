//! Learning the ordinary pieces with `tokenizers`' [`UnigramTrainer`] (SentencePiece's EM and
//! pruning), deterministically.

use std::collections::{BTreeSet, HashSet};

use tokenizers::models::unigram::{Unigram, UnigramTrainer};

use super::config::TrainerConfig;
use super::layout::{reserved_names, HEAD};
use super::words::WordCounter;
use crate::normalize::sentencepiece::SPACE;

/// The `target` best pieces learned from `counter`'s words, best score first (ties by text),
/// none of them a reserved piece; fails (with the reason) if the trainer fails or drops one of
/// `chars`, the texts' distinct characters.
///
/// The trainer runs on a one-thread pool, so its floating-point sums do not depend on the
/// machine's core count.
pub fn learn_pieces(
    counter: &WordCounter,
    chars: &BTreeSet<char>,
    target: usize,
    cfg: &TrainerConfig,
) -> Result<Vec<(String, f32)>, String> {
    // Each character also as a one-character sentence: its expected count is then at least
    // 1, so the EM never drops it, and the trainer's final step never has to invent a score
    // for a missing character (it would do so in hash order, breaking determinism).
    let mut sentences = counter.words.clone();
    for c in chars {
        let n = sentences.entry(c.to_string()).or_insert(0);
        *n = n.saturating_add(1);
    }
    // The distinct segments (whole texts between user-defined pieces) go in with count 0:
    // they change no EM statistic, but the trainer seeds its pieces from the substrings
    // that repeat (and are followed by different characters) in what it is given, and among
    // distinct words alone a whole word never does. With the segments, each followed by a
    // `▁` so that their last word is followed by something else than in its own entry, the
    // seeds are the substrings that repeat in the texts, as in SentencePiece (those spanning
    // a `▁` can never match a word and die in the first EM step).
    for seg in &counter.segments {
        sentences.entry(format!("{seg}{SPACE}")).or_insert(0);
    }
    let sentences: Vec<(String, u32)> = sentences.into_iter().collect();

    let trainer = UnigramTrainer::builder()
        .show_progress(false)
        .vocab_size((target + 1) as u32)
        .n_sub_iterations(cfg.n_sub_iterations)
        .shrinking_factor(cfg.shrinking_factor)
        .max_piece_length(cfg.max_piece_length)
        .unk_token(Some(HEAD[0].to_string()))
        .build()
        .map_err(|e| format!("trainer settings: {e}"))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| format!("thread pool: {e}"))?;
    let mut model = Unigram::default();
    pool.install(|| trainer.do_train(sentences, &mut model))
        .map_err(|e| e.to_string())?;

    let reserved_names: HashSet<String> = reserved_names(cfg.byte_fallback);
    let mut trained: Vec<(String, f32)> = model
        .iter()
        .skip(1) // the trainer's `<unk>`
        .filter(|(p, _)| !reserved_names.contains(p))
        .map(|(p, s)| (p.clone(), if s.is_finite() { *s as f32 } else { 0.0 }))
        .collect();
    // Best first; ties by text, whatever order the trainer's hash sets gave.
    trained.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    trained.truncate(target);
    let missing: Vec<char> = chars
        .iter()
        .copied()
        .filter(|c| {
            let mut buf = [0u8; 4];
            let s: &str = c.encode_utf8(&mut buf);
            !trained.iter().any(|(p, _)| p == s)
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the trainer dropped the characters {missing:?}; training text would encode to <unk>"
        ));
    }
    Ok(trained)
}
