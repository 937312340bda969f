//! Vectorizable f32 `exp` and `erf` (exactly rounded operations only, so every instruction
//! set gives the same bits), and the plumbing of the fused inference kernels built on
//! them ([`crate::activation`], [`crate::norm`], [`crate::softmax`]).
//!
//! candle's CPU ops evaluate `exp` and `erf` one element at a time through libm (`erf` alone
//! cost 6.9 ms per ViT layer on two threads, PyTorch's vectorized one 0.4 ms). Here both are
//! branch-free polynomial forms that the compiler turns into SIMD code: each kernel is compiled
//! three times, for AVX-512, for AVX2 + FMA and for the baseline target, and the one for the
//! active path runs ([`simd_kernel!`], [`crate::kernels::isa`]).
//!
//! Accuracy (tests below, against the standard library over dense grids): `exp` within 2 ulp
//! (Cephes' `expf` polynomial); `erf` within 6·10⁻⁷ absolute (Abramowitz & Stegun 7.1.26, the
//! form PyTorch's vectorized CPU `erf` uses, plus f32 rounding), so GELU is within
//! 3·10⁻⁷·max(|x|, 1) of candle's libm-based op.

use candle_core::{DType, Result, Storage, Tensor, WithDType};

/// Below this many elements one thread does the work: waking the pool costs more.
pub(crate) const MIN_PARALLEL: usize = 1 << 15;

/// `e^x` for `x` up to 88.7 (+∞ above), exactly 0 below −87.3 (so that −∞, a masked
/// position, gives 0).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `x - n·ln 2` is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to the nearest integer n (|v| < 2^22) and leaves n in the low
    // bits of the sum, so that 2^n is built with integer operations: no float-to-int
    // conversion, which would not vectorize (`round` would need SSE4.1).
    const ROUND: f32 = 12_582_912.0;
    const LOW: f32 = -87.3;
    let below = x < LOW;
    let x = x.clamp(LOW, 88.7);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = (p * (r * r) + r) + 1.0;
    // 2^n through the exponent field: n is in [-126, 128] after the clamp.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if below {
        0.0
    } else {
        e * scale
    }
}

/// The error function, within 6·10⁻⁷ absolute (Abramowitz & Stegun 7.1.26).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (P * a + 1.0);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// Exact (`erf`) GELU, `x·(1 + erf(x/√2))/2`.
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// tanh-approximated GELU, `x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2`, evaluated as the
/// equal `x / (1 + e^(−2u))` (no cancellation for negative `x`).
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + exp(-2.0 * u))
}

/// The derivative of [`gelu_erf`]: `Φ(x) + x·φ(x)`, i.e. `(1 + erf(x/√2))/2 + x·e^(−x²/2)/√(2π)`.
#[inline(always)]
pub(crate) fn gelu_erf_derivative(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

/// The derivative of [`gelu_tanh`]: with `s = 1/(1 + e^(−2u))` (so that `gelu_tanh = x·s`),
/// `s + 2x·s(1 − s)·du/dx`, `du/dx = √(2/π)·(1 + 3·0.044715·x²)`; finite in both tails.
#[inline(always)]
pub(crate) fn gelu_tanh_derivative(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const C: f32 = 0.044_715;
    let u = SQRT_2_OVER_PI * x * (1.0 + C * x * x);
    let s = 1.0 / (1.0 + exp(-2.0 * u));
    s + 2.0 * x * s * (1.0 - s) * SQRT_2_OVER_PI * (1.0 + 3.0 * C * x * x)
}

/// The f32 value of f16 bits `h`, exactly (NaNs stay NaN), with integer and exactly rounded
/// float operations only so that a loop of it vectorizes without F16C.
#[inline(always)]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let magnitude = h & 0x7fff;
    // The f16 exponent and mantissa land in the f32 fields; scaling by 2^112 rebiases the
    // exponent (15 → 127) and turns f16 subnormals, f32 subnormals here, into normals.
    let scaled = f32::from_bits(magnitude << 13) * f32::from_bits((127 + 112) << 23);
    let bits = if magnitude >= 0x7c00 {
        // Infinity or NaN: all-ones exponent, the mantissa kept.
        scaled.to_bits() | 0x7f80_0000
    } else {
        scaled.to_bits()
    };
    f32::from_bits(bits | sign)
}

