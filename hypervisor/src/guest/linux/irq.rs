//! Interrupts of a Linux qube: device lines into the I/O APIC, the I/O APIC's messages and
//! the IPIs of its vCPUs to the local APICs they name (this vCPU's own directly, another's
//! through its link on the board), and the local APIC's highest pending vector into the
//! vCPU when it can take it.

use super::LinuxCpu;
use super::board::{Board, Devices};
use crate::arch::x86::cpu;
use crate::virt::{AnyVcpu, Event};
use bulkhead_abi::guest_pci::FIRST_CHANNEL_GSI;
use bulkhead_platform::ioapic::Delivery;
use bulkhead_platform::lapic::{Ipi, IpiMode};
use bulkhead_platform::uart::COM1_IRQ;

/// The I/O APIC has no APIC id of its own as a sender (no shorthand reaches it).
const IOAPIC_SENDER: u8 = 0xFF;

impl LinuxCpu {
    /// Hands an I/O APIC message to the local APICs it names: this vCPU's directly, the
    /// others' through their links; a lowest-priority one to one of them (this vCPU if it
    /// is named).
    pub(super) fn deliver(&mut self, board: &Board, d: Option<Delivery>) {
        let Some(d) = d else { return };
        let me = self.index();
        let mut targets = board.targets(d.dest, IOAPIC_SENDER);
        if d.lowest_priority && targets != 0 {
            targets = if targets & 1 << me != 0 {
                1 << me
            } else {
                targets & targets.wrapping_neg()
            };
        }
        for k in Bits(targets) {
            if k == me {
                self.lapic.request(d.vector, d.level);
            } else {
                board.post(k, d.vector, d.level, me);
            }
        }
    }

    /// Sends an IPI this vCPU's APIC wrote to the other vCPUs it names (its own part, if
    /// any, the APIC took itself): fixed and lowest-priority vectors, INIT and STARTUP.
    /// NMIs are dropped (logged once); SMIs, INIT de-asserts and reserved modes do nothing,
    /// as on the processors Linux runs on.
    pub(super) fn send_ipi(&mut self, board: &Board, ipi: Ipi) {
        let me = self.index();
        let others = board.targets(ipi.dest, ipi.from) & !(1u8 << me);
        let lowest = others & others.wrapping_neg();
        if others != 0 {
            self.stats.ipis += 1;
        }
        for k in Bits(others) {
            match ipi.mode {
                IpiMode::Fixed => board.post(k, ipi.vector, false, me),
                IpiMode::LowestPriority if 1 << k == lowest => board.post(k, ipi.vector, false, me),
                IpiMode::Init => board.init(k, me),
                IpiMode::Startup => board.startup(k, ipi.vector, me),
                IpiMode::Nmi => {
                    self.dropped_nmis += 1;
                    if self.dropped_nmis == 1 {
                        crate::hvlog!(
                            "qube {}: vCPU {me}: NMI IPIs are not delivered (dropped)",
                            board.name
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// Brings every device's interrupt line to the I/O APIC (it sees edges and levels).
    pub(super) fn sync_lines(&mut self, board: &Board, d: &mut Devices) {
        let uart = d.uart.irq_line();
        let m = d.ioapic.set_level(COM1_IRQ, uart);
        self.deliver(board, m);
        for local in 0..d.pci.channel_count() as u8 {
            let high = d.pci.intx_asserted(local);
            let m = d
                .ioapic
                .set_level((FIRST_CHANNEL_GSI as u8).saturating_add(local), high);
            self.deliver(board, m);
        }
    }

    /// Before each entry: the timer, what other vCPUs posted, channel `events` that arrived
    /// (each raises its channel device's INTx; false when the devices were held, so they
    /// stay pending), and the injection of the highest pending interrupt, or an
    /// interrupt-window exit if the guest cannot take it yet.
    pub(super) fn prepare_entry(&mut self, vcpu: &mut AnyVcpu, board: &Board, events: u64) -> bool {
        self.lapic.update_timer(cpu::rdtsc());
        board.links[self.index()].drain_into(&mut self.lapic);
        let mut taken = true;
        if events != 0 {
            taken = board
                .with_devices(|d| {
                    for local in 0..d.pci.channel_count() as u8 {
                        if events & (1 << local) != 0 {
                            d.pci.raise(local);
                        }
                    }
                    self.sync_lines(board, d);
                })
                .is_some();
        }
        if let Some(vector) = self.lapic.pending() {
            if vcpu.interruptible() {
                self.lapic.acknowledge(vector);
                vcpu.inject(Event::Interrupt(vector));
                vcpu.set_interrupt_window(false);
                self.stats.injected += 1;
            } else {
                vcpu.set_interrupt_window(true);
            }
        }
        taken
    }

    /// When the guest's timer fires next (ns since boot), if armed.
    pub(super) fn timer_deadline(&self) -> Option<u64> {
        self.lapic.next_timer_tsc().map(crate::time::tsc_to_ns)
    }
}

/// The set bits of a vCPU mask, lowest first.
struct Bits(u8);

impl Iterator for Bits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let k = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(k)
    }
}
