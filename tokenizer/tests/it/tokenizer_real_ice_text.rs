//! The real ChatGLM-6B `ice_text.model` against chatglm.cpp's test vectors
//! (`shared/golden/tokenizer/real_ice_text_chatglm_cpp.json`). The model is not shipped:
//! run with `VISUALGLM_ICE_TEXT=/path/to/ice_text.model cargo test -p visualglm-tokenizer
//! --test it tokenizer_real_ice_text -- --ignored`.

use serde_json::Value;
use visualglm_tokenizer::{ChatGlmTokenizer, DecodeOptions};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/golden/tokenizer/real_ice_text_chatglm_cpp.json"
);

#[test]
#[ignore = "needs the real ice_text.model: set VISUALGLM_ICE_TEXT and run with --ignored"]
fn real_ice_text_matches_chatglm_cpp() {
    let path = std::env::var("VISUALGLM_ICE_TEXT")
        .expect("set VISUALGLM_ICE_TEXT to the real ice_text.model (or tokenizer.json)");
    let tok = ChatGlmTokenizer::from_file(&path).unwrap();
    // Spec §5: the released vocabulary and special ids.
    assert_eq!(tok.num_pieces(), 130_344);
    let s = tok.special_ids();
    assert_eq!(
        (s.mask, s.gmask, s.sop, s.eop),
        (130_000, 130_001, 130_004, 130_005)
    );
    assert_eq!((s.pad, s.unk), (3, 0));
    let ranges = tok.english_suppressed_ranges();
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0], 63_823..130_000);

    let golden: Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids_with_gmask_sop"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            tok.encode_with_special_tokens(text).unwrap(),
            want,
            "{text:?}"
        );
        let body = &want[..want.len() - 2];
        assert_eq!(tok.decode(body, &DecodeOptions::raw()).unwrap(), text);
    }
    let reply = golden["greedy_reply_to_你好"].as_str().unwrap();
    let ids = tok.encode(reply).unwrap();
    assert_eq!(tok.decode(&ids, &DecodeOptions::raw()).unwrap(), reply);
}
