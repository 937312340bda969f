//! `visualglm_server`'s continuous batching on the tiny golden model: a request that arrives
//! while another is decoding joins it instead of waiting for it to end, and a full queue is
//! refused with 503.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::json;
use visualglm::pipeline::Captioner;
use visualglm_server::{BatchOptions, Scheduler, Server, ServerConfig};

use crate::server_lora::{ask, base_model, captioner, chat_body, library_answer, read, NAME};
use crate::support::{golden, tiny_tokenizer};

/// A streamed request held open by the test: its budget is the model's whole context (about
/// 300 times a short request's), and it ends when the test closes it, not by itself.
struct HeldStream {
    close: std::sync::mpsc::Sender<()>,
    handle: std::thread::JoinHandle<HeldEnd>,
}

/// How a [`HeldStream`] ended.
#[derive(Debug)]
struct HeldEnd {
    /// Content pieces received.
    pieces: usize,
    /// When the client stopped reading.
    at: Instant,
    /// Whether the server ended the stream (`[DONE]`) before the test closed it.
    finished: bool,
}

impl HeldStream {
    /// Starts the request; returns once its first token has arrived.
    fn start(agent: &ureq::Agent, base: &str) -> Self {
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let (close, close_rx) = std::sync::mpsc::channel::<()>();
        let (agent, base) = (agent.clone(), base.to_string());
        let handle = std::thread::spawn(move || {
            let body = json!({"messages": [{"role": "user", "content": "Tell me a long story"}],
                              "max_tokens": 1900, "temperature": 0, "repetition_penalty": 1.0,
                              "stream": true});
            let r = agent
                .post(&format!("{base}/v1/chat/completions"))
                .send_json(body)
                .unwrap();
            let mut pieces = 0;
            let mut finished = false;
            for line in BufReader::new(r.into_reader()).lines() {
                let line = line.unwrap();
                if line == "data: [DONE]" {
                    finished = true;
                    break;
                }
                if line.contains("\"content\":\"") {
                    pieces += 1;
                    if pieces == 1 {
                        let _ = first_tx.send(());
                    }
                }
                if close_rx.try_recv().is_ok() {
                    break; // dropping the reader closes the connection
                }
            }
            HeldEnd {
                pieces,
                at: Instant::now(),
                finished,
            }
        });
        first_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the long request never started");
        Self { close, handle }
    }

    /// Closes the connection (the server then stops decoding it) and says how it ended.
    fn close(self) -> HeldEnd {
        let _ = self.close.send(());
        self.handle.join().unwrap()
    }

    /// Reads the stream to its end.
    fn finish(self) -> HeldEnd {
        drop(self.close);
        self.handle.join().unwrap()
    }
}

fn scheduler_server(scheduler: Scheduler, c: &Captioner) -> Server {
    Server::start(
        c.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            model_name: NAME.into(),
            batch: BatchOptions {
                max_batch: 4,
                scheduler,
                ..BatchOptions::default()
            },
            ..ServerConfig::default()
        },
    )
    .unwrap()
}

#[test]
fn a_request_joins_the_running_batch_instead_of_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let c = captioner(base_model(), &tok);
    let image = golden("images/camera.png");
    let query = "What is in the picture?";
    let want = library_answer(&c, query, Some(&image), 6);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();

    // Continuous: the short request is answered while the long one is still decoding.
    let server = scheduler_server(Scheduler::Continuous, &c);
    let base = format!("http://{}", server.addr());
    let long = HeldStream::start(&agent, &base);
    let (_, answer) = ask(
        &agent,
        &base,
        &chat_body(None, query, Some(&image), 6),
        false,
    );
    let answered = Instant::now();
    let (_, h) = read(agent.get(&format!("{base}/health")).call());
    assert_eq!(answer, want, "a joining request gets its own answer");
    assert_eq!(h["in_flight"], 1, "the long request still runs: {h}");
    assert_eq!(h["peak_batch"], 2, "{h}");
    let end = long.close();
    assert!(!end.finished, "the held request ended by itself: {end:?}");
    assert!(answered < end.at);
    // Closing the connection stops its decoding.
    let start = Instant::now();
    loop {
        let (_, h) = read(agent.get(&format!("{base}/health")).call());
        if h["in_flight"] == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still decoding: {h}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.stop().unwrap();

    // Static: the same request waits until the long one has ended.
    let server = scheduler_server(Scheduler::Static, &c);
    let base = format!("http://{}", server.addr());
    let long = HeldStream::start(&agent, &base);
    let (_, answer) = ask(
        &agent,
        &base,
        &chat_body(None, query, Some(&image), 6),
        false,
    );
    assert_eq!(answer, want);
    let end = long.finish();
    assert!(end.finished && end.pieces > 100, "{end:?}");
    let (_, h) = read(agent.get(&format!("{base}/health")).call());
    assert_eq!(
        h["peak_batch"], 1,
        "static batching let the request join: {h}"
    );
    assert_eq!(h["batches"], 2, "{h}");
    server.stop().unwrap();
}

#[test]
fn a_full_queue_is_refused_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let c = captioner(base_model(), &tiny_tokenizer(dir.path()));
    // One request decodes at a time and one may wait: a third is refused while both are there.
    let server = Server::start(
        c.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            model_name: NAME.into(),
            batch: BatchOptions {
                max_batch: 1,
                max_queue: 1,
                ..BatchOptions::default()
            },
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let base = format!("http://{}", server.addr());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let query = "What is in the picture?";
    let want = library_answer(&c, query, None, 6);
    let long = HeldStream::start(&agent, &base);
    let queued = {
        let (agent, base) = (agent.clone(), base.clone());
        std::thread::spawn(move || ask(&agent, &base, &chat_body(None, query, None, 6), false))
    };
    let start = Instant::now();
    loop {
        let (_, h) = read(agent.get(&format!("{base}/health")).call());
        if h["in_flight"] == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never queued: {h}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, body) = read(
        agent
            .post(&format!("{base}/v1/chat/completions"))
            .send_json(chat_body(None, query, None, 6)),
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("busy"),
        "{body}"
    );
    // Closing the held request lets the queued one run, with its own answer.
    let end = long.close();
    assert!(!end.finished, "the held request ended by itself: {end:?}");
    let (_, answer) = queued.join().unwrap();
    assert_eq!(answer, want);
    server.stop().unwrap();
}
