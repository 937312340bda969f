//! Writes `assets/tiny/tokenizer.model`: the stand-in unigram tokenizer of
//! `../shared/golden/tokenizer` re-laid like the real `ice_text.model` (ordinary pieces first,
//! then the ChatGLM specials) so that its specials land on the ids of the tiny golden model
//! (`[MASK]` = 1000, `[gMASK]` = 1001, `<sop>` = 1004, `<eop>` = 1005).
//!
//! `cargo run --example make_tiny_tokenizer -- ../shared/golden/tokenizer/standin_unigram.model assets/tiny/tokenizer.model`

use prost::Message;
use visualglm_tokenizer::formats::proto::{ModelProto, SentencePiece};

/// The ChatGLM special pieces, in the order of the released vocabulary.
const SPECIALS: [&str; 8] = [
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<unused_0>",
    "<sop>",
    "<eop>",
    "<ENC>",
    "<dBLOCK>",
];
/// Id of `[MASK]` in the tiny golden model.
const FIRST_SPECIAL: usize = 1000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (src, dst) = match args.as_slice() {
        [_, src, dst] => (src, dst),
        _ => anyhow::bail!("usage: make_tiny_tokenizer STANDIN.model OUT.model"),
    };
    let proto = ModelProto::decode(std::fs::read(src)?.as_slice())?;
    let name = |p: &SentencePiece| p.piece.clone().unwrap_or_default();
    let (specials, rest): (Vec<_>, Vec<_>) = proto
        .pieces
        .iter()
        .cloned()
        .partition(|p| SPECIALS.contains(&name(p).as_str()));
    if rest.len() < FIRST_SPECIAL {
        anyhow::bail!("{src} has only {} ordinary pieces", rest.len());
    }
    let mut pieces: Vec<SentencePiece> = rest.into_iter().take(FIRST_SPECIAL).collect();
    for s in SPECIALS {
        let p = specials
            .iter()
            .find(|p| name(p) == s)
            .ok_or_else(|| anyhow::anyhow!("{src} has no {s} piece"))?;
        pieces.push(p.clone());
    }
    let tiny = ModelProto { pieces, ..proto };
    std::fs::write(dst, tiny.encode_to_vec())?;
    eprintln!("wrote {dst}");
    Ok(())
}
