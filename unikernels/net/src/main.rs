//! sys-net: owns the network card and bridges it to the qube behind it.
//!
//! It finds its card among the assigned devices and picks the driver by its PCI vendor and
//! device ID (module `card`): virtio-net, brought up with `virtio-drivers` through the
//! runtime's hypercall configuration access and DMA HAL, or Intel's e1000e, with the
//! runtime's own driver (`bulkhead_rt::e1000e`). It gets
//! the uplink's address by DHCP (smoltcp, on a private interface that sees only ARP and
//! DHCP replies), tells its downstream qube (`Net::Uplink`) and then forwards Ethernet
//! frames both ways between the card and that channel. See README.md for the log lines, the
//! arguments and the exit statuses.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod bridge;
mod card;
mod idle_check;
#[cfg(feature = "test-hooks")]
mod test_hooks;

use core::fmt;

use bulkhead_freestanding as _;
use bulkhead_qubeconfig::QubeConfig;
use bulkhead_rt::channel::Channel;
use bulkhead_rt::pci::PciDevice;
use bulkhead_rt::{Args, Boot, error, info, warn};

bulkhead_rt::entry!(main);

/// Exit statuses (the qube only exits on an error, or at the end of the `dma-escape` test).
mod status {
    /// The arguments are not understood.
    pub const BAD_ARGS: i32 = 2;
    /// No card sys-net has a driver for among the assigned devices.
    pub const NO_CARD: i32 = 3;
    /// The card could not be brought up.
    pub const CARD_FAILED: i32 = 4;
    /// The configuration blob is unreadable or names a channel this qube does not have.
    pub const BAD_CONFIG: i32 = 5;
}

/// The arguments that select test-only hooks (module `test_hooks`). An image built without the
/// `test-hooks` feature (what `cargo xtask build`, `run` and `iso` ship) refuses them.
#[cfg(not(feature = "test-hooks"))]
const TEST_HOOK_ARGS: [&str; 2] = ["dma-escape", "crash-after-ms"];

/// What the qube does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Bridge the card to the downstream qube, forever.
    Bridge,
    /// The IOMMU test (`dma-escape=0xADDR`, test builds only): the card's transmit used ring
    /// is given to the device at this bus address, frames are sent for a while, the qube
    /// exits 0.
    #[cfg(feature = "test-hooks")]
    DmaEscape(u64),
}

/// `dma-escape=0xADDR` (test builds only); otherwise bridging. A test hook's argument given
/// to an image built without the hooks is refused, never ignored.
fn parse_mode(args: &Args<'_>) -> Result<Mode, &'static str> {
    #[cfg(feature = "test-hooks")]
    if let Some(addr) = test_hooks::dma_escape_arg(args)? {
        return Ok(Mode::DmaEscape(addr));
    }
    #[cfg(not(feature = "test-hooks"))]
    if args.iter().any(|a| TEST_HOOK_ARGS.contains(&a.key)) {
        return Err(
            "dma-escape and crash-after-ms are test hooks, left out of this build; refusing",
        );
    }
    Ok(Mode::Bridge)
}

/// `irq=on` (the default) or `irq=off`: whether to ask for the card's interrupts. Any other
/// value, or a bare `irq`, is refused.
fn parse_irq(args: &Args<'_>) -> Result<bool, &'static str> {
    match args.on_off("irq") {
        None => Ok(true),
        Some(Ok(on)) => Ok(on),
        Some(Err(_)) => Err("irq takes on or off (irq=off: poll the card)"),
    }
}

/// Turns the card's interrupts on unless `wanted` is false; logs which way the card is
/// watched. The card's event bit, or `None` (polled).
fn card_interrupts(card: &mut card::Card, dev: &PciDevice, wanted: bool) -> Option<u32> {
    let poll_ms = bridge::CARD_POLL.as_millis();
    if !wanted {
        info!(
            "net: card interrupts unavailable (turned off by irq=off): polling the card every {poll_ms} ms"
        );
        return None;
    }
    match card.enable_interrupts(dev) {
        Ok(bit) => {
            info!("net: card interrupts on (event bit {bit}): no polling");
            Some(bit)
        }
        Err(e) => {
            info!("net: card interrupts unavailable ({e}): polling the card every {poll_ms} ms");
            None
        }
    }
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
    let parsed = parse_mode(&boot.args()).and_then(|m| Ok((m, parse_irq(&boot.args())?)));
    let (mode, irq_wanted) = match parsed {
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
    let Some((dev, kind)) = card::find(boot) else {
        error!(
            "net: no card with a driver here (virtio-net 1af4:1041 or 1af4:1000, e1000e \
             8086:10d3 and its family) among the {} assigned devices",
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
    #[cfg(feature = "test-hooks")]
    if let Mode::DmaEscape(addr) = mode
        && let Err(status) = test_hooks::aim(boot, &dev, kind, addr)
    {
        return status;
    }
    let t0 = bulkhead_rt::now_ns();
    let mut card = match card::Card::new(&dev, kind) {
        Ok(card) => card,
        Err(e) => {
            error!("net: bringing up the card failed: {e}");
            return status::CARD_FAILED;
        }
    };
    info!(
        "net: {} up in {} ms, MAC {}",
        kind.name(),
        (bulkhead_rt::now_ns() - t0) / 1_000_000,
        Mac(card.mac())
    );
    let irq_bit = card_interrupts(&mut card, &dev, irq_wanted);
    // On the heap: the bridge (its smoltcp interface above all) is most of 50 KiB, and held
    // in this frame it left too little of the 64 KiB stack for the rounds below it (the
    // test build of sys-net overran into its heap while bringing up its card, whose MAC
    // then read as zeros).
    let mut bridge = alloc::boxed::Box::new(bridge::Bridge::new(boot, card, downstream, irq_bit));
    match mode {
        Mode::Bridge => {
            #[cfg(feature = "test-hooks")]
            test_hooks::crash_after(boot, &mut bridge);
            bridge.run_forever()
        }
        #[cfg(feature = "test-hooks")]
        Mode::DmaEscape(addr) => test_hooks::run_dma_escape(&mut bridge, addr),
    }
}
