//! Heap-allocation counting for profiling. A binary that wants the figures installs [`Counting`] as its global
//! allocator; each allocation is then booked as inside or outside the engines by the thread that makes it: inside
//! while that thread is in an engine run ([`in_engine`]) or when it is one of tract's pool threads (they run
//! nothing but engine work), outside otherwise. So engines running on several threads at once (a frame's
//! segmenter beside its detectors) are booked exactly, not by time window. Without the counting allocator every
//! figure is None. Reallocations are not counted (a `Vec` growing in place is not a new allocation).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

static INSIDE: AtomicU64 = AtomicU64::new(0);
static OUTSIDE: AtomicU64 = AtomicU64::new(0);

/// Marks an engine thread: any value above zero books this thread's allocations inside the engines. Engine runs
/// add one while they last; pool threads hold `ENGINE_THREAD` for their whole life.
const ENGINE_THREAD: u32 = u32::MAX / 2;

thread_local! {
    static ENGINE_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The counting global allocator: the system allocator plus one relaxed atomic increment per allocation.
pub struct Counting;

fn count() {
    // `try_with`: an allocation while this thread's locals are being torn down is booked outside
    let inside = ENGINE_DEPTH.try_with(|d| d.get() > 0).unwrap_or(false);
    if inside { &INSIDE } else { &OUTSIDE }.fetch_add(1, Ordering::Relaxed);
}

#[allow(unsafe_code)]
// SAFETY: every call is passed on unchanged to the system allocator, which meets GlobalAlloc's contract; counting
// touches only atomics and a const-initialised thread local, and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout is passed on as given
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from System, with this layout
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as dealloc; the new size is the caller's
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Whether the counting allocator is installed (it has counted something: any program allocates before it
/// measures).
fn counting() -> bool {
    INSIDE.load(Ordering::Relaxed) + OUTSIDE.load(Ordering::Relaxed) > 0
}

/// Allocations so far in the whole process, if the counting allocator is installed.
pub fn allocations() -> Option<u64> {
    counting().then(|| INSIDE.load(Ordering::Relaxed) + OUTSIDE.load(Ordering::Relaxed))
}

/// Runs `f` (an engine run) with this thread's allocations booked inside the engines.
pub fn in_engine<T>(f: impl FnOnce() -> T) -> T {
    ENGINE_DEPTH.with(|d| d.set(d.get().saturating_add(1)));
    let out = f();
    ENGINE_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    out
}

/// Books every later allocation of this thread inside the engines: for the threads of tract's pools, which run
/// only engine work.
pub fn mark_engine_thread() {
    ENGINE_DEPTH.with(|d| d.set(ENGINE_THREAD));
}

/// Counters at the start of a frame.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    counting: bool,
    inside: u64,
    outside: u64,
}

/// Takes the counters at the start of a frame.
pub fn mark() -> Mark {
    Mark { counting: counting(), inside: INSIDE.load(Ordering::Relaxed), outside: OUTSIDE.load(Ordering::Relaxed) }
}

/// Allocations per frame, split into inside and outside the engines.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerFrame {
    outside: u64,
    inside: u64,
    frames: u64,
}

impl PerFrame {
    /// Books the allocations since `start` as one frame; nothing when the counting allocator is not installed.
    pub fn add_since(&mut self, start: Mark) {
        if start.counting {
            let now = mark();
            self.inside += now.inside.saturating_sub(start.inside);
            self.outside += now.outside.saturating_sub(start.outside);
            self.frames += 1;
        }
    }

    /// Mean allocations per frame outside the engines; None before any frame was booked.
    pub fn outside_mean(&self) -> Option<f64> {
        (self.frames > 0).then(|| self.outside as f64 / self.frames as f64)
    }

    pub fn inside_mean(&self) -> Option<f64> {
        (self.frames > 0).then(|| self.inside as f64 / self.frames as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library's unit tests run without the counting allocator, so the counters stay at zero here: what can
    // be checked is the booking by thread state.
    #[test]
    fn engine_runs_nest_and_end_outside() {
        let depth = || ENGINE_DEPTH.with(Cell::get);
        assert_eq!(depth(), 0);
        let inner = in_engine(|| in_engine(depth));
        assert_eq!(inner, 2);
        assert_eq!(depth(), 0);
    }

    #[test]
    fn a_pool_thread_stays_inside_through_engine_runs() {
        let depth = std::thread::spawn(|| {
            mark_engine_thread();
            in_engine(|| ());
            ENGINE_DEPTH.with(Cell::get)
        })
        .join()
        .unwrap_or(0);
        assert_eq!(depth, ENGINE_THREAD);
    }

    #[test]
    fn without_the_counting_allocator_no_frame_is_booked() {
        let mut per = PerFrame::default();
        per.add_since(mark());
        assert_eq!(per.outside_mean(), None);
    }
}
