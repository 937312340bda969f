//! The request queue and the model worker: one thread owns the model (the base and each LoRA
//! variant), and decodes the running requests together with a [`BatchDecoder`] per model,
//! streaming each token to its request.
//!
//! Scheduling is iteration-level ([`Scheduler::Continuous`], the default): between two decode
//! steps the worker takes the requests that arrived meanwhile (up to `max_batch` running in
//! all), encodes their images, prefills their prompts together and merges them into the
//! running batch of their model; a request leaves the batch as soon as it ends. When nothing
//! runs, the worker waits `window` after the first request for others to prefill with it.
//! [`Scheduler::Static`] is the older scheme, kept for comparison: a batch runs until its last
//! request ends and requests arriving meanwhile wait for the next batch. Requests naming
//! different models (adapters) decode in separate batches, stepped in turn. A request whose
//! client went away, or whose answer reached one of its stop sequences ([`Job::stop`]), is
//! stopped with [`Flow::Stop`] at that token and frees its slot.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::DynamicImage;
use tokio::sync::mpsc::UnboundedSender;
use visualglm_language::{EmbedSpan, GenerationConfig};

use super::error::ApiError;
use super::histogram::{self, Histogram};
use super::images::encode_batch;
use super::stop::{visible_text, StopSequences};
use super::types::FinishReason;
use visualglm::generate::{token_budget, BatchDecoder, Flow, GenRequest, TokenLogprobs};
use visualglm::pipeline::Captioner;

/// One request, ready for the model.
#[derive(Debug)]
pub struct Job {
    /// Prompt ids (with the 32 image placeholders when there is an image).
    pub ids: Vec<u32>,
    /// Where each image's placeholders start, in order.
    pub image_starts: Vec<usize>,
    /// The decoded images, in prompt order.
    pub images: Vec<DynamicImage>,
    /// Decoding settings.
    pub config: GenerationConfig,
    /// English mode: suppress the Chinese block.
    pub english: bool,
    /// The answer ends when its text contains one of these (checked after every token).
    pub stop: StopSequences,
    /// Which served model answers: 0 the base, `i` the `i`-th LoRA variant given to
    /// [`Queue::start`].
    pub model: usize,
    /// Where the tokens go; dropping the receiver cancels the request.
    pub events: UnboundedSender<Event>,
    /// When the request was submitted (for the time-to-first-token metric).
    pub submitted: Instant,
    /// Send each token's log-probabilities with this many alternatives
    /// ([`Event::Logprobs`]); `None`: none.
    pub logprobs: Option<usize>,
}

/// What the worker tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new token (never `<eop>`).
    Token(u32),
    /// The log-probabilities of the next [`Event::Token`] (only for jobs that ask,
    /// [`Job::logprobs`]).
    Logprobs(TokenLogprobs),
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

/// When waiting requests join the decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scheduler {
    /// Iteration-level batching: requests join the running batch at the next decode step.
    #[default]
    Continuous,
    /// A batch runs until its last request ends before the next one starts.
    Static,
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
    /// When waiting requests join the decoding.
    pub scheduler: Scheduler,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_batch: 16,
            max_queue: 256,
            window: Duration::from_millis(5),
            image_batch: 0,
            scheduler: Scheduler::Continuous,
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
#[derive(Debug)]
struct Stats {
    /// Requests submitted and not yet taken by the worker.
    queued: AtomicUsize,
    /// Requests decoding now.
    running: AtomicUsize,
    /// Prompt tokens prefilled (each row of a request counted).
    prompt_tokens: AtomicU64,
    /// Prompt rows run through the model (rows of one prompt, as `n > 1`, run once).
    prefill_rows: AtomicU64,
    /// Seconds from submission to the first generated token.
    ttft: Histogram,
    /// Rows in each decode step.
    batch_sizes: Histogram,
    /// Requests queued or running.
    in_flight: AtomicUsize,
    /// Tokens generated since the start (all requests).
    tokens: AtomicU64,
    /// Groups of requests prefilled together since the start.
    batches: AtomicU64,
    /// Decode steps (one forward pass over a running batch) since the start.
    steps: AtomicU64,
    /// Most requests decoding at once since the start.
    peak: AtomicUsize,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            prompt_tokens: AtomicU64::new(0),
            prefill_rows: AtomicU64::new(0),
            ttft: Histogram::new(&histogram::SECONDS),
            batch_sizes: Histogram::new(&histogram::BATCH_SIZES),
            in_flight: AtomicUsize::new(0),
            tokens: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
        }
    }
}

