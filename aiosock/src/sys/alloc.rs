//! A counting global allocator for the decode-budget tests and the fuzz harness, which
//! assert how much memory decoding allocates. Not used by the library itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the live and peak bytes of the thread that is measuring
/// (see [`peak_of`]). Install it with `#[global_allocator]`.
#[derive(Debug)]
pub struct CountingAlloc;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    if MEASURING.with(Cell::get) {
        let live = LIVE.with(Cell::get).saturating_add(bytes);
        LIVE.with(|l| l.set(live));
        PEAK.with(|p| p.set(p.get().max(live)));
    }
}

fn shrink(bytes: usize) {
    if MEASURING.with(Cell::get) {
        LIVE.with(|l| l.set(l.get().saturating_sub(bytes)));
    }
}

/// Runs `f` on this thread and returns its result with the peak of bytes allocated while it
/// ran and still live at that moment (what `f` returns included), as counted by
/// [`CountingAlloc`]; 0 if another allocator is installed.
///
/// A reallocation counts as the new block allocated while the old one still lives.
pub fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, PEAK.with(Cell::get))
}

/// Runs `f` on this thread and returns its result with the bytes allocated while it ran
/// that are still live when it returns (what `f` returns included), as counted by
/// [`CountingAlloc`]: what `f` keeps. Bytes freed that were allocated before `f` ran are
/// not subtracted.
pub fn retained_by<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, LIVE.with(Cell::get))
}

// SAFETY: every method forwards to the system allocator with its caller's arguments, so
// `System` upholds the contract; the counting only touches const-initialised thread-local
// cells, which neither allocate nor register destructors.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded with the caller's layout, which meets `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: `ptr` came from `System` with `layout`, since every method forwards there.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grow(new_size);
        shrink(layout.size());
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
