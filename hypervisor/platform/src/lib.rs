//! The guest platform of Linux qubes: everything an unmodified Linux kernel needs from its
//! machine besides RAM and a CPU, and nothing more. Each device is a pure state machine; the
//! hypervisor (`hypervisor/src/guest/linux/`) feeds it the guest's port and MMIO accesses and
//! asks it which interrupt to inject.
//!
//! - [`boot`]: the 64-bit boot protocol: a bzImage's setup header checked, the layout of the
//!   qube's memory planned, the zero page, GDT and identity page tables.
//! - [`acpi`]: the ACPI tables the kernel finds its devices through (RSDP, XSDT, MADT, FADT,
//!   DSDT).
//! - [`decode`]: the x86-64 MOV forms Linux uses for MMIO, decoded from the instruction bytes.
//! - [`lapic`]: the local APIC (xAPIC registers, its timer in one-shot, periodic and
//!   TSC-deadline modes).
//! - [`ioapic`]: one I/O APIC with 24 inputs.
//! - [`uart`]: a 16550A at 0x3f8 (IRQ 4).
//! - [`pci`]: configuration space through 0xcf8/0xcfc, the host bridge and the channel
//!   devices (`bulkhead_abi::guest_pci`).
//! - [`pm`]: the ACPI PM1a event and control blocks (poweroff).
//! - [`rtc`]: the CMOS real-time clock (0x70/0x71), showing the hypervisor's wall clock.
//! - [`cpuid`], [`msr`]: what the guest is told about the CPU and which MSRs it may use.
//! - [`walk`]: guest-virtual to guest-physical translation, to fetch an MMIO instruction.
//! - [`xsave`]: the XSAVE components a guest may enable, and the checks of XSETBV.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod decode;
pub mod ioapic;
pub mod lapic;
pub mod msr;
pub mod pci;
pub mod pm;
pub mod rtc;
pub mod uart;
pub mod walk;
pub mod xsave;