impl Queue {
    /// Starts the worker thread for `models` (the base first, then its LoRA variants, in the
    /// order [`Job::model`] counts them); it ends when every [`Queue`] clone is dropped.
    pub fn start(
        models: Vec<Arc<Captioner>>,
        opts: BatchOptions,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        if models.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the model worker needs at least one model",
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(opts.max_queue.max(1));
        let stats = Arc::new(Stats::default());
        let counters = stats.clone();
        let handle = std::thread::Builder::new()
            .name("visualglm-worker".into())
            .spawn(move || run(&models, &rx, opts, &counters))?;
        Ok((Self { tx, stats }, handle))
    }

    /// Queues a job, or refuses it with 503 when the queue is full or the worker stopped.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
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

    /// Groups of requests the worker has prefilled together since the start (with static
    /// scheduling: the batches run).
    pub fn batches(&self) -> u64 {
        self.stats.batches.load(Ordering::SeqCst)
    }

    /// Decode steps since the start: forward passes over a running batch, each making one
    /// token for every request in it.
    pub fn decode_steps(&self) -> u64 {
        self.stats.steps.load(Ordering::SeqCst)
    }

    /// Most requests decoding at once since the start.
    pub fn peak_batch(&self) -> usize {
        self.stats.peak.load(Ordering::SeqCst)
    }

    /// Requests waiting for the worker (submitted, not yet taken into a batch).
    pub fn queue_depth(&self) -> usize {
        self.stats.queued.load(Ordering::SeqCst)
    }

    /// Requests (rows) decoding now.
    pub fn running(&self) -> usize {
        self.stats.running.load(Ordering::SeqCst)
    }

    /// Prompt tokens prefilled since the start (image placeholders included; each row of an
    /// `n > 1` request counted).
    pub fn prompt_tokens(&self) -> u64 {
        self.stats.prompt_tokens.load(Ordering::SeqCst)
    }

    /// Prompt rows run through the model since the start: the rows of one prompt (`n > 1`)
    /// share one prefill, so this is below the requests' rows when they do.
    pub fn prefill_rows(&self) -> u64 {
        self.stats.prefill_rows.load(Ordering::SeqCst)
    }

    /// Seconds from submission to each request's first generated token.
    pub fn time_to_first_token(&self) -> &Histogram {
        &self.stats.ttft
    }

    /// Rows in each decode step.
    pub fn batch_sizes(&self) -> &Histogram {
        &self.stats.batch_sizes
    }
}

/// A request in a running batch.
struct Active {
    job: Job,
    /// Most new tokens.
    budget: usize,
    /// Tokens sent so far.
    tokens: Vec<u32>,
    /// Whether its last event was sent.
    settled: bool,
    /// Whether its time to first token was measured.
    started: bool,
}

/// The running batch of one served model.
struct Lane<'a> {
    captioner: &'a Captioner,
    decoder: BatchDecoder<'a>,
    active: HashMap<u64, Active>,
}

impl<'a> Lane<'a> {
    fn new(captioner: &'a Captioner) -> Self {
        Self {
            captioner,
            decoder: BatchDecoder::new(captioner.model()),
            active: HashMap::new(),
        }
    }

    /// Fails every running request and starts over with an empty batch.
    fn fail_all(&mut self, stats: &Stats, err: &ApiError) {
        for (_, mut a) in self.active.drain() {
            settle(stats, &mut a, Event::Failed(err.clone()));
        }
        self.decoder = BatchDecoder::new(self.captioner.model());
    }
}

