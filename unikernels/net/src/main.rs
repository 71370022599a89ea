//! sys-net: owns the network card and bridges it to the qube behind it.
//!
//! It finds its virtio-net card among the assigned devices, brings it up with
//! `virtio-drivers` (through the runtime's hypercall configuration access and DMA HAL), gets
//! the uplink's address by DHCP (smoltcp, on a private interface that sees only ARP and
//! DHCP replies), tells its downstream qube (`Net::Uplink`) and then forwards Ethernet
//! frames both ways between the card and that channel. See README.md for the log lines, the
//! arguments and the exit statuses.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod bridge;

use core::fmt;
use core::time::Duration;

use bulkhead_freestanding as _;
use bulkhead_qubeconfig::QubeConfig;
use bulkhead_rt::channel::Channel;
use bulkhead_rt::pci::PciDevice;
use bulkhead_rt::virtio::{self, VirtioNet};
use bulkhead_rt::{Args, Boot, error, info, warn};

bulkhead_rt::entry!(main);

/// Exit statuses (the qube only exits on an error, or at the end of the `dma-escape` test).
mod status {
    /// The arguments are not understood.
    pub const BAD_ARGS: i32 = 2;
    /// No virtio-net card among the assigned devices.
    pub const NO_CARD: i32 = 3;
    /// The card could not be brought up.
    pub const CARD_FAILED: i32 = 4;
    /// The configuration blob is unreadable or names a channel this qube does not have.
    pub const BAD_CONFIG: i32 = 5;
}

/// PCI vendor of virtio devices.
const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-net device IDs: modern (1.0) and transitional. Both must offer the modern PCI
/// capabilities, which `virtio-drivers` uses.
const VIRTIO_NET_IDS: [u16; 2] = [0x1041, 0x1000];
/// How long the `dma-escape` test keeps running after pointing the device.
const ESCAPE_RUN: Duration = Duration::from_secs(5);
/// How often the `dma-escape` test sends another frame while it runs.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// What the qube does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Bridge the card to the downstream qube, forever.
    Bridge,
    /// The IOMMU test: the card's transmit used ring is given to the device at this bus
    /// address, then frames are sent every [`PROBE_EVERY`] for [`ESCAPE_RUN`]; the qube exits 0.
    DmaEscape(u64),
}

