//! The image-embedding cache: a repeated image skips the encoder, answers are the same with
//! and without it, clones with adapters share it, and it never exceeds its bound.

use std::sync::Arc;

use crate::support::{golden, golden_captioner, tiny_tokenizer};
use visualglm::image_cache::ImageCache;
use visualglm::pipeline::Question;
use visualglm_language::GenerationConfig;
use visualglm_vision::decode::load_image;

fn images() -> Vec<image::DynamicImage> {
    ["chelsea.png", "astronaut.png"]
        .iter()
        .map(|n| load_image(golden(&format!("images/{n}")), &Default::default()).unwrap())
        .collect()
}

fn question() -> Question {
    Question {
        generation: GenerationConfig {
            max_new_tokens: 8,
            ..GenerationConfig::greedy()
        },
        ..Question::default()
    }
}

#[test]
fn a_repeated_image_skips_the_encoder_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let plain = golden_captioner(&tiny_tokenizer(dir.path()));
    let mut cached = plain.clone();
    let cache = Arc::new(ImageCache::with_mib(16));
    cached.set_image_cache(Some(cache.clone()));
    let imgs = images();
    let (a, b) = (&imgs[0], &imgs[1]);

    let first = cached
        .describe_batch(std::slice::from_ref(a), &question())
        .unwrap();
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries), (0, 1, 1));
    let again = cached
        .describe_batch(std::slice::from_ref(a), &question())
        .unwrap();
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(first.answers, again.answers);
    assert!(
        again.timings.encode_ms < first.timings.encode_ms,
        "a hit costs no encoder time: {} vs {} ms",
        again.timings.encode_ms,
        first.timings.encode_ms
    );
    // The embeddings are the encoder's, bit for bit.
    let direct = plain.encode_images(std::slice::from_ref(a)).unwrap();
    let from_cache = cached.encode_images(std::slice::from_ref(a)).unwrap();
    let diff = (direct - from_cache)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);

    // A batch with a new image and a repeated one: one more miss (the repeat in the batch is
    // encoded once), answers as without the cache.
    let batch = [b.clone(), a.clone(), b.clone()];
    let before = cache.stats();
    let with = cached.describe_batch(&batch, &question()).unwrap().answers;
    let after = cache.stats();
    assert_eq!(after.misses - before.misses, 1);
    assert_eq!(after.hits - before.hits, 1);
    let without = plain.describe_batch(&batch, &question()).unwrap().answers;
    assert_eq!(with, without);

    // A chat session of the same captioner finds the image there too.
    let chat_images_before = cache.stats().hits;
    let mut chat = cached.chat(false);
    chat.set_image(a).unwrap();
    assert_eq!(cache.stats().hits, chat_images_before + 1);
}

#[test]
fn the_cache_never_exceeds_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = golden_captioner(&tiny_tokenizer(dir.path()));
    let one = c.encode_images(&images()[..1]).unwrap();
    let per_image = one.elem_count() * one.dtype().size_in_bytes();
    // Room for one image only.
    let cache = Arc::new(ImageCache::new(per_image + per_image / 2));
    c.set_image_cache(Some(cache.clone()));
    let imgs = images();
    for round in 0..3 {
        for img in &imgs {
            c.encode_images(std::slice::from_ref(img)).unwrap();
            let s = cache.stats();
            assert!(s.bytes <= s.capacity_bytes, "round {round}: {s:?}");
            assert_eq!(s.entries, 1);
        }
    }
    // Alternating two images through a one-image cache: every lookup misses.
    assert_eq!(cache.stats().hits, 0);
    assert_eq!(cache.stats().misses, 6);
}
