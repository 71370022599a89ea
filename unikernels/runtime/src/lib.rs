//! `bulkhead-rt`: the Bulkhead unikernel runtime, a small library OS for the system qubes.
//!
//! An image is a `#![no_std] #![no_main]` binary that links this crate and names its main
//! function with [`entry!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! #![forbid(unsafe_code)]
//! use bulkhead_freestanding as _;
//! bulkhead_rt::entry!(main);
//! fn main(boot: &bulkhead_rt::Boot) -> i32 {
//!     bulkhead_rt::info!("hello from {}", boot.name());
//!     0
//! }
//! ```
//!
//! # Entry contract
//! The hypervisor enters `_start` in 64-bit mode at CPL 0, paging on with the qube's memory
//! identity-mapped, SSE on, interrupts off, `rsp` = [`Boot::stack_top`] and `rdi` = the
//! guest-physical address of the [`bulkhead_abi::boot_info::BootInfo`]. The runtime then
//! 1. checks the boot info (magic, version, ABI version, memory layout) and exits with a
//!    [`BootError`] status if it is wrong,
//! 2. chooses the hypercall instruction (`VMMCALL` or `VMCALL`) from its flags,
//! 3. hands `[heap_start, heap_end)` to the global allocator (so `alloc` works),
//! 4. applies `log=LEVEL` from the argument string,
//! 5. calls the image's main; when main returns `status`, the qube exits with it.
//!
//! A panic prints `panic: MESSAGE at FILE:LINE` and exits with
//! [`bulkhead_abi::hypercall::EXIT_PANIC`].
//!
//! # Modules
//! - [`hypercall`]: the hypercall instruction and one safe function per hypercall (unsafe inside).
//! - `start`: `_start`, the boot-info read and the heap hand-off (unsafe inside).
//! - [`sync`]: the spin lock behind the allocator and the console (unsafe inside).
//! - [`boot`]: the checked, typed view of the boot info ([`Boot`]).
//! - [`args`]: the `key=value flag` argument string.
//! - [`console`]: line-buffered console output; [`log`]: levelled log macros.
//! - [`time`], [`events`]: clock, sleep and event waits.
//! - [`channel`]: channels to other qubes (rings over shared windows, event waits).
//! - [`pci`]: the PCI devices assigned to the qube, their configuration space.
//! - [`port`]: IN and OUT on the I/O ports the qube owns, refused for any other (unsafe
//!   inside).
//! - `virtio` (feature `virtio`): `virtio-drivers`' HAL and configuration access over the
//!   hypercalls, and a polled virtio-net card (unsafe inside).
//! - `net` (feature `net`): smoltcp over a network channel (`proto::Net` frames), and a
//!   helper that polls an interface with the runtime's clock.
//! - [`dma`]: zeroed, page-aligned DMA memory with its bus address, reached with checked
//!   volatile accesses (unsafe inside).
//! - `e1000e` (feature `e1000e`): a polled driver for Intel's e1000e cards (82574L and
//!   family) over [`mmio`] and [`dma`], without unsafe code of its own.
//! - [`mmio`]: a mapped memory BAR of an assigned device, reached with checked volatile
//!   accesses (unsafe inside).
//! - [`report`]: the start-up report every placeholder image prints.
//!
//! Every `unsafe` block is in `hypercall`, `start`, `sync`, `mmio`, `dma`, `port` or `virtio` (and the
//! ones that map a channel's windows in `channel`); the rest of the crate denies unsafe code.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod args;
pub mod boot;
pub mod channel;
pub mod console;
#[allow(
    unsafe_code,
    reason = "DMA memory for drivers that program a card themselves: allocation and volatile \
              accesses checked to stay inside it"
)]
pub mod dma;
#[cfg(feature = "e1000e")]
pub mod e1000e;
pub mod events;
#[cfg(not(test))]
mod heap;
#[allow(unsafe_code, reason = "hypercall instructions are inline assembly")]
pub mod hypercall;
pub mod log;
#[allow(
    unsafe_code,
    reason = "volatile accesses to a mapped device BAR, checked to stay inside it"
)]
pub mod mmio;
#[cfg(feature = "net")]
pub mod net;
#[cfg(not(test))]
mod panic;
pub mod pci;
#[allow(unsafe_code, reason = "IN and OUT on the ports the qube owns")]
pub mod port;
pub mod report;
#[cfg(not(test))]
#[allow(unsafe_code, reason = "entry point, boot-info read and heap hand-off")]
mod start;
#[allow(
    unsafe_code,
    reason = "a lock is an `unsafe impl` of lock_api::RawMutex"
)]
pub mod sync;
pub mod time;
#[cfg(feature = "virtio")]
#[allow(
    unsafe_code,
    reason = "the virtio HAL hands out DMA memory and MMIO pointers; the driver's buffers are \
              lent to the device"
)]
pub mod virtio;
#[cfg(feature = "virtio")]
pub mod virtio_platform;

pub use args::Args;
pub use boot::{Boot, BootError};
pub use events::{Events, wait_event};
pub use hypercall::{abi_version, exit, ready, yield_now};
pub use report::report_boot_info;
pub use time::{now_ns, sleep};

/// Names the image's main function: `bulkhead_rt::entry!(main);`.
///
/// `main` has the signature `fn(&Boot) -> i32` (the qube exits with the returned status;
/// negative values are sign-extended to 64 bits) or `fn(&Boot) -> !`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The image's main, called by the runtime once the heap and console are ready.
        #[unsafe(export_name = "bulkhead_rt_main")]
        fn __bulkhead_rt_main(boot: &$crate::Boot) -> i32 {
            $main(boot)
        }
    };
}
