//! Which MSRs a Linux guest may use, and how each is answered.
//!
//! Everything not in [`TABLE`] raises #GP in the guest, as hardware does for an MSR it
//! lacks. The table holds the MSRs the backends switch per vCPU (pass-through), the ones
//! the hypervisor emulates, constants for the MSRs a 6.1 kernel reads without `_safe` on
//! the CPU that [`crate::cpuid`] describes, and, for the record, the notable MSRs that
//! deliberately fault (Linux probes them with `rdmsr_safe`/`wrmsr_safe`, or only touches
//! them when a CPUID bit that is denied says they exist).

mod index;
#[cfg(test)]
mod tests;

pub use index::*;

/// IA32_PAT at reset: WB, WT, UC-, UC, WB, WT, UC-, UC.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// IA32_APIC_BASE at reset: base 0xfee00000, xAPIC enabled (bit 11), bootstrap processor
/// (bit 8).
pub const APIC_BASE_RESET: u64 = 0xFEE0_0900;
/// IA32_MISC_ENABLE as the guest reads it: fast strings (bit 0), BTS unavailable (bit 11),
/// PEBS unavailable (bit 12); no thermal control, no EIST, no MONITOR, no CPUID limit, no
/// XD disable.
pub const MISC_ENABLE_VALUE: u64 = (1 << 0) | (1 << 11) | (1 << 12);
/// EFER.SCE (SYSCALL enable).
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LME (long mode enable).
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA (long mode active).
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE (no-execute enable).
pub const EFER_NXE: u64 = 1 << 11;

/// How an MSR is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrPolicy {
    /// Passed through to the hardware (the backend saves/loads them per vCPU).
    PassThrough,
    /// Emulated by the hypervisor (the caller implements the value).
    Emulated(EmulatedMsr),
    /// Reads return this constant, writes are ignored.
    Constant(u64),
    /// #GP into the guest, as hardware does for an MSR it lacks.
    Fault,
}

/// The MSRs whose value the hypervisor keeps per vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatedMsr {
    /// IA32_APIC_BASE: starts at [`APIC_BASE_RESET`]; the emulated xAPIC never moves and has
    /// no x2APIC mode, so writes changing the base or setting bit 10 should #GP.
    ApicBase,
    /// IA32_TSC: the guest's TSC (the host TSC plus the vCPU's offset); a write sets the
    /// offset.
    Tsc,
    /// IA32_TSC_DEADLINE: the local APIC timer's deadline in TSC-deadline mode (CPUID leaf
    /// 1 ECX bit 24 is forced on).
    TscDeadline,
    /// IA32_PAT: starts at [`PAT_RESET`]; writes failing [`pat_is_valid`] #GP.
    Pat,
    /// IA32_EFER: the guest starts in long mode; writes failing [`efer_write_ok`] #GP.
    Efer,
}

/// One row of the MSR table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrEntry {
    /// The MSR index.
    pub index: u32,
    /// Its SDM / APM / Linux name.
    pub name: &'static str,
    /// How it is answered.
    pub policy: MsrPolicy,
    /// Why.
    pub why: &'static str,
}

/// A table row: the MSR's constant (which gives its name), its policy and why.
macro_rules! e {
    ($index:ident, $policy:expr, $why:expr $(,)?) => {
        MsrEntry {
            index: $index,
            name: stringify!($index),
            policy: $policy,
            why: $why,
        }
    };
}

use EmulatedMsr as E;
use MsrPolicy::{Constant, Emulated, Fault, PassThrough};

