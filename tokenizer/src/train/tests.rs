//! Tests of the unigram trainer: layout, determinism and round trips through the tokenizer.

use super::layout::{CONTROL, NORMAL, SPECIALS, UNKNOWN, UNUSED, USER_DEFINED};
use super::words::WordCounter;
use super::*;
use crate::normalize::sentencepiece::SPACE;
use crate::{ChatGlmTokenizer, DecodeOptions, PieceKind};

const COLORS: [&str; 6] = ["red", "green", "blue", "yellow", "purple", "white"];
const SHAPES: [&str; 3] = ["circle", "square", "triangle"];

/// Captions like `visualglm data synth`'s, plus its prompt.
fn captions() -> Vec<String> {
    let mut out = vec!["Describe the image.".to_string()];
    for (i, a) in COLORS.iter().enumerate() {
        for (j, b) in SHAPES.iter().enumerate() {
            let c = COLORS[(i + j + 1) % COLORS.len()];
            let d = SHAPES[(i + 2 * j) % SHAPES.len()];
            out.push(format!("a {a} {b} on the left and a {c} {d} on the right"));
        }
    }
    out
}

fn train_to_file(texts: &[String], cfg: &TrainerConfig) -> (tempfile::TempDir, TrainedModel) {
    let trained = train_unigram(texts.iter().cloned(), cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_model(&dir.path().join("tokenizer.model"), &trained).unwrap();
    (dir, trained)
}

#[test]
fn trained_model_loads_and_round_trips() {
    let texts = captions();
    let cfg = TrainerConfig {
        vocab_size: 160,
        ..Default::default()
    };
    let (dir, trained) = train_to_file(&texts, &cfg);
    let tok = ChatGlmTokenizer::from_file(dir.path().join("tokenizer.model")).unwrap();
    assert_eq!(tok.num_pieces(), 160);
    let s = &trained.summary;
    assert_eq!(s.vocab_size, 160);
    assert_eq!(
        s.trained_pieces + s.unused_pieces + cfg.reserved_pieces(),
        160
    );
    let ids = tok.special_ids();
    assert_eq!(
        (ids.mask, ids.gmask, ids.sop, ids.eop, ids.pad, ids.unk),
        (s.mask_id, s.gmask_id, s.sop_id, s.eop_id, s.pad_id, s.unk_id)
    );
    assert_eq!(
        (ids.mask, ids.gmask, ids.sop, ids.eop),
        (152, 153, 156, 157)
    );
    assert_eq!((ids.pad, ids.unk), (3, 0));

    let mut extra = vec![
        "a red circle\non the  left\tand\n\n   a blue square".to_string(),
        "  leading and trailing  ".to_string(),
        format!("wide{}gap", " ".repeat(170)),
        "\nthe\timage\n".to_string(),
        "[gMASK]<sop>a red circle<eop>".to_string(),
    ];
    extra.extend(texts.iter().cloned());
    for t in &extra {
        let enc = tok.encode(t).unwrap();
        assert!(!enc.contains(&ids.unk), "{t:?} -> {enc:?}");
        assert_eq!(enc, tok.encode_reference(t).unwrap(), "{t:?}");
        assert_eq!(&tok.decode(&enc, &DecodeOptions::raw()).unwrap(), t);
    }
    for t in &texts {
        let enc = tok.encode(t).unwrap();
        assert_eq!(&tok.decode(&enc, &Default::default()).unwrap(), t);
    }
    // Unseen characters are <unk> without byte fallback.
    assert!(tok.encode("zebra").unwrap().contains(&ids.unk));
    // The training set's frequent words are single pieces in a vocabulary this roomy,
    // including those that only end texts.
    for word in ["circle", "right", "purple", "on the left"] {
        let ids = tok.encode(word).unwrap();
        assert_eq!(ids.len(), word.split(' ').count(), "{word}: {ids:?}");
    }
}

#[test]
fn layout_matches_ice_text() {
    let (_dir, trained) = train_to_file(&captions(), &TrainerConfig::default());
    let p = &trained.proto.pieces;
    assert_eq!(p.len(), 512);
    let name = |i: usize| p[i].piece.as_deref().unwrap();
    let kind = |i: usize| p[i].r#type.unwrap();
    assert_eq!((name(0), kind(0)), ("<unk>", UNKNOWN));
    for (i, n) in ["<s>", "</s>", "<pad>"].iter().enumerate() {
        assert_eq!((name(i + 1), kind(i + 1)), (*n, CONTROL));
    }
    assert_eq!((name(4), kind(4)), ("<n>", USER_DEFINED));
    assert_eq!((name(5), kind(5)), ("<|tab|>", USER_DEFINED));
    assert_eq!((name(6), kind(6)), ("<|blank_2|>", USER_DEFINED));
    assert_eq!((name(84), kind(84)), ("<|blank_80|>", USER_DEFINED));
    for (k, s) in SPECIALS.iter().enumerate() {
        assert_eq!((name(504 + k), kind(504 + k)), (*s, USER_DEFINED));
    }
    // Normal pieces in score order, then fillers (the captions cannot fill 512).
    let normal: Vec<usize> = (85..504).filter(|&i| kind(i) == NORMAL).collect();
    assert_eq!(normal, (85..85 + normal.len()).collect::<Vec<_>>());
    assert_eq!(normal.len(), trained.summary.trained_pieces);
    assert!(trained.summary.unused_pieces > 0);
    assert!((85 + normal.len()..504).all(|i| kind(i) == UNUSED));
    let scores: Vec<f32> = normal.iter().map(|&i| p[i].score.unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores.iter().all(|s| *s < 0.0));
    // No piece spans words (a `▁` only ever starts a piece).
    assert!(normal
        .iter()
        .all(|&i| !name(i).chars().skip(1).any(|c| c == SPACE)));
    // Every character of the texts is a piece.
    for c in captions().concat().chars().filter(|c| *c != ' ') {
        assert!(
            p.iter().any(|q| q.piece.as_deref() == Some(&c.to_string())),
            "{c:?}"
        );
    }
    let n = trained.proto.normalizer_spec.as_ref().unwrap();
    assert_eq!(n.add_dummy_prefix, Some(true));
    assert_eq!(n.remove_extra_whitespaces, Some(false));
    assert_eq!(n.name.as_deref(), Some("identity"));
    let t = trained.proto.trainer_spec.as_ref().unwrap();
    assert_eq!((t.model_type, t.byte_fallback), (Some(1), Some(false)));
}

#[test]
fn training_is_deterministic() {
    let cfg = TrainerConfig {
        vocab_size: 140,
        ..Default::default()
    };
    let a = train_unigram(captions().into_iter(), &cfg).unwrap();
    let b = train_unigram(captions().into_iter(), &cfg).unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes());
    // Order of the texts does not matter either (words are counted).
    let c = train_unigram(captions().into_iter().rev(), &cfg).unwrap();
    assert_eq!(a.to_bytes(), c.to_bytes());
}

