//! Token generation with the KV cache: greedy and sampled decoding of one prompt for one or
//! many images at once, with a per-step callback for streaming, and beam search.

use std::ops::Range;

use candle_core::Tensor;
use visualglm_language::kv_cache::KvCache;
use visualglm_language::positions::position_at;
use visualglm_language::{GenerationConfig, Sampler};

use crate::error::{Result, VisualGlmError};
use crate::model::{batch_prefix_inputs, RowLayout, VisualGlm};

/// What the per-step callback tells the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Stop now (e.g. the client went away).
    Stop,
}

/// How many new tokens a prompt of `prompt_len` may get from `model` under `cfg`, or an error
/// when the prompt alone does not fit: both `cfg.max_length` and the model's own
/// `max_sequence_length` bound prompt + answer ([`VisualGlm::length_limit`]).
pub fn token_budget(model: &VisualGlm, prompt_len: usize, cfg: &GenerationConfig) -> Result<usize> {
    let limit = model.length_limit(cfg.max_length);
    if prompt_len >= limit {
        let whose = if limit < cfg.max_length {
            "the model's maximum sequence length"
        } else {
            "the maximum length"
        };
        return Err(VisualGlmError::Input(format!(
            "the prompt has {prompt_len} tokens but {whose} is {limit}: shorten the prompt or \
             clear the chat history"
        )));
    }
    Ok(cfg.max_new_tokens.min(limit - prompt_len))
}

/// One prompt to answer in a [`generate_many`] batch.
#[derive(Debug, Clone)]
pub struct GenRequest<'a> {
    /// Prompt ids, ending with `[gMASK] <sop>`.
    pub ids: &'a [u32],
    /// Image embeddings `[1, 32, width]`, spliced at `pre_image`.
    pub image: Option<&'a Tensor>,
    /// Index of the first image placeholder.
    pub pre_image: usize,
    /// How to decode this request.
    pub config: &'a GenerationConfig,
    /// Ids this request must never produce.
    pub invalid: &'a [Range<usize>],
}

/// Generates answers to one prompt `ids` for each of `B` images (`images` `[B, 32, width]`,
/// spliced at `pre_image`), or for the text alone when `images` is `None` (B = 1).
///
/// Row `i` samples with seed `cfg.seed + i`. `on_token(row, token)` sees every token as it is
/// made (`<eop>` included) and may stop that row. Returns each row's tokens without `<eop>`.
pub fn generate(
    model: &VisualGlm,
    ids: &[u32],
    images: Option<(&Tensor, usize)>,
    cfg: &GenerationConfig,
    invalid: &[Range<usize>],
    on_token: &mut dyn FnMut(usize, u32) -> Flow,
) -> Result<Vec<Vec<u32>>> {
    let (rows, pre_image) = match images {
        Some((t, pre)) => (
            (0..t.dim(0)?)
                .map(|i| t.narrow(0, i, 1).map(Some))
                .collect::<candle_core::Result<Vec<_>>>()?,
            pre,
        ),
        None => (vec![None], 0),
    };
    let configs: Vec<GenerationConfig> = (0..rows.len())
        .map(|i| GenerationConfig {
            seed: cfg.seed.wrapping_add(i as u64),
            ..cfg.clone()
        })
        .collect();
    let requests: Vec<GenRequest<'_>> = rows
        .iter()
        .zip(&configs)
        .map(|(image, config)| GenRequest {
            ids,
            image: image.as_ref(),
            pre_image,
            config,
            invalid,
        })
        .collect();
    generate_many(model, &requests, on_token)
}

