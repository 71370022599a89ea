//! The GUI qube: will own the framebuffer and draw trusted window borders.
//!
//! A placeholder: it reports what the hypervisor gave it, says it is ready and logs every
//! event it receives. It owns nothing yet.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use bulkhead_freestanding as _;
use bulkhead_rt::Boot;

bulkhead_rt::entry!(main);

/// What this qube is for, printed first.
const ROLE: &str = "gui: will own the framebuffer and draw window borders (not yet: placeholder until the GUI qube issue)";

fn main(boot: &Boot) -> ! {
    bulkhead_rt::report::placeholder(boot, ROLE)
}
