//! Test-only hooks, compiled in only with the `test-hooks` feature, which only the builds of
//! `cargo xtask test` enable (`cargo xtask build`, `run` and `iso` ship the storage qube
//! without it, and that image refuses the argument below with an error line):
//! - `corrupt-template=N` (decimal or `0x...`): the storage qube turns hostile towards the
//!   template roots. Every Read of a template root (a read-only volume) whose range covers
//!   byte N of the volume returns that byte XOR 0xFF to the client; the disk is not changed.
//!   The client's dm-verity must refuse the block (`template-tamper`).
//!
//! The hook's state is a pair of atomics rather than an argument threaded through the
//! serving code, so `serve.rs` needs one call and no other change. The qube has one thread.

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_abi::block::SECTOR_SIZE;
use bulkhead_rt::{Args, error, info, warn};

/// The argument.
pub const CORRUPT_TEMPLATE: &str = "corrupt-template";

/// What [`OFFSET`] holds while the hook is off.
const OFF: u64 = u64::MAX;
/// The byte to flip, from the start of the template root volume; [`OFF`] unless asked for.
static OFFSET: AtomicU64 = AtomicU64::new(OFF);
/// Reads in which the byte was flipped.
static FLIPS: AtomicU64 = AtomicU64::new(0);
/// [`FLIPS`] when last logged.
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// `0x...` or decimal.
fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Reads `corrupt-template=N` from the qube's arguments and turns the hook on, saying so. A
/// malformed value is refused with an error line, and the qube serves unchanged.
pub fn start(args: &Args<'_>) {
    if !args.has(CORRUPT_TEMPLATE) {
        return;
    }
    match args.get(CORRUPT_TEMPLATE).and_then(parse_u64) {
        Some(n) if n != OFF => {
            OFFSET.store(n, Ordering::Relaxed);
            warn!("storage: test hook: flipping byte {n} of every template root read");
        }
        _ => error!(
            "storage: test hook: {CORRUPT_TEMPLATE} needs a byte offset ({CORRUPT_TEMPLATE}=40 \
             or =0x28); serving the template roots unchanged"
        ),
    }
}

/// Where the flipped byte lies in `data`, read from the volume's sector `sector` on, if it
/// does (pure).
fn position(offset: u64, sector: u64, len: usize) -> Option<usize> {
    let start = sector.checked_mul(u64::from(SECTOR_SIZE))?;
    let at = usize::try_from(offset.checked_sub(start)?).ok()?;
    (at < len).then_some(at)
}

/// Called with the data of every Read of a template root (`data`, read from the volume's
/// sector `sector` on, before it goes into the pool): flips the byte if it is in there.
/// The first flip is logged at once (naming the channel `name`), the count with the
/// counters ([`report`]).
pub fn tamper(name: &str, sector: u64, data: &mut [u8]) {
    let offset = OFFSET.load(Ordering::Relaxed);
    if offset == OFF {
        return;
    }
    let Some(at) = position(offset, sector, data.len()) else {
        return;
    };
    data[at] ^= 0xFF;
    if FLIPS.fetch_add(1, Ordering::Relaxed) == 0 {
        warn!(
            "storage: test hook: flipped byte {offset} in {name}'s read of {} bytes at sector \
             {sector} (the first time)",
            data.len()
        );
    }
}

/// Logs how many reads had the byte flipped, if that changed since the last such line.
pub fn report() {
    let flips = FLIPS.load(Ordering::Relaxed);
    if flips != REPORTED.swap(flips, Ordering::Relaxed) {
        info!(
            "storage: test hook: flipped byte {} in {flips} reads",
            OFFSET.load(Ordering::Relaxed)
        );
    }
}