/// Decodes several prompts together: prompts are left-padded to a common length (pads are
/// masked out and never attended), each row keeps its own 2D positions, prefix mask, sampler,
/// budget and stop. `on_token(request, token)` sees each token as it is made and may stop
/// that request ([`Flow::Stop`]). Returns each request's tokens without `<eop>`.
///
/// A thin wrapper over [`BatchDecoder`]: all requests are admitted at once and stepped until
/// the last one ends; rows that end leave the batch at once.
pub fn generate_many(
    model: &VisualGlm,
    requests: &[GenRequest<'_>],
    on_token: &mut dyn FnMut(usize, u32) -> Flow,
) -> Result<Vec<Vec<u32>>> {
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); requests.len()];
    let mut decoder = BatchDecoder::new(model);
    let ids = decoder.add(requests)?;
    while !decoder.is_idle() {
        for done in decoder.step(&mut |id, t| {
            // Ids are handed out in request order from 0, so they are the request indices.
            on_token(id as usize, t)
        })? {
            if let Some(slot) = ids
                .iter()
                .position(|&i| i == done.id)
                .and_then(|i| out.get_mut(i))
            {
                *slot = done.tokens;
            }
        }
    }
    Ok(out)
}

/// A row of a [`BatchDecoder`] that has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The id [`BatchDecoder::add`] gave the row.
    pub id: u64,
    /// Its tokens, without `<eop>`.
    pub tokens: Vec<u32>,
}

/// One row of a [`BatchDecoder`]'s cache: a running request, or a finished one whose row
/// has not been dropped yet.
#[derive(Debug)]
struct Row {
    id: u64,
    prompt_len: usize,
    context_len: usize,
    gmask_index: usize,
    /// Cache positions before the row's first token (masked out).
    pad: usize,
    /// Generated tokens already fed back to the model.
    fed: usize,
    budget: usize,
    sampler: Sampler,
    out: Vec<u32>,
    /// Ended: the row only fills its slot until the cache is compacted.
    ended: bool,
}

/// Iteration-level ("continuous") batching: a running batch of rows that decode one token
/// per [`BatchDecoder::step`], to which new prompts can be added between steps
/// ([`BatchDecoder::add`] prefills them and merges them into the batch) and from which rows
/// leave as soon as they end.
///
/// All rows share one KV cache `[B, H, positions, D]`. A row's tokens are right-aligned: the
/// positions before them are zero keys masked out with −∞, so a row never attends to
/// anything but its own prompt and answer, and its 2D positions and prefix mask are its own.
/// Merging a new group left-pads whichever side is shorter. An ended row is reported at once
/// but keeps its cache slot (fed `<eop>`, its output ignored) until half the rows have ended
/// or the next merge, which copy the cache without them and trim the positions no remaining
/// row uses; so the cache is not copied each time a row ends. A row's answer is therefore the
/// one it gets decoded alone (up to float summation order; greedy answers are checked
/// identical in the tests).
#[derive(Debug)]
pub struct BatchDecoder<'m> {
    model: &'m VisualGlm,
    cache: KvCache,
    /// Cache positions (the same for every row).
    positions: usize,
    rows: Vec<Row>,
    /// Next-token logits `[rows, vocab]` of every row, not sampled yet.
    logits: Option<Tensor>,
    /// Rows that ended without decoding (a zero budget), reported by the next step.
    ended: Vec<Finished>,
    next_id: u64,
    steps: u64,
}

impl<'m> BatchDecoder<'m> {
    /// An empty batch decoding with `model`.
    pub fn new(model: &'m VisualGlm) -> Self {
        Self {
            model,
            cache: model.language_model().new_cache(),
            positions: 0,
            rows: Vec::new(),
            logits: None,
            ended: Vec::new(),
            next_id: 0,
            steps: 0,
        }
    }

    /// Rows decoding now.
    pub fn len(&self) -> usize {
        self.rows.iter().filter(|r| !r.ended).count()
    }

    /// Whether no row is decoding.
    pub fn is_empty(&self) -> bool {
        self.rows.iter().all(|r| r.ended)
    }

    /// Whether there is nothing left to do: no row decoding and no ended row to report.
    pub fn is_idle(&self) -> bool {
        self.is_empty() && self.ended.is_empty()
    }

    /// KV-cache positions of the batch (the longest row's prompt and answer so far).
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Rows in the KV cache: the decoding ones and ended ones not dropped yet.
    pub fn cache_rows(&self) -> usize {
        self.rows.len()
    }

