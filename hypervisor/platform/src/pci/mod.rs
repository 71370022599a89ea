//! PCI configuration space through the type-1 mechanism (ports 0xcf8/0xcfc), the host
//! bridge and the channel devices of [`bulkhead_abi::guest_pci`].
//!
//! - 0xcf8 is a 32-bit address latch, only for 4-byte accesses at 0xcf8 (bits 0..1 read 0);
//!   narrower accesses to 0xcf8..0xcfb read all-ones and are ignored, so Linux's
//!   `pci_check_type1` (an `outb` to 0xcfb, then 0x80000000 written and read back) finds
//!   mechanism 1. 0xcfc..0xcff reach the dword the latch selects, byte `port & 3` onwards;
//!   an access that would run past 0xcff reads all-ones and is ignored, as is any data
//!   access while the latch's enable bit (31) is clear.
//! - Only bus 0 exists: 00:00.0 is the host bridge, 00:`FIRST_CHANNEL_SLOT + i`.0 the
//!   channel device of local channel `i`. Everything else reads all-ones (vendor 0xffff).
//!   Registers past 0xff (AMD's extended register bits 24..27 of the latch) read all-ones:
//!   these are conventional PCI functions with 256 bytes of configuration space.
//! - Channel devices decode their register block (BAR2) only while `COMMAND.IO` is set;
//!   their INTx is asserted while an event is pending and `COMMAND.INTX_DISABLE` is clear,
//!   and `STATUS.INTERRUPT` shows the pending event, as `uio_pci_generic` needs.
//! - BARs answer the sizing protocol (all-ones written to the whole dword) but never move:
//!   the hypervisor maps the channel windows where it placed them. BAR0/1 is the region,
//!   BAR2 the register block, BAR4/5 the bulk area (only when the channel has one).

mod config;
#[cfg(test)]
mod tests;

use bulkhead_abi::guest_pci::{self, InfoCap};

/// The configuration address port (a 32-bit latch).
pub const CONFIG_ADDRESS: u16 = 0xCF8;
/// The first configuration data port (0xcfc..=0xcff).
pub const CONFIG_DATA: u16 = 0xCFC;
/// Most channel devices on the bus (`FIRST_CHANNEL_GSI + 7` is the I/O APIC's last input).
pub const MAX_CHANNELS: usize = 8;

/// `COMMAND.IO`: decode the I/O BAR.
pub const COMMAND_IO: u16 = 1 << 0;
/// `COMMAND.MEMORY`: decode the memory BAR.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// `COMMAND.BUS_MASTER`.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// `COMMAND.INTX_DISABLE`: mask the INTx output.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// `STATUS.INTERRUPT`: the function's interrupt condition (an event is pending).
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// `STATUS.CAP_LIST`: the capabilities pointer is valid.
pub const STATUS_CAP_LIST: u16 = 1 << 4;

/// One channel as a PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelDevice {
    /// The channel's local index in the qube (0..8): device `FIRST_CHANNEL_SLOT + local`,
    /// I/O BAR at `IO_BASE + local * IO_STRIDE`, INTx on GSI `FIRST_CHANNEL_GSI + local`.
    pub local: u8,
    /// Guest-physical base of the channel window (BAR0/1), aligned to the BAR size.
    pub bar0: u64,
    /// Bytes of the shared region; the BAR covers it rounded up to a power of two, at least
    /// 4 KiB.
    pub region_size: u64,
    /// Guest-physical base of the channel's bulk window (BAR4/5), aligned to the BAR size;
    /// only when `info.bulk_size` is not 0. The BAR covers the area rounded up to a power of
    /// two.
    pub bar4: u64,
    /// The vendor-specific capability naming the channel (with the bulk area's size).
    pub info: InfoCap,
}

/// What a port write asks of the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciEffect {
    /// Nothing to do.
    None,
    /// The guest rang local channel `n`'s doorbell: notify the peer.
    Doorbell(u8),
}

/// A channel device's state.
#[derive(Clone, Debug)]
struct Channel {
    dev: ChannelDevice,
    /// BAR0/1 size: a power of two ≥ 4 KiB.
    bar_size: u64,
    /// BAR4/5 size: a power of two ≥ 4 KiB, or 0 (no bulk area, no BAR).
    bulk_bar_size: u64,
    command: u16,
    interrupt_line: u8,
    pending: bool,
    /// BAR0 to BAR5 last written with all-ones (reads return the size mask).
    sizing: [bool; 6],
    cap: [u8; InfoCap::LEN],
}

impl Channel {
    fn io_base(&self) -> u16 {
        io_base(self.dev.local)
    }
}

/// The size of a memory BAR over `len` bytes: a power of two, at least 4 KiB.
fn bar_size(len: u64) -> Option<u64> {
    len.max(4096).checked_next_power_of_two()
}

fn io_base(local: u8) -> u16 {
    guest_pci::IO_BASE + u16::from(local) * guest_pci::IO_STRIDE
}

/// Bus 0: the host bridge, the channel devices and the address latch.
#[derive(Clone, Debug, Default)]
pub struct PciBus {
    address: u32,
    channels: bulkhead_abi::bounded::BoundedVec<Channel, MAX_CHANNELS>,
}

impl PciBus {
    /// A bus with only the host bridge at 00:00.0, the latch 0.
    pub fn new() -> PciBus {
        PciBus::default()
    }

