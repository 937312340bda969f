//! glibc `malloc` settings for inference: candle allocates a fresh buffer for every op's
//! output, and glibc serves buffers above its mmap threshold with a new `mmap` and returns them
//! with `munmap` (or trims the heap top), so each op pays page faults and zeroing again. Keeping
//! buffers up to 64 MiB on the heap, and up to 128 MiB of free heap top, measured the full
//! image encoder (39 ViT layers, f32, 2 threads) at 3.3 s instead of 3.8–4.1 s with the same
//! peak memory for the 6 GB q4_0 configuration (`BENCHMARKS.md`).

/// Buffers at most this large come from the heap.
pub const MMAP_THRESHOLD: usize = 64 << 20;
/// At most this much free memory stays at the top of the heap.
pub const TRIM_THRESHOLD: usize = 128 << 20;

/// Applies [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`] to glibc's allocator, unless the user
/// set `GLIBC_TUNABLES` (their choice wins); returns whether it did. Call it at the start of
/// `main`, before other threads exist. A no-op elsewhere than Linux with glibc.
pub fn tune_for_inference() -> bool {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return false;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    let as_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    // SAFETY: `mallopt` only changes allocator parameters; glibc takes its arena lock while
    // doing so, and both values are valid thresholds (positive and below `c_int::MAX`).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn thresholds_apply_on_glibc() {
        // The test harness may have set GLIBC_TUNABLES; only check the call itself.
        let applied = super::set_thresholds();
        assert_eq!(
            applied,
            cfg!(all(target_os = "linux", target_env = "gnu")),
            "mallopt refused the thresholds"
        );
    }
}
