//! CPU virtualisation behind one arch-neutral interface. A backend (AMD SVM or Intel VMX)
//! turns "run this guest until something needs the hypervisor" into an [`Exit`] the rest of
//! the hypervisor handles without knowing which backend produced it.

mod backend;
#[allow(unsafe_code)]
pub mod svm;
#[allow(unsafe_code)]
pub mod vmx;
#[allow(unsafe_code)]
pub mod xstate;

pub use backend::{AnyVcpu, Backend, vendor};

/// Guest general-purpose registers in x86 encoding order (0 rax, 1 rcx, 2 rdx, 3 rbx, 4 rsp,
/// 5 rbp, 6 rsi, 7 rdi, 8..15 r8..r15), as both world switches (`run.s`) load and save
/// them at offset `8 * n`. A register the backend keeps in its control block instead (SVM:
/// `rax` and `rsp`; VMX: `rsp`) has an unused slot.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct GuestRegs(pub [u64; 16]);

/// `rax` in x86 encoding (the index into [`GuestRegs`]).
pub const RAX: u8 = 0;
/// `rcx`.
pub const RCX: u8 = 1;
/// `rdx`.
pub const RDX: u8 = 2;
/// `rsp`.
pub const RSP: u8 = 4;
/// `rsi`.
pub const RSI: u8 = 6;
/// `rdi`.
pub const RDI: u8 = 7;

impl GuestRegs {
    /// All zero but register `n`.
    fn with(n: u8, value: u64) -> GuestRegs {
        let mut r = GuestRegs::default();
        r.0[usize::from(n)] = value;
        r
    }
}

/// The state a unikernel starts in: 64-bit mode, paging on with the given page tables,
/// interrupts off (planned by `bulkhead_hvcore::unikernel`).
pub use bulkhead_hvcore::unikernel::EntryState;

/// Unikernel CR0: PG | WP | NE | ET | MP | PE. CR4: PAE | OSFXSR | OSXMMEXCPT (fixed: a
/// unikernel's CR4 writes exit).
const UNIKERNEL_CR0: u64 = 0x8001_0033;
const UNIKERNEL_CR4: u64 = 0x620;
/// CR0 of a processor leaving wait-for-SIPI: ET only. (INIT sets CD and NW too; caches stay
/// on here, as nothing the guest sees depends on it and the trampoline sets CR0 itself.)
const SIPI_CR0: u64 = 0x10;
/// Unikernel EFER: LME | LMA | NXE (no SCE: SYSCALL raises #UD).
pub const UNIKERNEL_EFER: u64 = 1 << 8 | 1 << 10 | 1 << 11;

/// A guest's first state, whichever its kind: 64-bit mode, paging on, flat segments from
/// its own GDT, interrupts off, one argument register set. Each backend loads it into its
/// VMCB or VMCS with the controls of the guest's kind.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    /// Runs a Linux kernel (its own MSRs, EFER, PAT and XSAVE; CR4 its own but VMX's
    /// bits), else a unikernel (CR4 fixed, no XSAVE).
    pub linux: bool,
    /// First instruction.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER (without what virtualisation adds, such as SVME).
    pub efer: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// GDT base.
    pub gdt_base: u64,
    /// GDT limit.
    pub gdt_limit: u16,
    /// Code selector.
    pub cs: u16,
    /// Data selector (DS, ES, SS, FS, GS).
    pub ds: u16,
    /// General registers: a unikernel's `rdi` (boot info), a Linux kernel's `rsi` (zero
    /// page), all others zero.
    pub regs: GuestRegs,
    /// Real mode (a secondary vCPU of a Linux qube after INIT and STARTUP): paging and
    /// protection off, CS = `cs` with base `cs << 4`, 64 KiB segments; the descriptor-table
    /// and control-register fields above are then ignored.
    pub real_mode: bool,
}

/// IA32_PAT at power-on (WB, WT, UC-, UC, twice): what a Linux guest starts with.
pub const POWER_ON_PAT: u64 = 0x0007_0406_0007_0406;

impl Start {
    /// The guest's PAT at entry: a Linux kernel's is the power-on one (it loads its own); a
    /// unikernel's is the hypervisor's ([`bulkhead_hvcore::paging::PAT`]), which the page
    /// tables built for it assume (a framebuffer's PWT-only entries are WC).
    pub fn pat(&self) -> u64 {
        if self.linux {
            POWER_ON_PAT
        } else {
            bulkhead_hvcore::paging::PAT
        }
    }
}

