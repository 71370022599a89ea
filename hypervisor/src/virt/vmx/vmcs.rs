//! The VMCS (Intel SDM vol. 3C, chapter 25 and appendix B): field encodings, control bits,
//! exit reasons, and the VMREAD/VMWRITE/VMCLEAR/VMPTRLD instructions. Unlike a VMCB, a VMCS
//! has no documented layout: it is only read and written through these instructions, on
//! the VMCS that is *current* on this CPU. The tables list what the backend uses.

use core::arch::asm;

/// 16-bit fields.
pub mod f16 {
    pub const VPID: u64 = 0x0000;
    pub const HOST_ES: u64 = 0x0C00;
    pub const HOST_CS: u64 = 0x0C02;
    pub const HOST_SS: u64 = 0x0C04;
    pub const HOST_DS: u64 = 0x0C06;
    pub const HOST_FS: u64 = 0x0C08;
    pub const HOST_GS: u64 = 0x0C0A;
    pub const HOST_TR: u64 = 0x0C0C;
}

/// The guest's segment registers, in the order of their field encodings: each segment's
/// selector, base, limit and access rights are the `n`-th of their kind, 2 apart
/// (SDM 3D, appendix B).
pub mod seg {
    pub const ES: u64 = 0;
    pub const CS: u64 = 1;
    pub const SS: u64 = 2;
    pub const DS: u64 = 3;
    pub const FS: u64 = 4;
    pub const GS: u64 = 5;
    pub const LDTR: u64 = 6;
    pub const TR: u64 = 7;

    /// The fields of guest segment `n`: selector, base, limit, access rights.
    pub const fn fields(n: u64) -> [u64; 4] {
        [
            0x0800 + 2 * n,
            0x6806 + 2 * n,
            0x4800 + 2 * n,
            0x4814 + 2 * n,
        ]
    }
}

/// 64-bit fields.
pub mod f64 {
    pub const IO_BITMAP_A: u64 = 0x2000;
    pub const IO_BITMAP_B: u64 = 0x2002;
    pub const MSR_BITMAP: u64 = 0x2004;
    pub const EXIT_MSR_STORE_ADDR: u64 = 0x2006;
    pub const EXIT_MSR_LOAD_ADDR: u64 = 0x2008;
    pub const ENTRY_MSR_LOAD_ADDR: u64 = 0x200A;
    pub const TSC_OFFSET: u64 = 0x2010;
    pub const EPT_POINTER: u64 = 0x201A;
    pub const GUEST_PHYSICAL_ADDRESS: u64 = 0x2400;
    pub const VMCS_LINK_POINTER: u64 = 0x2800;
    pub const GUEST_DEBUGCTL: u64 = 0x2802;
    pub const GUEST_PAT: u64 = 0x2804;
    pub const GUEST_EFER: u64 = 0x2806;
    pub const HOST_PAT: u64 = 0x2C00;
    pub const HOST_EFER: u64 = 0x2C02;
}

/// 32-bit fields.
pub mod f32 {
    pub const PIN_CONTROLS: u64 = 0x4000;
    pub const PROC_CONTROLS: u64 = 0x4002;
    pub const EXCEPTION_BITMAP: u64 = 0x4004;
    pub const PF_ERROR_MASK: u64 = 0x4006;
    pub const PF_ERROR_MATCH: u64 = 0x4008;
    pub const CR3_TARGET_COUNT: u64 = 0x400A;
    pub const EXIT_CONTROLS: u64 = 0x400C;
    pub const EXIT_MSR_STORE_COUNT: u64 = 0x400E;
    pub const EXIT_MSR_LOAD_COUNT: u64 = 0x4010;
    pub const ENTRY_CONTROLS: u64 = 0x4012;
    pub const ENTRY_MSR_LOAD_COUNT: u64 = 0x4014;
    pub const ENTRY_INTERRUPTION_INFO: u64 = 0x4016;
    pub const ENTRY_EXCEPTION_ERROR: u64 = 0x4018;
    pub const IDT_VECTORING_INFO: u64 = 0x4408;
    pub const IDT_VECTORING_ERROR: u64 = 0x440A;
    pub const PROC_CONTROLS2: u64 = 0x401E;
    pub const VM_INSTRUCTION_ERROR: u64 = 0x4400;
    pub const EXIT_REASON: u64 = 0x4402;
    pub const EXIT_INTERRUPTION_INFO: u64 = 0x4404;
    pub const EXIT_INSTRUCTION_LEN: u64 = 0x440C;
    pub const GUEST_GDTR_LIMIT: u64 = 0x4810;
    pub const GUEST_IDTR_LIMIT: u64 = 0x4812;
    pub const GUEST_INTERRUPTIBILITY: u64 = 0x4824;
    pub const GUEST_ACTIVITY: u64 = 0x4826;
    pub const GUEST_SYSENTER_CS: u64 = 0x482A;
    pub const PREEMPTION_TIMER: u64 = 0x482E;
    pub const HOST_SYSENTER_CS: u64 = 0x4C00;
}

