//! CIDEr-D as pycocoevalcap's `Cider` computes it: TF-IDF vectors of 1..4-grams with the
//! document frequency counted over the references of the evaluated images, clipped cosine
//! similarity per order, a Gaussian length penalty (sigma = 6), the mean over orders and
//! references, times 10.

use super::ngrams::{Encoded, MAX_N};

const SIGMA: f64 = 6.0;

/// Document frequency of every n-gram id: in how many images' reference sets it occurs.
///
/// `ref_unions` holds, per image, the sorted distinct n-gram ids of its references.
pub(crate) fn document_frequency<'a>(
    ref_unions: impl Iterator<Item = &'a [(u32, u32)]>,
    n_ids: usize,
) -> Vec<u32> {
    let mut df = vec![0u32; n_ids];
    for union in ref_unions {
        for &(id, _) in union {
            df[id as usize] += 1;
        }
    }
    df
}

/// `log(#images) - log(max(1, df))` for every n-gram id.
pub(crate) fn idf(df: &[u32], n_images: usize) -> Vec<f64> {
    let ref_len = (n_images as f64).ln();
    df.iter()
        .map(|&d| ref_len - f64::from(d).max(1.0).ln())
        .collect()
}

/// A caption's TF-IDF vector (sorted by id), per-order norms and bigram count.
struct Vector {
    weights: Vec<(u32, f64)>,
    norm: [f64; MAX_N],
    /// pycocoevalcap counts the *bigrams* as the "length" used by the penalty; the
    /// difference equals the word-count difference whenever the score can be non-zero.
    length: i64,
}

fn vectorize(caption: &Encoded, idf: &[f64], order: &[u8]) -> Vector {
    let mut norm = [0.0f64; MAX_N];
    let mut length = 0i64;
    let weights = caption
        .grams
        .iter()
        .map(|&(id, tf)| {
            let k = usize::from(order[id as usize]) - 1;
            let w = f64::from(tf) * idf[id as usize];
            norm[k] += w * w;
            if k == 1 {
                length += i64::from(tf);
            }
            (id, w)
        })
        .collect();
    for n in &mut norm {
        *n = n.sqrt();
    }
    Vector {
        weights,
        norm,
        length,
    }
}

fn similarity(hyp: &Vector, reference: &Vector, order: &[u8]) -> [f64; MAX_N] {
    let mut val = [0.0f64; MAX_N];
    let mut j = 0;
    let r = &reference.weights;
    for &(id, wh) in &hyp.weights {
        while j < r.len() && r[j].0 < id {
            j += 1;
        }
        if j < r.len() && r[j].0 == id {
            let wr = r[j].1;
            val[usize::from(order[id as usize]) - 1] += wh.min(wr) * wr;
        }
    }
    let delta = (hyp.length - reference.length) as f64;
    let penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
    for (n, v) in val.iter_mut().enumerate() {
        if hyp.norm[n] != 0.0 && reference.norm[n] != 0.0 {
            *v /= hyp.norm[n] * reference.norm[n];
        }
        *v *= penalty;
    }
    val
}

/// CIDEr-D of one candidate against its references.
pub(crate) fn item_cider(cand: &Encoded, refs: &[Encoded], idf: &[f64], order: &[u8]) -> f64 {
    if refs.is_empty() {
        return 0.0;
    }
    let hyp = vectorize(cand, idf, order);
    let mut score = [0.0f64; MAX_N];
    for reference in refs {
        let rv = vectorize(reference, idf, order);
        let val = similarity(&hyp, &rv, order);
        for n in 0..MAX_N {
            score[n] += val[n];
        }
    }
    let mean = crate::stats::mean(&score);
    mean / refs.len() as f64 * 10.0
}
