//! One I/O APIC (82093AA register interface, version 0x20) with 24 inputs.
//!
//! The guest programs it through two MMIO registers: IOREGSEL (offset 0x00) selects an
//! internal register, IOWIN (0x10) reads or writes it; the EOI register at 0x40 (version
//! 0x20 and later) ends a level-triggered interrupt directly. The hypervisor drives the input
//! lines with [`IoApic::set_level`], passes every local APIC [`LevelEoi`] to [`IoApic::eoi`],
//! and requests each returned [`Delivery`] from the local APIC (or, with several vCPUs, from
//! those its destination names).
//!
//! Semantics and limits:
//! - **Edge-triggered** entries deliver on a rising edge of an unmasked line. An edge
//!   while the entry is masked is lost (the 82093AA has no per-pin latch either).
//! - **Level-triggered** entries deliver while the line is asserted, the entry unmasked and
//!   its remote IRR clear, and set the remote IRR; an EOI for the vector clears it and
//!   delivers again if the line is still asserted. Unmasking an entry whose line is asserted
//!   delivers at that write. Changing an entry to edge clears its remote IRR, which Linux uses
//!   as an EOI on I/O APICs without an EOI register.
//! - [`IoApic::set_level`] takes the *asserted* state: the caller applies active-low
//!   polarity. The polarity bit is kept only so the guest reads back what it wrote.
//! - Only the fixed and lowest-priority delivery modes deliver. SMI, NMI, INIT and ExtINT
//!   entries never deliver (nothing in the guest platform needs them). Each delivery carries
//!   the entry's destination (physical or logical, [`IpiDest`]) and whether it is
//!   lowest-priority; choosing the local APICs it reaches is the hypervisor's.
//! - Vectors 0x00..0x0F are illegal for the local APIC: such entries never deliver.
//! - Delivery status (bit 12) always reads 0: a delivery completes at once.
//!
//! [`LevelEoi`]: crate::lapic::ApicEffect::LevelEoi

#[cfg(test)]
mod tests;

use crate::lapic::IpiDest;

/// The guest-physical address of the I/O APIC's register page.
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;

/// The number of interrupt inputs (GSI 0..23).
pub const PINS: usize = 24;

/// Version register: max redirection entry 23, version 0x20.
const VERSION: u32 = ((PINS as u32 - 1) << 16) | 0x20;

/// Writable bits of a redirection entry: vector, delivery mode, destination mode,
/// polarity, trigger mode, mask and destination.
const WRITABLE: u64 = 0xFF00_0000_0001_AFFF;
/// Remote IRR (read-only to the guest).
const REMOTE_IRR: u64 = 1 << 14;
/// Trigger mode: level.
const LEVEL: u64 = 1 << 15;
/// Mask.
const MASKED: u64 = 1 << 16;
/// Destination mode: logical.
const LOGICAL: u64 = 1 << 11;

/// An interrupt the I/O APIC sends to local APICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The vector, for [`crate::lapic::LocalApic::request`].
    pub vector: u8,
    /// Whether the entry is level-triggered (the local APIC sets its TMR bit and reports
    /// the EOI back).
    pub level: bool,
    /// The local APICs it goes to: the entry's destination (bits 56..63), logical if its
    /// destination mode (bit 11) is set, else physical.
    pub dest: IpiDest,
    /// Whether the entry's delivery mode is lowest priority (1) rather than fixed (0): it
    /// goes to one of the destination's APICs only.
    pub lowest_priority: bool,
}

/// One I/O APIC with [`PINS`] inputs.
#[derive(Debug, Clone)]
pub struct IoApic {
    id: u8,
    select: u8,
    entries: [u64; PINS],
    /// The asserted state of each input line.
    lines: [bool; PINS],
}

impl IoApic {
    /// An I/O APIC with APIC id `id` (4 bits; higher bits are dropped), every redirection
    /// entry masked, every line deasserted.
    pub fn new(id: u8) -> IoApic {
        IoApic {
            id: id & 0xF,
            select: 0,
            entries: [MASKED; PINS],
            lines: [false; PINS],
        }
    }

    /// Reads the 32-bit register at `offset`: 0x00 IOREGSEL, 0x10 IOWIN; other offsets
    /// read 0.
    pub fn read(&mut self, offset: u32) -> u32 {
        match offset {
            0x00 => u32::from(self.select),
            0x10 => self.read_register(self.select),
            _ => 0,
        }
    }

