//! Row layouts of the fused ChatGLM `query_key_value` weight and bias (spec §4.3).
//!
//! With `H` heads of width `D`, the row holding (part `p` ∈ {q, k, v}, head `h`, dim `d`) is
//! `h*3D + p*D + d` in the HF release ([`QkvLayout::Interleaved`]) and `p*H*D + h*D + d` in
//! the current SAT release and in this crate ([`QkvLayout::Blocks`]).

use candle_core::{Result, Tensor};

/// Order of the rows of a fused QKV projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QkvLayout {
    /// Per-head interleaved `[h][q,k,v][d]` (HF, and SAT files before July 2023).
    Interleaved,
    /// Contiguous `[Q|K|V]` blocks `[q,k,v][h][d]` (SAT `r2` release; the canonical layout).
    Blocks,
}

impl QkvLayout {
    /// Lowercase name (`"interleaved"` / `"blocks"`), as stored in converted files.
    pub fn as_str(self) -> &'static str {
        match self {
            QkvLayout::Interleaved => "interleaved",
            QkvLayout::Blocks => "blocks",
        }
    }

    /// Parses the output of [`QkvLayout::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "interleaved" => Some(QkvLayout::Interleaved),
            "blocks" => Some(QkvLayout::Blocks),
            _ => None,
        }
    }
}

/// Moves the rows (dim 0) of a QKV weight `[3HD, in]` or bias `[3HD]` from the HF
/// interleaved layout to `[Q|K|V]` blocks.
pub fn interleaved_to_blocks(t: &Tensor, num_heads: usize) -> Result<Tensor> {
    permute_rows(t, num_heads, true)
}

/// Inverse of [`interleaved_to_blocks`]: `[Q|K|V]` blocks to HF per-head interleaved rows.
pub fn blocks_to_interleaved(t: &Tensor, num_heads: usize) -> Result<Tensor> {
    permute_rows(t, num_heads, false)
}

fn permute_rows(t: &Tensor, num_heads: usize, to_blocks: bool) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = match dims.first() {
        Some(&r) => r,
        None => candle_core::bail!("QKV tensor must have at least one dimension"),
    };
    if num_heads == 0 || !rows.is_multiple_of(3 * num_heads) {
        candle_core::bail!("QKV tensor has {rows} rows, not a multiple of 3 × {num_heads} heads");
    }
    let head_dim = rows / (3 * num_heads);
    let (a, b) = if to_blocks {
        (num_heads, 3)
    } else {
        (3, num_heads)
    };
    let mut split = vec![a, b, head_dim];
    split.extend_from_slice(&dims[1..]);
    t.reshape(split)?
        .transpose(0, 1)?
        .contiguous()?
        .reshape(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rows_follow_the_spec_formulas() {
        let (h, d) = (3usize, 2usize);
        let rows = 3 * h * d;
        let t = Tensor::arange(0u32, rows as u32, &Device::Cpu).unwrap();
        let blocks: Vec<u32> = interleaved_to_blocks(&t, h).unwrap().to_vec1().unwrap();
        for p in 0..3 {
            for hh in 0..h {
                for dd in 0..d {
                    let hf_row = hh * 3 * d + p * d + dd;
                    let blocks_row = p * h * d + hh * d + dd;
                    assert_eq!(blocks[blocks_row] as usize, hf_row);
                }
            }
        }
    }

    #[test]
    fn inverse_round_trips_weights() {
        let t = Tensor::arange(0f32, 24.0 * 5.0, &Device::Cpu)
            .unwrap()
            .reshape((24, 5))
            .unwrap();
        let b = interleaved_to_blocks(&t, 4).unwrap();
        assert_ne!(b.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
        let back = blocks_to_interleaved(&b, 4).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn bad_row_count_is_an_error() {
        let t = Tensor::zeros(10, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(interleaved_to_blocks(&t, 4).is_err());
        assert!(blocks_to_interleaved(&t, 0).is_err());
    }
}
