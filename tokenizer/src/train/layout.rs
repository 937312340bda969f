//! `ice_text.model`'s layout: the reserved pieces around the trained ones and the
//! SentencePiece `ModelProto` that puts them in order (see the [module docs](super)).

use std::collections::HashSet;

use crate::formats::proto::{ModelProto, NormalizerSpec, SentencePiece, TrainerSpec};
use crate::normalize::chatglm::{blank_piece, MAX_BLANK, NEWLINE, TAB};

/// The ChatGLM special pieces that end the vocabulary, in the released order.
pub const SPECIALS: [&str; 8] = [
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<unused_0>",
    "<sop>",
    "<eop>",
    "<ENC>",
    "<dBLOCK>",
];

/// The pieces before the user-defined ones: `<unk>` and the control pieces.
pub const HEAD: [&str; 4] = ["<unk>", "<s>", "</s>", "<pad>"];

/// SentencePiece piece type (`ModelProto.SentencePiece.Type`): normal.
pub const NORMAL: i32 = 1;
/// Piece type: unknown.
pub const UNKNOWN: i32 = 2;
/// Piece type: control.
pub const CONTROL: i32 = 3;
/// Piece type: user-defined.
pub const USER_DEFINED: i32 = 4;
/// Piece type: unused.
pub const UNUSED: i32 = 5;
/// Piece type: byte.
pub const BYTE: i32 = 6;

/// `<n>`, `<|tab|>`, `<|blank_2|>` … `<|blank_80|>`.
pub fn whitespace_pieces() -> Vec<String> {
    let mut v = vec![NEWLINE.to_string(), TAB.to_string()];
    v.extend((2..=MAX_BLANK).map(blank_piece));
    v
}

/// Number of pieces that are not trained: head, whitespace pieces, specials (and bytes).
pub fn reserved_pieces(byte_fallback: bool) -> usize {
    let bytes = if byte_fallback { 256 } else { 0 };
    HEAD.len() + whitespace_pieces().len() + SPECIALS.len() + bytes
}

/// `<0xXX>`.
fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// Every piece text the layout reserves, which a trained piece must not repeat.
pub fn reserved_names(byte_fallback: bool) -> HashSet<String> {
    let mut names: HashSet<String> = HEAD.iter().map(|s| s.to_string()).collect();
    names.extend(whitespace_pieces());
    names.extend(SPECIALS.iter().map(|s| s.to_string()));
    if byte_fallback {
        names.extend((0..=255u8).map(byte_piece));
    }
    names
}

/// The `.model` of a trained vocabulary: the head, the whitespace pieces, the byte pieces
/// (with `byte_fallback`), the `trained` pieces in the order given, `unused` `<unused_K>`
/// fillers and the [`SPECIALS`]; identity normalisation, dummy prefix on, whitespace
/// collapsing off. `vocab_size` is recorded in the trainer spec.
pub fn lay_out(
    trained: Vec<(String, f32)>,
    unused: usize,
    vocab_size: i32,
    byte_fallback: bool,
) -> ModelProto {
    let piece = |text: &str, score: f32, kind: i32| SentencePiece {
        piece: Some(text.to_string()),
        score: Some(score),
        r#type: Some(kind),
    };
    let mut pieces = Vec::with_capacity(usize::try_from(vocab_size).unwrap_or(0));
    pieces.push(piece(HEAD[0], 0.0, UNKNOWN));
    for name in &HEAD[1..] {
        pieces.push(piece(name, 0.0, CONTROL));
    }
    for name in whitespace_pieces() {
        pieces.push(piece(&name, 0.0, USER_DEFINED));
    }
    if byte_fallback {
        for b in 0..=255u8 {
            pieces.push(piece(&byte_piece(b), 0.0, BYTE));
        }
    }
    for (text, score) in trained {
        pieces.push(piece(&text, score, NORMAL));
    }
    let taken: HashSet<String> = pieces.iter().filter_map(|p| p.piece.clone()).collect();
    // `<unused_0>` is a special; fillers count from 1, skipping names a trained piece took.
    let fillers = (1usize..)
        .map(|k| format!("<unused_{k}>"))
        .filter(|name| !taken.contains(name));
    for name in fillers.take(unused) {
        pieces.push(piece(&name, 0.0, UNUSED));
    }
    for name in SPECIALS {
        pieces.push(piece(name, 0.0, USER_DEFINED));
    }
    ModelProto {
        pieces,
        trainer_spec: Some(TrainerSpec {
            model_type: Some(1),
            vocab_size: Some(vocab_size),
            byte_fallback: Some(byte_fallback),
            unk_id: Some(0),
            bos_id: Some(1),
            eos_id: Some(2),
            pad_id: Some(3),
            ..Default::default()
        }),
        normalizer_spec: Some(NormalizerSpec {
            name: Some("identity".into()),
            precompiled_charsmap: Some(Vec::new()),
            add_dummy_prefix: Some(true),
            remove_extra_whitespaces: Some(false),
            escape_whitespaces: Some(true),
        }),
    }
}
