//! Interrupts of a Linux qube: device lines into the I/O APIC, the I/O APIC into the local
//! APIC, and the local APIC's highest pending vector into the vCPU when it can take it.

use super::Linux;
use crate::arch::x86::cpu;
use crate::guest::Machine;
use crate::virt::Event;
use bulkhead_abi::guest_pci::FIRST_CHANNEL_GSI;
use bulkhead_platform::ioapic::Delivery;
use bulkhead_platform::uart::COM1_IRQ;

impl Linux {
    /// Hands an I/O APIC delivery to the local APIC.
    pub(super) fn deliver(&mut self, d: Option<Delivery>) {
        if let Some(d) = d {
            self.lapic.request(d.vector, d.level);
        }
    }

    /// Brings every device's interrupt line to the I/O APIC (it sees edges and levels).
    pub(super) fn sync_lines(&mut self) {
        let uart = self.uart.irq_line();
        let d = self.ioapic.set_level(COM1_IRQ, uart);
        self.deliver(d);
        for local in 0..self.pci.channel_count() as u8 {
            let high = self.pci.intx_asserted(local);
            let d = self
                .ioapic
                .set_level((FIRST_CHANNEL_GSI as u8).saturating_add(local), high);
            self.deliver(d);
        }
    }

    /// Before each entry: the timer, channel events that arrived (each raises its channel
    /// device's INTx), and the injection of the highest pending interrupt, or an
    /// interrupt-window exit if the guest cannot take it yet.
    pub(super) fn prepare_entry(&mut self, m: &mut Machine) {
        self.lapic.update_timer(cpu::rdtsc());
        let events = core::mem::take(&mut m.events);
        for local in 0..self.pci.channel_count() as u8 {
            if events & (1 << local) != 0 {
                self.pci.raise(local);
            }
        }
        self.sync_lines();
        if let Some(vector) = self.lapic.pending() {
            if m.vcpu.interruptible() {
                self.lapic.acknowledge(vector);
                m.vcpu.inject(Event::Interrupt(vector));
                m.vcpu.set_interrupt_window(false);
                self.stats.injected += 1;
            } else {
                m.vcpu.set_interrupt_window(true);
            }
        }
    }

    /// When the guest's timer fires next (ns since boot), if armed.
    pub(super) fn timer_deadline(&self) -> Option<u64> {
        self.lapic.next_timer_tsc().map(crate::time::tsc_to_ns)
    }
}