fn run(models: &[Arc<Captioner>], rx: &Receiver<Job>, opts: BatchOptions, stats: &Stats) {
    let max_batch = opts.max_batch.max(1);
    let mut lanes: Vec<Lane<'_>> = models.iter().map(|c| Lane::new(c)).collect();
    loop {
        let running: usize = lanes.iter().map(|l| l.active.len()).sum();
        let mut jobs = Vec::new();
        if running == 0 {
            let Ok(first) = rx.recv() else { break };
            jobs.push(first);
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
        } else if opts.scheduler == Scheduler::Continuous {
            while running + jobs.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        admit_all(&mut lanes, jobs, opts.image_batch, stats);
        let running: usize = lanes.iter().map(|l| l.active.len()).sum();
        stats.peak.fetch_max(running, Ordering::SeqCst);
        stats.running.store(running, Ordering::SeqCst);
        for lane in &mut lanes {
            if !lane.decoder.is_idle() {
                step(lane, stats);
            }
        }
        let running: usize = lanes.iter().map(|l| l.active.len()).sum();
        stats.running.store(running, Ordering::SeqCst);
    }
    tracing::debug!("model worker stopped");
}

/// Sends a request its last event, once, and leaves the in-flight count before the client
/// can see the answer, so `/health` never counts a request already answered.
fn settle(stats: &Stats, a: &mut Active, event: Event) {
    if !a.settled {
        a.settled = true;
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        let _ = a.job.events.send(event);
    }
}

/// Sends a request that never ran its last event.
fn refuse(stats: &Stats, job: Job, err: &ApiError) {
    let mut a = Active {
        job,
        budget: 0,
        tokens: Vec::new(),
        settled: false,
        started: false,
    };
    settle(stats, &mut a, Event::Failed(err.clone()));
}

/// Drops cancelled jobs and admits the others into the running batch of their model.
fn admit_all(lanes: &mut [Lane<'_>], jobs: Vec<Job>, image_batch: usize, stats: &Stats) {
    stats.queued.fetch_sub(jobs.len(), Ordering::SeqCst);
    let mut groups: Vec<Vec<Job>> = (0..lanes.len()).map(|_| Vec::new()).collect();
    let mut gone = 0;
    for job in jobs {
        if job.events.is_closed() {
            gone += 1;
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        match groups.get_mut(job.model) {
            Some(g) => g.push(job),
            None => {
                let err = ApiError::internal(format!("no served model #{}", job.model));
                refuse(stats, job, &err);
            }
        }
    }
    if gone > 0 {
        tracing::debug!("{gone} request(s) cancelled before they started");
    }
    for (lane, group) in lanes.iter_mut().zip(groups) {
        if !group.is_empty() {
            admit(lane, group, image_batch, stats);
        }
    }
}

/// Encodes the images of `jobs` and prefills their prompts into `lane`'s running batch.
fn admit(lane: &mut Lane<'_>, jobs: Vec<Job>, image_batch: usize, stats: &Stats) {
    let started = Instant::now();
    // Requests whose prompt does not fit get their error alone.
    let mut ready = Vec::with_capacity(jobs.len());
    for job in jobs {
        match token_budget(lane.captioner.model(), job.ids.len(), &job.config) {
            Ok(budget) => ready.push((job, budget)),
            Err(e) => refuse(stats, job, &ApiError::from(e)),
        }
    }
    if ready.is_empty() {
        return;
    }
    stats.batches.fetch_add(1, Ordering::SeqCst);
    let prompt: usize = ready.iter().map(|(j, _)| j.ids.len()).sum();
    stats
        .prompt_tokens
        .fetch_add(prompt as u64, Ordering::SeqCst);
    let captioner = lane.captioner;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let images: Vec<&[DynamicImage]> = ready.iter().map(|(j, _)| &j.images[..]).collect();
        let embeds = encode_batch(captioner, &images, image_batch)?;
        let spans: Vec<Vec<EmbedSpan>> = ready
            .iter()
            .zip(embeds)
            .map(|((job, _), embeds)| {
                job.image_starts
                    .iter()
                    .zip(embeds)
                    .map(|(&start, e)| EmbedSpan::new(start, e))
                    .collect()
            })
            .collect();
        let invalid: Vec<_> = ready
            .iter()
            .map(|(j, _)| captioner.invalid_ids(j.english))
            .collect();
        let requests: Vec<GenRequest<'_>> = ready
            .iter()
            .zip(&spans)
            .zip(&invalid)
            .map(|(((job, _), images), invalid)| GenRequest {
                ids: &job.ids,
                images,
                config: &job.config,
                invalid,
            })
            .collect();
        let encoded_at = Instant::now();
        let prefilled = lane.decoder.prefill_rows();
        let ids = lane.decoder.add(&requests)?;
        let prefilled = lane.decoder.prefill_rows() - prefilled;
        stats.prefill_rows.fetch_add(prefilled, Ordering::SeqCst);
        tracing::debug!(
            joined = ready.len(),
            running = lane.decoder.len(),
            positions = lane.decoder.positions(),
            encode_ms = encoded_at.duration_since(started).as_millis() as u64,
            prefill_ms = encoded_at.elapsed().as_millis() as u64,
            "requests joined the batch"
        );
        Ok::<_, visualglm::VisualGlmError>(ids)
    }));
    let err = match outcome {
        Ok(Ok(ids)) => {
            for (id, (job, budget)) in ids.into_iter().zip(ready) {
                if let Some(k) = job.logprobs {
                    lane.decoder.set_logprobs(id, k);
                }
                let active = Active {
                    job,
                    budget,
                    tokens: Vec::new(),
                    settled: false,
                    started: false,
                };
                lane.active.insert(id, active);
            }
            return;
        }
        Ok(Err(e)) => ApiError::from(e),
        Err(_) => {
            tracing::error!("the model panicked on a prefill of {}", ready.len());
            // The running batch may be half merged: start over.
            let err = ApiError::internal("the model failed on this batch");
            lane.fail_all(stats, &err);
            err
        }
    };
    for (job, _) in ready {
        refuse(stats, job, &err);
    }
}