/// Natural-width fields.
pub mod fnat {
    pub const CR0_MASK: u64 = 0x6000;
    pub const CR4_MASK: u64 = 0x6002;
    pub const CR0_SHADOW: u64 = 0x6004;
    pub const CR4_SHADOW: u64 = 0x6006;
    pub const EXIT_QUALIFICATION: u64 = 0x6400;
    pub const GUEST_CR0: u64 = 0x6800;
    pub const GUEST_CR3: u64 = 0x6802;
    pub const GUEST_CR4: u64 = 0x6804;
    pub const GUEST_GDTR_BASE: u64 = 0x6816;
    pub const GUEST_IDTR_BASE: u64 = 0x6818;
    pub const GUEST_DR7: u64 = 0x681A;
    pub const GUEST_RSP: u64 = 0x681C;
    pub const GUEST_RIP: u64 = 0x681E;
    pub const GUEST_RFLAGS: u64 = 0x6820;
    pub const GUEST_PENDING_DEBUG: u64 = 0x6822;
    pub const GUEST_SYSENTER_ESP: u64 = 0x6824;
    pub const GUEST_SYSENTER_EIP: u64 = 0x6826;
    pub const HOST_CR0: u64 = 0x6C00;
    pub const HOST_CR3: u64 = 0x6C02;
    pub const HOST_CR4: u64 = 0x6C04;
    pub const HOST_FS_BASE: u64 = 0x6C06;
    pub const HOST_GS_BASE: u64 = 0x6C08;
    pub const HOST_TR_BASE: u64 = 0x6C0A;
    pub const HOST_GDTR_BASE: u64 = 0x6C0C;
    pub const HOST_IDTR_BASE: u64 = 0x6C0E;
    pub const HOST_SYSENTER_ESP: u64 = 0x6C10;
    pub const HOST_SYSENTER_EIP: u64 = 0x6C12;
    // HOST_RSP (0x6C14) is written by `vmx_run` (run.s) before every entry.
    pub const HOST_RIP: u64 = 0x6C16;
}

/// Pin-based VM-execution controls.
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const PREEMPTION_TIMER: u32 = 1 << 6;
}

