//! The request queue and the model worker: one thread owns the model, takes the waiting
//! requests in batches (up to `max_batch`), encodes their images together, and decodes all
//! their prompts together with [`generate_many`], streaming each token to its request.
//!
//! A batch runs until its last request ends; requests arriving meanwhile wait for the next
//! batch (no joining a running batch). A request whose client went away is stopped with
//! [`Flow::Stop`] at its next token and frees its slot.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use image::DynamicImage;
use tokio::sync::mpsc::UnboundedSender;
use visualglm_language::GenerationConfig;

use super::error::ApiError;
use super::types::FinishReason;
use crate::generate::{generate_many, token_budget, Flow, GenRequest};
use crate::pipeline::Captioner;

/// One request, ready for the model.
#[derive(Debug)]
pub struct Job {
    /// Prompt ids (with the 32 image placeholders when there is an image).
    pub ids: Vec<u32>,
    /// Index of the first image placeholder.
    pub pre_image: usize,
    /// The decoded image, if any.
    pub image: Option<DynamicImage>,
    /// Decoding settings.
    pub config: GenerationConfig,
    /// English mode: suppress the Chinese block.
    pub english: bool,
    /// Where the tokens go; dropping the receiver cancels the request.
    pub events: UnboundedSender<Event>,
}

/// What the worker tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new token (never `<eop>`).
    Token(u32),
    /// The answer is complete.
    Done {
        /// All generated tokens, without `<eop>`.
        tokens: Vec<u32>,
        /// Why it ended.
        finish: FinishReason,
    },
    /// The request failed inside the model.
    Failed(ApiError),
}

/// How requests are grouped.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Most requests decoded together (1: one at a time).
    pub max_batch: usize,
    /// Most requests waiting; more are refused with 503.
    pub max_queue: usize,
    /// How long an idle worker waits for more requests after the first one arrives.
    pub window: Duration,
    /// Most images encoded in one call (0: all images of the batch at once). Batched
    /// encoding pays on a GPU; on the CPU one at a time was measured faster (BENCHMARKS.md).
    pub image_batch: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_batch: 16,
            max_queue: 256,
            window: Duration::from_millis(5),
            image_batch: 0,
        }
    }
}

/// The sending side of the queue, shared by the HTTP handlers.
#[derive(Debug, Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
    stats: Arc<Stats>,
}

/// Counters the worker keeps.
#[derive(Debug, Default)]
struct Stats {
    /// Requests queued or running.
    in_flight: AtomicUsize,
    /// Tokens generated since the start (all requests).
    tokens: AtomicU64,
    /// Batches run since the start.
    batches: AtomicU64,
}

impl Queue {
    /// Starts the worker thread; it ends when every [`Queue`] clone is dropped.
    pub fn start(
        captioner: Arc<Captioner>,
        opts: BatchOptions,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(opts.max_queue.max(1));
        let stats = Arc::new(Stats::default());
        let counters = stats.clone();
        let handle = std::thread::Builder::new()
            .name("visualglm-worker".into())
            .spawn(move || run(&captioner, &rx, opts, &counters))?;
        Ok((Self { tx, stats }, handle))
    }

    /// Queues a job, or refuses it with 503 when the queue is full or the worker stopped.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => {
                        ApiError::unavailable("the server is busy: too many queued requests")
                    }
                    TrySendError::Disconnected(_) => {
                        ApiError::unavailable("the model worker has stopped")
                    }
                })
            }
        }
    }

    /// Requests queued or running.
    pub fn in_flight(&self) -> usize {
        self.stats.in_flight.load(Ordering::SeqCst)
    }

    /// Tokens generated since the start, over all requests (`<eop>` not counted).
    pub fn tokens_generated(&self) -> u64 {
        self.stats.tokens.load(Ordering::SeqCst)
    }

    /// Batches the worker has run since the start.
    pub fn batches(&self) -> u64 {
        self.stats.batches.load(Ordering::SeqCst)
    }
}

fn run(captioner: &Captioner, rx: &Receiver<Job>, opts: BatchOptions, stats: &Stats) {
    let max_batch = opts.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + opts.window;
        while jobs.len() < max_batch {
            let next = match rx.try_recv() {
                Ok(job) => Ok(job),
                Err(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    rx.recv_timeout(left)
                }
            };
            match next {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let (live, gone): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| !j.events.is_closed());
        if !gone.is_empty() {
            tracing::debug!("{} request(s) cancelled before they started", gone.len());
            stats.in_flight.fetch_sub(gone.len(), Ordering::SeqCst);
        }
        if !live.is_empty() {
            stats.batches.fetch_add(1, Ordering::SeqCst);
            let start = Instant::now();
            let mut open = vec![true; live.len()];
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run_batch(captioner, &live, &mut open, opts.image_batch, stats)
            }));
            if outcome.is_err() {
                tracing::error!("the model panicked on a batch of {}", live.len());
            }
            // Every request still open gets an answer: a panic or an early return leaves some.
            let failure = ApiError::internal("the model failed on this batch");
            for (i, job) in live.iter().enumerate() {
                settle(stats, &mut open, i, job, Event::Failed(failure.clone()));
            }
            tracing::info!(
                batch = live.len(),
                ms = start.elapsed().as_millis() as u64,
                "batch done"
            );
        }
    }
    tracing::debug!("model worker stopped");
}

