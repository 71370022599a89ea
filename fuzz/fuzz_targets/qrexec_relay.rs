//! The admin qube's relay against every qube hostile at once: arbitrary bytes become a
//! script of messages from the qubes and the host's console, resets, ticks, drains and ring
//! sizes (`bulkhead_relay::testkit::script`), run against a system compiled from a real
//! description.
//!
//! Checked throughout: nothing panics; the open calls stay bounded; every byte of a call a
//! qube receives comes from the other end of a call the relay told that qube about.

#![no_main]

use bulkhead_relay::testkit::script::{run, steps_from_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = run(steps_from_bytes(data)) {
        panic!("{why}");
    }
});
