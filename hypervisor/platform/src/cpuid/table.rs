//! The feature bits, as data with reasons: the documentation of the masks in `bits.rs`
//! (test code; `tests.rs` keeps the masks equal to these lists). `ALLOW` bits pass through
//! when the host has them, `FORCE` bits are set whatever the host says (the hypervisor
//! emulates them), and `DENY` lists the notable bits kept clear and why; every bit in no list
//! is clear too.

/// One CPUID feature bit and why the guest sees it or not.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bit {
    /// Bit number in its register.
    pub bit: u8,
    /// The SDM / APM name.
    pub name: &'static str,
    /// Why it is allowed, forced or denied.
    pub why: &'static str,
}

const fn b(bit: u8, name: &'static str, why: &'static str) -> Bit {
    Bit { bit, name, why }
}

/// The mask of `bits`.
pub(super) const fn mask(bits: &[Bit]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < bits.len() {
        m |= 1 << bits[i].bit;
        i += 1;
    }
    m
}

const INSN: &str = "instructions on general or SSE registers: no state beyond FXSAVE";
const AVX: &str =
    "AVX-512 and newer vector extensions are not offered (XCR0 never enables their state)";
const SPEC: &str = "speculation-control MSRs are not emulated";
const PMU: &str = "no performance counters are virtualised";
const AMD_PMU: &str = "AMD performance-counter extensions: no PMU";

/// Leaf 1 ECX, from the host.
pub(super) const L1_ECX_ALLOW: &[Bit] = &[
    b(0, "SSE3", INSN),
    b(1, "PCLMULQDQ", INSN),
    b(9, "SSSE3", INSN),
    b(13, "CX16", "CMPXCHG16B: an instruction"),
    b(19, "SSE4.1", INSN),
    b(20, "SSE4.2", INSN),
    b(22, "MOVBE", "an instruction"),
    b(23, "POPCNT", "an instruction"),
    b(25, "AES", INSN),
    b(30, "RDRAND", "an instruction neither backend intercepts"),
];
/// Leaf 1 ECX, always set.
pub(super) const L1_ECX_FORCE: &[Bit] = &[
    b(
        24,
        "TSC-Deadline",
        "the emulated local APIC implements the TSC-deadline timer mode",
    ),
    b(
        31,
        "Hypervisor",
        "the guest runs under a hypervisor (leaf 0x4000_0000 says which)",
    ),
];
/// Leaf 1 ECX, clear.
pub(super) const L1_ECX_DENY: &[Bit] = &[
    b(2, "DTES64", "debug store: no BTS/PEBS"),
    b(
        3,
        "MONITOR",
        "MONITOR/MWAIT: the guest idles with HLT, which the hypervisor intercepts",
    ),
    b(4, "DS-CPL", "debug store: no BTS/PEBS"),
    b(5, "VMX", "no nested virtualisation"),
    b(6, "SMX", "no GETSEC/TXT"),
    b(7, "EST", "no P-state (IA32_PERF_CTL) control"),
    b(8, "TM2", "no thermal monitor MSRs"),
    b(10, "CNXT-ID", "L1 context-ID control MSR not emulated"),
    b(11, "SDBG", "IA32_DEBUG_INTERFACE not emulated"),
    b(14, "xTPR", "IA32_MISC_ENABLE xTPR control not emulated"),
    b(15, "PDCM", "IA32_PERF_CAPABILITIES: no PMU"),
    b(
        17,
        "PCID",
        "keeps the TLB story simple: the guest flushes with CR3 writes",
    ),
    b(18, "DCA", "no direct cache access"),
    b(
        21,
        "x2APIC",
        "only the xAPIC (MMIO) interface of the local APIC is emulated",
    ),
];

