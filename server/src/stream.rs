//! Server-sent events for a streaming chat completion: a first chunk with the role, one
//! chunk per new piece of text, a last chunk with `finish_reason` and `usage`, then
//! `data: [DONE]`. Dropping the stream (the client went away) cancels the request.
//!
//! With stop sequences, text that could be the start of one is held back until the next
//! tokens tell (see [`crate::stop`]), so no chunk ever carries part of a stop sequence; what
//! was held back is sent at the end when no stop sequence completed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::Event as SseEvent;
use futures_util::Stream;
use tokio::sync::mpsc::UnboundedReceiver;

use super::access::StreamAccess;
use super::stop::{visible_text, StopSequences};
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
    stops: StopSequences,
    text: TextStream,
    /// The answer so far as the client will see it (leading whitespace trimmed, as in the
    /// non-streaming answer).
    shown: String,
    /// Bytes of `shown` already sent.
    sent: usize,
    /// A stop sequence was seen: nothing more is sent.
    stopped: bool,
    pending: VecDeque<SseEvent>,
    finished: bool,
    access: StreamAccess,
}

impl State {
    /// Adds a decoded piece and sends what can no longer turn out to be a stop sequence.
    fn push_piece(&mut self, piece: &str) {
        if self.stopped {
            return;
        }
        let piece = if self.shown.is_empty() {
            piece.trim_start()
        } else {
            piece
        };
        self.shown.push_str(piece);
        let end = match self.stops.find(&self.shown) {
            Some(at) => {
                self.stopped = true;
                at
            }
            None => self.shown.len() - self.stops.held_back(&self.shown),
        };
        self.send_up_to(end);
    }

    /// Sends `shown[sent..end]` as one chunk.
    fn send_up_to(&mut self, end: usize) {
        let Some(new) = self.shown.get(self.sent..end).filter(|t| !t.is_empty()) else {
            return;
        };
        let delta = Delta {
            role: None,
            content: Some(new.to_string()),
        };
        self.sent = end;
        self.pending.push_back(self.header.chunk(delta, None, None));
    }

    fn handle(&mut self, event: Option<Event>) {
        match event {
            Some(Event::Token(t)) => {
                self.access.count_token();
                match self.text.push(self.captioner.tokenizer(), t) {
                    Ok(piece) => self.push_piece(&piece),
                    Err(e) => self.fail(&format!("cannot decode a token: {e}")),
                }
            }
            Some(Event::Done { tokens, finish }) => {
                // Send what was held back (an incomplete character, or the start of a stop
                // sequence that did not complete), up to the stop sequence if one completed.
                let mut finish = finish;
                if let Ok(visible) = visible_text(&self.captioner, &tokens, &self.stops) {
                    if visible.stopped {
                        finish = FinishReason::Stop;
                    }
                    let sent = self.shown.get(..self.sent).unwrap_or("");
                    if visible.text.starts_with(sent) {
                        self.shown = visible.text;
                        self.send_up_to(self.shown.len());
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
                self.access.finish(tokens.len(), finish.as_str());
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
        let n = self.access.tokens();
        self.access.finish(n, "error");
    }
}

/// The event stream of one request: its answer is cut at `stops`, and `access` writes its
/// access line when it ends.
pub fn chunks(
    captioner: Arc<Captioner>,
    events: UnboundedReceiver<Event>,
    header: ChunkHeader,
    stops: StopSequences,
    access: StreamAccess,
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
        stops,
        text: TextStream::default(),
        shown: String::new(),
        sent: 0,
        stopped: false,
        pending: VecDeque::from([first]),
        finished: false,
        access,
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
