//! sys-net: will own the network card and run its driver.
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
const ROLE: &str = "net: will own the network card (not yet: placeholder until the sys-net issue)";

fn main(boot: &Boot) -> ! {
    bulkhead_rt::report::placeholder(boot, ROLE)
}
