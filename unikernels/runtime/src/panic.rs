//! The panic handler: prints `panic: MESSAGE at FILE:LINE` and exits with
//! [`EXIT_PANIC`](bulkhead_abi::hypercall::EXIT_PANIC).

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use bulkhead_abi::hypercall::EXIT_PANIC;

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // A panic while printing a panic: stop without printing again.
    if PANICKING.swap(true, Ordering::Relaxed) {
        crate::exit(EXIT_PANIC);
    }
    // The line of an interrupted log call, if any, goes out first.
    crate::console::flush();
    match info.location() {
        Some(at) => crate::println!("panic: {} at {}:{}", info.message(), at.file(), at.line()),
        None => crate::println!("panic: {}", info.message()),
    }
    crate::exit(EXIT_PANIC)
}