    /// Writes the 32-bit register at `offset`: 0x00 IOREGSEL, 0x10 IOWIN, 0x40 the EOI
    /// register (the low byte is the vector, as [`IoApic::eoi`]). Returns the interrupt the
    /// write delivers, if any (unmasking an asserted level-triggered input).
    pub fn write(&mut self, offset: u32, value: u32) -> Option<Delivery> {
        match offset {
            0x00 => {
                self.select = value as u8;
                None
            }
            0x10 => self.write_register(self.select, value),
            0x40 => self.eoi(value as u8),
            _ => None,
        }
    }

    /// Sets input `pin` to asserted (`high`) or deasserted, after the caller has applied
    /// the line's polarity. Returns the interrupt this delivers, if any. Pins outside
    /// 0..[`PINS`] are ignored.
    pub fn set_level(&mut self, pin: u8, high: bool) -> Option<Delivery> {
        let p = usize::from(pin);
        let was = *self.lines.get(p)?;
        self.lines[p] = high;
        if self.entries[p] & LEVEL != 0 {
            self.deliver_level(p)
        } else if high && !was {
            self.deliverable(p).then(|| self.delivery(p))
        } else {
            None
        }
    }

    /// End of interrupt for `vector` (from the local APIC's EOI of a level-triggered vector,
    /// or the EOI register): clears the remote IRR of every level-triggered entry with this
    /// vector, and delivers again if such an input is still asserted.
    pub fn eoi(&mut self, vector: u8) -> Option<Delivery> {
        let mut again = None;
        for p in 0..PINS {
            let e = self.entries[p];
            if e as u8 == vector && e & LEVEL != 0 && e & REMOTE_IRR != 0 {
                self.entries[p] &= !REMOTE_IRR;
                again = again.or(self.deliver_level(p));
            }
        }
        again
    }

    fn read_register(&self, index: u8) -> u32 {
        match index {
            0x00 | 0x02 => u32::from(self.id) << 24,
            0x01 => VERSION,
            0x10..=0x3F => {
                let e = self.entries[usize::from(index - 0x10) / 2];
                if index & 1 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, index: u8, value: u32) -> Option<Delivery> {
        match index {
            0x00 => self.id = ((value >> 24) & 0xF) as u8,
            0x10..=0x3F => {
                let p = usize::from(index - 0x10) / 2;
                let old = self.entries[p];
                let (half, keep) = if index & 1 == 0 {
                    (u64::from(value), 0xFFFF_FFFF_0000_0000 | REMOTE_IRR)
                } else {
                    (u64::from(value) << 32, 0x0000_0000_FFFF_FFFF)
                };
                let mut new = (old & keep) | (half & WRITABLE & !keep);
                if new & LEVEL == 0 {
                    new &= !REMOTE_IRR;
                }
                self.entries[p] = new;
                if index & 1 == 0 {
                    return self.deliver_level(p);
                }
            }
            // version and arbitration are read-only
            _ => {}
        }
        None
    }

    /// Whether entry `p` would deliver to the CPU now (unmasked, a deliverable mode and a
    /// legal vector), regardless of its trigger mode and line.
    fn deliverable(&self, p: usize) -> bool {
        let e = self.entries[p];
        let mode = (e >> 8) & 7;
        e & MASKED == 0 && (mode == 0 || mode == 1) && e as u8 >= 0x10
    }

    /// A level-triggered entry delivers if its line is asserted and its remote IRR clear.
    fn deliver_level(&mut self, p: usize) -> Option<Delivery> {
        let e = self.entries[p];
        if e & LEVEL == 0 || e & REMOTE_IRR != 0 || !self.lines[p] || !self.deliverable(p) {
            return None;
        }
        self.entries[p] |= REMOTE_IRR;
        Some(self.delivery(p))
    }

    fn delivery(&self, p: usize) -> Delivery {
        let e = self.entries[p];
        let apics = (e >> 56) as u8;
        Delivery {
            vector: e as u8,
            level: e & LEVEL != 0,
            dest: if e & LOGICAL != 0 {
                IpiDest::Logical(apics)
            } else {
                IpiDest::Physical(apics)
            },
            lowest_priority: (e >> 8) & 7 == 1,
        }
    }
}
