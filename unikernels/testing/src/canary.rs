//! `mode=canary kib=N seconds=S`: the victim of the DMA tests. It fills N KiB of its heap
//! with a pattern, says where (`canary: N KiB at gpa 0x...`), and checks every byte every
//! 20 ms for S seconds. A change anywhere means a device wrote into this qube's memory from
//! outside: it reports the first changed address and exits 1; otherwise it exits 0.

use alloc::vec::Vec;
use bulkhead_rt::{error, info};
use core::time::Duration;

/// The byte at position `i` of the canary.
fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(29) ^ 0xa5
}

/// Runs the canary; returns the exit status.
pub fn run(kib: usize, seconds: u64) -> i32 {
    let canary: Vec<u8> = (0..kib * 1024).map(pattern).collect();
    let gpa = canary.as_ptr().addr();
    info!("canary: {kib} KiB at gpa {gpa:#x}");
    let end = bulkhead_rt::now_ns() + seconds * 1_000_000_000;
    let mut checks: u64 = 0;
    while bulkhead_rt::now_ns() < end {
        bulkhead_rt::sleep(Duration::from_millis(20));
        checks += 1;
        // `black_box` so each pass really reads the memory again.
        let seen = core::hint::black_box(&canary);
        if let Some(i) = (0..seen.len()).find(|&i| seen[i] != pattern(i)) {
            let changed = (0..seen.len()).filter(|&i| seen[i] != pattern(i)).count();
            error!(
                "canary: overwritten at gpa {:#x} ({changed} bytes changed) after {checks} checks",
                gpa + i
            );
            return 1;
        }
    }
    info!("canary: intact after {checks} checks of {kib} KiB");
    0
}
