//! Server-sent events for a streaming chat completion: a first chunk with the role, one
//! chunk per new piece of text, a last chunk with `finish_reason` and `usage`, then
//! `data: [DONE]`. Dropping the stream (the client went away) cancels the request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::Event as SseEvent;
use futures_util::Stream;
use tokio::sync::mpsc::UnboundedReceiver;

use super::types::{ChatCompletionChunk, ChunkChoice, Delta, FinishReason, Usage};
use super::worker::Event;
use visualglm::pipeline::{Captioner, TextStream};

/// What every chunk of one answer shares.
#[derive(Debug, Clone)]
pub struct ChunkHeader {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: String,
    /// Prompt tokens, for the usage of the last chunk.
    pub prompt_tokens: usize,
    /// Also send a usage-only chunk before `[DONE]` (`stream_options.include_usage`).
    pub include_usage: bool,
}

impl ChunkHeader {
    fn chunk(&self, delta: Delta, finish: Option<FinishReason>, usage: Option<Usage>) -> SseEvent {
        let chunk = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
                logprobs: None,
            }],
            usage,
        };
        json_event(&chunk)
    }

    fn usage_only(&self, usage: Usage) -> SseEvent {
        json_event(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(usage),
        })
    }
}

fn json_event<T: serde::Serialize>(value: &T) -> SseEvent {
    match serde_json::to_string(value) {
        Ok(s) => SseEvent::default().data(s),
        Err(e) => SseEvent::default().data(format!(
            "{{\"error\":{{\"message\":\"cannot serialise a chunk: {e}\",\"type\":\"server_error\",\
             \"param\":null,\"code\":null}}}}"
        )),
    }
}

struct State {
    captioner: Arc<Captioner>,
    events: UnboundedReceiver<Event>,
    header: ChunkHeader,
    text: TextStream,
    /// Text sent so far (leading whitespace trimmed, as in the non-streaming answer).
    sent: String,
    pending: VecDeque<SseEvent>,
    finished: bool,
}

impl State {
    fn push_text(&mut self, piece: &str) {
        let piece = if self.sent.is_empty() {
            piece.trim_start()
        } else {
            piece
        };
        if piece.is_empty() {
            return;
        }
        self.sent.push_str(piece);
        let delta = Delta {
            role: None,
            content: Some(piece.to_string()),
        };
        self.pending.push_back(self.header.chunk(delta, None, None));
    }

    fn handle(&mut self, event: Option<Event>) {
        match event {
            Some(Event::Token(t)) => match self.text.push(self.captioner.tokenizer(), t) {
                Ok(piece) => self.push_text(&piece),
                Err(e) => self.fail(&format!("cannot decode a token: {e}")),
            },
            Some(Event::Done { tokens, finish }) => {
                // Flush what the streamer held back (an incomplete character at the end).
                if let Ok(full) = self
                    .captioner
                    .tokenizer()
                    .decode(&tokens, &Default::default())
                {
                    let full = full.trim_start();
                    if let Some(rest) = full.strip_prefix(self.sent.as_str()) {
                        let rest = rest.to_string();
                        self.push_text(&rest);
                    }
                }
                let usage = Usage::new(self.header.prompt_tokens, tokens.len());
                let last = self
                    .header
                    .chunk(Delta::default(), Some(finish), Some(usage));
                self.pending.push_back(last);
                if self.header.include_usage {
                    let u = self.header.usage_only(usage);
                    self.pending.push_back(u);
                }
                self.pending.push_back(SseEvent::default().data("[DONE]"));
                self.finished = true;
            }
            Some(Event::Failed(e)) => self.fail(&e.message),
            None => self.fail("the model worker dropped the request"),
        }
    }

    fn fail(&mut self, message: &str) {
        tracing::error!("stream {} failed: {message}", self.header.id);
        let body = super::error::ApiError::internal(message);
        self.pending.push_back(json_event(&body.body()));
        self.pending.push_back(SseEvent::default().data("[DONE]"));
        self.finished = true;
    }
}

/// The event stream of one request.
pub fn chunks(
    captioner: Arc<Captioner>,
    events: UnboundedReceiver<Event>,
    header: ChunkHeader,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let first = header.chunk(
        Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        },
        None,
        None,
    );
    let state = State {
        captioner,
        events,
        header,
        text: TextStream::default(),
        sent: String::new(),
        pending: VecDeque::from([first]),
        finished: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.pending.pop_front() {
                return Some((Ok(ev), s));
            }
            if s.finished {
                return None;
            }
            let ev = s.events.recv().await;
            s.handle(ev);
        }
    })
}
