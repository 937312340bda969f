//! Where the images of a training batch go: one image per row at the same index (the
//! release's examples), or any number per row (examples whose `"img"` is a list).

use candle_core::Tensor;
use visualglm_language::EmbedSpan;

use crate::error::{Result, VisualGlmError};
use crate::model::VisualGlm;

/// Where the image embeddings of a batch go. The batch's pixels hold every row's images, row
/// by row, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSlots {
    /// One image per row, its placeholders starting at this index in every row.
    OnePerRow(usize),
    /// Row `i`'s images start at `starts[i]` (any number, in order).
    PerRow(Vec<Vec<usize>>),
}

impl From<usize> for ImageSlots {
    fn from(pre_image: usize) -> Self {
        ImageSlots::OnePerRow(pre_image)
    }
}

impl ImageSlots {
    /// The slots of rows whose images start at `starts` (one list per row): [`Self::OnePerRow`]
    /// when every row has one image at the same index.
    pub fn of_rows(starts: Vec<Vec<usize>>) -> Self {
        match starts.first() {
            Some(first) if first.len() == 1 && starts.iter().all(|s| s == first) => {
                ImageSlots::OnePerRow(first[0])
            }
            _ => ImageSlots::PerRow(starts),
        }
    }

    /// The range of the batch's images (rows of the pixels) that belong to each row.
    pub fn image_rows(&self, rows: usize) -> Vec<std::ops::Range<usize>> {
        match self {
            ImageSlots::OnePerRow(_) => (0..rows).map(|r| r..r + 1).collect(),
            ImageSlots::PerRow(starts) => {
                let mut at = 0;
                starts
                    .iter()
                    .map(|s| {
                        at += s.len();
                        at - s.len()..at
                    })
                    .collect()
            }
        }
    }

    /// Word embeddings of `ids` `[B, S]` with the image embeddings `[N, 32, width]` (the
    /// batch's images in row order) spliced into their slots.
    pub(crate) fn input_embeds(
        &self,
        model: &VisualGlm,
        ids: &Tensor,
        image_embeds: &Tensor,
        shrink: Option<f64>,
    ) -> Result<Tensor> {
        let rows = ids.dim(0)?;
        let images = image_embeds.dim(0)?;
        match self {
            ImageSlots::OnePerRow(start) => {
                if images != rows {
                    return Err(VisualGlmError::Input(format!(
                        "{images} images for a batch of {rows} one-image rows"
                    )));
                }
                let span = EmbedSpan::new(*start, image_embeds.clone());
                model.input_embeds_shrunk(ids, std::slice::from_ref(&span), shrink)
            }
            ImageSlots::PerRow(starts) => {
                let want: usize = starts.iter().map(Vec::len).sum();
                if starts.len() != rows || want != images {
                    return Err(VisualGlmError::Input(format!(
                        "{images} images for a batch of {rows} rows whose prompts hold {want} \
                         in {} rows",
                        starts.len()
                    )));
                }
                let mut out = Vec::with_capacity(rows);
                for (row, range) in self.image_rows(rows).into_iter().enumerate() {
                    let spans: Vec<EmbedSpan> = starts[row]
                        .iter()
                        .zip(range)
                        .map(|(&start, i)| Ok(EmbedSpan::new(start, image_embeds.narrow(0, i, 1)?)))
                        .collect::<Result<_>>()?;
                    out.push(model.input_embeds_shrunk(&ids.narrow(0, row, 1)?, &spans, shrink)?);
                }
                Ok(Tensor::cat(&out, 0)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_single_images_are_one_per_row_and_rows_map_to_images() {
        assert_eq!(
            ImageSlots::of_rows(vec![vec![2], vec![2]]),
            ImageSlots::OnePerRow(2)
        );
        let mixed = ImageSlots::of_rows(vec![vec![2], vec![2, 40], vec![2]]);
        assert_eq!(mixed.image_rows(3), [0..1, 1..3, 3..4]);
        assert_eq!(ImageSlots::OnePerRow(2).image_rows(2), [0..1, 1..2]);
        assert!(matches!(
            ImageSlots::of_rows(vec![vec![2, 40]]),
            ImageSlots::PerRow(_)
        ));
    }
}
