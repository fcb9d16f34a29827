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
