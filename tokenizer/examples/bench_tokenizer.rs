//! Tokenizer throughput, side by side with `bench/tokenizer/bench_sentencepiece.py`.
//!
//! Encodes every line of TEXT with `ChatGlmTokenizer::encode` (ChatGLM rules + SentencePiece,
//! all timed), on one thread: the first round (word cache cold) and the best of REPEATS; if IDS (the Python script's output) is given,
//! checks the ids are identical.
//!
//! `cargo run --release -p visualglm-tokenizer --example bench_tokenizer -- MODEL TEXT [IDS] [REPEATS]`

use std::time::Instant;

use visualglm_tokenizer::ChatGlmTokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(model), Some(text_path)) = (args.first(), args.get(1)) else {
        return Err("usage: bench_tokenizer MODEL TEXT [IDS] [REPEATS]".into());
    };
    let ids_path = args.get(2).filter(|p| !p.is_empty());
    let repeats: usize = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(3);

    let load = Instant::now();
    let tok = ChatGlmTokenizer::from_file(model)?;
    let load = load.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(text_path)?;
    let lines: Vec<&str> = text
        .strip_suffix('\n')
        .unwrap_or(&text)
        .split('\n')
        .collect();
    let nbytes: usize = lines.iter().map(|l| l.len()).sum();

    let mut best = f64::INFINITY;
    let mut first = 0.0;
    let mut ids: Vec<Vec<u32>> = Vec::new();
    for round in 0..repeats.max(1) {
        let start = Instant::now();
        ids = lines
            .iter()
            .map(|l| tok.encode(l))
            .collect::<Result<_, _>>()?;
        let took = start.elapsed().as_secs_f64();
        if round == 0 {
            first = took;
        }
        best = best.min(took);
    }
    let flat: Vec<u32> = ids.concat();
    println!(
        "rust visualglm tokenizer: {} lines, {:.2} MB, {} ids, load {:.3} s, first (cold word cache) {:.3} s = {:.2} MB/s, best of {}: {:.3} s = {:.2} MB/s (1 thread)",
        lines.len(),
        nbytes as f64 / 1e6,
        flat.len(),
        load,
        first,
        nbytes as f64 / 1e6 / first,
        repeats.max(1),
        best,
        nbytes as f64 / 1e6 / best
    );
    if let Some(p) = ids_path {
        let raw = std::fs::read(p)?;
        let want: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if want == flat {
            println!("ids identical to {p} ({} ids)", want.len());
        } else {
            let at = want.iter().zip(&flat).position(|(a, b)| a != b);
            return Err(format!(
                "ids differ from {p}: {} vs {} ids, first difference at {at:?}",
                want.len(),
                flat.len()
            )
            .into());
        }
    }
    Ok(())
}
