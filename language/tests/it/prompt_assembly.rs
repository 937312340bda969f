//! VisualGLM prompt assembly against the official code (`golden_standin.json` →
//! `prompt_assembly`), plus history, the English template and the length rule.

use serde_json::Value;
use visualglm_language::positions;
use visualglm_language::prompt::{Overflow, PromptBuilder, PromptError, Template};
use visualglm_tokenizer::ChatGlmTokenizer;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/golden/tokenizer");

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn tokenizer(kind: &str) -> ChatGlmTokenizer {
    ChatGlmTokenizer::from_file(format!("{GOLDEN}/standin_{kind}.model")).unwrap()
}

#[test]
fn first_turn_matches_official_assembly() {
    let text = std::fs::read_to_string(format!("{GOLDEN}/golden_standin.json")).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    for kind in ["bpe", "unigram"] {
        let tok = tokenizer(kind);
        let g = &golden["prompt_assembly"][kind];
        assert_eq!(g["prompt"], "<img></img>问：描述这张图片。\n答：");
        for (field, placeholder) in [
            ("input_ids_hf_unk_placeholders", tok.unk_id()),
            ("input_ids_sat_pad_placeholders", tok.pad_id()),
        ] {
            let p = PromptBuilder::new(&tok)
                .image(32, placeholder)
                .build("描述这张图片。", &[])
                .unwrap();
            assert_eq!(p.ids, ids(&g[field]), "{kind} {field}");
            assert_eq!(p.pre_image() as u64, g["pre_image"].as_u64().unwrap());
            assert_eq!(p.ids[..p.pre_image()], ids(&g["input0_ids"]));
            assert_eq!(
                p.ids[p.pre_image() + 32..p.ids.len() - 2],
                ids(&g["input2_ids"])
            );
            let len = p.ids.len();
            assert_eq!((p.context_len, p.gmask_index), (len - 1, len - 2));
            assert_eq!(p.image_range(), Some(p.pre_image()..p.pre_image() + 32));
            assert_eq!(
                p.position_ids,
                positions::position_ids(len, len - 1, len - 2)
            );
        }
    }
}

#[test]
fn history_and_english_template() {
    let tok = tokenizer("bpe");
    let history = vec![
        ("What is it?".to_string(), "A cat.".to_string()),
        ("Color?".to_string(), "White.".to_string()),
    ];
    let p = PromptBuilder::new(&tok)
        .template(Template::English)
        .image(4, tok.pad_id())
        .build("Where is it?", &history)
        .unwrap();
    let mut want = tok.encode("<img>").unwrap();
    want.extend([tok.pad_id(); 4]);
    want.extend(
        tok.encode("</img>Q:What is it?\nA:A cat.\nQ:Color?\nA:White.\nQ:Where is it?\nA:")
            .unwrap(),
    );
    want.extend([tok.gmask_id(), tok.sop_id()]);
    assert_eq!(p.ids, want);

    let zh = PromptBuilder::new(&tok)
        .build("晚上呢", &[("你好".to_string(), "你好！".to_string())])
        .unwrap();
    assert_eq!(
        zh.ids,
        tok.encode_with_special_tokens("问：你好\n答：你好！\n问：晚上呢\n答：")
            .unwrap()
    );
    assert_eq!(
        (zh.pre_image(), zh.image_length, zh.image_range()),
        (0, 0, None)
    );
}