/// Sends a request its last event, once: marks it closed and leaves the in-flight count
/// before the client can see the answer, so `/health` never counts a request already answered.
fn settle(stats: &Stats, open: &mut [bool], i: usize, job: &Job, event: Event) {
    if let Some(flag) = open.get_mut(i) {
        if *flag {
            *flag = false;
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = job.events.send(event);
        }
    }
}

/// Sends every request still open the same failure.
fn fail_all(stats: &Stats, open: &mut [bool], jobs: &[Job], err: &ApiError) {
    for (i, job) in jobs.iter().enumerate() {
        settle(stats, open, i, job, Event::Failed(err.clone()));
    }
}

/// The tokens one request of the running batch has made so far.
struct Slot {
    tokens: Vec<u32>,
    budget: usize,
}

fn run_batch(
    captioner: &Captioner,
    jobs: &[Job],
    open: &mut [bool],
    image_batch: usize,
    stats: &Stats,
) {
    let started = Instant::now();
    let model = captioner.model();
    let eos = model.config().glm.eos_id();
    // Encode all images of the batch at once.
    let with_image: Vec<usize> = (0..jobs.len())
        .filter(|&i| jobs[i].image.is_some())
        .collect();
    let mut embeds: Vec<Option<Tensor>> = vec![None; jobs.len()];
    if !with_image.is_empty() {
        let images: Vec<DynamicImage> = with_image
            .iter()
            .filter_map(|&i| jobs[i].image.clone())
            .collect();
        let chunk = if image_batch == 0 {
            images.len()
        } else {
            image_batch
        };
        let encoded = images
            .chunks(chunk)
            .map(|c| captioner.encode_images(c))
            .collect::<crate::Result<Vec<_>>>()
            .and_then(|parts| {
                let mut rows = Vec::with_capacity(with_image.len());
                for part in &parts {
                    for row in 0..part.dim(0)? {
                        rows.push(part.narrow(0, row, 1)?);
                    }
                }
                Ok(with_image.iter().copied().zip(rows).collect::<Vec<_>>())
            });
        match encoded {
            Ok(rows) => {
                for (i, t) in rows {
                    embeds[i] = Some(t);
                }
            }
            Err(e) => return fail_all(stats, open, jobs, &ApiError::from(e)),
        }
    }
    let invalid: Vec<_> = jobs
        .iter()
        .map(|j| captioner.invalid_ids(j.english))
        .collect();
    let mut slots = Vec::with_capacity(jobs.len());
    for job in jobs {
        match token_budget(job.ids.len(), &job.config) {
            Ok(budget) => slots.push(Slot {
                tokens: Vec::new(),
                budget,
            }),
            Err(e) => return fail_all(stats, open, jobs, &ApiError::from(e)),
        }
    }
    let requests: Vec<GenRequest<'_>> = jobs
        .iter()
        .zip(&embeds)
        .zip(&invalid)
        .map(|((job, image), invalid)| GenRequest {
            ids: &job.ids,
            image: image.as_ref(),
            pre_image: job.pre_image,
            config: &job.config,
            invalid,
        })
        .collect();
    let encoded_at = Instant::now();
    let result = generate_many(model, &requests, &mut |i, t| {
        let (Some(slot), Some(job)) = (slots.get_mut(i), jobs.get(i)) else {
            return Flow::Stop;
        };
        if !open.get(i).copied().unwrap_or(false) {
            return Flow::Stop;
        }
        if t == eos {
            let tokens = std::mem::take(&mut slot.tokens);
            let finish = FinishReason::Stop;
            settle(stats, open, i, job, Event::Done { tokens, finish });
            return Flow::Continue;
        }
        slot.tokens.push(t);
        stats.tokens.fetch_add(1, Ordering::Relaxed);
        if job.events.send(Event::Token(t)).is_err() {
            tracing::debug!("request {i} of the batch was cancelled");
            settle(
                stats,
                open,
                i,
                job,
                Event::Failed(ApiError::internal("cancelled")),
            );
            return Flow::Stop;
        }
        if slot.tokens.len() >= slot.budget {
            let tokens = std::mem::take(&mut slot.tokens);
            let finish = FinishReason::Length;
            settle(stats, open, i, job, Event::Done { tokens, finish });
        }
        Flow::Continue
    });
    tracing::debug!(
        batch = jobs.len(),
        images = with_image.len(),
        encode_ms = encoded_at.duration_since(started).as_millis() as u64,
        decode_ms = encoded_at.elapsed().as_millis() as u64,
        "batch phases"
    );
    match result {
        Ok(outs) => {
            // Requests the generator ended without a token telling us so.
            for (i, ((slot, job), out)) in slots.iter().zip(jobs).zip(outs).enumerate() {
                let finish = if out.len() >= slot.budget {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                };
                let done = Event::Done {
                    tokens: out,
                    finish,
                };
                settle(stats, open, i, job, done);
            }
        }
        Err(e) => fail_all(stats, open, jobs, &ApiError::from(e)),
    }
}
