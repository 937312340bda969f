//! Several images in one prompt on the tiny golden model: the ids and embeddings splice as
//! one-image blocks would, one image is exactly the release's prompt, the library's paths
//! (describe_together, chat with `add_image`, batched image sets) agree, and order matters.

use candle_core::Tensor;
use visualglm::generate::Flow;
use visualglm::pipeline::{Captioner, PromptOptions, Question};
use visualglm_language::GenerationConfig;
use visualglm_vision::decode::load_image;

use crate::support::{golden, golden_captioner, max_abs_diff, tiny_tokenizer};

fn image(name: &str) -> image::DynamicImage {
    load_image(golden(&format!("images/{name}")), &Default::default()).unwrap()
}

fn greedy(max_new_tokens: usize) -> Question {
    Question {
        query: Some("这两张图有什么不同？".into()),
        english: false,
        generation: GenerationConfig {
            max_new_tokens,
            ..GenerationConfig::greedy()
        },
    }
}

fn setup() -> (tempfile::TempDir, Captioner) {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let c = golden_captioner(&tok);
    (dir, c)
}

#[test]
fn two_images_splice_exactly_as_two_one_image_blocks() {
    let (_dir, c) = setup();
    let (a, b) = (image("chelsea.png"), image("camera.png"));
    let ea = c.encode_images(std::slice::from_ref(&a)).unwrap();
    let eb = c.encode_images(std::slice::from_ref(&b)).unwrap();
    // Encoding together gives each image's own embeddings.
    let both = c.encode_images(&[a, b]).unwrap();
    assert_eq!(max_abs_diff(&both.narrow(0, 0, 1).unwrap(), &ea), 0.0);
    assert_eq!(max_abs_diff(&both.narrow(0, 1, 1).unwrap(), &eb), 0.0);

    let opts = |images| PromptOptions {
        images,
        ..Default::default()
    };
    let p = c
        .prompt("这两张图有什么不同？", &[], 2048, &opts(2))
        .unwrap();
    let one = c
        .prompt("这两张图有什么不同？", &[], 2048, &opts(1))
        .unwrap();
    let n = c.model().config().image_length;
    assert_eq!(p.image_starts.len(), 2);
    assert_eq!(p.image_starts[0], one.pre_image());
    assert_eq!(
        p.ids.len(),
        one.ids.len() + n + (p.image_starts[1] - p.image_starts[0] - n)
    );
    let spans = p.image_spans(&[ea.clone(), eb.clone()]).unwrap();
    let ids = Tensor::new(p.ids.as_slice(), c.model().device())
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let embeds = c.model().input_embeds(&ids, &spans).unwrap();
    let words = c.model().language_model().embed(&ids).unwrap();
    let mut image_rows = vec![false; p.ids.len()];
    for (range, e) in p.image_ranges().zip([&ea, &eb]) {
        let got = embeds.narrow(1, range.start, n).unwrap();
        assert_eq!(max_abs_diff(&got, e), 0.0, "image at {range:?}");
        for r in range {
            image_rows[r] = true;
        }
    }
    for (i, is_image) in image_rows.iter().enumerate() {
        if !is_image {
            let got = embeds.narrow(1, i, 1).unwrap();
            let want = words.narrow(1, i, 1).unwrap();
            assert_eq!(max_abs_diff(&got, &want), 0.0, "text row {i}");
        }
    }
    // The wrong number of images for the prompt is an error, not a panic.
    assert!(p.image_spans(std::slice::from_ref(&ea)).is_err());
    // Spans out of order or overlapping are refused by the model.
    let mut bad = spans.clone();
    bad.swap(0, 1);
    assert!(c.model().prompt_logits(&p.ids, &bad).is_err());
}

#[test]
fn one_image_together_is_the_release_prompt_and_order_matters() {
    let (_dir, c) = setup();
    let (a, b) = (image("chelsea.png"), image("camera.png"));
    let q = greedy(8);
    let alone = c.describe(&a, &q).unwrap();
    let together = c.describe_together(std::slice::from_ref(&a), &q).unwrap();
    assert_eq!(together.answers, [alone]);
    assert_eq!(together.timings.images, 1);

    // The last logits of [a, b] and [b, a] differ: each block sees its own image.
    let p = c
        .prompt(
            q.text(),
            &[],
            2048,
            &PromptOptions {
                images: 2,
                ..Default::default()
            },
        )
        .unwrap();
    let ea = c.encode_images(std::slice::from_ref(&a)).unwrap();
    let eb = c.encode_images(std::slice::from_ref(&b)).unwrap();
    let ab = c
        .model()
        .prompt_logits(&p.ids, &p.image_spans(&[ea.clone(), eb.clone()]).unwrap())
        .unwrap();
    let ba = c
        .model()
        .prompt_logits(&p.ids, &p.image_spans(&[eb, ea]).unwrap())
        .unwrap();
    let last = p.ids.len() - 1;
    let diff = max_abs_diff(
        &ab.narrow(1, last, 1).unwrap(),
        &ba.narrow(1, last, 1).unwrap(),
    );
    assert!(diff > 1e-4, "swapping the images changed nothing: {diff}");
}

#[test]
fn describe_together_chat_add_image_and_batched_sets_agree() {
    let (_dir, c) = setup();
    let (a, b) = (image("chelsea.png"), image("camera.png"));
    let q = greedy(10);
    let together = c
        .describe_together(&[a.clone(), b.clone()], &q)
        .unwrap()
        .answers;
    assert_eq!(together.len(), 1);
    assert_eq!(
        together[0],
        c.describe_together(&[a.clone(), b.clone()], &q)
            .unwrap()
            .answers[0]
    );

    // A chat holding the same two images asks the same prompt.
    let mut chat = c.chat(false);
    chat.add_image(&a).unwrap();
    chat.add_image(&b).unwrap();
    assert_eq!(chat.image_count(), 2);
    let answer = chat
        .ask(q.text(), &q.generation, &mut |_| Flow::Continue)
        .unwrap();
    assert_eq!(answer, together[0]);
    // /image replaces them all.
    chat.set_image(&a).unwrap();
    assert_eq!(chat.image_count(), 1);
    assert!(chat.history().is_empty());

    // Two sets answered as one batch equal each set alone.
    let swapped = c
        .describe_together(&[b.clone(), a.clone()], &q)
        .unwrap()
        .answers;
    let ea = c.encode_images(std::slice::from_ref(&a)).unwrap();
    let eb = c.encode_images(std::slice::from_ref(&b)).unwrap();
    let slot0 = Tensor::cat(&[&ea, &eb], 0).unwrap();
    let slot1 = Tensor::cat(&[&eb, &ea], 0).unwrap();
    let batched = c.answer_image_set(&[slot0, slot1], &q).unwrap().answers;
    assert_eq!(batched, [together[0].clone(), swapped[0].clone()]);
    // No images at all is an error for describe_together.
    assert!(c.describe_together(&[], &q).is_err());
}
