//! Benchmark: score 100k synthetic candidates against 500k references (5 per image).
//!
//! `cargo run --release -p visualglm-eval --example bench_score [-- N_IMAGES]`

use std::time::Instant;

use visualglm_eval::{score_captions, CaptionItem, ImageId, Tokenizer};

/// xorshift64* generator (deterministic, no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn make_words(rng: &mut Rng, count: usize) -> Vec<String> {
    const SYL: [&str; 24] = [
        "ka", "lo", "mi", "ra", "te", "su", "no", "be", "di", "fa", "go", "hu", "ji", "ke", "li",
        "ma", "ne", "po", "qu", "ri", "sa", "to", "vu", "ze",
    ];
    (0..count)
        .map(|_| {
            let n = 2 + rng.below(2);
            (0..n).map(|_| SYL[rng.below(SYL.len())]).collect()
        })
        .collect()
}

fn caption(rng: &mut Rng, subject: &str, object: &str, words: &[Vec<String>; 3]) -> String {
    let [adjs, verbs, nouns] = words;
    let pick = |rng: &mut Rng, v: &[String]| v[rng.below(v.len())].clone();
    let mut parts = vec![
        "A".to_string(),
        pick(rng, adjs),
        subject.to_string(),
        pick(rng, verbs),
        "on".into(),
        "a".into(),
        pick(rng, adjs),
        object.to_string(),
    ];
    if rng.below(2) == 0 {
        parts.push("near".into());
        parts.push("the".into());
        parts.push(pick(rng, nouns));
    }
    if rng.below(3) == 0 {
        parts.push("with".into());
        parts.push(pick(rng, adjs));
        parts.push(format!("{},", pick(rng, nouns)));
        parts.push("while".into());
        parts.push("people".into());
        parts.push("watch".into());
    }
    let mut text = parts.join(" ");
    text.push('.');
    text
}

fn main() {
    let n_images: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let words = [
        make_words(&mut rng, 800),
        make_words(&mut rng, 600),
        make_words(&mut rng, 3000),
    ];
    let t0 = Instant::now();
    let items: Vec<CaptionItem> = (0..n_images)
        .map(|i| {
            let subject = words[2][rng.below(words[2].len())].clone();
            let object = words[2][rng.below(words[2].len())].clone();
            let references = (0..5)
                .map(|_| caption(&mut rng, &subject, &object, &words))
                .collect();
            CaptionItem {
                image_id: ImageId::Int(i as i64),
                candidate: caption(&mut rng, &subject, &object, &words),
                references,
            }
        })
        .collect();
    let generated = t0.elapsed();
    let t1 = Instant::now();
    let report = match score_captions(&items, Tokenizer::Ptb) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let scored = t1.elapsed();
    println!(
        "scored {} candidates against {} references in {:.2} s ({} threads; generation {:.2} s)",
        report.num_images,
        report.num_references,
        scored.as_secs_f64(),
        rayon::current_num_threads(),
        generated.as_secs_f64()
    );
    println!("{}", report.to_markdown());
}
