//! `stop` sequences: the answer ends at the first one, without it, with `finish_reason`
//! `stop` and the generated tokens counted; a stream never sends text that turns out to be
//! part of one; batched requests each keep their own.

use std::time::Duration;

use serde_json::{json, Value};
use visualglm::pipeline::Captioner;
use visualglm_server::{BatchOptions, ServerConfig};

use super::helpers::{
    config, golden_captioner, library_tokens, release_greedy, start, stream_at, Client,
};

const QUERY: &str = "Hello there";
const MAX_TOKENS: usize = 16;

/// What the server must answer for `stops`, found independently from the library's tokens:
/// the shortest prefix of the tokens whose text (leading whitespace trimmed) contains a stop
/// sequence ends the answer there. Returns (content as streamed, tokens generated, whether a
/// stop sequence ended it).
fn expected(c: &Captioner, tokens: &[u32], stops: &[&str]) -> (String, usize, bool) {
    for n in 1..=tokens.len() {
        let t = c
            .tokenizer()
            .decode(&tokens[..n], &Default::default())
            .unwrap();
        let t = t.trim_start();
        if let Some(at) = stops.iter().filter_map(|s| t.find(s)).min() {
            return (t[..at].to_string(), n, true);
        }
    }
    let t = c.tokenizer().decode(tokens, &Default::default()).unwrap();
    (t.trim_start().to_string(), tokens.len(), false)
}

/// The prefix texts of `tokens` (leading whitespace trimmed), one per length.
fn prefixes(c: &Captioner, tokens: &[u32]) -> Vec<String> {
    (1..=tokens.len())
        .map(|n| {
            let t = c
                .tokenizer()
                .decode(&tokens[..n], &Default::default())
                .unwrap();
            t.trim_start().to_string()
        })
        .collect()
}

/// A stop sequence that spans two tokens: the last character of one token's text and the
/// first of the next's, where that is its first occurrence. A stream that did not hold back
/// the first character would send it before the second shows it is part of a stop.
fn spanning_stop(c: &Captioner, tokens: &[u32]) -> String {
    let texts = prefixes(c, tokens);
    let full = texts.last().unwrap().clone();
    for w in texts.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (Some(last), Some(next)) = (
            a.chars().last(),
            b.get(a.len()..).and_then(|r| r.chars().next()),
        ) else {
            continue;
        };
        if !b.starts_with(a.as_str()) || last.is_whitespace() || next.is_whitespace() {
            continue;
        }
        let stop = format!("{last}{next}");
        if full.find(&stop) == Some(a.len() - last.len_utf8()) {
            return stop;
        }
    }
    panic!("no stop sequence spans two tokens in {full:?}");
}

fn body(stop: Value) -> Value {
    json!({"messages": [{"role": "user", "content": QUERY}], "max_tokens": MAX_TOKENS,
           "temperature": 0, "stop": stop})
}

