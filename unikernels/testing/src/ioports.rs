//! `io-ports`: the I/O ports the system description gives this qube reach the hardware
//! without a VM exit, and a port it does not own still stops it.
//!
//! Arguments: `port=` a port it owns (default 0x64, the i8042 status register), `trap=` a
//! port it does not own (default 0x61), `reads=` (default 1000). It
//! 1. asks the runtime for `trap` and expects a refusal;
//! 2. reads `port` between two `exit_count` hypercalls until the counter moved by exactly
//!    one (the second call's own exit: the IN caused none), at most 20 tries (a timer
//!    interrupt between the calls is an exit too), and logs
//!    `io-ports: in from PORT = VALUE without a VM exit`; a value of 0xff (nothing answered)
//!    fails;
//! 3. reads it `reads=` times and logs how many exits that took;
//! 4. reads `trap` with a raw `in`, which must stop the qube.

use bulkhead_rt::hypercall::exit_count;
use bulkhead_rt::port::IoPort;
use bulkhead_rt::{Args, Boot, error, info};

/// `port=` is not a port this qube owns (the system description and args disagree).
const EXIT_NOT_OWNED: i32 = 30;
/// The runtime handed out `trap=`, a port this qube does not own.
const EXIT_TRAP_GRANTED: i32 = 31;
/// Every read came with other exits.
const EXIT_ALWAYS_EXITS: i32 = 32;
/// The port read as 0xff: no device answered.
const EXIT_NO_DEVICE: i32 = 33;
/// A port argument that is not `0x` and hexadecimal digits.
const EXIT_BAD_ARG: i32 = 2;

fn hex_arg(args: &Args<'_>, key: &str, default: u16) -> Option<u16> {
    match args.get(key) {
        None => Some(default),
        Some(v) => u16::from_str_radix(v.strip_prefix("0x")?, 16).ok(),
    }
}

pub fn run(boot: &Boot, args: &Args<'_>) -> i32 {
    let (Some(port), Some(trap)) = (hex_arg(args, "port", 0x64), hex_arg(args, "trap", 0x61))
    else {
        error!("testing: io-ports: port= and trap= are 0x and hexadecimal digits");
        return EXIT_BAD_ARG;
    };
    let reads: u32 = args
        .get("reads")
        .and_then(|r| r.parse().ok())
        .unwrap_or(1000);
    for r in boot.io_ports() {
        info!("testing: io-ports: this qube owns {r}");
    }
    match IoPort::<u8>::new(boot, trap) {
        Ok(_) => {
            error!("testing: io-ports: the runtime handed out {trap:#x}, which it does not own");
            return EXIT_TRAP_GRANTED;
        }
        Err(e) => info!("testing: io-ports: the runtime refuses {trap:#x}: {e}"),
    }
    let mut p = match IoPort::<u8>::new(boot, port) {
        Ok(p) => p,
        Err(e) => {
            error!("testing: io-ports: {e}");
            return EXIT_NOT_OWNED;
        }
    };
    let mut clean = None;
    for attempt in 1..=20 {
        let before = exit_count();
        let value = p.read();
        let after = exit_count();
        if after - before == 1 {
            clean = Some((value, attempt));
            break;
        }
    }
    let Some((value, attempt)) = clean else {
        error!("testing: io-ports: every read of {port:#x} came with other VM exits");
        return EXIT_ALWAYS_EXITS;
    };
    info!(
        "testing: io-ports: in from {port:#x} = {value:#04x} without a VM exit (exit counter +1 \
         across it, the counting call's own; try {attempt})"
    );
    if value == 0xFF {
        error!("testing: io-ports: {port:#x} read 0xff: no device answered");
        return EXIT_NO_DEVICE;
    }
    let before = exit_count();
    for _ in 0..reads {
        core::hint::black_box(p.read());
    }
    let exits = exit_count() - before - 1;
    info!("testing: io-ports: {reads} reads of {port:#x} in {exits} VM exits");
    info!("testing: io-ports: in from {trap:#x}, which this qube does not own (must stop it)");
    let v = crate::misbehave::in_port(trap);
    info!("testing: io-ports: in from {trap:#x} returned {v:#x}");
    info!("testing: still running after io-ports");
    crate::EXIT_SURVIVED
}
