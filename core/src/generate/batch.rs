//! [`BatchDecoder`]: iteration-level ("continuous") batching over one shared KV cache.

use candle_core::Tensor;
use visualglm_language::kv_cache::KvCache;
use visualglm_language::positions::position_at;
use visualglm_language::Sampler;

use super::logprobs::{token_logprobs, TokenLogprobs};
use super::request::{prefill_groups, token_budget, Flow, GenRequest};
use crate::error::{Result, VisualGlmError};
use crate::model::{batch_prefix_inputs, RowLayout, VisualGlm};

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
    /// Alternatives to report with each token's log-probability (`None`: none computed).
    logprobs: Option<usize>,
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
    prefill_rows: u64,
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
            prefill_rows: 0,
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

    /// Prompt rows prefilled so far: requests that share a prompt count once.
    pub fn prefill_rows(&self) -> u64 {
        self.prefill_rows
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
                logprobs: None,
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
    /// Requests with the same prompt ([`GenRequest::same_prompt`], e.g. the `n` samples of
    /// one chat request) are run once and their cache rows and logits copied.
    fn prefill(
        &mut self,
        requests: &[&GenRequest<'_>],
        rows: &mut [Row],
    ) -> Result<(KvCache, usize, Tensor)> {
        let model = self.model;
        let device = model.device().clone();
        let glm = model.language_model();
        let seq = requests.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        for (r, row) in requests.iter().zip(rows.iter_mut()) {
            row.pad = seq - r.ids.len();
        }
        let (unique, source) = prefill_groups(requests)?;
        self.prefill_rows += unique.len() as u64;
        let mut embeds = Vec::with_capacity(unique.len());
        let mut layouts = Vec::with_capacity(unique.len());
        for &u in &unique {
            let (r, row) = (requests[u], &rows[u]);
            let pad = row.pad;
            let ids_t = Tensor::new(r.ids, &device)?.unsqueeze(0)?;
            let e = model.input_embeds(&ids_t, r.images)?;
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
        // Each row feeds its padded prompt and every token it makes but the last.
        let longest = rows.iter().map(|r| r.budget).max().unwrap_or(1);
        cache.expect_positions(seq + longest.saturating_sub(1));
        let hidden = glm.forward_embeds(&embeds, &pos, Some(&mask), Some(&mut cache), None)?;
        let mut logits = glm.logits(&hidden.narrow(1, seq - 1, 1)?)?.squeeze(1)?;
        if unique.len() < requests.len() {
            let index = Tensor::new(source.as_slice(), &device)?;
            cache.select_batch(&index)?;
            logits = logits.index_select(&index, 0)?;
        }
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

    /// Makes row `id` report each token's raw log-probability and its `top` most likely
    /// alternatives to [`BatchDecoder::step_with_logprobs`] (see [`super::TokenLogprobs`]).
    /// An unknown or ended row is ignored.
    pub fn set_logprobs(&mut self, id: u64, top: usize) {
        if let Some(r) = self.rows.iter_mut().find(|r| r.id == id) {
            r.logprobs = Some(top);
        }
    }

    /// The logits `[rows, vocab]` the next [`BatchDecoder::step`] samples from, one row per
    /// row of the batch in the order rows joined (ended rows included until they are
    /// dropped); `None` when nothing is running.
    pub fn pending_logits(&self) -> Option<&Tensor> {
        self.logits.as_ref()
    }

    /// Samples every running row's next token (`on_token(id, token)` sees each one, `<eop>`
    /// included, and may stop its row), and runs one decode step for the rows still running.
    /// Returns the rows that ended (with those that ended at [`BatchDecoder::add`]). After an
    /// error the decoder's rows are in an unknown state: drop it.
    pub fn step(&mut self, on_token: &mut dyn FnMut(u64, u32) -> Flow) -> Result<Vec<Finished>> {
        self.step_with_logprobs(&mut |id, t, _| on_token(id, t))
    }

    /// [`BatchDecoder::step`], also passing the token's log-probabilities to `on_token` for
    /// the rows that asked for them ([`BatchDecoder::set_logprobs`]).
    pub fn step_with_logprobs(
        &mut self,
        on_token: &mut dyn FnMut(u64, u32, Option<&TokenLogprobs>) -> Flow,
    ) -> Result<Vec<Finished>> {
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
            let logprobs = row.logprobs.map(|k| token_logprobs(values, t, k));
            let flow = on_token(row.id, t, logprobs.as_ref());
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