/// Checks one request, plain and streamed, against [`expected`].
fn check(client: &Client, c: &Captioner, tokens: &[u32], stops: &[&str], stop: Value) {
    let (want, n, stopped) = expected(c, tokens, stops);
    let finish = if stopped || tokens.len() < MAX_TOKENS {
        "stop"
    } else {
        "length"
    };
    let (status, v) = client.chat(&body(stop.clone()));
    assert_eq!(status, 200, "{stop}: {v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["content"], want.trim_end(), "{stop}: {v}");
    assert_eq!(choice["finish_reason"], finish, "{stop}: {v}");
    assert_eq!(v["usage"]["completion_tokens"], n, "{stop}: {v}");
    let (pieces, last) = client.stream(&body(stop.clone()));
    assert_eq!(
        pieces.concat(),
        want,
        "{stop}: the streamed pieces {pieces:?}"
    );
    assert_eq!(last["choices"][0]["finish_reason"], finish, "{stop}");
    assert_eq!(last["usage"]["completion_tokens"], n, "{stop}");
}

#[test]
fn stop_sequences_end_the_answer_plain_and_streamed() {
    let c = golden_captioner();
    let client = start(&c, config());
    let (tokens, _) = library_tokens(&c, QUERY, None, &release_greedy(MAX_TOKENS));
    assert_eq!(tokens.len(), MAX_TOKENS, "the test needs a long answer");
    let full = prefixes(&c, &tokens).pop().unwrap();

    // A stop spanning two tokens: the answer ends before it, and the stream never sent its
    // first character.
    let span = spanning_stop(&c, &tokens);
    let (want, n, stopped) = expected(&c, &tokens, &[&span]);
    assert!(stopped && n > 1 && n < MAX_TOKENS, "{span:?} in {full:?}");
    check(&client, &c, &tokens, &[&span], json!(span));

    // An array: the earliest of its sequences wins, whichever comes first in the array.
    let chars: Vec<char> = full.chars().collect();
    let later: String = chars[chars.len() - 2..].iter().collect();
    assert!(
        full.find(&later) > full.find(&span),
        "{later:?} {span:?} in {full:?}"
    );
    assert_eq!(expected(&c, &tokens, &[&later, &span]).0, want);
    check(&client, &c, &tokens, &[&later, &span], json!([later, span]));
    check(&client, &c, &tokens, &[&later], json!([later]));

    // A sequence that never completes: what the stream held back is sent at the end.
    let last_char = full.chars().last().unwrap();
    let never = format!("{last_char}\u{2603}");
    let start_of_never = format!(
        "{}\u{2603}",
        &span[..span.chars().next().unwrap().len_utf8()]
    );
    assert!(!full.contains('\u{2603}'));
    for stop in [never, start_of_never] {
        check(&client, &c, &tokens, &[&stop], json!([stop]));
        let (status, v) = client.chat(&body(json!(stop)));
        assert_eq!(status, 200);
        assert_eq!(v["choices"][0]["message"]["content"], full.trim_end());
    }

    // A stop at the very start leaves an empty answer.
    let first = full.chars().next().unwrap().to_string();
    check(&client, &c, &tokens, &[&first], json!(first));
}

#[test]
fn batched_requests_each_keep_their_own_stop_sequences() {
    let c = golden_captioner();
    // A long window: requests sent together are prefilled and decoded together.
    let client = start(
        &c,
        ServerConfig {
            batch: BatchOptions {
                max_batch: 4,
                window: Duration::from_millis(400),
                ..BatchOptions::default()
            },
            ..config()
        },
    );
    let (tokens, _) = library_tokens(&c, QUERY, None, &release_greedy(MAX_TOKENS));
    let full = prefixes(&c, &tokens).pop().unwrap();
    let span = spanning_stop(&c, &tokens);
    let late: String = full
        .chars()
        .skip(full.chars().count() * 3 / 4)
        .take(1)
        .collect();
    let cases: Vec<(Vec<String>, bool)> = vec![
        (vec![span.clone()], false),
        (vec![late.clone()], true),
        (vec![], false),
        (vec!["\u{2603}".into(), span.clone()], true),
    ];
    let handles: Vec<_> = cases
        .iter()
        .cloned()
        .map(|(stops, stream)| {
            let (agent, base) = (client.agent.clone(), client.base.clone());
            std::thread::spawn(move || {
                let mut b = body(json!(stops));
                if stream {
                    b["stream"] = json!(true);
                    let (pieces, last) = stream_at(&agent, &base, &b);
                    (pieces.concat(), last["usage"]["completion_tokens"].clone())
                } else {
                    let v: Value = agent
                        .post(&format!("{base}/v1/chat/completions"))
                        .send_json(b)
                        .unwrap()
                        .into_json()
                        .unwrap();
                    let content = v["choices"][0]["message"]["content"].clone();
                    (
                        content.as_str().unwrap().to_string(),
                        v["usage"]["completion_tokens"].clone(),
                    )
                }
            })
        })
        .collect();
    for ((stops, stream), h) in cases.iter().zip(handles) {
        let (got, n) = h.join().unwrap();
        let stops: Vec<&str> = stops.iter().map(String::as_str).collect();
        let (want, want_n, _) = expected(&c, &tokens, &stops);
        let want = if *stream {
            want
        } else {
            want.trim_end().into()
        };
        assert_eq!(got, want, "{stops:?}");
        assert_eq!(n, want_n, "{stops:?}");
    }
    let (_, health) = client.get("/health");
    assert!(
        health["peak_batch"].as_u64().unwrap() >= 2,
        "the requests were not batched: {health}"
    );
}