    /// Adds local channel `dev.local` at device `FIRST_CHANNEL_SLOT + local`; `false` when
    /// the bus is full, the channel is already there, `local` is 8 or more, or a window
    /// cannot be a BAR (`bar0`, or `bar4` with a bulk area, not aligned to its rounded-up
    /// size, or the size overflows).
    pub fn add_channel(&mut self, dev: ChannelDevice) -> bool {
        let (Some(bar_size), Some(bulk_bar_size)) = (
            bar_size(dev.region_size),
            match dev.info.bulk_size {
                0 => Some(0),
                n => bar_size(u64::from(n)),
            },
        ) else {
            return false;
        };
        if usize::from(dev.local) >= MAX_CHANNELS
            || !dev.bar0.is_multiple_of(bar_size)
            || (bulk_bar_size != 0 && !dev.bar4.is_multiple_of(bulk_bar_size))
            || self.channel(dev.local).is_some()
        {
            return false;
        }
        let line = guest_pci::FIRST_CHANNEL_GSI + u32::from(dev.local);
        let channel = Channel {
            cap: dev.info.to_bytes(),
            interrupt_line: u8::try_from(line).unwrap_or(0xFF),
            bar_size,
            bulk_bar_size,
            command: 0,
            pending: false,
            sizing: [false; 6],
            dev,
        };
        self.channels.push(channel).is_ok()
    }

    /// How many channel devices the bus holds.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Whether `port` is the bus's: 0xcf8..=0xcff and the channels' register blocks.
    pub fn claims(&self, port: u16) -> bool {
        (CONFIG_ADDRESS..=CONFIG_DATA + 3).contains(&port)
            || self
                .channels
                .iter()
                .any(|c| block_offset(c.io_base(), port).is_some())
    }

    /// A guest read of `size` bytes (1, 2 or 4) at `port`. Unclaimed ports, odd sizes and
    /// accesses straddling the end of the data window read all-ones.
    pub fn io_read(&mut self, port: u16, size: u8) -> u32 {
        let ones = ones(size);
        if !matches!(size, 1 | 2 | 4) {
            return ones;
        }
        if port == CONFIG_ADDRESS && size == 4 {
            return self.address;
        }
        if let Some(byte) = data_byte(port, size) {
            let Some((dev, reg)) = self.selected() else {
                return ones;
            };
            return (self.config_read(dev, reg) >> (8 * byte)) & ones;
        }
        if let Some(i) = self.channel_at_port(port) {
            let c = &mut self.channels[i];
            if c.command & COMMAND_IO == 0 {
                return ones;
            }
            if port - c.io_base() == guest_pci::reg::EVENTS && size == 4 {
                return u32::from(core::mem::take(&mut c.pending));
            }
            return 0;
        }
        ones
    }

    /// A guest write of the low `size` bytes (1, 2 or 4) of `value` at `port`.
    pub fn io_write(&mut self, port: u16, size: u8, value: u32) -> PciEffect {
        if !matches!(size, 1 | 2 | 4) {
            return PciEffect::None;
        }
        if port == CONFIG_ADDRESS && size == 4 {
            self.address = value & !3;
            return PciEffect::None;
        }
        if let Some(byte) = data_byte(port, size) {
            if let Some((dev, reg)) = self.selected() {
                let shift = 8 * u32::from(byte);
                self.config_write(dev, reg, ones(size) << shift, value << shift);
            }
            return PciEffect::None;
        }
        if let Some(i) = self.channel_at_port(port) {
            let c = &self.channels[i];
            if c.command & COMMAND_IO != 0
                && port - c.io_base() == guest_pci::reg::DOORBELL
                && size == 4
            {
                return PciEffect::Doorbell(c.dev.local);
            }
        }
        PciEffect::None
    }

    /// The peer notified local channel `local`: an event is pending (INTx asserts unless
    /// masked). Unknown channels are ignored.
    pub fn raise(&mut self, local: u8) {
        if let Some(c) = self.channels.iter_mut().find(|c| c.dev.local == local) {
            c.pending = true;
        }
    }

    /// Whether local channel `local`'s INTx (level, GSI `FIRST_CHANNEL_GSI + local`) is
    /// asserted: an event is pending and `COMMAND.INTX_DISABLE` is clear.
    pub fn intx_asserted(&self, local: u8) -> bool {
        self.channel(local)
            .is_some_and(|c| c.pending && c.command & COMMAND_INTX_DISABLE == 0)
    }

    fn channel(&self, local: u8) -> Option<&Channel> {
        self.channels.iter().find(|c| c.dev.local == local)
    }

    fn channel_at_port(&self, port: u16) -> Option<usize> {
        self.channels
            .iter()
            .position(|c| block_offset(c.io_base(), port).is_some())
    }

    /// The (device, dword-aligned register) the latch selects, if it is enabled, on bus 0,
    /// function 0 and inside the first 256 bytes.
    fn selected(&self) -> Option<(u8, u8)> {
        let a = self.address;
        let enabled = a & (1 << 31) != 0;
        let extended = (a >> 24) & 0x7F;
        let bus = (a >> 16) & 0xFF;
        let function = (a >> 8) & 7;
        if !enabled || extended != 0 || bus != 0 || function != 0 {
            return None;
        }
        Some((((a >> 11) & 0x1F) as u8, (a & 0xFC) as u8))
    }
}

/// The byte offset into the selected dword of a data-port access, if `port` is a data port
/// and the access stays inside 0xcfc..=0xcff.
fn data_byte(port: u16, size: u8) -> Option<u8> {
    let byte = port.checked_sub(CONFIG_DATA)?;
    (byte < 4 && byte + u16::from(size) <= 4).then_some(byte as u8)
}

/// `port`'s offset in the register block starting at `base`.
fn block_offset(base: u16, port: u16) -> Option<u16> {
    port.checked_sub(base).filter(|&o| o < guest_pci::IO_STRIDE)
}

/// All-ones of `size` bytes (4 for odd sizes).
fn ones(size: u8) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => u32::MAX,
    }
}
