//! The local APIC of one vCPU of a guest with one or more vCPUs, through its xAPIC MMIO
//! registers.
//!
//! The model keeps the interrupt state (IRR, ISR, TMR, TPR/PPR), the local vector table and
//! the timer in its one-shot, periodic and TSC-deadline modes. It has no clock of its own:
//! every call that may observe time takes the guest's current TSC, and the hypervisor asks
//! [`LocalApic::next_timer_tsc`] when to come back and call [`LocalApic::update_timer`].
//!
//! A write to ICR low sends an interprocessor interrupt ([`Ipi`]). The APIC handles the part
//! that reaches itself only for the fixed mode: it requests the vector when the destination
//! includes it (self, all including self, or its own physical or logical address). Every IPI
//! whose destination may include another APIC (any destination but the self shorthand), of
//! any delivery mode, is returned as [`ApicEffect::Ipi`]: the hypervisor delivers it to the
//! other vCPUs whose [`ApicAddress::accepts`] it, and ignores what it does not support. A
//! non-fixed IPI to the self shorthand is dropped. With one vCPU this reduces to self-IPIs.
//!
//! LINT0/LINT1, thermal, performance, CMCI and error LVT entries are plain registers: nothing
//! ever raises those interrupts. The error status register always reads 0. Vectors 0..15
//! are illegal and requests for them are ignored.
//!
//! Accesses are expected as aligned 32-bit reads and writes of the register at a 16-byte
//! boundary; any other offset reads 0 and ignores writes.

mod ipi;
#[cfg(test)]
mod tests;
mod timer;

pub use ipi::{ApicAddress, Ipi, IpiDest, IpiMode};
use timer::{Countdown, Mode};

/// The guest-physical address of the local APIC's register page.
pub const LAPIC_BASE: u64 = 0xFEE0_0000;

/// APIC version register: version 0x14 (integrated xAPIC), max LVT entry 5, no
/// EOI-broadcast suppression.
const VERSION: u32 = 0x0005_0014;

/// Index of the CMCI entry (0x2F0) in the LVT array; the timer, thermal, performance,
/// LINT0, LINT1 and error entries (0x320..=0x370) follow it in register order.
const LVT_CMCI: usize = 0;
/// Index of the timer entry.
const LVT_TIMER: usize = 1;
/// Number of LVT entries.
const LVTS: usize = 7;

/// The LVT mask bit.
const MASKED: u32 = 1 << 16;
/// The SVR APIC software enable bit.
const SVR_ENABLE: u32 = 1 << 8;

/// The architecturally writable bits of each LVT entry (delivery status and remote IRR are
/// read-only and always read 0 here).
const LVT_WRITABLE: [u32; LVTS] = [
    0x0001_07FF, // CMCI: vector, delivery mode, mask
    0x0007_00FF, // timer: vector, mask, mode
    0x0001_07FF, // thermal
    0x0001_07FF, // performance
    0x0001_A7FF, // LINT0: + polarity, trigger mode
    0x0001_A7FF, // LINT1
    0x0001_00FF, // error: vector, mask
];

/// What the hypervisor must do after a register write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicEffect {
    /// Nothing.
    None,
    /// EOI of a level-triggered vector: the I/O APIC must clear its remote IRR
    /// ([`crate::ioapic::IoApic::eoi`]).
    LevelEoi(u8),
    /// An IPI whose destination may include other APICs: deliver it to every other APIC
    /// whose [`ApicAddress::accepts`] it. For [`IpiMode::Fixed`] the sender has already
    /// requested the vector on itself if the destination includes it; for the other modes
    /// it has done nothing, for itself either.
    Ipi(Ipi),
}

/// A 256-bit vector register (IRR, ISR, TMR) as eight 32-bit words.
#[derive(Debug, Clone, Copy, Default)]
struct Bits([u32; 8]);