impl Start {
    /// A unikernel's: its boot stack and GDT, `rdi` = boot info.
    pub fn unikernel(e: &EntryState) -> Start {
        use bulkhead_abi::boot_info::layout;
        Start {
            linux: false,
            rip: e.rip,
            rsp: e.rsp,
            cr0: UNIKERNEL_CR0,
            cr3: e.cr3,
            cr4: UNIKERNEL_CR4,
            efer: UNIKERNEL_EFER,
            rflags: 0x2,
            gdt_base: e.gdt_base,
            gdt_limit: e.gdt_limit,
            cs: layout::CODE_SELECTOR,
            ds: layout::DATA_SELECTOR,
            regs: GuestRegs::with(RDI, e.rdi),
            real_mode: false,
        }
    }

    /// A Linux kernel's 64-bit entry (the boot protocol: no stack yet, `rsi` = zero page).
    pub fn linux(e: &LinuxEntry) -> Start {
        Start {
            linux: true,
            rip: e.rip,
            rsp: 0,
            cr0: e.cr0,
            cr3: e.cr3,
            cr4: e.cr4,
            efer: e.efer,
            rflags: e.rflags,
            gdt_base: e.gdt_base,
            gdt_limit: e.gdt_limit,
            cs: e.cs,
            ds: e.ds,
            regs: GuestRegs::with(RSI, e.rsi),
            real_mode: false,
        }
    }

    /// A secondary vCPU of a Linux qube at the STARTUP IPI with `vector`: real mode at
    /// `vector * 0x1000` (CS = `vector << 8`, IP 0), as a processor leaves wait-for-SIPI.
    pub fn sipi(vector: u8) -> Start {
        Start {
            linux: true,
            rip: 0,
            rsp: 0,
            cr0: SIPI_CR0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            rflags: 0x2,
            gdt_base: 0,
            gdt_limit: 0xFFFF,
            cs: u16::from(vector) << 8,
            ds: 0,
            regs: GuestRegs::default(),
            real_mode: true,
        }
    }

    /// The guest's first XCR0 and what it may enable: x87 and SSE fixed for a unikernel;
    /// x87 for a Linux kernel, which may enable what the platform offers.
    pub fn xstate(&self) -> (u64, u64) {
        use bulkhead_platform::xsave;
        if self.linux {
            (xsave::X87, xsave::LINUX_ALLOWED)
        } else {
            (xsave::X87 | xsave::SSE, 0)
        }
    }
}

/// MSRs a Linux guest reads and writes without an exit: segment bases and the
/// syscall/sysenter MSRs, which it changes often or on every CPU it brings up. Each backend
/// switches all of them per vCPU (SVM: VMLOAD/VMSAVE; VMX: VMCS guest fields plus an MSR
/// load/store list), so a guest only ever sees and changes its own values.
pub const LINUX_OWN_MSRS: [u32; 10] = [
    0x174,
    0x175,
    0x176, // SYSENTER_CS, _ESP, _EIP
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084, // STAR, LSTAR, CSTAR, SFMASK
    0xC000_0100,
    0xC000_0101,
    0xC000_0102, // FS_BASE, GS_BASE, KERNEL_GS_BASE
];

/// The state a Linux qube starts in (the 64-bit boot protocol; `bulkhead_platform::boot`).
pub use bulkhead_platform::boot::EntryState as LinuxEntry;

/// An event injected into the guest at its next entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An external interrupt with this vector (the guest must be interruptible).
    Interrupt(u8),
    /// A hardware exception, with its error code if it has one (#GP, #PF, ...).
    Exception {
        /// Vector (0..32).
        vector: u8,
        /// Error code.
        error: Option<u32>,
    },
}

