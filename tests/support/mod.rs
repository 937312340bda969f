//! Test helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use prost::Message;
use visualglm_language::tokenizer::proto::ModelProto;

/// A path under `../shared/golden`.
pub fn golden(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden")).join(rel)
}

/// The ChatGLM special pieces, in the order of the released vocabulary.
const SPECIALS: [&str; 8] = [
    "[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>",
];

/// Writes `dir/tiny.model`: the stand-in unigram tokenizer re-laid like the real
/// `ice_text.model` (ordinary pieces first, the specials after them) and cut so that its
/// specials land on the tiny golden model's ids (`[MASK]` = 1000 … `<eop>` = 1005).
pub fn tiny_tokenizer(dir: &Path) -> PathBuf {
    let bytes = std::fs::read(golden("tokenizer/standin_unigram.model")).unwrap();
    let proto = ModelProto::decode(bytes.as_slice()).unwrap();
    let name = |p: &visualglm_language::tokenizer::proto::SentencePiece| {
        p.piece.clone().unwrap_or_default()
    };
    let (specials, rest): (Vec<_>, Vec<_>) = proto
        .pieces
        .iter()
        .cloned()
        .partition(|p| SPECIALS.contains(&name(p).as_str()));
    let first_special = 1000;
    let mut pieces: Vec<_> = rest.into_iter().take(first_special).collect();
    assert_eq!(pieces.len(), first_special);
    for s in SPECIALS {
        pieces.push(specials.iter().find(|p| name(p) == s).unwrap().clone());
    }
    let tiny = ModelProto { pieces, ..proto };
    let path = dir.join("tiny.model");
    std::fs::write(&path, tiny.encode_to_vec()).unwrap();
    path
}
