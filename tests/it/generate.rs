//! Generation on the tiny golden model: greedy, batched, beam search and seeded sampling.

use crate::support;
use visualglm::EmbedSpan;

use candle_core::Tensor;
use support::{fixture, ids_u32};
use visualglm::generate::{beam_search, generate, Flow};
use visualglm::VisualGlm;
use visualglm_language::GenerationConfig;

struct Setup {
    model: VisualGlm,
    ids: Vec<u32>,
    image: Tensor,
    want: Vec<u32>,
    other_image: Tensor,
}

fn setup() -> Setup {
    let model = support::golden_model();
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
        &[EmbedSpan::new(2, s.image.clone())],
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
        &[EmbedSpan::new(2, both.clone())],
        &cfg,
        &[],
        &mut |_, _| Flow::Continue,
    )
    .unwrap();
    let single_other = generate(
        &s.model,
        &s.ids,
        &[EmbedSpan::new(2, s.other_image.clone())],
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
    let beam1 = beam_search(
        &s.model,
        &s.ids,
        &[EmbedSpan::new(2, s.image.clone())],
        &cfg,
        &[],
    )
    .unwrap();
    assert_eq!(beam1, s.want);
    let cfg3 = GenerationConfig {
        num_beams: 3,
        ..cfg
    };
    let beam3 = beam_search(
        &s.model,
        &s.ids,
        &[EmbedSpan::new(2, s.image.clone())],
        &cfg3,
        &[],
    )
    .unwrap();
    assert!(!beam3.is_empty());
}

/// `log_softmax` of one row in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row
        .iter()
        .map(|&l| l as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let lse = max
        + row
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    row.iter().map(|&l| l as f64 - lse).collect()
}

/// One complete answer of the exhaustive enumeration.
struct Answer {
    /// Its tokens, without `<eop>`.
    tokens: Vec<u32>,
    /// Summed log-probability of the tokens.
    tokens_logp: f64,
    /// Log-probability of the `<eop>` that ended it (`None`: it ran out of budget).
    eop_logp: Option<f64>,
}

