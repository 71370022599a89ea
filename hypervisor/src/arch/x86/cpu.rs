//! Privileged CPU instructions: MSRs, control registers, CPUID, TSC, interrupt flag, halt.
//! One of the hypervisor's unsafe modules: every function here is a thin, documented wrapper.

use core::arch::asm;

/// IA32_EFER.
pub const MSR_EFER: u32 = 0xC000_0080;
/// AMD VM_CR (SVM lock and disable bits).
pub const MSR_VM_CR: u32 = 0xC001_0114;
/// AMD VM_HSAVE_PA: where VMRUN keeps host state.
pub const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1B;

/// Result of CPUID.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpuid {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Executes CPUID for `leaf`/`subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    Cpuid {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Reads an MSR.
///
/// # Safety
/// `msr` must exist on this CPU (reading an absent MSR raises #GP, a hypervisor fault).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists; RDMSR only reads it.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
/// `msr` must exist and `value` must be valid for it, and the caller must own the state the
/// MSR controls (e.g. EFER bits that paging depends on must keep their meaning).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack))
    };
}

/// Loads the page attribute table every mapping is built for
/// ([`bulkhead_hvcore::paging::PAT`]: entry 1 write-combining). AMD's nested walks take
/// their memory types from it, so a framebuffer's PWT-only NPT entries mean WC.
pub fn load_pat() {
    const IA32_PAT: u32 = 0x277;
    // SAFETY: IA32_PAT exists on every x86-64 CPU and the layout is valid (types 0, 1, 6, 7
    // only). The hypervisor's own tables use entries 0 (WB) and 3 (PCD|PWT, UC), which keep
    // their types, so nothing mapped changes type and no cache flush is needed; entry 1 is
    // first used by qubes' tables, built after this.
    unsafe { wrmsr(IA32_PAT, bulkhead_hvcore::paging::PAT) }
}

/// Reads CR2 (the last page-fault address).
pub fn cr2() -> u64 {
    let v;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Reads CR0.
pub fn cr0() -> u64 {
    let v;
    // SAFETY: reading CR0 has no side effect.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Reads CR3 (the hypervisor's page-table root).
pub fn cr3() -> u64 {
    let v;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

/// Reads CR4.
pub fn cr4() -> u64 {
    let v;
    // SAFETY: reading CR4 has no side effect.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

/// Writes CR0.
///
/// # Safety
/// Paging, protected mode, write protection and the SSE setup must keep the meaning the
/// hypervisor relies on; the value must be valid for the CPU (else #GP).
pub unsafe fn write_cr0(v: u64) {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack)) };
}

/// Writes CR2 (the last page-fault address), which VMX does not switch between guests.
pub fn write_cr2(v: u64) {
    // SAFETY: CR2 only reports the address of the last page fault; the hypervisor never
    // takes page faults it handles (one is fatal, reported from the exception handler,
    // whatever CR2 holds), so no host code depends on its value.
    unsafe { asm!("mov cr2, {}", in(reg) v, options(nomem, nostack)) };
}

/// Writes CR4.
///
/// # Safety
/// As for [`write_cr0`]: PAE and the SSE bits must stay, the value must be valid.
pub unsafe fn write_cr4(v: u64) {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack)) };
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device the hypervisor owns, and the write must not break an
/// invariant another part of the hypervisor relies on.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: forwarded to the caller's guarantee; OUT touches no memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As for [`outb`]; reading some device registers has side effects the caller must want.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: forwarded to the caller's guarantee; IN touches no memory.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter (CR4.TSD is clear at CPL 0 anyway).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Enables interrupts.
pub fn enable_interrupts() {
    // SAFETY: every IDT vector has a handler on its own IST stack (see descriptors.rs) before the
    // first call, so an interrupt can arrive at any point.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// Loads CR3 (switches page tables; flushes the non-global TLB entries).
///
/// # Safety
/// `root` must be a PML4 that maps the running code, its stack and every address in use
/// as the current tables do.
pub unsafe fn write_cr3(root: u64) {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack)) };
}

/// Disables interrupts (the scheduler, before it decides to halt: see `Scheduler::idle`).
pub fn disable_interrupts() {
    // SAFETY: CLI only holds interrupts pending; `wait_for_interrupt` or
    // `enable_interrupts` takes them afterwards.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Enables interrupts and halts until the next one, atomically (no wake-up is lost between
/// the two because STI takes effect after the following instruction).
pub fn wait_for_interrupt() {
    // SAFETY: as in `enable_interrupts`; HLT resumes on the next interrupt.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) };
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with IF clear, HLT only returns on NMI/SMI, and we halt again.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}
