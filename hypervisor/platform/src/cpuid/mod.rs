//! What the guest is told about its CPU: an allowlist over the host's CPUID.
//!
//! Every answer is built from scratch; a host bit reaches the guest only if it is in an
//! `ALLOW` mask of `cpuid/bits.rs`, so a newer host CPU cannot leak a feature the
//! hypervisor does not virtualise. The name of each allowed, forced and notable denied bit
//! and the reason for it are in `cpuid/table.rs`, which the tests keep equal to the masks.
//!
//! Leaves:
//! The same policy answers both guest kinds; a [`GuestCpu`] says what differs: which XSAVE
//! components the guest may enable (none beyond x87/SSE for a unikernel, whose XCR0 the
//! hypervisor fixes; [`crate::xsave::LINUX_ALLOWED`] for a Linux qube), its CR4 (for
//! OSXSAVE and OSPKE), whether it has the emulated platform devices (local APIC,
//! TSC-deadline timer: Linux qubes only), and the APIC id of the vCPU asking.
//!
//! - 0: maximum basic leaf `min(host, 7)` (`min(host, 0xD)` with XSAVE), the host's vendor.
//! - 1: the host's family/model/stepping; EBX: brand index 0, the host's CLFLUSH line size,
//!   1 logical processor, initial APIC id the vCPU's; ECX/EDX filtered, plus the hypervisor bit and
//!   (with the platform) TSC-deadline and APIC forced on; XSAVE, AVX, FMA, F16C as the
//!   offered XCR0 components allow, OSXSAVE from the guest's CR4.
//! - 2, 3, 4, 5: 0. No cache descriptors, no serial number, no deterministic cache leaf
//!   (type 0 = no caches: Linux then counts one core), no MONITOR.
//! - 6: only ARAT (with the platform: the emulated APIC timer keeps running in idle); no
//!   thermal or power management.
//! - 7 subleaf 0: EBX filtered (plus AVX2 with AVX), ECX: PKU when PKRU is offered and
//!   OSPKE from the guest's CR4, EDX 0, EAX 0 (no further subleaves).
//! - 0xB: 0, no topology leaf (one core, one thread, as leaf 1 says without HTT).
//! - 0xD (only with XSAVE): subleaf 0 the offered components and the area sizes for the
//!   guest's XCR0 and for all offered; subleaf 1 XSAVEOPT only (no XSAVEC, XSAVES or XSS);
//!   subleaf i the host's size and offset of component i if offered, else 0.
//! - 0x4000_0000: "BulkheadHV\0\0", maximum hypervisor leaf 0x4000_0010. Linux knows no
//!   such hypervisor and treats the machine as native-with-hypervisor-bit; the signature
//!   also makes the KVM and Xen signature scans (0x4000_0000 + n * 0x100) find nothing.
//! - 0x4000_0010: EAX = TSC frequency in kHz (the VMware/ACRN "timing" leaf), EBX 0 (the
//!   APIC timer frequency is not given here).
//! - 0x8000_0000: maximum extended leaf `min(host, 0x8000_0008)`.
//! - 0x8000_0001: ECX/EDX filtered (LAHF, LZCNT, PREFETCHW, SYSCALL, NX, LM).
//! - 0x8000_0002..=4: the host's brand string.
//! - 0x8000_0005, 0x8000_0006: the host's cache and TLB descriptors, unchanged: information
//!   only, and Linux divides by the L1 associativity from 0x8000_0005 on AMD family 0x15.
//! - 0x8000_0007: only invariant TSC.
//! - 0x8000_0008: the host's physical address width, 48-bit linear addresses (4-level
//!   paging only), guest physical width 0 (= physical); EBX (AMD speculation and
//!   instruction features), ECX (core count 1) and EDX 0.
//! - Everything else, and any leaf above the maximum of its range: 0.

mod bits;
#[cfg(test)]
mod table;
#[cfg(test)]
mod tests;

/// The four registers of one CPUID answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Highest basic leaf the guest is offered.
pub const MAX_BASIC_LEAF: u32 = 7;
/// Highest basic leaf the guest is offered when it may use XSAVE.
pub const MAX_BASIC_LEAF_XSAVE: u32 = 0xD;
/// The XSAVE leaf.
pub const XSAVE_LEAF: u32 = 0xD;
/// CR4.OSXSAVE.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.PKE.
pub const CR4_PKE: u64 = 1 << 22;