/// The logits of the token after `ids` (with the setup's image), recomputed from scratch.
fn next_logits(s: &Setup, ids: &[u32]) -> Vec<f32> {
    let logits = s
        .model
        .prompt_logits(ids, &[EmbedSpan::new(2, s.image.clone())])
        .unwrap();
    let n = logits.dim(1).unwrap();
    logits
        .narrow(1, n - 1, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Every answer of at most `cfg.max_new_tokens` tokens over the ids that `invalid` leaves,
/// with logits recomputed from scratch for every prefix and adjusted as the sampler does.
fn enumerate_answers(
    s: &Setup,
    cfg: &GenerationConfig,
    invalid: &[std::ops::Range<usize>],
) -> Vec<Answer> {
    let eos = s.model.config().glm.eos_id();
    let adjust = visualglm_language::Sampler::new(cfg.clone(), invalid.to_vec());
    let mut answers = Vec::new();
    // Depth-first over prefixes: (tokens, summed log-prob).
    let mut stack = vec![(Vec::<u32>::new(), 0f64)];
    while let Some((prefix, score)) = stack.pop() {
        if prefix.len() == cfg.max_new_tokens {
            answers.push(Answer {
                tokens: prefix,
                tokens_logp: score,
                eop_logp: None,
            });
            continue;
        }
        let ids: Vec<u32> = s.ids.iter().chain(&prefix).copied().collect();
        let mut row = next_logits(s, &ids);
        adjust.adjust(&mut row, &prefix);
        for (t, lp) in log_softmax(&row).into_iter().enumerate() {
            if lp == f64::NEG_INFINITY {
                continue;
            }
            if t as u32 == eos {
                answers.push(Answer {
                    tokens: prefix.clone(),
                    tokens_logp: score,
                    eop_logp: Some(lp),
                });
            } else {
                let mut next = prefix.clone();
                next.push(t as u32);
                stack.push((next, score + lp));
            }
        }
    }
    answers
}

/// The answer with the highest `score`.
fn best_by(answers: &[Answer], score: impl Fn(&Answer) -> f64) -> Vec<u32> {
    answers
        .iter()
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .expect("some answer is possible")
        .tokens
        .clone()
}

/// A way to score a complete answer.
type Scoring = fn(&Answer) -> f64;

/// The scoring the beam search documents: summed log-probability (of `<eop>` too, when the
/// answer ends with it) over the token count without `<eop>` (at least 1).
fn documented_score(a: &Answer) -> f64 {
    (a.tokens_logp + a.eop_logp.unwrap_or(0.0)) / a.tokens.len().max(1) as f64
}

#[test]
fn enough_beams_find_the_exhaustive_best_answer() {
    // With |V| allowed ids (<eop> among them) and answers of at most L tokens, |V|^(L−1) beams
    // keep every live hypothesis, so the beam search must return the enumerated best.
    let s = setup();
    let eos = s.model.config().glm.eos_id() as usize;
    let vocab = s.model.config().glm.vocab_size;
    // Other scorings a beam search might use: each must pick another answer in some case, so
    // that the test tells them from the documented one.
    let others: [(&str, Scoring); 3] = [
        ("unnormalised", |a| {
            a.tokens_logp + a.eop_logp.unwrap_or(0.0)
        }),
        ("<eop> counted in the length", |a| {
            (a.tokens_logp + a.eop_logp.unwrap_or(0.0))
                / (a.tokens.len() + usize::from(a.eop_logp.is_some())).max(1) as f64
        }),
        ("<eop> log-prob left out", |a| {
            a.tokens_logp / a.tokens.len().max(1) as f64
        }),
    ];
    let mut told_apart = [0usize; 3];
    let mut differs_from_greedy = 0;
    // Deterministic cases: 2–3 allowed ids plus <eop>, half taken in order of how close their
    // first-step logit is to <eop>'s, so that ending early competes with going on and the
    // length normalisation decides some cases.
    let first = next_logits(&s, &s.ids);
    let mut near_eos: Vec<usize> = (0..vocab).filter(|&t| t != eos).collect();
    near_eos.sort_by(|&a, &b| {
        (first[a] - first[eos])
            .abs()
            .total_cmp(&(first[b] - first[eos]).abs())
    });
    let mut pool = near_eos.into_iter();
    // And as many with ids drawn by a small LCG.
    let mut state = 12345u64;
    let mut drawn = std::iter::from_fn(|| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Some(((state >> 33) % 1000) as usize)
    })
    .filter(|&t| t != eos);
    for case in 0..24 {
        let (count, length) = if case % 3 == 2 {
            (2, 4)
        } else {
            (3 - case % 2, 3)
        };
        let (penalty, mut keep): (f32, Vec<usize>) = if case < 12 {
            (
                [1.0, 2.0, 4.0][case % 3],
                pool.by_ref().take(count).collect(),
            )
        } else {
            let mut ids = Vec::new();
            while ids.len() < count {
                let id = drawn.next().expect("endless");
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ([1.0, 1.2, 1.5][case % 3], ids)
        };
        keep.push(eos);
        keep.sort();
        // Everything but `keep` is invalid.
        let mut invalid = Vec::new();
        let mut start = 0;
        for &k in &keep {
            invalid.push(start..k);
            start = k + 1;
        }
        invalid.push(start..vocab);
        let cfg = GenerationConfig {
            max_new_tokens: length,
            repetition_penalty: penalty,
            num_beams: keep.len().pow(length as u32 - 1),
            ..GenerationConfig::greedy()
        };
        let answers = enumerate_answers(&s, &cfg, &invalid);
        let want = best_by(&answers, documented_score);
        let got = beam_search(
            &s.model,
            &s.ids,
            &[EmbedSpan::new(2, s.image.clone())],
            &cfg,
            &invalid,
        )
        .unwrap();
        assert_eq!(
            got, want,
            "ids {keep:?}, length {length}, penalty {penalty}"
        );
        for (k, (_, score)) in others.iter().enumerate() {
            told_apart[k] += usize::from(best_by(&answers, score) != want);
        }
        let one = GenerationConfig {
            num_beams: 1,
            ..cfg
        };
        let greedy = beam_search(
            &s.model,
            &s.ids,
            &[EmbedSpan::new(2, s.image.clone())],
            &one,
            &invalid,
        )
        .unwrap();
        differs_from_greedy += usize::from(greedy != want);
    }
    // The cases have power: some best answers are not greedy, and each other scoring differs.
    assert!(
        differs_from_greedy > 0,
        "every exhaustive best is the greedy answer"
    );
    for ((name, _), n) in others.iter().zip(told_apart) {
        assert!(
            n > 0,
            "no case tells the {name} scoring from the documented one"
        );
    }
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
            &[EmbedSpan::new(2, s.image.clone())],
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
        &[EmbedSpan::new(2, s.image.clone())],
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
        &[EmbedSpan::new(2, s.image.clone())],
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
        &[EmbedSpan::new(2, s.image.clone())],
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