/// Leaf 1 EDX, from the host.
pub(super) const L1_EDX_ALLOW: &[Bit] = &[
    b(0, "FPU", "x87, saved with FXSAVE"),
    b(2, "DE", "CR4.DE debugging extensions: no state of its own"),
    b(
        3,
        "PSE",
        "4 MiB pages: paging is the guest's own under nested paging",
    ),
    b(4, "TSC", "RDTSC runs natively, unscaled"),
    b(5, "MSR", "RDMSR/WRMSR, filtered by crate::msr"),
    b(6, "PAE", "required for long mode"),
    b(8, "CX8", "CMPXCHG8B: an instruction"),
    b(
        11,
        "SEP",
        "SYSENTER/SYSEXIT: the SYSENTER MSRs are passed through",
    ),
    b(13, "PGE", "global pages: the guest's own paging"),
    b(15, "CMOV", "an instruction"),
    b(16, "PAT", "IA32_PAT is emulated per vCPU"),
    b(17, "PSE-36", "page-table format: the guest's own paging"),
    b(19, "CLFSH", "CLFLUSH: an instruction"),
    b(23, "MMX", "saved with FXSAVE"),
    b(24, "FXSR", "FXSAVE/FXRSTOR: the state the backends save"),
    b(25, "SSE", "saved with FXSAVE"),
    b(26, "SSE2", "saved with FXSAVE"),
];
/// Leaf 1 EDX, always set.
pub(super) const L1_EDX_FORCE: &[Bit] = &[b(
    9,
    "APIC",
    "the local APIC is emulated (xAPIC at 0xfee00000)",
)];
/// Leaf 1 EDX, clear.
pub(super) const L1_EDX_DENY: &[Bit] = &[
    b(
        1,
        "VME",
        "virtual-8086 extensions: a 64-bit kernel runs no vm86 code",
    ),
    b(
        7,
        "MCE",
        "machine checks are the hypervisor's, not the guest's",
    ),
    b(
        12,
        "MTRR",
        "the MTRR MSRs are not emulated (Linux 6.1 then leaves PAT as it finds it)",
    ),
    b(14, "MCA", "machine-check MSRs not emulated"),
    b(18, "PSN", "no processor serial number"),
    b(21, "DS", "debug store: no BTS/PEBS"),
    b(22, "ACPI", "thermal-control MSRs not emulated"),
    b(27, "SS", "self-snoop is not promised"),
    b(28, "HTT", "one logical processor"),
    b(29, "TM", "no thermal monitor"),
    b(31, "PBE", "no pending-break enable"),
];

/// Leaf 6 EAX, always set (the rest of leaf 6 is 0: no thermal or power management).
pub(super) const L6_EAX_FORCE: &[Bit] = &[b(
    2,
    "ARAT",
    "the emulated APIC timer never stops in idle (else Linux wants a broadcast timer and \
     stays in periodic tick mode)",
)];

