//! `GET /metrics`: after a known mix of requests, the Prometheus counters say exactly what
//! happened (requests by route and status, tokens, time to first token, decode batches,
//! image cache hits and misses), in the text exposition format.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use visualglm::image_cache::ImageCache;

use super::helpers::{chelsea, config, golden_captioner, image_message, start, Client};

/// The samples of `/metrics`: `name{labels}` → value; also checks the content type and that
/// every sample's metric has a `# TYPE` line.
fn scrape(client: &Client) -> HashMap<String, f64> {
    let r = client
        .agent
        .get(&format!("{}/metrics", client.base))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.content_type().starts_with("text/plain"),
        "{}",
        r.content_type()
    );
    let text = r.into_string().unwrap();
    let mut typed = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            typed.push(t.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap();
        let base = key.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                base.strip_suffix(s)
                    .filter(|f| typed.iter().any(|t| t == f))
            })
            .unwrap_or(base);
        assert!(typed.iter().any(|t| t == family), "no # TYPE for {line}");
        samples.insert(key.to_string(), value.parse::<f64>().unwrap());
    }
    samples
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample `{key}` in {m:?}"))
}

fn requests(m: &HashMap<String, f64>, route: &str, status: u16) -> f64 {
    get(
        m,
        &format!("visualglm_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
    )
}

#[test]
fn metrics_count_requests_tokens_batches_and_image_cache_use() {
    let mut c = golden_captioner();
    c.set_image_cache(Some(Arc::new(ImageCache::with_mib(16))));
    let client = start(&c, config());
    let before = scrape(&client);
    assert_eq!(get(&before, "visualglm_completion_tokens_total"), 0.0);
    assert_eq!(get(&before, "visualglm_image_cache_misses_total"), 0.0);

    let image = chelsea();
    let ask = |msg: Value| json!({"messages": [msg], "max_tokens": 3, "temperature": 0});
    let mut prompt = 0;
    let mut completion = 0;
    for _ in 0..2 {
        let (status, v) = client.chat(&ask(image_message("What is it?", &image)));
        assert_eq!(status, 200, "{v}");
        prompt += v["usage"]["prompt_tokens"].as_u64().unwrap();
        completion += v["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let (_, last) = client.stream(&ask(json!({"role": "user", "content": "Hello there"})));
    prompt += last["usage"]["prompt_tokens"].as_u64().unwrap();
    completion += last["usage"]["completion_tokens"].as_u64().unwrap();
    let (status, _) = client.chat(&json!({"messages": []}));
    assert_eq!(status, 400);
    assert_eq!(client.get("/health").0, 200);
    assert_eq!(client.get("/v1/models/tiny").0, 200);
    assert_eq!(client.get("/nowhere").0, 404);

    // A stream's latency is observed when its body is dropped, just after its last event.
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = scrape(&client);
        let timed = get(&m, "visualglm_http_request_duration_seconds_count");
        // Everything above, the first scrape included (not the scrape in progress).
        if timed >= 8.0 || Instant::now() > deadline {
            assert_eq!(timed, 8.0, "{m:?}");
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(requests(&m, "/v1/chat/completions", 200), 3.0);
    assert_eq!(requests(&m, "/v1/chat/completions", 400), 1.0);
    assert_eq!(requests(&m, "/health", 200), 1.0);
    assert_eq!(requests(&m, "/v1/models/{id}", 200), 1.0);
    assert_eq!(requests(&m, "unmatched", 404), 1.0);
    assert!(requests(&m, "/metrics", 200) >= 1.0);
    assert_eq!(get(&m, "visualglm_prompt_tokens_total"), prompt as f64);
    assert_eq!(
        get(&m, "visualglm_completion_tokens_total"),
        completion as f64
    );
    assert!(completion > 0);
    // One first token per answered completion.
    assert_eq!(get(&m, "visualglm_time_to_first_token_seconds_count"), 3.0);
    let inf = "visualglm_time_to_first_token_seconds_bucket{le=\"+Inf\"}";
    assert_eq!(get(&m, inf), 3.0);
    // One batch size per decode step; requests went one at a time, so each was 1 row.
    let steps = get(&m, "visualglm_decode_steps_total");
    assert!(steps > 0.0);
    assert_eq!(get(&m, "visualglm_decode_batch_size_count"), steps);
    assert_eq!(get(&m, "visualglm_decode_batch_size_sum"), steps);
    assert_eq!(
        get(&m, "visualglm_decode_batch_size_bucket{le=\"1\"}"),
        steps
    );
    assert_eq!(get(&m, "visualglm_queue_depth"), 0.0);
    assert_eq!(get(&m, "visualglm_requests_running"), 0.0);
    // The same image twice: encoded once.
    assert_eq!(get(&m, "visualglm_image_cache_misses_total"), 1.0);
    assert_eq!(get(&m, "visualglm_image_cache_hits_total"), 1.0);
    assert_eq!(get(&m, "visualglm_image_cache_entries"), 1.0);
    assert!(get(&m, "visualglm_image_cache_bytes") > 0.0);
    // One row prefilled per request so far; the three answers of an `n: 3` request share one.
    assert_eq!(get(&m, "visualglm_prefill_rows_total"), 3.0);
    let mut three = ask(image_message("What is it?", &image));
    three["n"] = json!(3);
    let (status, v) = client.chat(&three);
    assert_eq!(status, 200, "{v}");
    let m = scrape(&client);
    assert_eq!(get(&m, "visualglm_prefill_rows_total"), 4.0);
}
