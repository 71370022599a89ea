//! What happens when the hypervisor itself takes a CPU exception: report and stop. A fault
//! in the hypervisor is a bug in the hypervisor (guest faults never arrive here: they exit
//! to the hypervisor through the virtualisation backend).

use super::{cpu, serial::Serial};
use core::fmt::Write;

/// The registers `isr_exception` pushed, in memory order.
#[repr(C)]
pub struct ExceptionFrame {
    gprs: [u64; 15],
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Called by `isr_exception` on an IST stack.
#[unsafe(no_mangle)]
extern "C" fn hv_exception(frame: &ExceptionFrame) -> ! {
    // What was written before the fault comes first.
    crate::console::flush_waiting();
    let mut s = Serial::raw();
    let _ = writeln!(
        s,
        "hv | panic: CPU exception {} (error {:#x}) at rip={:#x} rsp={:#x} cr2={:#x}",
        frame.vector,
        frame.error,
        frame.rip,
        frame.rsp,
        cpu::cr2()
    );
    let _ = writeln!(s, "hv | halting");
    cpu::halt_forever()
}