/// Leaf 7 subleaf 0 EBX, from the host.
pub(super) const L7_EBX_ALLOW: &[Bit] = &[
    b(3, "BMI1", "an instruction set on general registers"),
    b(
        7,
        "SMEP",
        "CR4.SMEP: the backends let the guest own the bit",
    ),
    b(8, "BMI2", "an instruction set on general registers"),
    b(9, "ERMS", "a performance hint for REP MOVSB/STOSB"),
    b(18, "RDSEED", "an instruction neither backend intercepts"),
    b(19, "ADX", "an instruction set on general registers"),
    b(
        20,
        "SMAP",
        "CR4.SMAP: the backends let the guest own the bit",
    ),
    b(23, "CLFLUSHOPT", "an instruction"),
    b(29, "SHA", INSN),
];
/// Leaf 7 subleaf 0 EBX, clear.
pub(super) const L7_EBX_DENY: &[Bit] = &[
    b(
        0,
        "FSGSBASE",
        "Linux falls back to the (passed-through) base MSRs; one less CR4 bit to own",
    ),
    b(1, "TSC_ADJUST", "IA32_TSC_ADJUST is not emulated"),
    b(2, "SGX", "no enclaves"),
    b(4, "HLE", "no TSX"),
    b(6, "FDP_EXCPTN_ONLY", "x87 detail not promised"),
    b(10, "INVPCID", "follows PCID"),
    b(11, "RTM", "no TSX"),
    b(12, "RDT-M", "no resource monitoring MSRs"),
    b(13, "FPU_CSDS_DEPRECATED", "x87 detail not promised"),
    b(14, "MPX", "MPX state is XSAVE state"),
    b(15, "RDT-A", "no resource allocation MSRs"),
    b(16, "AVX512F", AVX),
    b(17, "AVX512DQ", AVX),
    b(21, "AVX512_IFMA", AVX),
    b(24, "CLWB", "not needed without persistent memory"),
    b(25, "PT", "no processor trace"),
    b(26, "AVX512PF", AVX),
    b(27, "AVX512ER", AVX),
    b(28, "AVX512CD", AVX),
    b(30, "AVX512BW", AVX),
    b(31, "AVX512VL", AVX),
];
/// Leaf 7 subleaf 0 ECX, from the host: nothing.
pub(super) const L7_ECX_ALLOW: &[Bit] = &[];
/// Leaf 7 subleaf 0 ECX, clear.
pub(super) const L7_ECX_DENY: &[Bit] = &[
    b(1, "AVX512_VBMI", AVX),
    b(2, "UMIP", "one less CR4 bit for the backends to own"),
    b(5, "WAITPKG", "UMWAIT/TPAUSE: the guest idles with HLT"),
    b(6, "AVX512_VBMI2", AVX),
    b(7, "CET_SS", "CET state is XSAVE state"),
    b(8, "GFNI", "its AVX forms need XSAVE state; kept with AVX"),
    b(9, "VAES", AVX),
    b(10, "VPCLMULQDQ", AVX),
    b(11, "AVX512_VNNI", AVX),
    b(12, "AVX512_BITALG", AVX),
    b(13, "TME", "memory-encryption MSRs not emulated"),
    b(14, "AVX512_VPOPCNTDQ", AVX),
    b(
        16,
        "LA57",
        "5-level paging: the guest must stay on 4 levels (48-bit addresses)",
    ),
    b(22, "RDPID", "reads IA32_TSC_AUX, which is not emulated"),
    b(23, "KL", "no key locker"),
    b(
        24,
        "BUS_LOCK_DETECT",
        "debug-exception control not emulated",
    ),
    b(25, "CLDEMOTE", "not needed"),
    b(27, "MOVDIRI", "not needed"),
    b(28, "MOVDIR64B", "not needed"),
    b(29, "ENQCMD", "needs the PASID MSR"),
    b(30, "SGX_LC", "no enclaves"),
    b(31, "PKS", "needs IA32_PKRS"),
];
/// Leaf 7 subleaf 0 EDX, from the host: nothing.
pub(super) const L7_EDX_ALLOW: &[Bit] = &[];
/// Leaf 7 subleaf 0 EDX, clear.
pub(super) const L7_EDX_DENY: &[Bit] = &[
    b(2, "AVX512_4VNNIW", AVX),
    b(3, "AVX512_4FMAPS", AVX),
    b(4, "FSRM", "a performance hint, not promised"),
    b(5, "UINTR", "user interrupts are XSAVE state"),
    b(8, "AVX512_VP2INTERSECT", AVX),
    b(9, "SRBDS_CTRL", SPEC),
    b(10, "MD_CLEAR", SPEC),
    b(11, "RTM_ALWAYS_ABORT", "no TSX"),
    b(13, "TSX_FORCE_ABORT", SPEC),
    b(14, "SERIALIZE", "not promised"),
    b(15, "HYBRID", "one core type"),
    b(16, "TSXLDTRK", "no TSX"),
    b(18, "PCONFIG", "no memory-encryption configuration"),
    b(19, "ARCH_LBR", PMU),
    b(20, "IBT", "CET state is XSAVE state"),
    b(22, "AMX_BF16", AVX),
    b(23, "AVX512_FP16", AVX),
    b(24, "AMX_TILE", AVX),
    b(25, "AMX_INT8", AVX),
    b(26, "IBRS_IBPB", SPEC),
    b(27, "STIBP", SPEC),
    b(28, "L1D_FLUSH", SPEC),
    b(
        29,
        "ARCH_CAPABILITIES",
        "IA32_ARCH_CAPABILITIES is not emulated",
    ),
    b(
        30,
        "CORE_CAPABILITIES",
        "IA32_CORE_CAPABILITIES is not emulated",
    ),
    b(31, "SSBD", SPEC),
];

