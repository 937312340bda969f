//! Q4_0 weights repacked eight rows at a time, for the AVX2 decode GEMV.
//!
//! GGML stores a Q4_0 weight row after row, each row a run of 18-byte blocks (an f16 scale,
//! then 16 bytes: byte `i` holds value `i` in its low nibble and value `i + 16` in its high
//! one). A matrix-vector product over that layout works one row at a time: per block a scalar
//! scale conversion, a horizontal sum and two floating-point operations for 32 weights, which
//! on AVX2 bounds the product by instructions, not memory (measured: 8.5 of 19.4 GB/s).
//!
//! Here the same bytes are regrouped so one 32-bit lane of an AVX2 register is one row: for
//! rows `8g..8g + 8` and block `b`, 144 bytes hold the eight rows' f16 scales (16 bytes),
//! then four chunks `j = 0..4` of 32 bytes, chunk `j` holding bytes `4j..4j + 4` of each of
//! the eight rows' blocks in row order. One load gives 4 low-nibble values (block values
//! `4j..4j + 4`) and 4 high-nibble values (`16 + 4j..`) of every row; against the input's
//! matching 4 values broadcast to every lane, `vpmaddubsw` and `vpmaddwd` leave each row's
//! partial dot product in its own lane, the eight scales convert with one `vcvtph2ps`, and
//! no horizontal sum is needed. The packed tensor has exactly the size of the GGML one, and
//! replaces it (the GGML form is rebuilt on demand: [`Q4_0x8::to_qtensor`]).
//!
//! Integer sums are exact (a 16-bit lane adds 8 products of a nibble ≤ 15 and an input value
//! of magnitude ≤ 127: ≤ 30 480), so the AVX2 kernel and the portable one here give the same
//! bits ([`gemv`]).

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Result, Tensor};

use super::gemv_q4_0::{QuantizedRow, BLOCK_BYTES, QK};
use super::isa::{self, Isa};
use super::{output_dims, par_row_groups};

/// Rows per group.
pub const ROWS: usize = 8;
/// Bytes of one group's block: 8 f16 scales and 8 × 16 bytes of nibbles.
const GROUP_BLOCK_BYTES: usize = ROWS * BLOCK_BYTES;
/// Bytes of the scales at the start of a group's block.
const SCALE_BYTES: usize = ROWS * 2;

/// A `[n, k]` Q4_0 weight in the eight-row layout (module docs). `n` is a multiple of 8 and
/// `k` of 32.
#[derive(Debug)]
pub struct Q4_0x8 {
    n: usize,
    k: usize,
    bytes: Vec<u8>,
}

/// Whether weights on path `isa` should be repacked: the path's Q4_0 GEMV is the AVX2 one
/// (the AVX-512 VNNI kernel keeps the GGML layout; the scalar path leaves products to candle).
pub fn packs_on(isa: Isa) -> bool {
    super::gemv_q4_0::uses_avx2_kernel(isa)
}

/// Whether `w` can be repacked: a CPU Q4_0 weight `[n, k]`, `n` a multiple of 8, `k` of 32.
pub fn fits(w: &QTensor) -> bool {
    w.dtype() == GgmlDType::Q4_0
        && matches!(w.device(), Device::Cpu)
        && w.shape()
            .dims2()
            .is_ok_and(|(n, k)| n % ROWS == 0 && n > 0 && k % QK == 0 && k > 0)
}

impl Q4_0x8 {
    /// Repacks `w` (check [`fits`]).
    pub fn pack(w: &QTensor) -> Result<Self> {
        if !fits(w) {
            candle_core::bail!(
                "Q4_0x8: needs a CPU Q4_0 weight with rows a multiple of 8, got {:?} {:?}",
                w.dtype(),
                w.shape()
            );
        }
        let (n, k) = w.shape().dims2()?;
        let data = w.data()?;
        let nb = k / QK;
        if data.len() != n * nb * BLOCK_BYTES {
            candle_core::bail!("Q4_0x8: {} weight bytes for [{n}, {k}]", data.len());
        }
        let mut bytes = vec![0u8; data.len()];
        for (g, out) in bytes.chunks_exact_mut(nb * GROUP_BLOCK_BYTES).enumerate() {
            for (b, dst) in out.chunks_exact_mut(GROUP_BLOCK_BYTES).enumerate() {
                for r in 0..ROWS {
                    let src = &data[((g * ROWS + r) * nb + b) * BLOCK_BYTES..][..BLOCK_BYTES];
                    dst[2 * r..2 * r + 2].copy_from_slice(&src[..2]);
                    for j in 0..4 {
                        let at = SCALE_BYTES + j * 32 + r * 4;
                        dst[at..at + 4].copy_from_slice(&src[2 + 4 * j..2 + 4 * j + 4]);
                    }
                }
            }
        }
        Ok(Self { n, k, bytes })
    }

