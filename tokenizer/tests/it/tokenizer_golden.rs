//! The stand-in SentencePiece models against the official ChatGLM tokenizer's outputs
//! (`shared/golden/tokenizer/golden_standin.json`), directly and through tokenizer.json.

use serde_json::Value;
use visualglm_tokenizer::{ChatGlmTokenizer, DecodeOptions};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/golden/tokenizer");

fn golden() -> Value {
    let text = std::fs::read_to_string(format!("{GOLDEN}/golden_standin.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check_cases(tok: &ChatGlmTokenizer, cases: &[Value], label: &str) {
    assert!(cases.len() > 100, "{label}: too few cases");
    let skip = DecodeOptions {
        skip_special_tokens: true,
        clean_up_tokenization_spaces: true,
    };
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = tok.encode(text).unwrap();
        if got != want {
            failures.push(format!("encode {text:?}: got {got:?}, want {want:?}"));
            continue;
        }
        assert_eq!(
            tok.encode_reference(text).unwrap(),
            want,
            "{label}: pipeline, {text:?}"
        );
        let with_special = ids(&case["ids_with_special_tokens"]);
        assert_eq!(tok.encode_with_special_tokens(text).unwrap(), with_special);
        let checks = [
            ("hf_decode", tok.decode(&want, &Default::default()).unwrap()),
            (
                "hf_decode_no_cleanup",
                tok.decode(&want, &DecodeOptions::raw()).unwrap(),
            ),
            (
                "sp_decode",
                tok.decode(&want, &DecodeOptions::raw()).unwrap(),
            ),
            (
                "hf_decode_with_special_tokens",
                tok.decode(&with_special, &Default::default()).unwrap(),
            ),
            (
                "hf_decode_with_special_tokens_skip",
                tok.decode(&with_special, &skip).unwrap(),
            ),
        ];
        for (field, got) in checks {
            let want = case[field].as_str().unwrap();
            if got != want {
                failures.push(format!("{field} of {text:?}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_model(kind: &str) {
    let g = golden();
    let cases = g["cases"][kind].as_array().unwrap();
    let tok = ChatGlmTokenizer::from_file(format!("{GOLDEN}/standin_{kind}.model")).unwrap();
    check_cases(&tok, cases, kind);

    let specials = &g["special_ids"][kind];
    let s = tok.special_ids();
    assert_eq!(u64::from(s.unk), specials["unk_token_id"].as_u64().unwrap());
    assert_eq!(u64::from(s.pad), specials["pad_token_id"].as_u64().unwrap());
    assert_eq!(u64::from(s.sop), specials["bos(<sop>)"].as_u64().unwrap());
    assert_eq!(u64::from(s.eop), specials["eos(<eop>)"].as_u64().unwrap());
    assert_eq!(
        u64::from(s.mask),
        specials["mask([MASK])"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(s.gmask),
        specials["gmask([gMASK])"].as_u64().unwrap()
    );
    let model = &g["models"][kind];
    assert_eq!(
        tok.num_pieces() as u64,
        model["vocab_size"].as_u64().unwrap()
    );
    for (piece, id) in model["ids"].as_object().unwrap() {
        assert_eq!(
            tok.piece_to_id(piece).map(u64::from),
            id.as_u64(),
            "{piece}"
        );
    }

    // Converted to tokenizer.json and reloaded: the same ids and texts.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    tok.to_tokenizer_json(&json).unwrap();
    let reloaded = ChatGlmTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(reloaded.source(), json.as_path());
    check_cases(&reloaded, cases, &format!("{kind} via tokenizer.json"));
}

#[test]
fn bpe_standin_matches_official_tokenizer() {
    check_model("bpe");
}

#[test]
fn unigram_standin_matches_official_tokenizer() {
    check_model("unigram");
}

/// The lean encoder equals the full `tokenizers` pipeline on pseudo-random mixed text.
#[test]
fn lean_encoder_equals_pipeline_on_random_text() {
    let g = golden();
    // Characters drawn from the fixture texts plus a few extra.
    let mut chars: Vec<char> = g["cases"]["bpe"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["text"].as_str().unwrap().chars().collect::<Vec<_>>())
        .collect();
    chars.extend("  \t\n<>|_0x41[gMASK]<sop>é😀".chars());
    chars.sort_unstable();
    chars.dedup();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % n
    };
    let texts: Vec<String> = (0..300)
        .map(|_| (0..next(60)).map(|_| chars[next(chars.len())]).collect())
        .collect();
    for kind in ["bpe", "unigram"] {
        let tok = ChatGlmTokenizer::from_file(format!("{GOLDEN}/standin_{kind}.model")).unwrap();
        for text in &texts {
            assert_eq!(
                tok.encode(text).unwrap(),
                tok.encode_reference(text).unwrap(),
                "{kind}: {text:?}"
            );
        }
    }
}
