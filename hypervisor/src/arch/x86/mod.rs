//! x86-64: the CPU, its descriptor tables, interrupts, the local APIC timer, the UART.
//!
//! Unsafe code in the hypervisor lives in: `cpu` (privileged instructions), `descriptors`
//! (GDT/TSS/IDT), `smp` (the AP trampoline), `apic` (MMIO registers), `serial`/`pic`/`pit`/`cmos` (port I/O),
//! `crate::memory::phys` (physical memory access), `crate::virt::svm` (VMCB, VMRUN) and
//! `crate::virt::vmx` (VMCS, VMLAUNCH/VMRESUME).
pub mod apic;
pub mod cmos;
pub mod cpu;
pub mod descriptors;
pub mod exception;
pub mod pic;
pub mod pit;
pub mod serial;
pub mod smp;
pub mod stack;

core::arch::global_asm!(include_str!("../../boot/entry.s"));
core::arch::global_asm!(include_str!("../../boot/ap.s"), options(att_syntax));
core::arch::global_asm!(include_str!("isr.s"));
core::arch::global_asm!(include_str!(concat!(env!("OUT_DIR"), "/isr_stubs.s")));