/// What differs between guests in what CPUID tells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestCpu {
    /// XSAVE components the guest may enable in XCR0; 0 when it may not use XSAVE at all
    /// (the hypervisor fixes its XCR0, as for unikernels).
    pub xcr0_allowed: u64,
    /// The guest's XCR0 now (leaf 0xD's EBX is the area size for it).
    pub xcr0: u64,
    /// The guest's CR4 now (OSXSAVE, OSPKE).
    pub cr4: u64,
    /// It has the emulated platform: local APIC with TSC-deadline mode, ARAT.
    pub platform: bool,
    /// The APIC id of the vCPU asking (leaf 1 EBX bits 24..31, the initial APIC id).
    pub apic_id: u8,
}

impl GuestCpu {
    /// A unikernel: no XSAVE, no platform devices, APIC id 0.
    pub const fn unikernel(cr4: u64) -> GuestCpu {
        GuestCpu {
            xcr0_allowed: 0,
            xcr0: crate::xsave::X87 | crate::xsave::SSE,
            cr4,
            platform: false,
            apic_id: 0,
        }
    }

    fn xsave(&self) -> bool {
        self.xcr0_allowed != 0
    }

    fn may(&self, component: u64) -> bool {
        self.xcr0_allowed & component != 0
    }
}
/// Highest extended leaf the guest is offered.
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;
/// The hypervisor signature leaf.
pub const HV_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// The hypervisor timing leaf (EAX = TSC kHz).
pub const HV_TIMING_LEAF: u32 = 0x4000_0010;
/// The hypervisor signature, as EBX, ECX, EDX of leaf 0x4000_0000 spell it.
pub const HV_SIGNATURE: [u8; 12] = *b"BulkheadHV\0\0";
/// Linear address width the guest is told (4-level paging).
pub const LINEAR_ADDRESS_BITS: u32 = 48;

/// The answer for CPUID (`leaf`, `sub`) of guest `g`, given the host CPU's answers
/// (`host(leaf, sub)`) and the TSC frequency in kHz.
pub fn guest_cpuid(
    leaf: u32,
    sub: u32,
    host: impl Fn(u32, u32) -> CpuidResult,
    tsc_khz: u64,
    g: &GuestCpu,
) -> CpuidResult {
    match leaf {
        0..=0x3FFF_FFFF => basic(leaf, sub, &host, g),
        0x4000_0000..=0x4FFF_FFFF => hypervisor(leaf, tsc_khz),
        0x8000_0000..=0x8FFF_FFFF => extended(leaf, &host),
        _ => CpuidResult::default(),
    }
}

fn basic(
    leaf: u32,
    sub: u32,
    host: &impl Fn(u32, u32) -> CpuidResult,
    g: &GuestCpu,
) -> CpuidResult {
    let top = if g.xsave() {
        MAX_BASIC_LEAF_XSAVE
    } else {
        MAX_BASIC_LEAF
    };
    let max = host(0, 0).eax.clamp(1, top);
    if leaf > max {
        return CpuidResult::default();
    }
    match leaf {
        0 => {
            let h = host(0, 0);
            CpuidResult {
                eax: max,
                ebx: h.ebx,
                ecx: h.ecx,
                edx: h.edx,
            }
        }
        1 => {
            let h = host(1, 0);
            let mut ecx_allow = bits::L1_ECX_ALLOW;
            let (ecx_force, edx_force) = if g.platform {
                (bits::L1_ECX_FORCE, bits::L1_EDX_FORCE)
            } else {
                (bits::L1_ECX_FORCE & bits::L1_ECX_HYPERVISOR, 0)
            };
            let mut ecx = 0;
            if g.xsave() && h.ecx & bits::L1_ECX_XSAVE != 0 {
                ecx_allow |= bits::L1_ECX_XSAVE;
                if g.cr4 & CR4_OSXSAVE != 0 {
                    ecx |= bits::L1_ECX_OSXSAVE;
                }
            }
            if g.may(crate::xsave::AVX) {
                ecx_allow |= bits::L1_ECX_AVX;
            }
            CpuidResult {
                // Stepping, model, family, type, extended model and family.
                eax: h.eax & 0x0FFF_3FFF,
                // CLFLUSH line size from the host; 1 logical processor; the APIC id.
                ebx: (h.ebx & 0xFF00) | (1 << 16) | (u32::from(g.apic_id) << 24),
                ecx: ecx | (h.ecx & ecx_allow) | ecx_force,
                edx: (h.edx & bits::L1_EDX_ALLOW) | edx_force,
            }
        }
        6 if g.platform => CpuidResult {
            eax: bits::L6_EAX_FORCE,
            ..CpuidResult::default()
        },
        7 if sub == 0 => {
            let h = host(7, 0);
            let mut ebx_allow = bits::L7_EBX_ALLOW;
            let mut ecx_allow = bits::L7_ECX_ALLOW;
            let mut ecx = 0;
            if g.may(crate::xsave::AVX) {
                ebx_allow |= bits::L7_EBX_AVX;
            }
            if g.may(crate::xsave::PKRU) && h.ecx & bits::L7_ECX_PKU != 0 {
                ecx_allow |= bits::L7_ECX_PKU;
                if g.cr4 & CR4_PKE != 0 {
                    ecx |= bits::L7_ECX_OSPKE;
                }
            }
            CpuidResult {
                eax: 0,
                ebx: h.ebx & ebx_allow,
                ecx: ecx | (h.ecx & ecx_allow),
                edx: h.edx & bits::L7_EDX_ALLOW,
            }
        }
        XSAVE_LEAF => xsave_leaf(sub, host, g),
        _ => CpuidResult::default(),
    }
}

