//! The eight-row layout of Q4_0 and Q8_0 weights in bytes (see [`super::packed8`]): the
//! sizes of its parts, the block types it holds, and the regrouping of GGML's rows into it.

use candle_core::quantized::GgmlDType;

/// Rows per group.
pub const ROWS: usize = 8;
/// Bytes of the scales at the start of a group block.
pub(crate) const SCALE_BYTES: usize = ROWS * 2;
/// Bytes of one chunk: 4 bytes of each of the 8 rows.
pub(crate) const CHUNK_BYTES: usize = ROWS * 4;

/// The block types this layout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Q4_0,
    Q8_0,
}

impl Kind {
    pub(crate) fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_0 => Some(Kind::Q4_0),
            GgmlDType::Q8_0 => Some(Kind::Q8_0),
            _ => None,
        }
    }

    pub(crate) fn dtype(self) -> GgmlDType {
        match self {
            Kind::Q4_0 => GgmlDType::Q4_0,
            Kind::Q8_0 => GgmlDType::Q8_0,
        }
    }

    /// Chunks of 4 value bytes per row and block.
    pub(crate) fn chunks(self) -> usize {
        match self {
            Kind::Q4_0 => 4,
            Kind::Q8_0 => 8,
        }
    }

    /// Bytes of one GGML block: the f16 scale and the value bytes.
    pub(crate) fn block_bytes(self) -> usize {
        2 + 4 * self.chunks()
    }

    /// Bytes of one group block (eight GGML blocks).
    pub(crate) fn group_block_bytes(self) -> usize {
        ROWS * self.block_bytes()
    }
}

/// Regroups the GGML bytes of the eight rows of one group (`src`, row after row) into the
/// group's blocks (`dst`, as long as `src`).
pub(crate) fn regroup(kind: Kind, src: &[u8], dst: &mut [u8]) {
    let (bb, gb) = (kind.block_bytes(), kind.group_block_bytes());
    let nb = src.len() / gb;
    for (b, dst) in dst.chunks_exact_mut(gb).enumerate() {
        for r in 0..ROWS {
            let src = &src[(r * nb + b) * bb..][..bb];
            dst[2 * r..2 * r + 2].copy_from_slice(&src[..2]);
            for j in 0..kind.chunks() {
                let at = SCALE_BYTES + j * CHUNK_BYTES + r * 4;
                dst[at..at + 4].copy_from_slice(&src[2 + 4 * j..2 + 4 * j + 4]);
            }
        }
    }
}
