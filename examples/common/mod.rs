//! What the op-timing examples share: the binary's allocator and timers.

// Each example uses some of these.
#![allow(dead_code)]

use std::time::Instant;

/// The `visualglm` binary's allocator, so that op buffers behave as in it.
#[global_allocator]
static ALLOCATOR: visualglm_alloc::HugePageAlloc = visualglm_alloc::HugePageAlloc;

/// Best wall time in ms of `reps` runs after one warm-up.
pub fn best_ms(reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

/// Wall time in ms of one run of `f`.
pub fn once_ms<T>(f: impl FnOnce() -> candle_core::Result<T>) -> anyhow::Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The median of `xs` (the upper one for an even count; NaN for none).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}
