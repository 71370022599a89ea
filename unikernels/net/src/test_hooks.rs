//! Test-only hooks, compiled in only with the `test-hooks` feature, which only the builds of
//! `cargo xtask test` enable (`cargo xtask build`, `run` and `iso` ship sys-net without it, and
//! a test checks that the shipped image holds none of the text below):
//! - `dma-escape=0xADDR`: the IOMMU containment test (`iommu-dma-escape`);
//! - `crash-after-ms=N`: the first life panics after N ms of bridging (`network-restart`).

use core::time::Duration;

use bulkhead_rt::pci::PciDevice;
use bulkhead_rt::{Args, Boot, error, info, virtio};

use crate::bridge::Bridge;
use crate::card::Kind;
use crate::status;

/// How long the `dma-escape` test keeps running after pointing the device.
const ESCAPE_RUN: Duration = Duration::from_secs(5);
/// How often the `dma-escape` test sends another frame while it runs.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// `0x...` or decimal.
fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// `dma-escape=0xADDR`, or `dma-escape 0xADDR`: the address; `Ok(None)` without the argument.
pub fn dma_escape_arg(args: &Args<'_>) -> Result<Option<u64>, &'static str> {
    if let Some(addr) = args.get("dma-escape") {
        return parse_u64(addr)
            .map(Some)
            .ok_or("dma-escape needs an address (dma-escape=0x...)");
    }
    let mut words = args.iter();
    if words.any(|a| a.key == "dma-escape" && a.value.is_none()) {
        return words
            .next()
            .filter(|a| a.value.is_none())
            .and_then(|a| parse_u64(a.key))
            .map(Some)
            .ok_or("dma-escape needs an address (dma-escape 0x...)");
    }
    Ok(None)
}

/// Before the card is brought up: makes the transmit queue's used ring appear to the device
/// at `addr`, unless `addr` is this qube's own DMA space (then `Err` with the exit status).
pub fn aim(boot: &Boot, dev: &PciDevice, kind: Kind, addr: u64) -> Result<(), i32> {
    if kind != Kind::VirtioNet {
        error!(
            "dma-escape: misdirects a virtio-net queue; this card needs the {} driver",
            kind.name()
        );
        return Err(status::BAD_ARGS);
    }
    // The device sees this qube's memory at bus addresses dma_offset..+mem_size (behind the
    // IOMMU: 0..mem_size). A target in there is this qube's own memory: the write would land
    // here, not escape, and corrupt whatever lives at that address.
    let own = dev.dma_offset()..dev.dma_offset().saturating_add(boot.mem_size());
    if own.contains(&addr) {
        error!(
            "dma-escape: {addr:#x} is inside this qube's own DMA space ({:#x}..{:#x}{}): the \
             device would write this qube's memory, not escape; pick an address outside it",
            own.start,
            own.end,
            if dev.behind_iommu() {
                ", behind the IOMMU"
            } else {
                ""
            }
        );
        return Err(status::BAD_ARGS);
    }
    // The transmit queue is set up first: its 1st allocation is the ring the driver writes,
    // its 2nd the used ring, which the device writes.
    virtio::misdirect_allocation(2, addr);
    Ok(())
}

/// After the card is up: sends frames for [`ESCAPE_RUN`] so the device keeps writing its
/// misdirected used ring; the qube's exit status.
pub fn run_dma_escape(bridge: &mut Bridge, addr: u64) -> i32 {
    if !virtio::misdirection_applied() {
        error!("dma-escape: the driver did not make the expected DMA allocations");
        return status::CARD_FAILED;
    }
    let sent = bridge.send_probe();
    info!(
        "dma-escape: pointed the device at {addr:#x} (its transmit used ring) and {} a frame",
        if sent { "sent" } else { "could not send" }
    );
    bulkhead_rt::ready();
    // Keep transmitting: every completed frame makes the device write the used ring again,
    // so the attack also lands if the victim fills its canary only after the first frame
    // (qubes start in no fixed order relative to each other).
    let mut probes = u32::from(sent);
    let end = bulkhead_rt::now_ns().saturating_add(ESCAPE_RUN.as_nanos() as u64);
    while bulkhead_rt::now_ns() < end {
        bridge.run_for(PROBE_EVERY);
        probes += u32::from(bridge.send_probe());
    }
    info!(
        "dma-escape: ran {} s after pointing, {probes} frames sent; exiting",
        ESCAPE_RUN.as_secs()
    );
    0
}

/// `crash-after-ms=N`: in the first life, bridges for N ms and panics, so a test can watch
/// the hypervisor restart sys-net and traffic come back. Returns at once otherwise.
pub fn crash_after(boot: &Boot, bridge: &mut Bridge) {
    let crash = boot.args().get("crash-after-ms").and_then(parse_u64);
    if let Some(ms) = crash.filter(|_| boot.restart_count() == 0) {
        bridge.run_for(Duration::from_millis(ms));
        panic!("net: crashing on purpose after {ms} ms (crash-after-ms, a test)");
    }
}