/// The guest's paging-related control registers, for walking its page tables.
#[derive(Clone, Copy, Debug, Default)]
pub struct PagingState {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// Why the guest stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A physical interrupt arrived: a preemption point, nothing for the guest.
    Interrupt,
    /// The guest issued a hypercall (`rax` = number).
    Hypercall,
    /// HLT.
    Halt,
    /// CPUID (leaf in `rax`, subleaf in `rcx`).
    Cpuid,
    /// An I/O port access.
    Io {
        /// Port.
        port: u16,
        /// IN (else OUT).
        input: bool,
        /// Access width in bytes (1, 2 or 4).
        size: u8,
        /// A string instruction (INS/OUTS).
        string: bool,
    },
    /// RDMSR/WRMSR.
    Msr {
        /// MSR index.
        index: u32,
        /// WRMSR (else RDMSR).
        write: bool,
    },
    /// Access to guest-physical memory the qube does not own.
    NestedPageFault {
        /// Faulting guest-physical address.
        gpa: u64,
        /// Write access.
        write: bool,
        /// Instruction fetch.
        fetch: bool,
    },
    /// The guest can take an interrupt now (requested with `set_interrupt_window`).
    InterruptWindow,
    /// WBINVD (Linux guests may; unikernels may not).
    Wbinvd,
    /// XSETBV (`rcx` = register, `rdx:rax` = value): Linux guests may, within what they are
    /// offered; unikernels may not.
    Xsetbv,
    /// The guest's exceptions escalated to a triple fault (shutdown).
    TripleFault,
    /// An instruction no qube may execute (virtualisation instructions, XSETBV, ...).
    Forbidden(&'static str),
    /// The CPU refused the guest state (a hypervisor bug or a guest-made inconsistency).
    InvalidState,
    /// An exit the backend does not know.
    Unknown(u64),
}

/// What every backend's virtual CPU offers.
pub trait Vcpu {
    /// Puts the vCPU in a guest's first state (other registers cleared, TLB flushed).
    fn reset(&mut self, start: &Start);
    /// Runs the guest until the next exit. Guest x87/SSE state is saved and the host's
    /// restored before this returns.
    fn run(&mut self) -> Exit;
    /// The saved general-purpose registers (one call for several; `rax` and `rsp` only
    /// through [`Vcpu::gpr`], a backend may keep them elsewhere).
    fn regs(&self) -> &GuestRegs;
    /// Guest `rax` (the hypercall path's shortcut for `gpr(RAX)`).
    fn rax(&self) -> u64;
    /// Sets guest `rax`.
    fn set_rax(&mut self, v: u64);
    /// General-purpose register `n` in x86 encoding order (see [`GuestRegs`]).
    fn gpr(&self, n: u8) -> u64;
    /// Sets general-purpose register `n` (same order as [`Vcpu::gpr`]).
    fn set_gpr(&mut self, n: u8, value: u64);
    /// Guest `rip`.
    fn rip(&self) -> u64;
    /// Moves `rip` past the instruction that caused `exit` (hypercall, HLT, CPUID, ...).
    fn skip_instruction(&mut self, exit: &Exit);
    /// Exits since boot, for measurements.
    fn exit_count(&self) -> u64;
    /// The address-space tag the TLB uses for this vCPU (ASID or VPID).
    fn tlb_tag(&self) -> u32;
    /// Flushes the guest TLB before the next run (another vCPU used the same tag).
    fn flush_tlb_before_next_run(&mut self);
    /// The end of the current time slice (ns since boot). A backend whose only sure
    /// preemption is its own timer (VMX's preemption timer, where an emulator holds back
    /// interrupts from a guest with IF clear) arms it for what is left of the slice at every
    /// entry, so no run of exits restarts the slice.
    fn set_slice_end(&mut self, end_ns: u64);

    // What the guest platform of Linux qubes needs.

    /// Sets guest `rip` (past an emulated instruction).
    fn set_rip(&mut self, rip: u64);
    /// CR0, CR3, CR4 and EFER as the guest has them.
    fn paging(&self) -> PagingState;
    /// Whether an external interrupt can be injected now: RFLAGS.IF set, no interrupt
    /// shadow (STI, MOV SS), and no event already waiting to be injected.
    fn interruptible(&self) -> bool;
    /// Injects `event` at the next entry.
    fn inject(&mut self, event: Event);
    /// Asks for (or cancels) an [`Exit::InterruptWindow`] as soon as the guest can take an
    /// interrupt.
    fn set_interrupt_window(&mut self, on: bool);
    /// Sets the guest's EFER as it asked (WRMSR), keeping what virtualisation needs.
    fn set_efer(&mut self, efer: u64);
    /// Sets the guest's PAT.
    fn set_pat(&mut self, pat: u64);
    /// The guest's current privilege level.
    fn cpl(&self) -> u8;
    /// The guest's extended state: its XCR0, what it may enable, XSETBV.
    fn xstate(&mut self) -> &mut xstate::ExtState;
}
