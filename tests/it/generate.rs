//! Generation on the tiny golden model: greedy, batched, beam search and seeded sampling.

use crate::support;
use visualglm::EmbedSpan;

use candle_core::Tensor;
use support::{fixture, ids_u32};
use visualglm::generate::{beam_search, generate, Flow};
use visualglm::VisualGlm;
use visualglm_language::GenerationConfig;

pub(crate) struct Setup {
    pub(crate) model: VisualGlm,
    pub(crate) ids: Vec<u32>,
    pub(crate) image: Tensor,
    pub(crate) want: Vec<u32>,
    pub(crate) other_image: Tensor,
}

pub(crate) fn setup() -> Setup {
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

pub(crate) fn greedy(n: usize) -> GenerationConfig {
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