/// `Σ f(xᵢ)` over `xs`, in 16 interleaved partial sums so that the loop vectorizes.
#[inline(always)]
pub(crate) fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for &v in rest {
        s += f(v);
    }
    s
}

/// The largest of `xs` (−∞ when empty), in 16 interleaved lanes so that the loop vectorizes.
#[inline(always)]
pub(crate) fn lane_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// Splits `ys` (and the matching `xs`) into whole rows of `width` and runs `kernel` on groups
/// of rows: on rayon's pool, about [`MIN_PARALLEL`] / 2 values per task, when there is enough
/// work; on this thread otherwise.
pub(crate) fn par_rows(
    xs: &[f32],
    ys: &mut [f32],
    width: usize,
    kernel: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    use rayon::prelude::*;
    if width == 0 {
        return;
    }
    if ys.len() < MIN_PARALLEL || rayon::current_num_threads() < 2 {
        kernel(xs, ys);
        return;
    }
    let rows_per_task = (MIN_PARALLEL / 2).div_ceil(width);
    ys.par_chunks_mut(rows_per_task * width)
        .zip(xs.par_chunks(rows_per_task * width))
        .for_each(|(y, x)| kernel(x, y));
}

/// Defines `$name`, which runs the `#[inline(always)]` function `$kernel` with the same
/// arguments compiled for the active path ([`crate::kernels::isa::active`]), and `$with`,
/// which takes the path as its first argument ([`crate::kernels::isa::Isa`], clamped to what
/// the CPU has): AVX-512 (`avx512f,avx2,fma`), AVX2 + FMA (`avx2,fma`), or the build's
/// baseline for [`Isa::Scalar`](crate::kernels::isa::Isa::Scalar), so that the compiler
/// vectorizes its loops with those instructions.
macro_rules! simd_kernel {
    ($(#[$doc:meta])* $vis:vis fn $name:ident, $with:ident => $kernel:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            $with($crate::kernels::isa::active(), $($arg),*)
        }

        /// The same on the given path (clamped to what the CPU has); the baseline build of
        /// the kernel for [`Isa::Scalar`](crate::kernels::isa::Isa::Scalar).
        $vis fn $with(isa: $crate::kernels::isa::Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $kernel($($arg),*)
                }
                match isa.clamped() {
                    // SAFETY: `clamped` returns at most the host's path, and the host has
                    // every feature of its path (`isa::host` probed them): here AVX-512F,
                    // AVX2 and FMA.
                    $crate::kernels::isa::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above: AVX2 and FMA.
                    $crate::kernels::isa::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::isa::Isa::Scalar => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = isa;
            $kernel($($arg),*)
        }
    };
}
pub(crate) use simd_kernel;

/// Whether the fused kernels handle `t`: an f32 CPU tensor that is contiguous and not tracked
/// for gradients (they have no backward; training keeps candle's ops, except GELU, whose graph
/// op is in [`crate::activation`]).
pub(crate) fn fused_applies(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && t.device().is_cpu() && !t.track_op() && t.is_contiguous()
}

/// Calls `f` with the values of contiguous CPU tensor `t` as `&[D]` (its dtype must be `D`),
/// straight from its storage, under the storage's read lock.
pub(crate) fn with_cpu_slice<D: WithDType, T>(t: &Tensor, f: impl FnOnce(&[D]) -> T) -> Result<T> {
    if !t.is_contiguous() {
        candle_core::bail!("the tensor is not contiguous");
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("the tensor is not on the CPU");
    };
    let data = cpu.as_slice::<D>()?;
    let n = t.elem_count();
    let start = layout.start_offset();
    let Some(xs) = data.get(start..start + n) else {
        candle_core::bail!("the storage does not hold {n} values at {start}");
    };
    Ok(f(xs))
}