#[test]
fn byte_fallback_covers_unseen_text() {
    let cfg = TrainerConfig {
        vocab_size: 400,
        byte_fallback: true,
        ..Default::default()
    };
    let (dir, trained) = train_to_file(&captions(), &cfg);
    assert_eq!(trained.summary.mask_id, 392);
    let tok = ChatGlmTokenizer::from_file(dir.path().join("tokenizer.model")).unwrap();
    assert_eq!(tok.table().kind(85), Some(PieceKind::Byte));
    for t in ["zebra 斑马 ✓", "a red circle"] {
        let enc = tok.encode(t).unwrap();
        assert!(!enc.contains(&tok.unk_id()), "{t:?} -> {enc:?}");
        assert_eq!(tok.decode(&enc, &Default::default()).unwrap(), t);
    }
}

#[test]
fn bad_settings_are_explained() {
    let small = TrainerConfig {
        vocab_size: 100,
        ..Default::default()
    };
    let err = train_unigram(captions().into_iter(), &small).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("vocab_size 100 is too small"), "{msg}");
    assert!(msg.contains("use at least"), "{msg}");
    let err = train_unigram(
        ["".to_string(), String::new()].into_iter(),
        &TrainerConfig::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no training text"), "{err}");
}

#[test]
fn words_follow_the_encoder() {
    let mut c = WordCounter::new().unwrap();
    c.add("a red\ncircle  [MASK]x");
    let words: Vec<&str> = c.words.keys().map(String::as_str).collect();
    assert_eq!(words, ["circle", "x", "▁a", "▁red"]);
    let mut c = WordCounter::new().unwrap();
    c.add("\n a");
    let words: Vec<(&str, u32)> = c.words.iter().map(|(w, n)| (w.as_str(), *n)).collect();
    assert_eq!(words, [("▁", 1), ("▁a", 1)]);
}
