//! Retrieval Recall@K as LAVIS `RetrievalTask._report_metrics` reports it.
//!
//! Text retrieval (image → text): the rank of an image is the best rank among its captions
//! when the image's row of `scores_i2t` is sorted by descending score. Image retrieval
//! (text → image): the rank of the caption's image in the caption's row of `scores_t2i`.
//! Recall@K is the percentage of queries with rank < K. Ties are broken as a stable sort
//! reversed would (the later index first); numpy's unstable argsort may break them
//! differently, so avoid ties when comparing with LAVIS.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// The inputs of a retrieval evaluation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RetrievalScores {
    /// `[n_images][n_texts]` similarity of every image to every text.
    pub scores_i2t: Vec<Vec<f64>>,
    /// `[n_texts][n_images]` similarity of every text to every image.
    pub scores_t2i: Vec<Vec<f64>>,
    /// The image of every text.
    pub txt2img: Vec<usize>,
    /// The texts of every image.
    pub img2txt: Vec<Vec<usize>>,
}

/// LAVIS's metrics (percentages) plus the ranks behind them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalReport {
    /// The metrics, under LAVIS's names.
    #[serde(flatten)]
    pub metrics: RetrievalMetrics,
    /// Best rank of each image's captions (0-based).
    pub tr_rank_per_image: Vec<usize>,
    /// Rank of each caption's image (0-based).
    pub ir_rank_per_text: Vec<usize>,
    /// The best-scoring text of each image (for error analysis: which caption won).
    pub tr_top1_per_image: Vec<usize>,
}

/// LAVIS `_report_metrics` values, all in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetrievalMetrics {
    /// Text retrieval R@1.
    pub txt_r1: f64,
    /// Text retrieval R@5.
    pub txt_r5: f64,
    /// Text retrieval R@10.
    pub txt_r10: f64,
    /// Mean of the three text recalls.
    pub txt_r_mean: f64,
    /// Image retrieval R@1.
    pub img_r1: f64,
    /// Image retrieval R@5.
    pub img_r5: f64,
    /// Image retrieval R@10.
    pub img_r10: f64,
    /// Mean of the three image recalls.
    pub img_r_mean: f64,
    /// Mean of `txt_r_mean` and `img_r_mean`.
    pub r_mean: f64,
    /// LAVIS's model-selection metric (= `txt_r_mean`).
    pub agg_metrics: f64,
}

/// 0-based rank of `target` in `row` sorted by descending score (stable sort, reversed).
fn rank_of(row: &[f64], target: usize) -> usize {
    let s = row[target];
    row.iter()
        .enumerate()
        .filter(|&(j, &v)| v > s || (v == s && j > target))
        .count()
}

/// Index of the highest score in `row`, ties to the later index as in [`rank_of`].
fn top1(row: &[f64]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v >= row[best] {
            best = j;
        }
    }
    best
}

fn recall(ranks: &[usize], k: usize) -> f64 {
    100.0 * ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len() as f64
}

fn check_matrix(name: &str, m: &[Vec<f64>], rows: usize, cols: usize) -> Result<()> {
    if m.len() != rows {
        return Err(EvalError::Input(format!(
            "{name} has {} rows, expected {rows}",
            m.len()
        )));
    }
    for (i, row) in m.iter().enumerate() {
        if row.len() != cols {
            return Err(EvalError::Input(format!(
                "{name} row {i} has {} columns, expected {cols}",
                row.len()
            )));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::Input(format!("{name}[{i}][{j}] is not finite")));
        }
    }
    Ok(())
}

/// Computes Recall@1/5/10 in both directions and their means.
pub fn evaluate(s: &RetrievalScores) -> Result<RetrievalReport> {
    let n_img = s.img2txt.len();
    let n_txt = s.txt2img.len();
    if n_img == 0 || n_txt == 0 {
        return Err(EvalError::Input(
            "retrieval needs at least one image and one text".into(),
        ));
    }
    check_matrix("scores_i2t", &s.scores_i2t, n_img, n_txt)?;
    check_matrix("scores_t2i", &s.scores_t2i, n_txt, n_img)?;
    if let Some((t, &i)) = s.txt2img.iter().enumerate().find(|(_, &i)| i >= n_img) {
        return Err(EvalError::Input(format!(
            "txt2img[{t}] = {i} is not an image index"
        )));
    }
    let mut tr = Vec::with_capacity(n_img);
    for (i, texts) in s.img2txt.iter().enumerate() {
        if texts.is_empty() {
            return Err(EvalError::Input(format!("img2txt[{i}] is empty")));
        }
        if let Some(&t) = texts.iter().find(|&&t| t >= n_txt) {
            return Err(EvalError::Input(format!(
                "img2txt[{i}] has {t}, not a text index"
            )));
        }
        let best = texts
            .iter()
            .map(|&t| rank_of(&s.scores_i2t[i], t))
            .min()
            .unwrap_or(0);
        tr.push(best);
    }
    let ir: Vec<usize> = s
        .txt2img
        .iter()
        .enumerate()
        .map(|(t, &i)| rank_of(&s.scores_t2i[t], i))
        .collect();
    let top1 = s.scores_i2t.iter().map(|row| top1(row)).collect::<Vec<_>>();
    let (tr1, tr5, tr10) = (recall(&tr, 1), recall(&tr, 5), recall(&tr, 10));
    let (ir1, ir5, ir10) = (recall(&ir, 1), recall(&ir, 5), recall(&ir, 10));
    let tr_mean = (tr1 + tr5 + tr10) / 3.0;
    let ir_mean = (ir1 + ir5 + ir10) / 3.0;
    let metrics = RetrievalMetrics {
        txt_r1: tr1,
        txt_r5: tr5,
        txt_r10: tr10,
        txt_r_mean: tr_mean,
        img_r1: ir1,
        img_r5: ir5,
        img_r10: ir10,
        img_r_mean: ir_mean,
        r_mean: (tr_mean + ir_mean) / 2.0,
        agg_metrics: (tr1 + tr5 + tr10) / 3.0,
    };
    Ok(RetrievalReport {
        metrics,
        tr_rank_per_image: tr,
        ir_rank_per_text: ir,
        tr_top1_per_image: top1,
    })
}

impl RetrievalMetrics {
    /// The metrics as a Markdown table.
    pub fn to_markdown(&self) -> String {
        format!(
            "| direction | R@1 | R@5 | R@10 | mean |\n| --- | ---: | ---: | ---: | ---: |\n\
             | image→text | {:.2} | {:.2} | {:.2} | {:.2} |\n\
             | text→image | {:.2} | {:.2} | {:.2} | {:.2} |\n\nr_mean {:.2}\n",
            self.txt_r1,
            self.txt_r5,
            self.txt_r10,
            self.txt_r_mean,
            self.img_r1,
            self.img_r5,
            self.img_r10,
            self.img_r_mean,
            self.r_mean
        )
    }
}