    /// `(n, k)`: output and input widths.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Bytes held (as many as the GGML form's).
    pub fn storage_size_in_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Row `r`'s GGML bytes (`k / 32` blocks of 18 bytes) into `dst`.
    fn unpack_row(&self, r: usize, dst: &mut [u8]) {
        let nb = self.k / QK;
        let (g, lane) = (r / ROWS, r % ROWS);
        let group = &self.bytes[g * nb * GROUP_BLOCK_BYTES..][..nb * GROUP_BLOCK_BYTES];
        for (src, out) in group
            .chunks_exact(GROUP_BLOCK_BYTES)
            .zip(dst.chunks_exact_mut(BLOCK_BYTES))
        {
            out[..2].copy_from_slice(&src[2 * lane..2 * lane + 2]);
            for j in 0..4 {
                let at = SCALE_BYTES + j * 32 + lane * 4;
                out[2 + 4 * j..2 + 4 * j + 4].copy_from_slice(&src[at..at + 4]);
            }
        }
    }

    /// The weight in GGML's layout again (a new tensor of the same size).
    pub fn to_qtensor(&self) -> Result<QTensor> {
        let row_bytes = self.k / QK * BLOCK_BYTES;
        let mut data = vec![0u8; self.bytes.len()];
        for (r, dst) in data.chunks_exact_mut(row_bytes).enumerate() {
            self.unpack_row(r, dst);
        }
        let storage = QStorage::from_data(Cow::Owned(data), &Device::Cpu, GgmlDType::Q4_0)?;
        QTensor::new(storage, (self.n, self.k))
    }

    /// Rows `first..first + count` widened to f32 into `dst` (`count × k` values): whole
    /// groups straight from the packed blocks, the rows of a partial group one at a time.
    pub fn dequantize_rows(&self, first: usize, count: usize, dst: &mut [f32]) {
        let (k, nb) = (self.k, self.k / QK);
        let mut r = first;
        let mut out = &mut dst[..count * k];
        while !out.is_empty() {
            let (g, lane) = (r / ROWS, r % ROWS);
            let rows = out.len() / k;
            if lane == 0 && rows >= ROWS {
                let group = &self.bytes[g * nb * GROUP_BLOCK_BYTES..][..nb * GROUP_BLOCK_BYTES];
                let (head, rest) = out.split_at_mut(ROWS * k);
                dequantize_group(group, k, head);
                out = rest;
                r += ROWS;
            } else {
                let mut raw = vec![0u8; nb * BLOCK_BYTES];
                self.unpack_row(r, &mut raw);
                let (head, rest) = out.split_at_mut(k);
                super::gemm_q4_0::dequantize_row(&raw, head);
                out = rest;
                r += 1;
            }
        }
    }

    /// The whole weight as a dense f32 `[n, k]` tensor.
    pub fn dequantize(&self) -> Result<Tensor> {
        let mut out = vec![0f32; self.n * self.k];
        self.dequantize_rows(0, self.n, &mut out);
        Tensor::from_vec(out, (self.n, self.k), &Device::Cpu)
    }

    /// `x · wᵀ` for an input `[.., k]` of any float dtype on the CPU, returned in the input's
    /// dtype: up to 4 rows by the GEMV on the active path, more by the widening GEMM of
    /// [`super::gemm_q4_0`] (computed in f32).
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        self.matmul_with(isa::active(), x)
    }

    /// [`Q4_0x8::matmul`] with the GEMV on path `isa` (clamped to the host's).
    pub fn matmul_with(&self, isa: Isa, x: &Tensor) -> Result<Tensor> {
        let in_dims = x.dims().to_vec();
        if in_dims.last() != Some(&self.k) || !x.device().is_cpu() {
            candle_core::bail!(
                "Q4_0x8: input {in_dims:?} on {:?} against a [{}, {}] CPU weight",
                x.device(),
                self.n,
                self.k
            );
        }
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let rows = in_dims.iter().rev().skip(1).product::<usize>();
        let y = if rows >= super::gemm_q4_0::MIN_ROWS {
            super::gemm_q4_0::widening_matmul(&x32, self.n, ROWS, |first, m, dst| {
                self.dequantize_rows(first, m, dst)
            })?
        } else {
            let xs = x32.flatten_all()?.to_vec1::<f32>()?;
            let mut out = vec![0f32; rows * self.n];
            for (row, y) in xs.chunks_exact(self.k).zip(out.chunks_exact_mut(self.n)) {
                gemv(isa, self, &QuantizedRow::new(row), y);
            }
            Tensor::from_vec(out, output_dims(&in_dims, self.n), x.device())?
        };
        y.to_dtype(dtype)
    }
}

