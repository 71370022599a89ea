//! Interrupts of a Linux qube: device lines into the I/O APIC, the I/O APIC into the local
//! APIC, and the local APIC's highest pending vector into the vCPU when it can take it.

use super::LinuxGuest;
use crate::arch::x86::cpu;
use crate::qube::Qube;
use crate::virt::{Event, Vcpu};
use bulkhead_abi::guest_pci::FIRST_CHANNEL_GSI;
use bulkhead_platform::ioapic::Delivery;
use bulkhead_platform::uart::COM1_IRQ;

impl LinuxGuest {
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
}

/// Before each entry of a Linux qube: the timer, channel events that arrived (each raises
/// its channel device's INTx), and the injection of the highest pending interrupt, or an
/// interrupt-window exit if the guest cannot take it yet.
pub fn prepare_entry(q: &mut Qube) {
    let Some(g) = q.linux.as_mut() else { return };
    g.lapic.update_timer(cpu::rdtsc());
    let events = core::mem::take(&mut q.events);
    for local in 0..g.pci.channel_count() as u8 {
        if events & (1 << local) != 0 {
            g.pci.raise(local);
        }
    }
    g.sync_lines();
    if let Some(vector) = g.lapic.pending() {
        if q.vcpu.interruptible() {
            g.lapic.acknowledge(vector);
            q.vcpu.inject(Event::Interrupt(vector));
            q.vcpu.set_interrupt_window(false);
            g.stats.injected += 1;
        } else {
            q.vcpu.set_interrupt_window(true);
        }
    }
}

/// When Linux qube `q`'s timer fires next (ns since boot), if armed.
pub fn wake_deadline(q: &Qube) -> Option<u64> {
    q.linux.as_ref().and_then(guest_deadline)
}

/// When a guest's timer fires next (ns since boot), if armed.
pub(super) fn guest_deadline(g: &LinuxGuest) -> Option<u64> {
    g.lapic.next_timer_tsc().map(crate::time::tsc_to_ns)
}