    /// Decode steps run so far (one forward pass over all rows each).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Prefills `requests` together (left-padded to their longest prompt) and merges them into
    /// the running batch; their first tokens are sampled by the next [`BatchDecoder::step`].
    /// Returns one id per request, in order (ids count up from 0 over the decoder's life). An
    /// empty prompt, or one that does not fit its `max_length`, fails the whole call before
    /// anything changes; so does a failed prefill, which leaves the running rows as they were.
    pub fn add(&mut self, requests: &[GenRequest<'_>]) -> Result<Vec<u64>> {
        if requests.iter().any(|r| r.ids.is_empty()) {
            return Err(VisualGlmError::Input(
                "a prompt is empty: it must end with [gMASK] <sop>".into(),
            ));
        }
        let budgets = requests
            .iter()
            .map(|r| token_budget(self.model, r.ids.len(), r.config))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<u64> = (0..requests.len() as u64)
            .map(|i| self.next_id + i)
            .collect();
        let mut fresh = Vec::new();
        let mut live = Vec::new();
        for ((r, &budget), &id) in requests.iter().zip(&budgets).zip(&ids) {
            if budget == 0 {
                continue;
            }
            let (context_len, gmask_index) = self.model.prompt_layout(r.ids);
            fresh.push(Row {
                id,
                prompt_len: r.ids.len(),
                context_len,
                gmask_index,
                pad: 0,
                fed: 0,
                budget,
                sampler: Sampler::new(r.config.clone(), r.invalid.to_vec()),
                out: Vec::new(),
                ended: false,
            });
            live.push(r);
        }
        if !live.is_empty() {
            let (cache, seq, logits) = self.prefill(&live, &mut fresh)?;
            self.merge(cache, seq, logits, fresh)?;
        }
        for (&budget, &id) in budgets.iter().zip(&ids) {
            if budget == 0 {
                self.ended.push(Finished {
                    id,
                    tokens: Vec::new(),
                });
            }
        }
        self.next_id += requests.len() as u64;
        Ok(ids)
    }

    /// Runs the prompts of `requests` (one row each of `rows`, whose pads it sets) as one
    /// left-padded batch: their cache, its positions and the last logits `[B, vocab]`.
    fn prefill(
        &self,
        requests: &[&GenRequest<'_>],
        rows: &mut [Row],
    ) -> Result<(KvCache, usize, Tensor)> {
        let model = self.model;
        let device = model.device().clone();
        let glm = model.language_model();
        let seq = requests.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let mut embeds = Vec::with_capacity(requests.len());
        let mut layouts = Vec::with_capacity(requests.len());
        for (r, row) in requests.iter().zip(rows.iter_mut()) {
            let pad = seq - r.ids.len();
            row.pad = pad;
            let ids_t = Tensor::new(r.ids, &device)?.unsqueeze(0)?;
            let e = model.input_embeds(&ids_t, r.image.map(|i| (i, r.pre_image)))?;
            embeds.push(if pad > 0 {
                let zeros = Tensor::zeros((1, pad, e.dim(2)?), e.dtype(), &device)?;
                Tensor::cat(&[&zeros, &e], 1)?
            } else {
                e
            });
            layouts.push(RowLayout {
                pad_left: pad,
                len: r.ids.len(),
                context_len: row.context_len,
                gmask_index: row.gmask_index,
            });
        }
        let embeds = Tensor::cat(&embeds, 0)?;
        let (pos, mask) = batch_prefix_inputs(&layouts, seq, &device)?;
        let mut cache = glm.new_cache();
        let hidden = glm.forward_embeds(&embeds, &pos, Some(&mask), Some(&mut cache), None)?;
        let logits = glm.logits(&hidden.narrow(1, seq - 1, 1)?)?.squeeze(1)?;
        Ok((cache, seq, logits))
    }

    /// The cache and logits without the ended rows and without the leading positions no
    /// remaining row uses. Copies only when something is dropped; changes nothing.
    fn compacted(&self) -> Result<Compacted> {
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&i| !self.rows[i].ended)
            .collect();
        let trim = keep.iter().map(|&i| self.rows[i].pad).min().unwrap_or(0);
        let len = self.positions - trim;
        let mut layers = self.cache.layers()?;
        let mut logits = self.logits.clone();
        if keep.len() < self.rows.len() || trim > 0 {
            let index: Vec<u32> = keep.iter().map(|&i| i as u32).collect();
            let index = Tensor::new(index.as_slice(), self.model.device())?;
            let select = |t: &Tensor| -> Result<Tensor> {
                Ok(t.narrow(2, trim, len)?
                    .contiguous()?
                    .index_select(&index, 0)?)
            };
            layers = layers
                .into_iter()
                .map(|l| l.map(|(k, v)| Ok((select(&k)?, select(&v)?))).transpose())
                .collect::<Result<Vec<_>>>()?;
            logits = logits.map(|l| l.index_select(&index, 0)).transpose()?;
        }
        Ok(Compacted {
            layers,
            logits,
            len,
            trim,
        })
    }

    /// Takes the rows that have not ended out of the batch, their pads reduced by `trim`.
    fn take_running(&mut self, trim: usize) -> Vec<Row> {
        std::mem::take(&mut self.rows)
            .into_iter()
            .filter(|r| !r.ended)
            .map(|mut r| {
                r.pad -= trim;
                r
            })
            .collect()
    }

    /// Joins a prefilled group (its cache of `seq` positions, logits and rows) to the batch,
    /// dropping the ended rows and left-padding whichever side has fewer positions. Changes
    /// nothing on error.
    fn merge(
        &mut self,
        cache: KvCache,
        seq: usize,
        logits: Tensor,
        mut rows: Vec<Row>,
    ) -> Result<()> {
        if self.is_empty() {
            self.cache = cache;
            self.positions = seq;
            self.logits = Some(logits);
            self.rows = rows;
            return Ok(());
        }
        let old = self.compacted()?;
        let total = old.len.max(seq);
        let (old_pad, new_pad) = (total - old.len, total - seq);
        let old_logits = old
            .logits
            .ok_or_else(|| candle_core::Error::Msg("running rows without logits".into()))?;
        let logits = Tensor::cat(&[&old_logits, &logits], 0)?;
        let merged = old
            .layers
            .into_iter()
            .zip(cache.layers()?)
            .map(|(a, b)| match (a, b) {
                (Some((ak, av)), Some((bk, bv))) => Ok(Some((
                    Tensor::cat(&[&pad_left(&ak, old_pad)?, &pad_left(&bk, new_pad)?], 0)?,
                    Tensor::cat(&[&pad_left(&av, old_pad)?, &pad_left(&bv, new_pad)?], 0)?,
                ))),
                (None, None) => Ok(None),
                _ => Err(candle_core::Error::Msg(
                    "KV caches to merge have different layers written".into(),
                )
                .into()),
            })
            .collect::<Result<Vec<_>>>()?;
        self.cache = KvCache::from_layers(merged)?;
        let mut kept = self.take_running(old.trim);
        for r in &mut kept {
            r.pad += old_pad;
        }
        for r in &mut rows {
            r.pad += new_pad;
        }
        kept.append(&mut rows);
        self.rows = kept;
        self.positions = total;
        self.logits = Some(logits);
        Ok(())
    }

    /// Samples every running row's next token (`on_token(id, token)` sees each one, `<eop>`
    /// included, and may stop its row), and runs one decode step for the rows still running.
    /// Returns the rows that ended (with those that ended at [`BatchDecoder::add`]). After an
    /// error the decoder's rows are in an unknown state: drop it.
    pub fn step(&mut self, on_token: &mut dyn FnMut(u64, u32) -> Flow) -> Result<Vec<Finished>> {
        let mut finished = std::mem::take(&mut self.ended);
        let Some(logits) = self.logits.take() else {
            return Ok(finished);
        };
        let eos = self.model.config().glm.eos_id();
        let values: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        let mut tokens = Vec::with_capacity(self.rows.len());
        for (row, values) in self.rows.iter_mut().zip(&values) {
            if row.ended {
                tokens.push(eos);
                continue;
            }
            let t = row.sampler.next_token(values, &row.out);
            let flow = on_token(row.id, t);
            let ended = if t == eos {
                true
            } else {
                row.out.push(t);
                row.out.len() >= row.budget || flow == Flow::Stop
            };
            if ended {
                row.ended = true;
                finished.push(Finished {
                    id: row.id,
                    tokens: std::mem::take(&mut row.out),
                });
            }
            tokens.push(t);
        }
        let ended = self.rows.iter().filter(|r| r.ended).count();
        if ended == self.rows.len() {
            self.rows.clear();
            self.cache = self.model.language_model().new_cache();
            self.positions = 0;
            return Ok(finished);
        }
        // Drop the ended rows once they are half the batch (each drop copies the cache).
        if 2 * ended >= self.rows.len() {
            let keep: Vec<usize> = (0..self.rows.len())
                .filter(|&i| !self.rows[i].ended)
                .collect();
            tokens = keep.iter().map(|&i| tokens[i]).collect();
            let c = self.compacted()?;
            self.cache = KvCache::from_layers(c.layers)?;
            self.rows = self.take_running(c.trim);
            self.positions = c.len;
        }
        let device = self.model.device().clone();
        let glm = self.model.language_model();
        let batch = self.rows.len();
        let total = self.positions + 1;
        let mut pos = Vec::with_capacity(batch * 2);
        let mut mask = Vec::with_capacity(batch * total);
        for r in &mut self.rows {
            // An ended row is fed `<eop>` at a frozen position; its output is never read.
            let (p0, p1) = position_at(r.prompt_len + r.fed, r.context_len, r.gmask_index);
            pos.extend([p0, p1]);
            mask.extend((0..total).map(|j| if j < r.pad { f32::NEG_INFINITY } else { 0.0 }));
            if !r.ended {
                r.fed += 1;
            }
        }
        let pos = Tensor::from_vec(pos, (batch, 2, 1), &device)?;
        let mask = Tensor::from_vec(mask, (batch, 1, 1, total), &device)?;
        let next = Tensor::new(tokens.as_slice(), &device)?.unsqueeze(1)?;
        let hidden = glm.forward_embeds(
            &glm.embed(&next)?,
            &pos,
            Some(&mask),
            Some(&mut self.cache),
            None,
        )?;
        self.logits = Some(glm.logits(&hidden)?.squeeze(1)?);
        self.positions = total;
        self.steps += 1;
        Ok(finished)
    }
}

/// A [`BatchDecoder`]'s cache and logits without its ended rows.
struct Compacted {
    layers: Vec<Option<(Tensor, Tensor)>>,
    logits: Option<Tensor>,
    /// Positions left.
    len: usize,
    /// Leading positions dropped.
    trim: usize,
}

/// `t` `[B, H, S, D]` with `n` zero positions prepended on dim 2.
fn pad_left(t: &Tensor, n: usize) -> Result<Tensor> {
    if n == 0 {
        return Ok(t.clone());
    }
    let (b, h, _, d) = t.dims4()?;
    let zeros = Tensor::zeros((b, h, n, d), t.dtype(), t.device())?;
    Ok(Tensor::cat(&[&zeros, t], 2)?)
}

/// Beam search over one prompt (and at most one image): keeps `cfg.num_beams` hypotheses,
/// scores them by summed log-probability divided by length, and returns the best one
/// (without `<eop>`). With one beam it equals greedy decoding.
///
/// Each step extends every live hypothesis by its `2·beams` most likely tokens (after the
/// repetition penalty and the invalid ranges of [`Sampler::adjust`]) and keeps the `beams`
/// best by summed log-probability. A hypothesis that takes `<eop>` is finished: its score
/// counts the `<eop>` log-probability, its length does not (a length of 0 counts as 1).
/// Impossible extensions (log-probability −∞, e.g. invalid ids) are never kept. The search
/// stops when `beams` hypotheses have finished, none is live, or the token budget is spent;
/// the live ones then compete with the finished ones.
pub fn beam_search(
    model: &VisualGlm,
    ids: &[u32],
    image: Option<(&Tensor, usize)>,
    cfg: &GenerationConfig,
    invalid: &[Range<usize>],
) -> Result<Vec<u32>> {
    let beams = cfg.num_beams.max(1);
    let budget = token_budget(model, ids.len(), cfg)?;
    if budget == 0 {
        return Ok(Vec::new());
    }
    let eos = model.config().glm.eos_id();
    let adjust = Sampler::new(
        GenerationConfig {
            do_sample: false,
            ..cfg.clone()
        },
        invalid.to_vec(),
    );
    let glm = model.language_model();
    let mut cache = glm.new_cache();
    let (context_len, gmask_index) = model.prompt_layout(ids);
    let hidden = model.prompt_hidden_batch(ids, image, 1, &mut cache)?;
    let mut logits = glm.logits(&hidden.narrow(1, ids.len() - 1, 1)?)?;
    // Alive hypotheses: (tokens, summed log-prob). Starts with one empty hypothesis.
    let mut alive: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
    let mut finished: Vec<(Vec<u32>, f64)> = Vec::new();
    let normalised = |tokens: &[u32], score: f64| score / (tokens.len().max(1) as f64);
    for step in 0..budget {
        let rows: Vec<Vec<f32>> = logits.squeeze(1)?.to_vec2()?;
        let mut candidates: Vec<(usize, u32, f64)> = Vec::new();
        for (b, row) in rows.iter().enumerate() {
            let mut row = row.clone();
            adjust.adjust(&mut row, &alive[b].0);
            let logp = log_softmax(&row);
            let mut idx: Vec<usize> = (0..logp.len()).collect();
            let k = (2 * beams).min(idx.len());
            idx.select_nth_unstable_by(k - 1, |&x, &y| logp[y].total_cmp(&logp[x]));
            for &t in &idx[..k] {
                candidates.push((b, t as u32, alive[b].1 + logp[t]));
            }
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut next_alive: Vec<(Vec<u32>, f64)> = Vec::new();
        let mut parents: Vec<u32> = Vec::new();
        let mut next_tokens: Vec<u32> = Vec::new();
        for (b, t, score) in candidates {
            if next_alive.len() == beams || score == f64::NEG_INFINITY {
                break;
            }
            if t == eos {
                if finished.len() < beams {
                    finished.push((alive[b].0.clone(), score));
                }
                continue;
            }
            let mut tokens = alive[b].0.clone();
            tokens.push(t);
            next_alive.push((tokens, score));
            parents.push(b as u32);
            next_tokens.push(t);
        }
        alive = next_alive;
        if alive.is_empty() || finished.len() >= beams || step + 1 == budget {
            break;
        }
        let parents = Tensor::new(parents.as_slice(), model.device())?;
        cache.select_batch(&parents)?;
        let (p0, p1) = position_at(ids.len() + step, context_len, gmask_index);
        let pos = Tensor::new(&[[[p0], [p1]]], model.device())?;
        let next = Tensor::new(next_tokens.as_slice(), model.device())?.unsqueeze(1)?;
        let hidden = glm.forward_embeds(&glm.embed(&next)?, &pos, None, Some(&mut cache), None)?;
        logits = glm.logits(&hidden)?;
    }
    if finished.len() < beams {
        finished.extend(alive);
    }
    let best = finished
        .into_iter()
        .max_by(|a, b| normalised(&a.0, a.1).total_cmp(&normalised(&b.0, b.1)))
        .map(|(t, _)| t)
        .unwrap_or_default();
    Ok(best)
}

/// `log_softmax` of one row in f64 (so −∞ entries stay −∞).
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    row.iter().map(|&l| l as f64 - lse).collect()
}
