//! Continuous batching on the tiny golden model: rows of different prompts, rows joining and
//! leaving a running batch, and requests of one prompt sharing one prefill, each equal to the
//! request decoded alone.

use visualglm::generate::Flow;
use visualglm::EmbedSpan;
use visualglm_language::GenerationConfig;

use crate::generate::{greedy, setup};

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
            images: &[EmbedSpan::new(2, s.image.clone())],
            config: &cfg,
            invalid: &[],
        },
        GenRequest {
            ids: &text_ids,
            images: &[],
            config: &cfg,
            invalid: &[],
        },
        GenRequest {
            ids: &s.ids,
            images: &[EmbedSpan::new(2, s.other_image.clone())],
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

#[test]
fn rows_joining_and_leaving_a_running_batch_equal_each_alone() {
    use std::collections::HashMap;
    use visualglm::generate::{generate_many, BatchDecoder, GenRequest};
    let s = setup();
    let text_ids: Vec<u32> = vec![20, 21, 22, 23, 1001, 1004];
    // Longer than the running batch's positions when it joins: the running rows get padded.
    let long_ids: Vec<u32> = (20..100).chain([1001, 1004]).collect();
    let (c12, c3, c9, c5) = (greedy(12), greedy(3), greedy(9), greedy(5));
    let image_row = GenRequest {
        ids: &s.ids,
        images: &[EmbedSpan::new(2, s.image.clone())],
        config: &c12,
        invalid: &[],
    };
    let text_row = GenRequest {
        ids: &text_ids,
        images: &[],
        config: &c3,
        invalid: &[],
    };
    let other_row = GenRequest {
        ids: &s.ids,
        images: &[EmbedSpan::new(2, s.other_image.clone())],
        config: &c9,
        invalid: &[],
    };
    let long_row = GenRequest {
        ids: &long_ids,
        images: &[],
        config: &c5,
        invalid: &[],
    };
    let c2 = greedy(2);
    let late_row = GenRequest {
        ids: &text_ids[2..],
        images: &[],
        config: &c2,
        invalid: &[],
    };
    let mut decoder = BatchDecoder::new(&s.model);
    let mut got: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut streamed: HashMap<u64, Vec<u32>> = HashMap::new();
    let first = decoder.add(std::slice::from_ref(&image_row)).unwrap();
    run(&mut decoder, &mut got, &mut streamed, 3);
    assert_eq!(decoder.len(), 1);
    // A short prompt joins (it gets padded), then leaves after 3 tokens.
    let second = decoder.add(std::slice::from_ref(&text_row)).unwrap();
    assert_eq!(decoder.len(), 2);
    run(&mut decoder, &mut got, &mut streamed, 2);
    // Two at once, one of them longer than everything cached so far.
    let more = decoder.add(&[other_row.clone(), long_row.clone()]).unwrap();
    assert!(decoder.positions() >= long_ids.len());
    run(&mut decoder, &mut got, &mut streamed, 2);
    assert_eq!(got.len(), 1, "the text row ended after its 3 tokens");
    assert_eq!(decoder.len(), 3);
    assert_eq!(
        decoder.cache_rows(),
        4,
        "one ended row of four keeps its slot until half have ended"
    );
    // A merge drops the ended row.
    let late = decoder.add(std::slice::from_ref(&late_row)).unwrap();
    assert_eq!((decoder.len(), decoder.cache_rows()), (4, 4));
    while !decoder.is_idle() {
        run(&mut decoder, &mut got, &mut streamed, 1);
    }
    assert_eq!(decoder.positions(), 0);
    let ids: Vec<u64> = first
        .into_iter()
        .chain(second)
        .chain(more)
        .chain(late)
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    // 12 steps at most for the longest row, instead of 12 + 3 + 9 + 5 one after another.
    assert!(decoder.steps() <= 13, "{} steps", decoder.steps());
    for (id, r) in ids
        .iter()
        .zip([&image_row, &text_row, &other_row, &long_row, &late_row])
    {
        let alone = generate_many(&s.model, std::slice::from_ref(r), &mut |_, _| {
            Flow::Continue
        })
        .unwrap();
        assert_eq!(got[id], alone[0], "row {id}");
        assert_eq!(got[id].len(), r.config.max_new_tokens, "row {id}");
        assert_eq!(streamed[id], alone[0], "row {id} streamed");
    }
    // The golden reference has 8 tokens.
    assert_eq!(got[&0][..s.want.len()], s.want[..]);
}

/// Runs `steps` decode steps, recording each row's streamed tokens and final answer.
fn run(
    d: &mut visualglm::generate::BatchDecoder<'_>,
    got: &mut std::collections::HashMap<u64, Vec<u32>>,
    streamed: &mut std::collections::HashMap<u64, Vec<u32>>,
    steps: usize,
) {
    for _ in 0..steps {
        for f in d
            .step(&mut |id, t| {
                streamed.entry(id).or_default().push(t);
                Flow::Continue
            })
            .unwrap()
        {
            assert!(
                got.insert(f.id, f.tokens).is_none(),
                "row {} ended twice",
                f.id
            );
        }
    }
}

#[test]
fn requests_with_one_prompt_share_one_prefill_and_sample_as_alone() {
    use visualglm::generate::{generate_many, BatchDecoder, GenRequest};
    let s = setup();
    let sampled = |seed: u64| GenerationConfig {
        max_new_tokens: 10,
        do_sample: true,
        temperature: 1.5,
        top_p: 0.95,
        top_k: 0,
        seed,
        ..GenerationConfig::default()
    };
    let configs: Vec<GenerationConfig> = (0..3).map(sampled).collect();
    let image = [EmbedSpan::new(2, s.image.clone())];
    // The same image values in another tensor (as a server encodes each request's image).
    let copy = [EmbedSpan::new(2, s.image.copy().unwrap())];
    let other = [EmbedSpan::new(2, s.other_image.clone())];
    let cfg_other = sampled(0);
    let mut requests: Vec<GenRequest<'_>> = configs
        .iter()
        .enumerate()
        .map(|(i, config)| GenRequest {
            ids: &s.ids,
            images: if i == 1 { &copy } else { &image },
            config,
            invalid: &[],
        })
        .collect();
    requests.push(GenRequest {
        ids: &s.ids,
        images: &other,
        config: &cfg_other,
        invalid: &[],
    });
    let mut decoder = BatchDecoder::new(&s.model);
    let ids = decoder.add(&requests).unwrap();
    // Three requests ask one prompt: two prefill rows, not four.
    assert_eq!(decoder.prefill_rows(), 2);
    let mut got = vec![Vec::new(); requests.len()];
    while !decoder.is_idle() {
        for done in decoder.step(&mut |_, _| Flow::Continue).unwrap() {
            let i = ids.iter().position(|&id| id == done.id).unwrap();
            got[i] = done.tokens;
        }
    }
    for (i, r) in requests.iter().enumerate() {
        let alone = generate_many(&s.model, std::slice::from_ref(r), &mut |_, _| {
            Flow::Continue
        })
        .unwrap();
        assert_eq!(got[i], alone[0], "request {i}");
    }
    // Different seeds still give different samples from the shared prefill.
    assert!(got[0] != got[1] || got[1] != got[2], "{got:?}");
}
