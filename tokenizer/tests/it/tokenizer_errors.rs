//! Bad input gives clear errors naming the file; vocabulary properties.

use prost::Message;
use visualglm_tokenizer::formats::proto::{ModelProto, SentencePiece, TrainerSpec};
use visualglm_tokenizer::{ChatGlmTokenizer, PieceKind, TokenizerError};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/golden/tokenizer");

fn bpe() -> ChatGlmTokenizer {
    ChatGlmTokenizer::from_file(format!("{GOLDEN}/standin_bpe.model")).unwrap()
}

fn piece(text: &str, kind: i32) -> SentencePiece {
    SentencePiece {
        piece: Some(text.into()),
        score: Some(0.0),
        r#type: Some(kind),
    }
}

#[test]
fn missing_and_unknown_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.model");
    let err = ChatGlmTokenizer::from_file(&missing).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }));
    assert!(err.to_string().contains("nope.model"), "{err}");

    let odd = dir.path().join("vocab.txt");
    std::fs::write(&odd, "a b c").unwrap();
    let err = ChatGlmTokenizer::from_file(&odd).unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnknownFileKind { .. }),
        "{err}"
    );

    let err = ChatGlmTokenizer::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::NoTokenizerInDir { .. }),
        "{err}"
    );
}

#[test]
fn corrupt_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(format!("{GOLDEN}/standin_bpe.model")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.model", good[..good.len() / 2].to_vec()),
        ("text.model", b"this is not a protobuf\n".to_vec()),
        ("empty.model", Vec::new()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = ChatGlmTokenizer::from_file(&path).unwrap_err();
        assert!(
            matches!(err, TokenizerError::CorruptModel { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn models_this_port_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let base = ModelProto {
        pieces: vec![piece("<unk>", 2), piece("<s>", 3), piece("a", 1)],
        trainer_spec: Some(TrainerSpec {
            model_type: Some(2),
            ..Default::default()
        }),
        normalizer_spec: None,
    };
    // A valid SentencePiece model, but not ChatGLM's: no [MASK] etc.
    let path = dir.path().join("plain.model");
    std::fs::write(&path, base.encode_to_vec()).unwrap();
    let err = ChatGlmTokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(err, TokenizerError::MissingPiece { ref piece, .. } if piece == "[MASK]"),
        "{err}"
    );

    let mut word = base.clone();
    word.trainer_spec = Some(TrainerSpec {
        model_type: Some(3),
        ..Default::default()
    });
    let path = dir.path().join("word.model");
    std::fs::write(&path, word.encode_to_vec()).unwrap();
    let err = ChatGlmTokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("WORD"), "{err}");

    let mut no_unk = base.clone();
    no_unk.pieces.remove(0);
    let path = dir.path().join("nounk.model");
    std::fs::write(&path, no_unk.encode_to_vec()).unwrap();
    let err = ChatGlmTokenizer::from_file(&path).unwrap_err();
    assert!(err.to_string().contains("<unk>"), "{err}");
}

#[test]
fn bad_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "{ not json").unwrap();
    let err = ChatGlmTokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::BadJson { .. }), "{err}");

    // A valid tokenizers file that was not converted by this port.
    let mut value: serde_json::Value =
        serde_json::from_str(&bpe().to_tokenizer_json_string().unwrap()).unwrap();
    value["post_processor"] = serde_json::Value::Null;
    std::fs::write(&path, value.to_string()).unwrap();
    let err = ChatGlmTokenizer::from_file(&path).unwrap_err();
    assert!(
        err.to_string().contains("visualglm tokenizer convert"),
        "{err}"
    );
}

#[test]
fn bad_ids_are_errors() {
    let tok = bpe();
    let n = tok.num_pieces() as u32;
    let err = tok.decode(&[5, n], &Default::default()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::IdOutOfRange { id, .. } if id == n),
        "{err}"
    );
    assert!(tok.decode(&[n - 1], &Default::default()).is_ok());
}

#[test]
fn english_suppression_is_the_cjk_pieces_of_a_stand_in() {
    let tok = bpe();
    let ranges = tok.english_suppressed_ranges();
    assert!(!ranges.is_empty());
    let suppressed = |id: u32| ranges.iter().any(|r| r.contains(&id));
    let zh = tok.piece_to_id("描述这张图片").unwrap();
    assert!(suppressed(zh));
    assert!(!suppressed(tok.piece_to_id("\u{2581}the").unwrap()));
    for r in &ranges {
        for id in r.clone() {
            assert_eq!(tok.table().kind(id), Some(PieceKind::Normal));
        }
    }
    assert!(ranges.iter().all(|r| r.end as usize <= tok.num_pieces()));
}