/// Leaf 0xD, for a guest that may use XSAVE (else the leaf is beyond its maximum).
fn xsave_leaf(sub: u32, host: &impl Fn(u32, u32) -> CpuidResult, g: &GuestCpu) -> CpuidResult {
    let offered = g.xcr0_allowed & u64::from(host(XSAVE_LEAF, 0).eax);
    let component = |i| {
        let h = host(XSAVE_LEAF, i);
        (h.eax, h.ebx)
    };
    match sub {
        0 => CpuidResult {
            eax: offered as u32,
            ebx: crate::xsave::area_size(g.xcr0 & offered, component),
            ecx: crate::xsave::area_size(offered, component),
            edx: (offered >> 32) as u32,
        },
        // XSAVEOPT only: no compacted format, no supervisor state.
        1 => CpuidResult {
            eax: host(XSAVE_LEAF, 1).eax & 1,
            ..CpuidResult::default()
        },
        2..=62 if offered & (1 << sub) != 0 => {
            let h = host(XSAVE_LEAF, sub);
            CpuidResult {
                eax: h.eax,
                ebx: h.ebx,
                // Bit 1: aligned in the compacted form; bit 0 (supervisor) never.
                ecx: h.ecx & 2,
                edx: 0,
            }
        }
        _ => CpuidResult::default(),
    }
}

fn hypervisor(leaf: u32, tsc_khz: u64) -> CpuidResult {
    let word = |i: usize| {
        let s = &HV_SIGNATURE[4 * i..4 * i + 4];
        u32::from_le_bytes([s[0], s[1], s[2], s[3]])
    };
    match leaf {
        HV_SIGNATURE_LEAF => CpuidResult {
            eax: HV_TIMING_LEAF,
            ebx: word(0),
            ecx: word(1),
            edx: word(2),
        },
        HV_TIMING_LEAF => CpuidResult {
            eax: u32::try_from(tsc_khz).unwrap_or(u32::MAX),
            ..CpuidResult::default()
        },
        _ => CpuidResult::default(),
    }
}

fn extended(leaf: u32, host: &impl Fn(u32, u32) -> CpuidResult) -> CpuidResult {
    let max = host(0x8000_0000, 0)
        .eax
        .clamp(0x8000_0000, MAX_EXTENDED_LEAF);
    if leaf > max {
        return CpuidResult::default();
    }
    match leaf {
        0x8000_0000 => CpuidResult {
            eax: max,
            ..CpuidResult::default()
        },
        0x8000_0001 => {
            let h = host(leaf, 0);
            CpuidResult {
                ecx: h.ecx & bits::X1_ECX_ALLOW,
                edx: h.edx & bits::X1_EDX_ALLOW,
                ..CpuidResult::default()
            }
        }
        0x8000_0002..=0x8000_0006 => host(leaf, 0),
        0x8000_0007 => CpuidResult {
            edx: bits::X7_EDX_FORCE,
            ..CpuidResult::default()
        },
        0x8000_0008 => CpuidResult {
            eax: (host(leaf, 0).eax & 0xFF) | (LINEAR_ADDRESS_BITS << 8),
            ..CpuidResult::default()
        },
        _ => CpuidResult::default(),
    }
}