/// `0x...` or decimal.
fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// `dma-escape=0xADDR`, or `dma-escape 0xADDR`; otherwise bridging.
fn parse_mode(args: &Args<'_>) -> Result<Mode, &'static str> {
    if let Some(addr) = args.get("dma-escape") {
        return parse_u64(addr)
            .map(Mode::DmaEscape)
            .ok_or("dma-escape needs an address (dma-escape=0x...)");
    }
    let mut words = args.iter();
    if words.any(|a| a.key == "dma-escape" && a.value.is_none()) {
        return words
            .next()
            .filter(|a| a.value.is_none())
            .and_then(|a| parse_u64(a.key))
            .map(Mode::DmaEscape)
            .ok_or("dma-escape needs an address (dma-escape 0x...)");
    }
    Ok(Mode::Bridge)
}

/// A MAC address as `52:54:00:12:34:56`.
struct Mac([u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The downstream channel: `downstream[0].channel` of the configuration, or the first
/// channel when there is no configuration; `Ok(None)` when the qube has no channel.
fn open_downstream(boot: &Boot, config: Option<&QubeConfig>) -> Result<Option<Channel>, i32> {
    let named = config.and_then(|c| c.downstream.first());
    let opened = match named {
        Some(d) => Channel::open_named(boot, d.channel.as_str()),
        None if boot.channels().is_empty() => {
            warn!("net: no downstream channel: the card runs for this qube alone");
            return Ok(None);
        }
        None => Channel::open(boot, 0),
    };
    match opened {
        Ok(ch) => {
            info!("net: downstream channel {}", ch.name());
            Ok(Some(ch))
        }
        Err(e) => {
            let name = named.map_or("(the first)", |d| d.channel.as_str());
            error!("net: cannot open the downstream channel {name}: {e}");
            Err(status::BAD_CONFIG)
        }
    }
}

fn main(boot: &Boot) -> i32 {
    let mode = match parse_mode(&boot.args()) {
        Ok(m) => m,
        Err(why) => {
            error!("net: {why} (args \"{}\")", boot.args().as_str());
            return status::BAD_ARGS;
        }
    };
    let config = match boot.config() {
        [] => None,
        blob => match QubeConfig::decode(blob) {
            Ok(c) => Some(c),
            Err(e) => {
                error!("net: {e}");
                return status::BAD_CONFIG;
            }
        },
    };
    let downstream = match open_downstream(boot, config.as_ref()) {
        Ok(d) => d,
        Err(status) => return status,
    };
    if boot.devices().is_empty() {
        // A system without a card for it (the containment and Bochs systems, or a machine
        // whose card the hypervisor refused): nothing to drive. Say so once and stay up, so
        // the rest of the system is not disturbed by restarts.
        warn!("net: no device assigned to this qube: no network; idling");
        bulkhead_rt::ready();
        loop {
            bulkhead_rt::wait_event(None);
        }
    }
    let Some(dev) = PciDevice::find(boot, VIRTIO_VENDOR, &VIRTIO_NET_IDS) else {
        error!(
            "net: no virtio-net card (1af4:1041 or 1af4:1000) among the {} assigned devices",
            boot.devices().len()
        );
        for d in PciDevice::all(boot) {
            error!(
                "net:   device {} is {:04x}:{:04x}",
                d.bdf(),
                d.info().vendor,
                d.info().device
            );
        }
        return status::NO_CARD;
    };
    info!(
        "net: card {} ({:04x}:{:04x}), DMA {}",
        dev.bdf(),
        dev.info().vendor,
        dev.info().device,
        if dev.behind_iommu() {
            "fenced by the IOMMU"
        } else {
            "NOT fenced (no IOMMU): the card can reach all memory"
        }
    );
    if let Mode::DmaEscape(addr) = mode {
        // The device sees this qube's memory at bus addresses dma_offset..+mem_size (behind
        // the IOMMU: 0..mem_size). A target in there is this qube's own memory: the write
        // would land here, not escape, and corrupt whatever lives at that address.
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
            return status::BAD_ARGS;
        }
        // The transmit queue is set up first: its 1st allocation is the ring the driver
        // writes, its 2nd the used ring, which the device writes.
        virtio::misdirect_allocation(2, addr);
    }
    let t0 = bulkhead_rt::now_ns();
    let card = match VirtioNet::new(&dev) {
        Ok(card) => card,
        Err(e) => {
            error!("net: bringing up the card failed: {e}");
            return status::CARD_FAILED;
        }
    };
    info!(
        "net: virtio-net up in {} ms, MAC {}",
        (bulkhead_rt::now_ns() - t0) / 1_000_000,
        Mac(card.mac())
    );
    let mut bridge = bridge::Bridge::new(boot, card, downstream);
    match mode {
        Mode::Bridge => {
            // `crash-after-ms=N` (tests): the first life panics after N ms of bridging, so a
            // test can watch the hypervisor restart sys-net and traffic come back.
            let crash = boot.args().get("crash-after-ms").and_then(parse_u64);
            if let Some(ms) = crash.filter(|_| boot.restart_count() == 0) {
                bridge.run_for(Duration::from_millis(ms));
                panic!("net: crashing on purpose after {ms} ms (crash-after-ms, a test)");
            }
            bridge.run_forever()
        }
        Mode::DmaEscape(addr) => {
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
            // Keep transmitting: every completed frame makes the device write the used ring
            // again, so the attack also lands if the victim fills its canary only after the
            // first frame (qubes start in no fixed order relative to each other).
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
    }
}