/// [`with_cpu_slice`] for f32 tensors (the fused kernels' input).
pub(crate) fn with_f32<T>(t: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Result<T> {
    with_cpu_slice(t, f)
}

/// Helpers for the tests that run a kernel on every path the CPU supports.
#[cfg(test)]
pub(crate) mod path_tests {
    use crate::kernels::isa::{self, Isa};

    /// `len` pseudo-random values in `(-scale, scale)` from `seed` (a fixed generator, so a
    /// failure reproduces).
    pub(crate) fn values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005) ^ 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
                (2.0 * unit - 1.0) * scale
            })
            .collect()
    }

    /// Runs `run` on every path the CPU supports and checks each output against `reference`
    /// (the baseline build of the kernel): within `tol·max(|want|, 1)` per value, NaN where
    /// and only where the reference has NaN. Prints the paths that ran.
    pub(crate) fn check_every_path(
        what: &str,
        reference: &[f32],
        tol: f32,
        run: impl Fn(Isa) -> Vec<f32>,
    ) {
        let paths = isa::supported_paths();
        eprintln!("{what}: paths {paths:?}");
        for isa in paths {
            let got = run(isa);
            assert_eq!(got.len(), reference.len(), "{what} on {isa}");
            for (i, (&g, &w)) in got.iter().zip(reference).enumerate() {
                let ok = if w.is_nan() {
                    g.is_nan()
                } else {
                    (g - w).abs() <= tol * w.abs().max(1.0)
                };
                assert!(ok, "{what} on {isa}: [{i}] {g} vs {w}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(ulps(got, want));
            x += 0.000_37;
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_and_gelu_are_close_to_libm() {
        let (mut worst, mut worst_gelu) = (0f32, 0f32);
        let mut x = -10.0f32;
        while x <= 10.0 {
            let want = candle_core::cpu::erf::erf_f32(x);
            worst = worst.max((erf(x) - want).abs());
            let g = 0.5 * x * (1.0 + candle_core::cpu::erf::erf_f32(x / 2f32.sqrt()));
            worst_gelu = worst_gelu.max((gelu_erf(x) - g).abs() / x.abs().max(1.0));
            x += 0.000_13;
        }
        assert!(worst <= 6e-7, "erf off by {worst}");
        assert!(worst_gelu <= 3e-7, "gelu off by {worst_gelu} × max(|x|, 1)");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(20.0), 1.0);
        assert_eq!(erf(-20.0), -1.0);
        assert_eq!(gelu_erf(-30.0), 0.0);
    }

    #[test]
    fn f16_widening_is_exact() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            let got = f16_bits_to_f32(bits);
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn gelu_tanh_is_close_to_its_f64_value() {
        let mut worst = 0f64;
        let mut x = -12.0f32;
        while x <= 12.0 {
            let v = f64::from(x);
            let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044_715 * v * v * v);
            let want = 0.5 * v * (1.0 + u.tanh());
            worst = worst.max((f64::from(gelu_tanh(x)) - want).abs() / v.abs().max(1.0));
            x += 0.000_17;
        }
        assert!(worst <= 5e-7, "gelu_tanh off by {worst} × max(|x|, 1)");
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert_eq!(gelu_tanh(-1e4), 0.0);
        assert_eq!(gelu_tanh(1e4), 1e4);
    }

    #[test]
    fn every_simd_level_gives_the_same_values() {
        fn map_kernel(xs: &[f32], ys: &mut [f32]) {
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = gelu_erf(x) + exp(-x.abs()) + gelu_tanh(x);
            }
        }
        simd_kernel!(fn map, map_with => map_kernel(xs: &[f32], ys: &mut [f32]));
        let xs: Vec<f32> = (0..4099).map(|i| (i as f32 - 2000.0) * 0.004_1).collect();
        let mut base = vec![0f32; xs.len()];
        map_kernel(&xs, &mut base);
        let mut fast = vec![0f32; xs.len()];
        map(&xs, &mut fast);
        // Only exactly rounded operations (no fused multiply-add): the same bits everywhere.
        assert_eq!(fast, base);
        for isa in crate::kernels::isa::supported_paths() {
            eprintln!("fast_math map: path {isa}");
            let mut got = vec![0f32; xs.len()];
            map_with(isa, &xs, &mut got);
            assert_eq!(got, base, "{isa}");
        }
    }
}