/// Primary processor-based VM-execution controls.
pub mod proc1 {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const RDPMC_EXITING: u32 = 1 << 11;
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    pub const CR8_LOAD_EXITING: u32 = 1 << 19;
    pub const CR8_STORE_EXITING: u32 = 1 << 20;
    pub const MOV_DR_EXITING: u32 = 1 << 23;
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// Secondary processor-based VM-execution controls.
pub mod proc2 {
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const WBINVD_EXITING: u32 = 1 << 6;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const ENABLE_INVPCID: u32 = 1 << 12;
}

/// VM-exit controls.
pub mod exit_ctl {
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const ACK_INTERRUPT_ON_EXIT: u32 = 1 << 15;
    pub const SAVE_PAT: u32 = 1 << 18;
    pub const LOAD_PAT: u32 = 1 << 19;
    pub const SAVE_EFER: u32 = 1 << 20;
    pub const LOAD_EFER: u32 = 1 << 21;
}

/// VM-entry controls.
pub mod entry_ctl {
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    pub const LOAD_PAT: u32 = 1 << 14;
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// Basic exit reasons (bits 15:0 of the exit-reason field).
pub mod reason {
    pub const EXCEPTION_OR_NMI: u32 = 0;
    pub const EXTERNAL_INTERRUPT: u32 = 1;
    pub const TRIPLE_FAULT: u32 = 2;
    pub const INIT: u32 = 3;
    pub const SIPI: u32 = 4;
    pub const IO_SMI: u32 = 5;
    pub const INTERRUPT_WINDOW: u32 = 7;
    pub const OTHER_SMI: u32 = 6;
    pub const TASK_SWITCH: u32 = 9;
    pub const CPUID: u32 = 10;
    pub const GETSEC: u32 = 11;
    pub const HLT: u32 = 12;
    pub const INVD: u32 = 13;
    pub const VMCALL: u32 = 18;
    pub const VMCLEAR: u32 = 19;
    pub const VMLAUNCH: u32 = 20;
    pub const VMPTRLD: u32 = 21;
    pub const VMPTRST: u32 = 22;
    pub const VMREAD: u32 = 23;
    pub const VMRESUME: u32 = 24;
    pub const VMWRITE: u32 = 25;
    pub const VMXOFF: u32 = 26;
    pub const VMXON: u32 = 27;
    pub const RDPMC: u32 = 15;
    pub const CR_ACCESS: u32 = 28;
    pub const MOV_DR: u32 = 29;
    pub const IO_INSTRUCTION: u32 = 30;
    pub const RDMSR: u32 = 31;
    pub const WRMSR: u32 = 32;
    pub const MWAIT: u32 = 36;
    pub const MONITOR: u32 = 39;
    pub const EPT_VIOLATION: u32 = 48;
    pub const EPT_MISCONFIG: u32 = 49;
    pub const INVEPT: u32 = 50;
    pub const PREEMPTION_TIMER: u32 = 52;
    pub const INVVPID: u32 = 53;
    pub const WBINVD: u32 = 54;
    pub const XSETBV: u32 = 55;
    pub const VMFUNC: u32 = 59;
    pub const ENCLS: u32 = 60;
    /// Bit 31 of the exit-reason field: the exit is a failed VM entry.
    pub const ENTRY_FAILURE: u32 = 1 << 31;
}

/// Reads a field of the current VMCS (0 if the read fails).
///
/// Only called by the VMX backend while the CPU is in VMX operation (after VMXON), with a
/// VMCS current: `Vmx::enable` is the only way to a `Vmx` and every `VmxVcpu` makes its own
/// VMCS current before it reads one.
pub fn read(field: u64) -> u64 {
    let value: u64;
    // SAFETY: VMREAD only copies a VMCS field into a register (no memory operand here). It
    // would raise #UD outside VMX operation, which the module never leaves once entered
    // (see above); without a current VMCS it fails with the flags set and we return the
    // register's previous value, zeroed below.
    unsafe {
        asm!("xor {v:e}, {v:e}", "vmread {v}, {f}", f = in(reg) field, v = out(reg) value,
             options(nostack, nomem))
    };
    value
}

/// Writes a field of the current VMCS; false if the CPU refused it (unsupported field or
/// read-only field, or no current VMCS).
///
/// # Safety
/// The CPU must be in VMX operation with the target vCPU's VMCS current, and the value must
/// keep the guest confined: the VMCS decides which memory, ports and instructions the guest
/// reaches and where the CPU resumes the host.
pub unsafe fn write(field: u64, value: u64) -> bool {
    let ok: u8;
    // SAFETY: forwarded to the caller's guarantee; VMWRITE changes only VMCS data.
    unsafe {
        asm!("vmwrite {f}, {v}", "seta {ok}", f = in(reg) field, v = in(reg) value,
             ok = out(reg_byte) ok, options(nostack, nomem))
    };
    ok != 0
}

/// VMCLEAR: flushes a VMCS to memory and puts it in the "clear" launch state (the next entry
/// must be VMLAUNCH); it stops being current.
///
/// # Safety
/// VMX operation; `pa` is a VMCS region the caller owns (4 KiB aligned, revision written).
pub unsafe fn clear(pa: u64) -> bool {
    let ok: u8;
    // SAFETY: forwarded to the caller's guarantee; the operand is the 8-byte address on our
    // stack, which VMCLEAR only reads.
    unsafe {
        asm!("vmclear [{p}]", "seta {ok}", p = in(reg) &pa, ok = out(reg_byte) ok,
             options(nostack))
    };
    ok != 0
}

/// VMPTRLD: makes the VMCS at `pa` current on this CPU.
///
/// # Safety
/// As for [`clear`].
pub unsafe fn load(pa: u64) -> bool {
    let ok: u8;
    // SAFETY: forwarded to the caller's guarantee; the operand is only read.
    unsafe {
        asm!("vmptrld [{p}]", "seta {ok}", p = in(reg) &pa, ok = out(reg_byte) ok,
             options(nostack))
    };
    ok != 0
}
