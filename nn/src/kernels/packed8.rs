//! Q4_0 and Q8_0 weights repacked eight rows at a time, for the AVX2 decode GEMV.
//!
//! GGML stores these weights row after row, each row a run of blocks of 32 values: an f16 scale,
//! then the values (Q4_0: 16 bytes, byte `i` holding value `i` in its low nibble and value
//! `i + 16` in its high one; Q8_0: 32 signed bytes). A matrix-vector product over that layout
//! works one row at a time: per block a scalar scale conversion, a horizontal sum and two
//! floating-point operations for 32 weights, which on AVX2 bounds the product by instructions,
//! not memory (measured: Q4_0 8.5 of 19.4 GB/s; candle's Q8_0 26 % of the bandwidth).
//!
//! Here the same bytes are regrouped so one 32-bit lane of an AVX2 register is one row: for
//! rows `8g..8g + 8` and block `b`, a group block holds the eight rows' f16 scales (16 bytes),
//! then chunks `j` of 32 bytes, chunk `j` holding bytes `4j..4j + 4` of each of the eight rows'
//! blocks in row order (Q4_0: 4 chunks, Q8_0: 8). One load gives 4 values of every row; against
//! the input's matching 4 values broadcast to every lane, `vpmaddubsw` and `vpmaddwd` leave each
//! row's partial dot product in its own lane, the eight scales convert with one `vcvtph2ps`,
//! and no horizontal sum is needed. The packed tensor has exactly the size of the GGML one and
//! replaces it (the GGML form is rebuilt on demand: [`Packed8::to_qtensor`]).
//!
//! Integer sums are exact (Q4_0: a 16-bit lane adds 8 products of a nibble ≤ 15 and an input
//! value of magnitude ≤ 127, ≤ 30 480; Q8_0: each 16-bit pair ≤ 2·128·127, widened to 32 bits
//! at once), so the AVX2 kernels and the portable ones here give the same bits ([`gemv`]).

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Result, Tensor};

use super::gemv_q4_0::{QuantizedRow, QK};
use super::isa::{self, Isa};
use super::{output_dims, par_row_groups};

pub use super::packed8_layout::ROWS;
use super::packed8_layout::{regroup, Kind, CHUNK_BYTES, SCALE_BYTES};

/// A `[n, k]` Q4_0 or Q8_0 weight in the eight-row layout (module docs). `n` is a multiple of
/// 8 and `k` of 32.
#[derive(Debug)]
pub struct Packed8 {
    kind: Kind,
    n: usize,
    k: usize,
    bytes: Vec<u8>,
}

/// Whether weights on path `isa` should be repacked: the path's Q4_0 GEMV is the AVX2 one
/// (on an AVX-512 VNNI path the Q4_0 kernel and candle's Q8_0 kernel keep GGML's layout; the
/// scalar path leaves products to candle).
pub fn packs_on(isa: Isa) -> bool {
    super::gemv_q4_0::uses_avx2_kernel(isa)
}

/// Whether `w` can be repacked: a CPU Q4_0 or Q8_0 weight `[n, k]`, `n` a multiple of 8, `k` of
/// 32.
pub fn fits(w: &QTensor) -> bool {
    matches!(w.device(), Device::Cpu)
        && w.shape()
            .dims2()
            .is_ok_and(|(n, k)| fits_dims(w.dtype(), n, k))
}

/// Whether a `[n, k]` weight of type `dtype` can be held in this layout: Q4_0 or Q8_0, `n` a
/// multiple of 8, `k` of 32.
pub fn fits_dims(dtype: GgmlDType, n: usize, k: usize) -> bool {
    Kind::of(dtype).is_some() && n.is_multiple_of(ROWS) && n > 0 && k.is_multiple_of(QK) && k > 0
}

impl Packed8 {
    /// Repacks `w` (check [`fits`]) into new bytes.
    pub fn pack(w: &QTensor) -> Result<Self> {
        if !fits(w) {
            candle_core::bail!(
                "Packed8: needs a CPU Q4_0 or Q8_0 weight with rows a multiple of 8, got {:?} {:?}",
                w.dtype(),
                w.shape()
            );
        }
        let (n, k) = w.shape().dims2()?;
        let data = w.data()?;
        let kind = Self::checked_kind(w.dtype(), n, k, data.len())?;
        let mut bytes = vec![0u8; data.len()];
        let group_len = k / QK * kind.group_block_bytes();
        for (src, dst) in data
            .chunks_exact(group_len)
            .zip(bytes.chunks_exact_mut(group_len))
        {
            regroup(kind, src, dst);
        }
        Ok(Self { kind, n, k, bytes })
    }

