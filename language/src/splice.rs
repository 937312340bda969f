//! Splicing embeddings (images) into a prompt's word embeddings: any number of spans, each
//! replacing the placeholder ids of its range.

use candle_core::{DType, Result, Tensor};

/// Embeddings `[B, n, hidden]` that replace the `n` ids of a prompt from `start` on (one
/// image of a prompt: a cheap clone of the tensor, which shares its storage).
#[derive(Debug, Clone)]
pub struct EmbedSpan {
    /// Index of the first replaced id.
    pub start: usize,
    /// The embeddings put there.
    pub embeds: Tensor,
}

impl EmbedSpan {
    /// `embeds` `[B, n, hidden]` replacing the ids from `start` on.
    pub fn new(start: usize, embeds: Tensor) -> Self {
        Self { start, embeds }
    }

    /// Row `i` of every span of `spans` (`[1, n, hidden]` each): the images of one prompt of a
    /// batch.
    pub fn row(spans: &[EmbedSpan], i: usize) -> Result<Vec<EmbedSpan>> {
        spans
            .iter()
            .map(|s| Ok(EmbedSpan::new(s.start, s.embeds.narrow(0, i, 1)?)))
            .collect()
    }
}

/// `[B, S, hidden]`: `embed` of the ids `[B, S]` outside the spans, and each span's embeddings
/// (in `dtype`) inside its range. Spans must be in order, not overlap and lie within `S`.
pub fn splice_spans(
    ids: &Tensor,
    spans: &[EmbedSpan],
    dtype: DType,
    embed: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (_, seq_len) = ids.dims2()?;
    let mut parts = Vec::with_capacity(2 * spans.len() + 1);
    let mut at = 0;
    for span in spans {
        let n = span.embeds.dim(1)?;
        if span.start < at || span.start + n > seq_len {
            candle_core::bail!(
                "an embedding span of {n} positions at {} does not fit a prompt of {seq_len} \
                 tokens after position {at} (spans must be in order, apart, inside the prompt)",
                span.start
            );
        }
        if span.start > at {
            parts.push(embed(&ids.narrow(1, at, span.start - at)?)?);
        }
        parts.push(span.embeds.to_dtype(dtype)?);
        at = span.start + n;
    }
    if at < seq_len || parts.is_empty() {
        parts.push(embed(&ids.narrow(1, at, seq_len - at)?)?);
    }
    Tensor::cat(&parts, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Id `i` embeds as `[i, i]`, so every output row says where it came from.
    fn embed(ids: &Tensor) -> Result<Tensor> {
        let ids = ids.to_dtype(DType::F32)?.unsqueeze(2)?;
        Tensor::cat(&[&ids, &ids], 2)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.squeeze(0).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn two_spans_replace_their_ranges_and_keep_the_rest() -> Result<()> {
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[1u32, 2, 0, 0, 3, 0, 4]], &dev)?;
        let a = Tensor::new(&[[[-1f32, -1.0], [-2.0, -2.0]]], &dev)?;
        let b = Tensor::new(&[[[-3f32, -3.0]]], &dev)?;
        let spans = [EmbedSpan::new(2, a.clone()), EmbedSpan::new(5, b.clone())];
        let out = splice_spans(&ids, &spans, DType::F32, embed)?;
        let want = [1., 2., -1., -2., 3., -3., 4.].map(|v: f32| vec![v, v]);
        assert_eq!(rows(&out), want);
        // Spans at both ends, and none at all.
        let ends = [EmbedSpan::new(0, a.clone()), EmbedSpan::new(6, b.clone())];
        let out = splice_spans(&ids, &ends, DType::F32, embed)?;
        let want = [-1., -2., 0., 0., 3., 0., -3.].map(|v: f32| vec![v, v]);
        assert_eq!(rows(&out), want);
        assert_eq!(
            rows(&splice_spans(&ids, &[], DType::F32, embed)?),
            rows(&embed(&ids)?)
        );
        Ok(())
    }

    #[test]
    fn overlapping_unordered_or_overflowing_spans_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[1u32, 2, 3, 4]], &dev)?;
        let two = Tensor::zeros((1, 2, 2), DType::F32, &dev)?;
        for starts in [vec![0, 1], vec![2, 0], vec![3]] {
            let spans: Vec<EmbedSpan> = starts
                .iter()
                .map(|&start| EmbedSpan::new(start, two.clone()))
                .collect();
            let err = splice_spans(&ids, &spans, DType::F32, embed).unwrap_err();
            assert!(
                err.to_string().contains("does not fit"),
                "{starts:?}: {err}"
            );
        }
        Ok(())
    }
}