impl Bits {
    fn get(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }
    fn set(&mut self, v: u8, on: bool) {
        let word = &mut self.0[usize::from(v >> 5)];
        if on {
            *word |= 1 << (v & 31);
        } else {
            *word &= !(1 << (v & 31));
        }
    }
    fn highest(&self) -> Option<u8> {
        (0..8usize).rev().find_map(|i| {
            let w = self.0[i];
            (w != 0).then(|| (i * 32 + 31 - w.leading_zeros() as usize) as u8)
        })
    }
}

/// The local APIC of one vCPU (xAPIC register interface).
#[derive(Debug, Clone)]
pub struct LocalApic {
    id: u8,
    tsc_khz: u64,
    bus_khz: u64,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    irr: Bits,
    isr: Bits,
    tmr: Bits,
    lvt: [u32; LVTS],
    icr_low: u32,
    icr_high: u32,
    initial_count: u32,
    divide: u32,
    /// The running one-shot or periodic countdown, if any.
    countdown: Option<Countdown>,
    /// IA32_TSC_DEADLINE; 0 is disarmed.
    deadline: u64,
}

impl LocalApic {
    /// The power-on state: APIC id `id`, software-disabled (SVR 0xFF), every LVT masked, the
    /// timer stopped. `tsc_khz` is the TSC frequency and `bus_khz` the timer's input clock
    /// before the divider (0 counts as 1).
    pub fn new(id: u8, tsc_khz: u64, bus_khz: u64) -> LocalApic {
        LocalApic {
            id,
            tsc_khz: tsc_khz.max(1),
            bus_khz: bus_khz.max(1),
            tpr: 0,
            ldr: 0,
            dfr: 0xFFFF_FFFF,
            svr: 0xFF,
            irr: Bits::default(),
            isr: Bits::default(),
            tmr: Bits::default(),
            lvt: [MASKED; LVTS],
            icr_low: 0,
            icr_high: 0,
            initial_count: 0,
            divide: 0,
            countdown: None,
            deadline: 0,
        }
    }

    /// Reads the 32-bit register at `offset` within the page at `now_tsc` (the timer is
    /// brought up to date first). Unknown and reserved offsets read 0.
    pub fn read(&mut self, offset: u32, now_tsc: u64) -> u32 {
        self.update_timer(now_tsc);
        if offset & 0xF != 0 {
            return 0;
        }
        match offset {
            0x020 => u32::from(self.id) << 24,
            0x030 => VERSION,
            0x080 => self.tpr,
            0x0A0 => self.ppr(),
            0x0D0 => self.ldr,
            0x0E0 => self.dfr,
            0x0F0 => self.svr,
            0x100..=0x170 => self.isr.0[(offset as usize - 0x100) >> 4],
            0x180..=0x1F0 => self.tmr.0[(offset as usize - 0x180) >> 4],
            0x200..=0x270 => self.irr.0[(offset as usize - 0x200) >> 4],
            0x2F0 => self.lvt[LVT_CMCI],
            0x300 => self.icr_low, // delivery status 0: idle
            0x310 => self.icr_high,
            0x320..=0x370 => self.lvt[LVT_TIMER + ((offset as usize - 0x320) >> 4)],
            0x380 => self.initial_count,
            0x390 => self.current_count(now_tsc),
            0x3E0 => self.divide,
            // APR, RRD, ESR and everything reserved
            _ => 0,
        }
    }