/// Every MSR the guest may use, and the notable ones that fault; anything absent faults.
pub const TABLE: &[MsrEntry] = &[
    e!(IA32_TSC, Emulated(E::Tsc), "reads see the guest's TSC"),
    e!(
        IA32_APIC_BASE,
        Emulated(E::ApicBase),
        "read by the APIC code at boot",
    ),
    e!(
        IA32_PAT,
        Emulated(E::Pat),
        "PAT is offered; read by init_cache_modes",
    ),
    e!(
        IA32_TSC_DEADLINE,
        Emulated(E::TscDeadline),
        "the LAPIC timer",
    ),
    e!(IA32_EFER, Emulated(E::Efer), "head_64 sets SCE and NXE"),
    e!(
        IA32_SYSENTER_CS,
        PassThrough,
        "syscall_init, 32-bit compat entry",
    ),
    e!(IA32_SYSENTER_ESP, PassThrough, "syscall_init"),
    e!(IA32_SYSENTER_EIP, PassThrough, "syscall_init"),
    e!(IA32_STAR, PassThrough, "SYSCALL segments (syscall_init)"),
    e!(IA32_LSTAR, PassThrough, "the 64-bit SYSCALL entry"),
    e!(IA32_CSTAR, PassThrough, "the compat SYSCALL entry"),
    e!(IA32_FMASK, PassThrough, "RFLAGS mask on SYSCALL"),
    e!(
        IA32_FS_BASE,
        PassThrough,
        "thread-local storage (no FSGSBASE)",
    ),
    e!(IA32_GS_BASE, PassThrough, "per-CPU data"),
    e!(IA32_KERNEL_GS_BASE, PassThrough, "SWAPGS"),
    e!(
        IA32_BIOS_SIGN_ID,
        Constant(0),
        "Intel: early_init_intel writes 0 and reads the microcode revision unchecked \
         (AMD: patch level, rdmsr_safe); 0 = no update loaded",
    ),
    e!(
        IA32_MISC_ENABLE,
        Constant(MISC_ENABLE_VALUE),
        "Intel: verify_cpu reads it before any exception handler (XD disable), \
         early_init_intel for fast strings; bit changes go through msr_set/clear_bit",
    ),
    e!(
        IA32_DEBUGCTL,
        Constant(0),
        "ptrace block-stepping toggles BTF with unchecked accesses; no branch tracing",
    ),
    e!(
        MSR_K7_HWCR,
        Constant(1 << 24),
        "AMD family > 0x10: bsp_init_amd reads it unchecked when the TSC is constant; \
         bit 24: the TSC counts at the P0 frequency",
    ),
    e!(
        MSR_AMD64_NB_CFG,
        Constant(1 << 46),
        "AMD family >= 0x10: amd_bus_cpu_online reads it unchecked; EnableCf8ExtCfg \
         already set, so it is not written (extended registers read all-ones)",
    ),
    e!(
        MSR_K8_INT_PENDING_MSG,
        Constant(0),
        "AMD family 0x10 (erratum 400): read unchecked after ACPI init; 0 = C1E inactive",
    ),
    e!(
        MSR_FAM10H_MMIO_CONF_BASE,
        Constant(0),
        "AMD family >= 0x10: amd_get_mmconfig_range reads it unchecked; 0 = no MMCONFIG",
    ),
    e!(
        MSR_AMD64_DE_CFG,
        Constant(1 << 1),
        "AMD: init_amd sets LFENCE_SERIALIZE (msr_set_bit); shown set, nothing to write",
    ),
    e!(IA32_FEATURE_CONTROL, Fault, "rdmsr_safe: #GP = no VMX/SGX"),
    e!(IA32_TSC_ADJUST, Fault, "CPUID 7.EBX[1] denied"),
    e!(IA32_SPEC_CTRL, Fault, "IBRS/STIBP/SSBD denied in CPUID"),
    e!(
        IA32_PRED_CMD,
        Fault,
        "IBPB denied; Zen3/4 SBPB probe (wrmsrl_safe)",
    ),
    e!(
        MSR_PLATFORM_INFO,
        Fault,
        "rdmsr_safe (CPUID faulting probe)",
    ),
    e!(IA32_MTRRCAP, Fault, "MTRR denied in CPUID"),
    e!(IA32_MTRR_DEF_TYPE, Fault, "MTRR denied in CPUID"),
    e!(IA32_ARCH_CAPABILITIES, Fault, "CPUID 7.EDX[29] denied"),
    e!(MSR_MISC_FEATURES_ENABLES, Fault, "rdmsr_safe probe"),
    e!(IA32_MCG_CAP, Fault, "MCE/MCA denied in CPUID"),
    e!(IA32_TSC_AUX, Fault, "RDTSCP and RDPID denied in CPUID"),
    e!(
        MSR_K7_EVNTSEL0,
        Fault,
        "rdmsr_safe: #GP = no PMU, software events",
    ),
    e!(
        MSR_K8_SYSCFG,
        Fault,
        "read with rdmsr_safe or behind SME/MTRR",
    ),
    e!(MSR_K8_TSEG_ADDR, Fault, "rdmsr_safe"),
    e!(MSR_AMD64_OSVW_ID_LENGTH, Fault, "OSVW denied in CPUID"),
    e!(
        MSR_AMD64_LS_CFG,
        Fault,
        "rdmsr_safe: #GP = no SSBD through it",
    ),
];

/// How MSR `index` is answered.
pub fn policy(index: u32) -> MsrPolicy {
    entry(index).map_or(Fault, |e| e.policy)
}

/// The table row of MSR `index`, if it has one (for names in logs).
pub fn entry(index: u32) -> Option<&'static MsrEntry> {
    TABLE.iter().find(|e| e.index == index)
}

/// Whether `value` is a valid IA32_PAT: every byte a defined memory type (0 UC, 1 WC,
/// 4 WT, 5 WP, 6 WB, 7 UC-), as WRMSR requires (else #GP).
pub fn pat_is_valid(value: u64) -> bool {
    value
        .to_le_bytes()
        .iter()
        .all(|&t| matches!(t, 0 | 1 | 4..=7))
}

/// Whether the guest may write `new` to EFER when it holds `current`, with paging on or
/// off (`paging`, CR0.PG): only SCE, LME, LMA and NXE may be set; LMA (the processor's,
/// set when paging comes on with LME) must stay as it is; LME may change only while paging
/// is off (a secondary vCPU's trampoline on its way from real mode to long mode; a guest in
/// long mode cannot leave it).
pub fn efer_write_ok(current: u64, new: u64, paging: bool) -> bool {
    let known = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    let fixed = if paging {
        EFER_LME | EFER_LMA
    } else {
        EFER_LMA
    };
    new & !known == 0 && (new ^ current) & fixed == 0
}