    /// Repacks the GGML bytes of a `[n, k]` weight of type `dtype` (check [`fits_dims`]) in
    /// place: no second copy of the weight exists at any time (one group's bytes of scratch).
    pub fn from_ggml_bytes(
        dtype: GgmlDType,
        (n, k): (usize, usize),
        bytes: Vec<u8>,
    ) -> Result<Self> {
        let kind = Self::checked_kind(dtype, n, k, bytes.len())?;
        let mut bytes = bytes;
        let group_len = k / QK * kind.group_block_bytes();
        let mut scratch = vec![0u8; group_len];
        for group in bytes.chunks_exact_mut(group_len) {
            scratch.copy_from_slice(group);
            regroup(kind, &scratch, group);
        }
        Ok(Self { kind, n, k, bytes })
    }

    /// The layout's block kind for a `[n, k]` weight of `dtype` held in `len` GGML bytes, or
    /// an error naming what does not fit.
    fn checked_kind(dtype: GgmlDType, n: usize, k: usize, len: usize) -> Result<Kind> {
        let kind = match Kind::of(dtype) {
            Some(kind) if fits_dims(dtype, n, k) => kind,
            _ => candle_core::bail!(
                "Packed8: needs a Q4_0 or Q8_0 weight with rows a multiple of 8 and columns of \
                 32, got {dtype:?} [{n}, {k}]"
            ),
        };
        if len != n * (k / QK) * kind.block_bytes() {
            candle_core::bail!("Packed8: {len} weight bytes for {dtype:?} [{n}, {k}]");
        }
        Ok(kind)
    }

    /// `(n, k)`: output and input widths.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The GGML block type.
    pub fn dtype(&self) -> GgmlDType {
        self.kind.dtype()
    }

    /// Bytes held (as many as the GGML form's).
    pub fn storage_size_in_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The bytes of group `g` (rows `8g..8g + 8`): `k / 32` group blocks.
    fn group(&self, g: usize) -> &[u8] {
        let len = self.k / QK * self.kind.group_block_bytes();
        &self.bytes[g * len..][..len]
    }

    /// Row `r`'s GGML bytes (`k / 32` blocks) into `dst`.
    fn unpack_row(&self, r: usize, dst: &mut [u8]) {
        let lane = r % ROWS;
        let (gb, bb) = (self.kind.group_block_bytes(), self.kind.block_bytes());
        for (src, out) in self
            .group(r / ROWS)
            .chunks_exact(gb)
            .zip(dst.chunks_exact_mut(bb))
        {
            out[..2].copy_from_slice(&src[2 * lane..2 * lane + 2]);
            for j in 0..self.kind.chunks() {
                let at = SCALE_BYTES + j * CHUNK_BYTES + lane * 4;
                out[2 + 4 * j..2 + 4 * j + 4].copy_from_slice(&src[at..at + 4]);
            }
        }
    }

    /// The weight in GGML's layout again (a new tensor of the same size).
    pub fn to_qtensor(&self) -> Result<QTensor> {
        let row_bytes = self.k / QK * self.kind.block_bytes();
        let mut data = vec![0u8; self.bytes.len()];
        for (r, dst) in data.chunks_exact_mut(row_bytes).enumerate() {
            self.unpack_row(r, dst);
        }
        let storage = QStorage::from_data(Cow::Owned(data), &Device::Cpu, self.dtype())?;
        QTensor::new(storage, (self.n, self.k))
    }