    /// Writes the 32-bit register at `offset` within the page at `now_tsc`. Read-only,
    /// unknown and reserved registers ignore writes.
    pub fn write(&mut self, offset: u32, value: u32, now_tsc: u64) -> ApicEffect {
        self.update_timer(now_tsc);
        if offset & 0xF != 0 {
            return ApicEffect::None;
        }
        match offset {
            0x080 => self.tpr = value & 0xFF,
            0x0B0 => return self.eoi(),
            0x0D0 => self.ldr = value & 0xFF00_0000,
            0x0E0 => self.dfr = value | 0x0FFF_FFFF,
            0x0F0 => {
                self.svr = value & 0x3FF;
                if !self.is_enabled() {
                    for entry in &mut self.lvt {
                        *entry |= MASKED;
                    }
                }
            }
            0x2F0 => self.write_lvt(LVT_CMCI, value, now_tsc),
            0x300 => return self.write_icr(value),
            0x310 => self.icr_high = value & 0xFF00_0000,
            0x320..=0x370 => {
                self.write_lvt(LVT_TIMER + ((offset as usize - 0x320) >> 4), value, now_tsc)
            }
            0x380 => self.write_initial_count(value, now_tsc),
            0x3E0 => self.write_divide(value, now_tsc),
            // ESR writes re-arm error latching; no errors are ever reported.
            _ => {}
        }
        ApicEffect::None
    }

    /// An interrupt arrives (from the I/O APIC or an IPI): its IRR bit is set and its TMR
    /// bit records whether it is level-triggered. Vectors 0..15 are illegal and ignored.
    pub fn request(&mut self, vector: u8, level: bool) {
        if vector >= 16 {
            self.irr.set(vector, true);
            self.tmr.set(vector, level);
        }
    }

    /// The interrupt to deliver now: the highest requested vector whose priority class
    /// (`vector >> 4`) is above the processor priority's class. `None` while the APIC is
    /// software-disabled.
    pub fn pending(&self) -> Option<u8> {
        if !self.is_enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > (self.ppr() >> 4) as u8).then_some(v)
    }

    /// The interrupt `vector` has been delivered to the CPU: its IRR bit moves to the ISR.
    /// Ignored if `vector` was not requested.
    pub fn acknowledge(&mut self, vector: u8) {
        if self.irr.get(vector) {
            self.irr.set(vector, false);
            self.isr.set(vector, true);
        }
    }

    /// The APIC id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// What decides whether an interrupt reaches this APIC: its id, and its logical
    /// destination and destination format registers as the guest last wrote them.
    pub fn address(&self) -> ApicAddress {
        ApicAddress {
            id: self.id,
            ldr: self.ldr,
            dfr: self.dfr,
        }
    }

    /// Whether the APIC is software-enabled (SVR bit 8).
    pub fn is_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// The processor priority: the TPR, or the class of the highest in-service vector if
    /// that is higher.
    fn ppr(&self) -> u32 {
        let isrv = self.isr.highest().map_or(0, u32::from);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// EOI: retires the highest in-service vector.
    fn eoi(&mut self) -> ApicEffect {
        let Some(v) = self.isr.highest() else {
            return ApicEffect::None;
        };
        self.isr.set(v, false);
        if self.tmr.get(v) {
            ApicEffect::LevelEoi(v)
        } else {
            ApicEffect::None
        }
    }

    /// A write to ICR low sends an IPI: a fixed one reaching this APIC is requested here,
    /// one that may reach another APIC is returned.
    fn write_icr(&mut self, value: u32) -> ApicEffect {
        // vector, delivery mode, destination mode, level, trigger mode, shorthand
        self.icr_low = value & 0x000C_CFFF;
        let ipi = Ipi::of_icr(value, self.icr_high, self.id);
        if ipi.mode == IpiMode::Fixed && self.address().accepts(ipi.dest, self.id) {
            self.request(ipi.vector, false);
        }
        if ipi.dest == IpiDest::SelfOnly {
            ApicEffect::None
        } else {
            ApicEffect::Ipi(ipi)
        }
    }

    fn write_lvt(&mut self, index: usize, value: u32, now_tsc: u64) {
        let mut value = value & LVT_WRITABLE[index];
        if !self.is_enabled() {
            value |= MASKED;
        }
        if index == LVT_TIMER && Mode::of(value) != self.mode() {
            self.countdown = None;
            self.deadline = 0;
        }
        self.lvt[index] = value;
        if index == LVT_TIMER {
            // an unmasked deadline already passed fires now
            self.update_timer(now_tsc);
        }
    }
}
