//! Configuration space of the host bridge and of the channel devices, one dword at a time.

use super::{
    COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_IO, COMMAND_MEMORY, Channel, PciBus,
    STATUS_CAP_LIST, STATUS_INTERRUPT,
};
use bulkhead_abi::guest_pci::{self, InfoCap};

/// COMMAND bits a channel device implements.
const COMMAND_WRITABLE: u16 =
    COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
/// Revision ID of the channel devices.
const CHANNEL_REVISION: u32 = 1;
/// BAR0 and BAR4 type bits: memory, 64-bit (bits 1..2 = 10), not prefetchable.
const BAR_MEM64: u32 = 0b100;
/// BAR2 type bit: I/O space.
const BAR_IO: u32 = 0b1;
/// Interrupt pin: INTA.
const INTA: u32 = 1;

impl PciBus {
    /// The dword at `reg` (a multiple of 4) of device `dev`, function 0, on bus 0.
    pub(super) fn config_read(&self, dev: u8, reg: u8) -> u32 {
        if dev == 0 {
            return host_bridge(reg);
        }
        match self.channel_in_slot(dev) {
            Some(i) => channel_read(&self.channels[i], reg),
            None => u32::MAX,
        }
    }

    /// Writes the bytes `mask` selects of `value` (both already shifted into place) to the
    /// dword at `reg` of device `dev`. The host bridge is read-only.
    pub(super) fn config_write(&mut self, dev: u8, reg: u8, mask: u32, value: u32) {
        if dev == 0 {
            return;
        }
        if let Some(i) = self.channel_in_slot(dev) {
            channel_write(&mut self.channels[i], reg, mask, value);
        }
    }

    fn channel_in_slot(&self, dev: u8) -> Option<usize> {
        let local = dev.checked_sub(guest_pci::FIRST_CHANNEL_SLOT)?;
        self.channels.iter().position(|c| c.dev.local == local)
    }
}

/// 00:00.0: identification only; no BARs, no capabilities, COMMAND and STATUS 0.
fn host_bridge(reg: u8) -> u32 {
    match reg {
        0x00 => u32::from(guest_pci::HOST_BRIDGE_DEVICE_ID) << 16 | u32::from(guest_pci::VENDOR_ID),
        0x08 => guest_pci::HOST_BRIDGE_CLASS << 8,
        _ => 0,
    }
}

fn channel_read(c: &Channel, reg: u8) -> u32 {
    let cap_start = guest_pci::INFO_CAP_OFFSET;
    match reg {
        0x00 => u32::from(guest_pci::CHANNEL_DEVICE_ID) << 16 | u32::from(guest_pci::VENDOR_ID),
        0x04 => {
            let interrupt = if c.pending { STATUS_INTERRUPT } else { 0 };
            u32::from(STATUS_CAP_LIST | interrupt) << 16 | u32::from(c.command)
        }
        0x08 => guest_pci::CHANNEL_CLASS << 8 | CHANNEL_REVISION,
        0x10 if c.sizing[0] => (!(c.bar_size - 1)) as u32 & !0xF | BAR_MEM64,
        0x10 => c.dev.bar0 as u32 & !0xF | BAR_MEM64,
        0x14 if c.sizing[1] => ((!(c.bar_size - 1)) >> 32) as u32,
        0x14 => (c.dev.bar0 >> 32) as u32,
        0x18 if c.sizing[2] => !(u32::from(guest_pci::IO_STRIDE) - 1) & !0x3 | BAR_IO,
        0x18 => u32::from(c.io_base()) | BAR_IO,
        0x20 | 0x24 if c.bulk_bar_size == 0 => 0,
        0x20 if c.sizing[4] => (!(c.bulk_bar_size - 1)) as u32 & !0xF | BAR_MEM64,
        0x20 => c.dev.bar4 as u32 & !0xF | BAR_MEM64,
        0x24 if c.sizing[5] => ((!(c.bulk_bar_size - 1)) >> 32) as u32,
        0x24 => (c.dev.bar4 >> 32) as u32,
        0x2C => u32::from(c.dev.local) << 16 | u32::from(guest_pci::VENDOR_ID),
        0x34 => u32::from(cap_start),
        0x3C => INTA << 8 | u32::from(c.interrupt_line),
        r if r >= cap_start && usize::from(r - cap_start) < InfoCap::LEN => {
            let at = usize::from(r - cap_start);
            let byte = |i: usize| u32::from(c.cap.get(at + i).copied().unwrap_or(0));
            byte(0) | byte(1) << 8 | byte(2) << 16 | byte(3) << 24
        }
        _ => 0,
    }
}

fn channel_write(c: &mut Channel, reg: u8, mask: u32, value: u32) {
    match reg {
        0x04 => {
            // Only COMMAND (the low half) is writable; STATUS writes are ignored.
            let m = (mask as u16) & COMMAND_WRITABLE;
            c.command = (c.command & !m) | (value as u16 & m);
        }
        0x10 | 0x14 | 0x18 | 0x20 | 0x24 => {
            // The BAR never moves: an all-ones dword starts sizing, anything else ends it.
            c.sizing[usize::from((reg - 0x10) / 4)] = mask == u32::MAX && value == u32::MAX;
        }
        0x3C if mask & 0xFF != 0 => c.interrupt_line = value as u8,
        _ => {}
    }
}
