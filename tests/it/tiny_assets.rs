//! The committed tiny tokenizer is what its generator makes from the stand-in, and its
//! specials sit on the tiny golden model's ids.

use crate::support;

use std::process::Command;

use visualglm_tokenizer::ChatGlmTokenizer;

#[test]
fn tiny_tokenizer_is_reproducible_and_fits_the_tiny_model() {
    let committed = support::tiny_tokenizer(std::path::Path::new("."));
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("t.model");
    let status = Command::new(env!("CARGO"))
        .args(["run", "-q", "--example", "make_tiny_tokenizer", "--"])
        .arg(support::golden("tokenizer/standin_unigram.model"))
        .arg(&fresh)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(&committed).unwrap(),
        std::fs::read(&fresh).unwrap()
    );

    let tok = ChatGlmTokenizer::from_file(&committed).unwrap();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::golden("checkpoints/hf/config.json")).unwrap(),
    )
    .unwrap();
    let s = tok.special_ids();
    assert_eq!(s.mask as u64, config["mask_token_id"].as_u64().unwrap());
    assert_eq!(s.gmask as u64, config["gmask_token_id"].as_u64().unwrap());
    assert_eq!(s.sop as u64, config["bos_token_id"].as_u64().unwrap());
    assert_eq!(s.eop as u64, config["eos_token_id"].as_u64().unwrap());
    assert!(tok.num_pieces() as u64 <= config["vocab_size"].as_u64().unwrap());
    let text = "a cat on a mat\n";
    assert_eq!(
        tok.decode(&tok.encode(text).unwrap(), &Default::default())
            .unwrap(),
        text
    );
}
