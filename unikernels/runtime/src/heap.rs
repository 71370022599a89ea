//! The global allocator: talc over the heap region the boot info names.
//!
//! The allocator starts with no memory (`Manual` source: allocations fail until memory is
//! claimed); `start` claims `[heap_start, heap_end)` before the image's main runs. An
//! allocation that does not fit fails like any other (`try_reserve` sees the error,
//! `Vec::push` panics with "memory allocation failed").

use talc::TalcLock;
use talc::source::Manual;

use crate::sync::RawSpinlock;

/// The allocator type.
pub(crate) type Heap = TalcLock<RawSpinlock, Manual>;

/// The global allocator.
#[global_allocator]
pub(crate) static HEAP: Heap = Heap::new(Manual);
