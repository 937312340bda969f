//! What the op-timing examples share: the binary's allocator and a best-of timer.

use std::time::Instant;

/// The `visualglm` binary's allocator, so that op buffers behave as in it.
#[global_allocator]
static ALLOCATOR: visualglm::allocator::HugePageAlloc = visualglm::allocator::HugePageAlloc;

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