#[test]
fn several_images_are_blocks_in_order_split_as_the_release_splits_one() {
    for kind in ["bpe", "unigram"] {
        let tok = tokenizer(kind);
        let history = vec![("Which?".to_string(), "The first.".to_string())];
        let one = PromptBuilder::new(&tok)
            .image(4, tok.pad_id())
            .build("Why?", &history)
            .unwrap();
        assert_eq!(
            one,
            PromptBuilder::new(&tok)
                .images(1, 4, tok.pad_id())
                .build("Why?", &history)
                .unwrap(),
            "{kind}: one image is the release's prompt"
        );
        let three = PromptBuilder::new(&tok)
            .images(3, 4, tok.pad_id())
            .build("Why?", &history)
            .unwrap();
        // Each text piece between placeholder runs is one encode call.
        let mut want = tok.encode("<img>").unwrap();
        let mut starts = vec![want.len()];
        want.extend([tok.pad_id(); 4]);
        for _ in 0..2 {
            want.extend(tok.encode("</img><img>").unwrap());
            starts.push(want.len());
            want.extend([tok.pad_id(); 4]);
        }
        want.extend(
            tok.encode("</img>问：Which?\n答：The first.\n问：Why?\n答：")
                .unwrap(),
        );
        want.extend([tok.gmask_id(), tok.sop_id()]);
        assert_eq!(three.ids, want, "{kind}");
        assert_eq!(three.image_starts, starts, "{kind}");
        assert_eq!(three.pre_image(), one.pre_image());
        let ranges: Vec<_> = three.image_ranges().collect();
        assert_eq!(ranges.len(), 3);
        for r in ranges {
            assert!(three.ids[r].iter().all(|&t| t == tok.pad_id()));
        }
        // The whole prompt is context: positions as for any prompt.
        let (context_len, gmask) =
            positions::context_and_mask(&three.ids, tok.sop_id(), tok.gmask_id(), tok.mask_id());
        assert_eq!((three.context_len, three.gmask_index), (context_len, gmask));
        // No image blocks at all is the text-only prompt.
        assert_eq!(
            PromptBuilder::new(&tok)
                .images(0, 4, tok.pad_id())
                .build("Why?", &history)
                .unwrap(),
            PromptBuilder::new(&tok).build("Why?", &history).unwrap()
        );
    }
}

#[test]
fn image_spans_need_one_image_per_block() {
    use candle_core::{DType, Device, Tensor};
    let tok = tokenizer("bpe");
    let p = PromptBuilder::new(&tok)
        .images(2, 4, tok.pad_id())
        .build("?", &[])
        .unwrap();
    let e = Tensor::zeros((1, 4, 8), DType::F32, &Device::Cpu).unwrap();
    let spans = p.image_spans(&[e.clone(), e.clone()]).unwrap();
    let starts: Vec<usize> = spans.iter().map(|s| s.start).collect();
    assert_eq!(starts, p.image_starts);
    for given in [1, 3] {
        let err = p.image_spans(&vec![e.clone(); given]).unwrap_err();
        assert!(
            matches!(err, PromptError::ImageCount { blocks: 2, given: g } if g == given),
            "{err}"
        );
    }
}

#[test]
fn too_long_prompts_error_or_drop_oldest_turns() {
    let tok = tokenizer("unigram");
    let history: Vec<(String, String)> = (0..6)
        .map(|i| (format!("question {i}"), format!("answer {i}")))
        .collect();
    let full = PromptBuilder::new(&tok).build("last", &history).unwrap();
    let max = full.ids.len() - 1;
    let err = PromptBuilder::new(&tok)
        .max_length(max)
        .build("last", &history)
        .unwrap_err();
    assert!(matches!(err, PromptError::TooLong { len, turns: 6, .. } if len == max + 1));
    assert!(err.to_string().contains("maximum length"));

    let fit = PromptBuilder::new(&tok)
        .max_length(max)
        .overflow(Overflow::DropOldestTurns)
        .build("last", &history)
        .unwrap();
    assert_eq!(fit.dropped_turns, 1);
    assert!(fit.ids.len() <= max);
    let shorter = PromptBuilder::new(&tok)
        .build("last", &history[1..])
        .unwrap();
    assert_eq!(
        (fit.ids, fit.position_ids),
        (shorter.ids, shorter.position_ids)
    );

    let none_fits = PromptBuilder::new(&tok)
        .max_length(3)
        .overflow(Overflow::DropOldestTurns)
        .build("last", &history)
        .unwrap_err();
    assert!(matches!(none_fits, PromptError::TooLong { turns: 0, .. }));
}