/// Leaf 0x8000_0001 ECX, from the host.
pub(super) const X1_ECX_ALLOW: &[Bit] = &[
    b(0, "LAHF_LM", "LAHF/SAHF in 64-bit mode: instructions"),
    b(5, "ABM", "LZCNT: an instruction"),
    b(8, "PREFETCHW", "an instruction"),
];
/// Leaf 0x8000_0001 ECX, clear.
pub(super) const X1_ECX_DENY: &[Bit] = &[
    b(1, "CMP_LEGACY", "one logical processor"),
    b(2, "SVM", "no nested virtualisation"),
    b(3, "EXTAPIC", "no extended APIC space"),
    b(4, "CR8_LEGACY", "not needed in 64-bit mode"),
    b(6, "SSE4A", "not promised"),
    b(7, "MISALIGNSSE", "not promised"),
    b(9, "OSVW", "the OS-visible workaround MSRs are not emulated"),
    b(10, "IBS", PMU),
    b(11, "XOP", AVX),
    b(12, "SKINIT", "no secure launch"),
    b(13, "WDT", "no watchdog timer"),
    b(15, "LWP", "LWP state is XSAVE state"),
    b(16, "FMA4", AVX),
    b(17, "TCE", "not promised"),
    b(19, "NODEID_MSR", "the node-id MSR is not emulated"),
    b(21, "TBM", "not promised"),
    b(
        22,
        "TOPOEXT",
        "no topology leaves (0x8000_001D/1E) are offered",
    ),
    b(23, "PERFCTR_CORE", AMD_PMU),
    b(24, "PERFCTR_NB", AMD_PMU),
    b(26, "BPEXT", "data breakpoint extension MSRs not emulated"),
    b(27, "PTSC", AMD_PMU),
    b(28, "PERFCTR_LLC", AMD_PMU),
    b(29, "MWAITX", "the guest idles with HLT"),
];
/// Leaf 0x8000_0001 EDX, from the host.
pub(super) const X1_EDX_ALLOW: &[Bit] = &[
    b(
        11,
        "SYSCALL",
        "SYSCALL/SYSRET: the STAR MSRs are passed through",
    ),
    b(20, "NX", "EFER.NXE is emulated"),
    b(29, "LM", "long mode: the guest starts in it"),
];
/// Leaf 0x8000_0001 EDX, clear.
pub(super) const X1_EDX_DENY: &[Bit] = &[
    b(22, "MMXEXT", "AMD-only MMX additions: not promised"),
    b(25, "FXSR_OPT", "EFER.FFXSR is not emulated"),
    b(26, "GBPAGES", "1 GiB guest pages: not promised"),
    b(27, "RDTSCP", "reads IA32_TSC_AUX, which is not emulated"),
    b(30, "3DNOWEXT", "not promised"),
    b(31, "3DNOW", "not promised"),
];

/// Leaf 0x8000_0007 EDX, always set.
pub(super) const X7_EDX_FORCE: &[Bit] = &[b(
    8,
    "INVARIANT_TSC",
    "the hypervisor never scales the TSC and hands Linux one measured frequency",
)];

// Bits that depend on what the guest may enable in XCR0 (`crate::xsave`) and on its CR4.

/// Leaf 1 ECX, from the host when the guest may use XSAVE at all (a Linux qube on a host
/// with XSAVE; never a unikernel, whose XCR0 the hypervisor fixes).
pub(super) const L1_ECX_XSAVE: &[Bit] = &[b(
    26,
    "XSAVE",
    "XSAVE/XRSTOR/XSETBV: XSETBV exits and is checked against leaf 0xD; the state is switched per vCPU",
)];
/// Leaf 1 ECX, from the host when the guest may enable AVX state.
pub(super) const L1_ECX_AVX: &[Bit] = &[
    b(
        12,
        "FMA",
        "VEX instructions on YMM state, switched with XSAVE",
    ),
    b(28, "AVX", "YMM state, switched with XSAVE"),
    b(
        29,
        "F16C",
        "VEX instructions on YMM state, switched with XSAVE",
    ),
];
/// Leaf 7 EBX, from the host when the guest may enable AVX state.
pub(super) const L7_EBX_AVX: &[Bit] = &[b(5, "AVX2", "YMM state, switched with XSAVE")];
/// Leaf 7 ECX, from the host when the guest may enable PKRU state.
pub(super) const L7_ECX_PKU: &[Bit] = &[b(
    3,
    "PKU",
    "protection keys: PKRU is XSAVE state, switched per vCPU",
)];
