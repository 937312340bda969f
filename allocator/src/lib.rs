//! Allocator settings for inference.
//!
//! * **glibc `malloc` thresholds** ([`tune_for_inference`]): candle allocates a fresh buffer for
//!   every op's output, and glibc serves buffers above its mmap threshold with a new `mmap` and
//!   returns them with `munmap` (or trims the heap top), so each op pays page faults and zeroing
//!   again. Keeping buffers up to 64 MiB on the heap, and the free heap top for reuse,
//!   measured the full image encoder (39 ViT layers, f32, 2 threads) at 3.3 s instead of
//!   3.8–4.1 s with the same peak memory for the 6 GB q4_0 configuration (`BENCHMARKS.md`).
//! * **Transparent huge pages for large buffers** ([`HugePageAlloc`]): a decode step streams
//!   every weight once, and on 4 KiB pages the CPU's prefetchers stop at each page boundary and
//!   each page costs a TLB entry. Asking the kernel for 2 MiB pages (`madvise(MADV_HUGEPAGE)`)
//!   on every allocation of at least [`HUGE_PAGE_MIN`], before it is first written, puts the
//!   weights (and large activations) on huge pages at no extra cost: measured 3–11 % faster f16
//!   and 6–9 % faster q4_0 decode steps.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Buffers at most this large come from the heap.
pub const MMAP_THRESHOLD: usize = 64 << 20;
/// At most this much free memory stays at the top of the heap (glibc's `int` maximum, i.e.
/// freed heap memory is kept for the next ops): with 128 MiB, batch-8 image encoding gave its
/// ~50 MB activation buffers back and faulted them in again every layer (4-layer b=8 run:
/// median 380 instead of 403 ms per image). Buffers above [`MMAP_THRESHOLD`] are still
/// unmapped when freed, and the 6 GB configuration's peak stays 5,670 MiB.
pub const TRIM_THRESHOLD: usize = i32::MAX as usize;

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

/// Gives the allocator's free memory back to the operating system (glibc's `malloc_trim(0)`:
/// the free top of the heap and the whole free pages inside it); returns whether any was
/// released. Call it once a model is built or loaded: loading frees about as much as it
/// allocates (dtype conversions, quantization, repacking into the eight-row layout), and with
/// [`TRIM_THRESHOLD`] glibc would otherwise keep all of it (measured: 136 MiB on the smallest
/// full-size configuration). A no-op elsewhere than Linux with glibc.
pub fn release_free_memory() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: `malloc_trim` only returns free memory to the kernel; glibc takes each arena's
    // lock while it does, so it is safe to call at any time from any thread.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// Allocations at least this large are advised onto transparent huge pages by
/// [`HugePageAlloc`].
pub const HUGE_PAGE_MIN: usize = 4 << 20;

/// The huge page size on x86-64 and arm64 Linux.
const HUGE_PAGE: usize = 2 << 20;

static HUGE_PAGES: AtomicBool = AtomicBool::new(true);

/// The system allocator, plus `madvise(MADV_HUGEPAGE)` on the whole 2 MiB pages inside every
/// allocation of at least [`HUGE_PAGE_MIN`] bytes (Linux with glibc; elsewhere exactly the
/// system allocator). Use it as the program's `#[global_allocator]`, as the `visualglm`
/// binary does; [`set_huge_pages`] turns the advice off. Where transparent huge pages are
/// `never`, or the kernel has none free, the memory stays on 4 KiB pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageAlloc;

/// Turns [`HugePageAlloc`]'s advice on or off for allocations made from now on.
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Ordering::Relaxed);
}

/// Whether [`HugePageAlloc`] currently advises huge pages.
pub fn huge_pages() -> bool {
    HUGE_PAGES.load(Ordering::Relaxed)
}

