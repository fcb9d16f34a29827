//! Heap-allocation counting for profiling. The binary installs a counting global allocator and hands the
//! library a function reading its total; engine runs are measured separately (per thread), so reports can give
//! the allocations per frame outside the engines. Without an installed counter every figure is None.

use std::cell::Cell;
use std::sync::OnceLock;

static COUNTER: OnceLock<fn() -> u64> = OnceLock::new();

thread_local! {
    static IN_ENGINES: Cell<u64> = const { Cell::new(0) };
}

/// Installs the process-wide allocation counter (first call wins).
pub fn install(counter: fn() -> u64) {
    let _ = COUNTER.set(counter);
}

/// Allocations so far in the whole process, if a counter is installed.
pub fn allocations() -> Option<u64> {
    COUNTER.get().map(|f| f())
}

/// Allocations made inside engine runs on this thread so far.
pub fn engine_allocations() -> u64 {
    IN_ENGINES.with(Cell::get)
}

/// Runs `f` (an engine run) and books the allocations it made as engine allocations of this thread.
pub fn in_engine<T>(f: impl FnOnce() -> T) -> T {
    let before = allocations();
    let out = f();
    if let (Some(a), Some(b)) = (before, allocations()) {
        IN_ENGINES.with(|c| c.set(c.get() + b.saturating_sub(a)));
    }
    out
}

/// Counters at the start of a frame.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    total: Option<u64>,
    engine: u64,
}

/// Takes the counters at the start of a frame (on the thread that runs its engines).
pub fn mark() -> Mark {
    Mark { total: allocations(), engine: engine_allocations() }
}

/// Allocations per frame, split into inside and outside the engines.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerFrame {
    outside: u64,
    inside: u64,
    frames: u64,
}

impl PerFrame {
    /// Books the allocations since `start` as one frame; nothing when no counter is installed.
    pub fn add_since(&mut self, start: Mark) {
        if let (Some(a), Some(b)) = (start.total, allocations()) {
            let inside = engine_allocations().saturating_sub(start.engine);
            self.inside += inside;
            self.outside += b.saturating_sub(a).saturating_sub(inside);
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