/// One decode step of `lane`: streams each request its token and answers those that end.
fn step(lane: &mut Lane<'_>, stats: &Stats) {
    let eos = lane.captioner.model().config().glm.eos_id();
    let stepped_before = lane.decoder.steps();
    let rows = lane.decoder.len();
    let captioner = lane.captioner;
    let Lane {
        decoder, active, ..
    } = lane;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        decoder.step_with_logprobs(&mut |id, t, logprobs| {
            let Some(a) = active.get_mut(&id) else {
                return Flow::Stop;
            };
            if a.settled {
                return Flow::Stop;
            }
            if !a.started {
                a.started = true;
                let waited = a.job.submitted.elapsed().as_secs_f64();
                stats.ttft.observe(waited);
            }
            if t == eos {
                let tokens = std::mem::take(&mut a.tokens);
                let finish = FinishReason::Stop;
                settle(stats, a, Event::Done { tokens, finish });
                return Flow::Continue;
            }
            a.tokens.push(t);
            stats.tokens.fetch_add(1, Ordering::Relaxed);
            if let Some(lp) = logprobs {
                let _ = a.job.events.send(Event::Logprobs(lp.clone()));
            }
            if a.job.events.send(Event::Token(t)).is_err() {
                tracing::debug!("request {id} was cancelled");
                settle(stats, a, Event::Failed(ApiError::internal("cancelled")));
                return Flow::Stop;
            }
            if reached_stop(captioner, a) {
                let tokens = std::mem::take(&mut a.tokens);
                let finish = FinishReason::Stop;
                settle(stats, a, Event::Done { tokens, finish });
                return Flow::Stop;
            }
            if a.tokens.len() >= a.budget {
                let tokens = std::mem::take(&mut a.tokens);
                let finish = FinishReason::Length;
                settle(stats, a, Event::Done { tokens, finish });
            }
            Flow::Continue
        })
    }));
    if lane.decoder.steps() > stepped_before {
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.batch_sizes.observe(rows as f64);
    }
    match outcome {
        Ok(Ok(finished)) => {
            for f in finished {
                if let Some(mut a) = lane.active.remove(&f.id) {
                    // Rows the decoder ended without a token telling us so.
                    let finish = if f.tokens.len() >= a.budget {
                        FinishReason::Length
                    } else {
                        FinishReason::Stop
                    };
                    let tokens = f.tokens;
                    settle(stats, &mut a, Event::Done { tokens, finish });
                }
            }
        }
        Ok(Err(e)) => lane.fail_all(stats, &ApiError::from(e)),
        Err(_) => {
            tracing::error!("the model panicked on a decode step");
            lane.fail_all(stats, &ApiError::internal("the model failed on this batch"));
        }
    }
}

/// Whether the answer so far contains one of the request's stop sequences (a text that
/// cannot be decoded is left for the handler to report).
fn reached_stop(captioner: &Captioner, a: &Active) -> bool {
    !a.job.stop.is_empty()
        && visible_text(captioner, &a.tokens, &a.job.stop).is_ok_and(|v| v.stopped)
}
