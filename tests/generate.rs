//! Generation on the tiny golden model: greedy, batched, beam search and seeded sampling.

mod support;

use candle_core::{DType, Device, Tensor};
use support::{fixture, golden, ids_u32};
use visualglm::generate::{beam_search, generate, Flow};
use visualglm::{LoadOptions, VisualGlm};
use visualglm_language::GenerationConfig;

struct Setup {
    model: VisualGlm,
    ids: Vec<u32>,
    image: Tensor,
    want: Vec<u32>,
    other_image: Tensor,
}

fn setup() -> Setup {
    let model = VisualGlm::load_with(
        &golden("checkpoints/hf"),
        &Device::Cpu,
        DType::F32,
        &LoadOptions::default(),
    )
    .unwrap();
    let g = fixture("model/golden_hf.safetensors");
    let ids = ids_u32(&g["input_ids"]);
    let want = ids_u32(&g["gen_ids"]);
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let other = fixture("preprocess/astronaut.safetensors");
    let other_image = model.encode_image(&other["pixel_values"]).unwrap();
    Setup {
        model,
        ids,
        image,
        want,
        other_image,
    }
}

fn greedy(n: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: n,
        ..GenerationConfig::greedy()
    }
}

#[test]
fn greedy_generate_matches_reference_and_streams_each_step() {
    let s = setup();
    let mut steps = 0;
    let out = generate(
        &s.model,
        &s.ids,
        Some((&s.image, 2)),
        &greedy(s.want.len()),
        &[],
        &mut |row, _| {
            steps += 1;
            assert_eq!(row, 0);
            Flow::Continue
        },
    )
    .unwrap();
    assert_eq!(out, vec![s.want.clone()]);
    assert_eq!(steps, s.want.len());
}

#[test]
fn batched_rows_equal_single_runs() {
    let s = setup();
    let both = Tensor::cat(&[&s.image, &s.other_image], 0).unwrap();
    let cfg = greedy(s.want.len());
    let batched = generate(
        &s.model,
        &s.ids,
        Some((&both, 2)),
        &cfg,
        &[],
        &mut |_, _| Flow::Continue,
    )
    .unwrap();
    let single_other = generate(
        &s.model,
        &s.ids,
        Some((&s.other_image, 2)),
        &cfg,
        &[],
        &mut |_, _| Flow::Continue,
    )
    .unwrap();
    assert_eq!(batched[0], s.want);
    assert_eq!(batched[1], single_other[0]);
    assert_ne!(
        batched[0], batched[1],
        "different images give different answers"
    );
}

#[test]
fn one_beam_equals_greedy_and_three_beams_give_an_answer() {
    let s = setup();
    let cfg = GenerationConfig {
        num_beams: 1,
        ..greedy(s.want.len())
    };
    let beam1 = beam_search(&s.model, &s.ids, Some((&s.image, 2)), &cfg, &[]).unwrap();
    assert_eq!(beam1, s.want);
    let cfg3 = GenerationConfig {
        num_beams: 3,
        ..cfg
    };
    let beam3 = beam_search(&s.model, &s.ids, Some((&s.image, 2)), &cfg3, &[]).unwrap();
    assert!(!beam3.is_empty());
}

#[test]
fn seeded_sampling_is_reproducible_and_the_seed_matters() {
    let s = setup();
    let run = |seed: u64| {
        let cfg = GenerationConfig {
            max_new_tokens: 12,
            do_sample: true,
            temperature: 1.5,
            top_p: 0.95,
            top_k: 0,
            seed,
            ..GenerationConfig::default()
        };
        generate(
            &s.model,
            &s.ids,
            Some((&s.image, 2)),
            &cfg,
            &[],
            &mut |_, _| Flow::Continue,
        )
        .unwrap()
    };
    assert_eq!(run(1), run(1));
    assert!((2..12).any(|seed| run(seed) != run(1)));
}

#[test]
fn invalid_ranges_and_stop_are_honoured() {
    let s = setup();
    // Forbid the greedy first token: the first token changes.
    let first = s.want[0] as usize;
    let out = generate(
        &s.model,
        &s.ids,
        Some((&s.image, 2)),
        &greedy(3),
        std::slice::from_ref(&(first..first + 1)),
        &mut |_, _| Flow::Continue,
    )
    .unwrap();
    assert_ne!(out[0][0], s.want[0]);
    // The callback can stop generation.
    let out = generate(
        &s.model,
        &s.ids,
        Some((&s.image, 2)),
        &greedy(8),
        &[],
        &mut |_, _| Flow::Stop,
    )
    .unwrap();
    assert_eq!(out[0].len(), 1);
}

#[test]
fn over_long_prompt_is_a_clear_error() {
    let s = setup();
    let cfg = GenerationConfig {
        max_length: 10,
        ..greedy(4)
    };
    let err = generate(
        &s.model,
        &s.ids,
        Some((&s.image, 2)),
        &cfg,
        &[],
        &mut |_, _| Flow::Continue,
    )
    .unwrap_err();
    assert!(err.to_string().contains("maximum length"), "{err}");
}

#[test]
fn different_prompts_batched_equal_each_alone() {
    use visualglm::generate::{generate_many, GenRequest};
    let s = setup();
    let cfg = greedy(6);
    // A shorter text-only prompt and the image prompt, decoded together.
    let text_ids: Vec<u32> = vec![20, 21, 22, 23, 1001, 1004];
    let requests = [
        GenRequest {
            ids: &s.ids,
            image: Some(&s.image),
            pre_image: 2,
            config: &cfg,
            invalid: &[],
        },
        GenRequest {
            ids: &text_ids,
            image: None,
            pre_image: 0,
            config: &cfg,
            invalid: &[],
        },
        GenRequest {
            ids: &s.ids,
            image: Some(&s.other_image),
            pre_image: 2,
            config: &cfg,
            invalid: &[],
        },
    ];
    let batched = generate_many(&s.model, &requests, &mut |_, _| Flow::Continue).unwrap();
    for (i, r) in requests.iter().enumerate() {
        let alone = generate_many(&s.model, std::slice::from_ref(r), &mut |_, _| {
            Flow::Continue
        })
        .unwrap();
        assert_eq!(batched[i], alone[0], "request {i}");
    }
    assert_eq!(batched[0], s.want[..6].to_vec());
    // Stopping one request leaves the others running.
    let stopped = generate_many(&s.model, &requests, &mut |row, _| {
        if row == 1 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    })
    .unwrap();
    assert_eq!(stopped[1].len(), 1);
    assert_eq!(stopped[0], batched[0]);
}