    /// Rows `first..first + count` widened to f32 into `dst` (`count × k` values): whole
    /// groups straight from the packed blocks, the rows of a partial group one at a time.
    pub fn dequantize_rows(&self, first: usize, count: usize, dst: &mut [f32]) {
        let k = self.k;
        let mut r = first;
        let mut out = &mut dst[..count * k];
        while !out.is_empty() {
            let take = if r.is_multiple_of(ROWS) && out.len() / k >= ROWS {
                ROWS
            } else {
                1
            };
            let (head, rest) = out.split_at_mut(take * k);
            if take == ROWS {
                self.dequantize_group(r / ROWS, head);
            } else {
                self.dequantize_row(r, head);
            }
            out = rest;
            r += take;
        }
    }

    /// The eight rows of group `g` widened into `dst` (`8 × k` values, row after row).
    fn dequantize_group(&self, g: usize, dst: &mut [f32]) {
        let gb = self.kind.group_block_bytes();
        for (b, blk) in self.group(g).chunks_exact(gb).enumerate() {
            for (r, row) in dst.chunks_exact_mut(self.k).enumerate() {
                let d = half::f16::from_le_bytes([blk[2 * r], blk[2 * r + 1]]).to_f32();
                let out = &mut row[b * QK..(b + 1) * QK];
                for j in 0..self.kind.chunks() {
                    let w = &blk[SCALE_BYTES + j * CHUNK_BYTES + r * 4..][..4];
                    widen_chunk(self.kind, j, w, d, out);
                }
            }
        }
    }

