//! Properties of the caption metrics that must hold for any input.

use visualglm_eval::{score_captions, CaptionItem, ImageId, Tokenizer};

/// Deterministic pseudo-random captions over a small vocabulary.
fn captions(seed: u64, count: usize) -> Vec<String> {
    const WORDS: [&str; 12] = [
        "a", "dog", "cat", "runs", "on", "the", "grass", "red", "ball", "near", "tree", "sits",
    ];
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 4 + (state % 9) as usize;
            (0..len)
                .map(|i| WORDS[((state >> (i * 4)) % 12) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn item(id: i64, candidate: &str, references: Vec<String>) -> CaptionItem {
    CaptionItem {
        image_id: ImageId::Int(id),
        candidate: candidate.into(),
        references,
    }
}

#[test]
fn candidate_equal_to_a_reference_scores_one() {
    for seed in 1..30u64 {
        let refs = captions(seed, 5);
        let pick = (seed % 5) as usize;
        let items = vec![
            item(0, &refs[pick].clone(), refs),
            item(1, "something else entirely here", captions(seed + 100, 5)),
        ];
        let report = score_captions(&items, Tokenizer::Ptb).expect("score");
        let first = &report.per_image[0];
        assert!(
            (1.0 - first.bleu[3]).abs() < 1e-8,
            "seed {seed}: BLEU-4 {}",
            first.bleu[3]
        );
        assert!(
            (1.0 - first.rouge_l).abs() < 1e-12,
            "seed {seed}: ROUGE-L {}",
            first.rouge_l
        );
        for s in &first.bleu {
            assert!(*s <= 1.0 && *s > 0.99, "seed {seed}: {s}");
        }
        assert!(first.cider > report.per_image[1].cider);
    }
}

#[test]
fn empty_candidates_and_references_give_zero_not_nan() {
    let refs = captions(7, 5);
    let items = vec![
        item(0, "", refs.clone()),
        item(1, " ... ", refs.clone()),
        item(2, "a dog", vec!["".into(), "!".into(), refs[0].clone()]),
        item(3, "", vec!["".into()]),
    ];
    let report = score_captions(&items, Tokenizer::Ptb).expect("score");
    for (i, it) in report.per_image.iter().enumerate() {
        for v in it.bleu.iter().chain([&it.rouge_l, &it.cider]) {
            assert!(v.is_finite(), "image {i}: {v}");
        }
    }
    for it in &report.per_image[..2] {
        assert_eq!(it.bleu, [0.0; 4]);
        assert_eq!(it.rouge_l, 0.0);
        assert_eq!(it.cider, 0.0);
    }
    for (_, v) in report.corpus.named() {
        assert!(v.is_finite());
    }

    let all_empty = vec![item(0, "", refs.clone()), item(1, ".", refs)];
    let report = score_captions(&all_empty, Tokenizer::Ptb).expect("score");
    for (name, v) in report.corpus.named() {
        assert_eq!(v, 0.0, "{name}");
    }
}

#[test]
fn scores_do_not_depend_on_item_order_except_their_position() {
    let items: Vec<CaptionItem> = (0..20)
        .map(|i| {
            let refs = captions(i as u64 + 1, 5);
            let cand = captions(i as u64 + 500, 1).remove(0);
            item(i, &cand, refs)
        })
        .collect();
    let forward = score_captions(&items, Tokenizer::Ptb).expect("score");
    let mut reversed_items = items.clone();
    reversed_items.reverse();
    let backward = score_captions(&reversed_items, Tokenizer::Ptb).expect("score");
    for (a, b) in forward
        .per_image
        .iter()
        .zip(backward.per_image.iter().rev())
    {
        assert_eq!(a.image_id, b.image_id);
        assert!((a.cider - b.cider).abs() < 1e-12);
        assert_eq!(a.bleu, b.bleu);
        assert_eq!(a.rouge_l, b.rouge_l);
    }
    for ((_, a), (_, b)) in forward.corpus.named().iter().zip(backward.corpus.named()) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn invalid_inputs_are_errors() {
    assert!(score_captions(&[], Tokenizer::Ptb).is_err());
    let err = score_captions(&[item(9, "a", vec![])], Tokenizer::Ptb).unwrap_err();
    assert!(err.to_string().contains("image 9"), "{err}");
}