/// The eight rows of one packed group widened to f32 into `dst` (`8 × k` values, row after
/// row): value `4j + p` of a block is `(low nibble − 8)·d` of byte `p` of the row's chunk `j`,
/// value `16 + 4j + p` the high nibble's.
fn dequantize_group(group: &[u8], k: usize, dst: &mut [f32]) {
    for (b, blk) in group.chunks_exact(GROUP_BLOCK_BYTES).enumerate() {
        for (r, row) in dst.chunks_exact_mut(k).enumerate() {
            let d = half::f16::from_le_bytes([blk[2 * r], blk[2 * r + 1]]).to_f32();
            let out = &mut row[b * QK..(b + 1) * QK];
            for j in 0..4 {
                let w = &blk[SCALE_BYTES + j * 32 + r * 4..][..4];
                for (p, &byte) in w.iter().enumerate() {
                    out[4 * j + p] = (f32::from(byte & 0x0f) - 8.0) * d;
                    out[16 + 4 * j + p] = (f32::from(byte >> 4) - 8.0) * d;
                }
            }
        }
    }
}

/// `y = W·x` for one quantized input row, groups of 8 rows split over rayon's pool: the AVX2
/// kernel where path `isa` has it, else the portable one (the same bits).
fn gemv(isa: Isa, w: &Q4_0x8, x: &QuantizedRow, y: &mut [f32]) {
    let nb = w.k / QK;
    let group = |r: usize| &w.bytes[r / ROWS * nb * GROUP_BLOCK_BYTES..][..nb * GROUP_BLOCK_BYTES];
    let avx2 = isa.clamped() >= Isa::Avx2;
    par_row_groups(
        y,
        1,
        ROWS,
        |r, out| {
            let d = if avx2 {
                group_dot_avx2(group(r), x)
            } else {
                group_dot(group(r), x)
            };
            out.copy_from_slice(&d);
        },
        // `n` is a multiple of 8: no single rows.
        |_, _| {},
    );
}

/// The eight dot products of one group with `x`, in portable Rust: per block and row the
/// exact integer sum `S` of nibble × input value, then `t = dx·S − 8·dx·Σq` and
/// `acc += dw·t`, each with one rounding (fused multiply-add), as the AVX2 kernel.
fn group_dot(group: &[u8], x: &QuantizedRow) -> [f32; ROWS] {
    let mut acc = [0f32; ROWS];
    for (b, blk) in group.chunks_exact(GROUP_BLOCK_BYTES).enumerate() {
        let q = &x.qs[b * QK..(b + 1) * QK];
        for (r, a) in acc.iter_mut().enumerate() {
            let dw = half::f16::from_le_bytes([blk[2 * r], blk[2 * r + 1]]).to_f32();
            let mut s = 0i32;
            for j in 0..4 {
                let w = &blk[SCALE_BYTES + j * 32 + r * 4..][..4];
                for (p, &byte) in w.iter().enumerate() {
                    s += i32::from(byte & 0x0f) * i32::from(q[4 * j + p]);
                    s += i32::from(byte >> 4) * i32::from(q[16 + 4 * j + p]);
                }
            }
            let t = x.scale[b].mul_add(s as f32, -x.offset[b]);
            *a = dw.mul_add(t, *a);
        }
    }
    acc
}

/// [`group_dot`] with AVX2 (the caller's path has it).
fn group_dot_avx2(group: &[u8], x: &QuantizedRow) -> [f32; ROWS] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: only called when the active path, clamped to the host's, is AVX2 or above,
        // so the CPU has AVX2, FMA and F16C (probed in `isa::host`); `group` holds
        // `x.scale.len()` whole group blocks (the weight is `[n, k]` and `x` has `k` values).
        unsafe { x86::group_dot(group, x) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        group_dot(group, x)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{QuantizedRow, GROUP_BLOCK_BYTES, QK, ROWS, SCALE_BYTES};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `group` must hold `x.scale.len()` blocks of
    /// [`GROUP_BLOCK_BYTES`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn group_dot(group: &[u8], x: &QuantizedRow) -> [f32; ROWS] {
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for b in 0..x.scale.len() {
            let blk = group.as_ptr().add(b * GROUP_BLOCK_BYTES);
            let q = x.qs.as_ptr().add(b * QK);
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
            let mut s16 = _mm256_setzero_si256();
            for j in 0..4 {
                let w = _mm256_loadu_si256(blk.add(SCALE_BYTES + j * 32) as *const __m256i);
                let lo = _mm256_and_si256(w, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
                let ql = _mm256_set1_epi32((q.add(4 * j) as *const i32).read_unaligned());
                let qh = _mm256_set1_epi32((q.add(16 + 4 * j) as *const i32).read_unaligned());
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo, ql));
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi, qh));
            }
            let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
            let t = _mm256_fmsub_ps(_mm256_set1_ps(x.scale[b]), s, _mm256_set1_ps(x.offset[b]));
            acc = _mm256_fmadd_ps(dw, t, acc);
        }
        let mut out = [0f32; ROWS];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}

#[cfg(test)]
mod tests;