/// The whole huge pages inside `len` bytes at `ptr`, as `(start, len)`, if any.
fn huge_page_span(ptr: usize, len: usize) -> Option<(usize, usize)> {
    let start = ptr.checked_next_multiple_of(HUGE_PAGE)?;
    let end = ptr.checked_add(len)? / HUGE_PAGE * HUGE_PAGE;
    (end > start).then(|| (start, end - start))
}

/// Advises the whole huge pages inside a fresh allocation of `len` bytes at `ptr`.
fn advise_huge(ptr: *mut u8, len: usize) {
    if ptr.is_null() || len < HUGE_PAGE_MIN || !huge_pages() {
        return;
    }
    if let Some((start, span)) = huge_page_span(ptr as usize, len) {
        madvise_huge(start, span);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn madvise_huge(start: usize, len: usize) {
    // SAFETY: `start..start + len` lies inside an allocation the allocator just returned to
    // us and no one else references yet. MADV_HUGEPAGE only sets a flag on the mapping that
    // lets later page faults there use huge pages; it changes no contents and no address. A
    // failure (old kernel, THP disabled) leaves the mapping as it was, and is ignored: no
    // logging here, which could allocate inside the allocator.
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn madvise_huge(_start: usize, _len: usize) {}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees (layout, alignment, ownership) hold; the only addition, `advise_huge`,
// neither allocates nor changes the memory's contents.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        advise_huge(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        advise_huge(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `dealloc`; the caller upholds `realloc`'s contract for `new_size`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        advise_huge(new, new_size);
        new
    }
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

    #[test]
    fn freed_heap_memory_is_given_back() {
        // With the thresholds set, 1 MiB buffers come from the heap and stay there when
        // freed; trimming must then release some of them.
        if !super::set_thresholds() {
            return;
        }
        let held: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8; 1 << 20]).collect();
        // Keep every other buffer so the freed ones are holes inside the heap, not its top.
        let kept: Vec<Vec<u8>> = held.into_iter().step_by(2).collect();
        assert!(super::release_free_memory(), "malloc_trim released nothing");
        assert!(kept.iter().enumerate().all(|(i, v)| v[0] == (2 * i) as u8));
    }

    #[test]
    fn huge_page_span_is_the_whole_pages_inside() {
        use super::{huge_page_span, HUGE_PAGE};
        assert_eq!(huge_page_span(0, HUGE_PAGE), Some((0, HUGE_PAGE)));
        assert_eq!(
            huge_page_span(1, 3 * HUGE_PAGE),
            Some((HUGE_PAGE, 2 * HUGE_PAGE))
        );
        assert_eq!(
            huge_page_span(1, 2 * HUGE_PAGE),
            Some((HUGE_PAGE, HUGE_PAGE))
        );
        assert_eq!(huge_page_span(1, 2 * HUGE_PAGE - 2), None);
        assert_eq!(huge_page_span(usize::MAX - 10, 5), None);
        assert_eq!(huge_page_span(HUGE_PAGE, 0), None);
    }

    #[test]
    fn huge_page_alloc_gives_usable_memory() {
        use super::{HugePageAlloc, HUGE_PAGE_MIN};
        use std::alloc::{GlobalAlloc, Layout};
        let a = HugePageAlloc;
        for (size, align) in [(16, 8), (HUGE_PAGE_MIN, 64), (3 * HUGE_PAGE_MIN + 5, 4096)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: the layout has a non-zero size; every pointer is checked, written within
            // its size, and freed with its own layout (or reallocated, then freed with the new
            // size).
            unsafe {
                let z = a.alloc_zeroed(layout);
                assert!(!z.is_null() && (z as usize).is_multiple_of(align));
                assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                a.dealloc(z, layout);
                let p = a.alloc(layout);
                assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                p.write_bytes(7, size);
                let q = a.realloc(p, layout, 2 * size);
                assert!(!q.is_null());
                assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == 7));
                q.add(size).write_bytes(9, size);
                a.dealloc(q, Layout::from_size_align(2 * size, align).unwrap());
            }
        }
    }
}