    /// Row `r` widened into `dst` (`k` values).
    fn dequantize_row(&self, r: usize, dst: &mut [f32]) {
        let bb = self.kind.block_bytes();
        let mut raw = vec![0u8; self.k / QK * bb];
        self.unpack_row(r, &mut raw);
        for (blk, out) in raw.chunks_exact(bb).zip(dst.chunks_exact_mut(QK)) {
            let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            for j in 0..self.kind.chunks() {
                widen_chunk(self.kind, j, &blk[2 + 4 * j..2 + 4 * j + 4], d, out);
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
    /// dtype: up to 4 rows by the GEMV on the active path, more by the same integer products
    /// four input rows at a time ([`gemm_quantized_rows`]: every row gets the GEMV's bits).
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        self.matmul_with(isa::active(), x)
    }

    /// [`Packed8::matmul`] with the GEMV on path `isa` (clamped to the host's).
    pub fn matmul_with(&self, isa: Isa, x: &Tensor) -> Result<Tensor> {
        let in_dims = x.dims().to_vec();
        if in_dims.last() != Some(&self.k) || !x.device().is_cpu() {
            candle_core::bail!(
                "Packed8: input {in_dims:?} on {:?} against a [{}, {}] CPU weight",
                x.device(),
                self.n,
                self.k
            );
        }
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let rows = in_dims.iter().rev().skip(1).product::<usize>();
        let xs = x32.flatten_all()?.to_vec1::<f32>()?;
        let out = if rows < super::gemm_q4_0::MIN_ROWS {
            let mut out = vec![0f32; rows * self.n];
            for (row, y) in xs.chunks_exact(self.k).zip(out.chunks_exact_mut(self.n)) {
                gemv(isa, self, &QuantizedRow::new(row), y);
            }
            out
        } else {
            gemm_quantized_rows(isa, self, &xs)
        };
        Tensor::from_vec(out, output_dims(&in_dims, self.n), x.device())?.to_dtype(dtype)
    }
}

/// Widens chunk `j` of one row's block (`w`: its 4 bytes) with scale `d` into the block's 32
/// values `out`: Q4_0 value `4j + p` is `(low nibble of byte p − 8)·d` and value `16 + 4j + p`
/// the high nibble's; Q8_0 value `4j + p` is `byte p · d`.
fn widen_chunk(kind: Kind, j: usize, w: &[u8], d: f32, out: &mut [f32]) {
    for (p, &byte) in w.iter().enumerate() {
        match kind {
            Kind::Q4_0 => {
                out[4 * j + p] = (f32::from(byte & 0x0f) - 8.0) * d;
                out[16 + 4 * j + p] = (f32::from(byte >> 4) - 8.0) * d;
            }
            Kind::Q8_0 => out[4 * j + p] = f32::from(byte as i8) * d,
        }
    }
}

/// `y = W·x` for one quantized input row, groups of 8 rows split over rayon's pool: the AVX2
/// kernel where path `isa` has it, else the portable one (the same bits).
fn gemv(isa: Isa, w: &Packed8, x: &QuantizedRow, y: &mut [f32]) {
    let avx2 = isa.clamped() >= Isa::Avx2;
    par_row_groups(
        y,
        1,
        ROWS,
        |r, out| {
            let group = w.group(r / ROWS);
            let d = if avx2 {
                group_dot_avx2(w.kind, group, x)
            } else {
                group_dot(w.kind, group, x)
            };
            out.copy_from_slice(&d);
        },
        // `n` is a multiple of 8: no single rows.
        |_, _| {},
    );
}

/// `xs · wᵀ` for many input rows (`xs`: `rows × k` values): each row quantized as the GEMV's
/// input, then per group of eight weight rows (split over rayon's pool) the products with four
/// input rows at a time, whose weight bytes are unpacked once for the four. Each output equals
/// the GEMV's for that row, bit for bit. Returns `rows × n` values.
///
/// Prefill is bounded by arithmetic, not memory: integer products (32 per instruction) instead
/// of widening the weight into an f32 GEMM (8 per instruction) measured 1.5–2× faster for
/// Q4_0 at the shapes of a 6B language model, and as fast or faster for Q8_0 (whose products
/// need twice the instructions), without the widened blocks (`nn/examples/gemv_packed8.rs`).
fn gemm_quantized_rows(isa: Isa, w: &Packed8, xs: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let rows = xs.len() / w.k;
    let xq: Vec<QuantizedRow> = xs.par_chunks_exact(w.k).map(QuantizedRow::new).collect();
    let avx2 = isa.clamped() >= Isa::Avx2;
    // Per group, its eight outputs of every row: `[n / 8, rows, 8]`.
    let mut by_group = vec![0f32; w.n * rows];
    by_group
        .par_chunks_mut(rows * ROWS)
        .enumerate()
        .for_each(|(g, out)| {
            let group = w.group(g);
            let mut r = 0;
            if avx2 {
                while r + 4 <= rows {
                    let four = [&xq[r], &xq[r + 1], &xq[r + 2], &xq[r + 3]];
                    let d = group_dot4_avx2(w.kind, group, four);
                    out[r * ROWS..(r + 4) * ROWS].copy_from_slice(d.as_flattened());
                    r += 4;
                }
            }
            for (x, o) in xq[r..].iter().zip(out[r * ROWS..].chunks_exact_mut(ROWS)) {
                let d = if avx2 {
                    group_dot_avx2(w.kind, group, x)
                } else {
                    group_dot(w.kind, group, x)
                };
                o.copy_from_slice(&d);
            }
        });
    let mut out = vec![0f32; rows * w.n];
    out.par_chunks_mut(w.n).enumerate().for_each(|(r, y)| {
        for (g, dst) in y.chunks_exact_mut(ROWS).enumerate() {
            dst.copy_from_slice(&by_group[(g * rows + r) * ROWS..][..ROWS]);
        }
    });
    out
}

/// Four rows' [`group_dot`] with AVX2 (the caller's path has it).
fn group_dot4_avx2(kind: Kind, group: &[u8], xs: [&QuantizedRow; 4]) -> [[f32; ROWS]; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: only called when the active path, clamped to the host's, is AVX2 or above
        // (AVX2, FMA and F16C probed in `isa::host`); `group` holds `x.scale.len()` whole
        // group blocks of `kind` for each of the four rows (each has `k` values).
        unsafe {
            match kind {
                Kind::Q4_0 => x86::group_dot4_q4_0(group, xs),
                Kind::Q8_0 => x86::group_dot4_q8_0(group, xs),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        xs.map(|x| group_dot(kind, group, x))
    }
}

/// The eight dot products of one group with `x`, in portable Rust: per block and row the exact
/// integer sum `S` of weight value × input value, then (Q4_0) `t = dx·S − 8·dx·Σq` or (Q8_0)
/// `t = dx·S`, and `acc += dw·t`, each with one rounding, as the AVX2 kernels.
fn group_dot(kind: Kind, group: &[u8], x: &QuantizedRow) -> [f32; ROWS] {
    let mut acc = [0f32; ROWS];
    for (b, blk) in group.chunks_exact(kind.group_block_bytes()).enumerate() {
        let q = &x.qs[b * QK..(b + 1) * QK];
        for (r, a) in acc.iter_mut().enumerate() {
            let dw = half::f16::from_le_bytes([blk[2 * r], blk[2 * r + 1]]).to_f32();
            let mut s = 0i32;
            for j in 0..kind.chunks() {
                let w = &blk[SCALE_BYTES + j * CHUNK_BYTES + r * 4..][..4];
                for (p, &byte) in w.iter().enumerate() {
                    match kind {
                        Kind::Q4_0 => {
                            s += i32::from(byte & 0x0f) * i32::from(q[4 * j + p]);
                            s += i32::from(byte >> 4) * i32::from(q[16 + 4 * j + p]);
                        }
                        Kind::Q8_0 => s += i32::from(byte as i8) * i32::from(q[4 * j + p]),
                    }
                }
            }
            let t = match kind {
                Kind::Q4_0 => x.scale[b].mul_add(s as f32, -x.offset[b]),
                Kind::Q8_0 => x.scale[b] * s as f32,
            };
            *a = dw.mul_add(t, *a);
        }
    }
    acc
}

/// [`group_dot`] with AVX2 (the caller's path has it).
fn group_dot_avx2(kind: Kind, group: &[u8], x: &QuantizedRow) -> [f32; ROWS] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: only called when the active path, clamped to the host's, is AVX2 or above,
        // so the CPU has AVX2, FMA and F16C (probed in `isa::host`); `group` holds
        // `x.scale.len()` whole group blocks of `kind` (the weight is `[n, k]` and `x` has `k`
        // values).
        unsafe {
            match kind {
                Kind::Q4_0 => x86::group_dot_q4_0(group, x),
                Kind::Q8_0 => x86::group_dot_q8_0(group, x),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        group_dot(kind, group, x)
    }
}

/// The AVX2 kernels of the eight-row layout: one 32-bit lane per weight row.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{QuantizedRow, CHUNK_BYTES, QK, ROWS, SCALE_BYTES};
    use std::arch::x86_64::*;

    /// Bytes of a Q4_0 and a Q8_0 group block.
    const Q4_0_GROUP: usize = SCALE_BYTES + 4 * CHUNK_BYTES;
    const Q8_0_GROUP: usize = SCALE_BYTES + 8 * CHUNK_BYTES;

    /// The input's 4 values at `q` broadcast to every 32-bit lane.
    ///
    /// # Safety
    /// `q` must point to 4 readable bytes; the CPU must have AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn broadcast4(q: *const i8) -> __m256i {
        _mm256_set1_epi32((q as *const i32).read_unaligned())
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `group` must hold `x.scale.len()` Q4_0 group blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn group_dot_q4_0(group: &[u8], x: &QuantizedRow) -> [f32; ROWS] {
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for b in 0..x.scale.len() {
            let blk = group.as_ptr().add(b * Q4_0_GROUP);
            let q = x.qs.as_ptr().add(b * QK);
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
            // Up to 8 products of a nibble ≤ 15 and |q| ≤ 127 per 16-bit lane: no overflow.
            let mut s16 = _mm256_setzero_si256();
            for j in 0..4 {
                let w =
                    _mm256_loadu_si256(blk.add(SCALE_BYTES + j * CHUNK_BYTES) as *const __m256i);
                let lo = _mm256_and_si256(w, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo, broadcast4(q.add(4 * j))));
                s16 =
                    _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi, broadcast4(q.add(16 + 4 * j))));
            }
            let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
            let t = _mm256_fmsub_ps(_mm256_set1_ps(x.scale[b]), s, _mm256_set1_ps(x.offset[b]));
            acc = _mm256_fmadd_ps(dw, t, acc);
        }
        let mut out = [0f32; ROWS];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }

    /// The four rows' eight sums each, out of their accumulators.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store4(acc: [__m256; 4]) -> [[f32; ROWS]; 4] {
        let mut out = [[0f32; ROWS]; 4];
        for (o, a) in out.iter_mut().zip(acc) {
            _mm256_storeu_ps(o.as_mut_ptr(), a);
        }
        out
    }

    /// [`group_dot_q4_0`] for four input rows at once: each chunk's nibbles are unpacked once
    /// for the four; per row the very operations of [`group_dot_q4_0`] (the same bits).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `group` must hold `x.scale.len()` Q4_0 group
    /// blocks for every `x` of `xs`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn group_dot4_q4_0(group: &[u8], xs: [&QuantizedRow; 4]) -> [[f32; ROWS]; 4] {
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..xs[0].scale.len() {
            let blk = group.as_ptr().add(b * Q4_0_GROUP);
            let q = xs.map(|x| x.qs.as_ptr().add(b * QK));
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
            let mut s16 = [_mm256_setzero_si256(); 4];
            for j in 0..4 {
                let w =
                    _mm256_loadu_si256(blk.add(SCALE_BYTES + j * CHUNK_BYTES) as *const __m256i);
                let lo = _mm256_and_si256(w, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
                for r in 0..4 {
                    s16[r] = _mm256_add_epi16(
                        s16[r],
                        _mm256_maddubs_epi16(lo, broadcast4(q[r].add(4 * j))),
                    );
                    s16[r] = _mm256_add_epi16(
                        s16[r],
                        _mm256_maddubs_epi16(hi, broadcast4(q[r].add(16 + 4 * j))),
                    );
                }
            }
            for r in 0..4 {
                let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16[r], ones));
                let t = _mm256_fmsub_ps(
                    _mm256_set1_ps(xs[r].scale[b]),
                    s,
                    _mm256_set1_ps(xs[r].offset[b]),
                );
                acc[r] = _mm256_fmadd_ps(dw, t, acc[r]);
            }
        }
        store4(acc)
    }

    /// [`group_dot_q8_0`] for four input rows at once: each chunk's magnitudes are taken once
    /// for the four; per row the very operations of [`group_dot_q8_0`] (the same bits).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `group` must hold `x.scale.len()` Q8_0 group
    /// blocks for every `x` of `xs`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn group_dot4_q8_0(group: &[u8], xs: [&QuantizedRow; 4]) -> [[f32; ROWS]; 4] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..xs[0].scale.len() {
            let blk = group.as_ptr().add(b * Q8_0_GROUP);
            let q = xs.map(|x| x.qs.as_ptr().add(b * QK));
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
            let mut s32 = [_mm256_setzero_si256(); 4];
            for j in 0..8 {
                let w =
                    _mm256_loadu_si256(blk.add(SCALE_BYTES + j * CHUNK_BYTES) as *const __m256i);
                let magnitude = _mm256_sign_epi8(w, w);
                for r in 0..4 {
                    let pairs = _mm256_maddubs_epi16(
                        magnitude,
                        _mm256_sign_epi8(broadcast4(q[r].add(4 * j)), w),
                    );
                    s32[r] = _mm256_add_epi32(s32[r], _mm256_madd_epi16(pairs, ones));
                }
            }
            for r in 0..4 {
                let t = _mm256_mul_ps(_mm256_set1_ps(xs[r].scale[b]), _mm256_cvtepi32_ps(s32[r]));
                acc[r] = _mm256_fmadd_ps(dw, t, acc[r]);
            }
        }
        store4(acc)
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `group` must hold `x.scale.len()` Q8_0 group blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn group_dot_q8_0(group: &[u8], x: &QuantizedRow) -> [f32; ROWS] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for b in 0..x.scale.len() {
            let blk = group.as_ptr().add(b * Q8_0_GROUP);
            let q = x.qs.as_ptr().add(b * QK);
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
            let mut s32 = _mm256_setzero_si256();
            for j in 0..8 {
                let w =
                    _mm256_loadu_si256(blk.add(SCALE_BYTES + j * CHUNK_BYTES) as *const __m256i);
                // |w| as unsigned times q with w's sign: w·q, each 16-bit pair ≤ 2·128·127.
                let pairs = _mm256_maddubs_epi16(
                    _mm256_sign_epi8(w, w),
                    _mm256_sign_epi8(broadcast4(q.add(4 * j)), w),
                );
                s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(pairs, ones));
            }
            let t = _mm256_mul_ps(_mm256_set1_ps(x.scale[b]), _mm256_cvtepi32_ps(s32));
            acc = _mm256_fmadd_ps(dw, t, acc);
        }
        let mut out = [0f32; ROWS];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}

#[cfg(test)]
mod tests;
