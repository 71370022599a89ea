//! The feature-bit masks the policy applies. Each bit's name and the reason it is allowed,
//! forced or denied are in `table.rs` (test code); a test keeps these masks equal to it.

/// Leaf 1 ECX, from the host: SSE3 (0), PCLMULQDQ (1), SSSE3 (9), CX16 (13), SSE4.1 (19), SSE4.2
/// (20), MOVBE (22), POPCNT (23), AES (25), RDRAND (30).
pub(super) const L1_ECX_ALLOW: u32 = 0x42D8_2203;

/// Leaf 1 ECX, always set: TSC-Deadline (24), Hypervisor (31).
pub(super) const L1_ECX_FORCE: u32 = 0x8100_0000;

/// Leaf 1 EDX, from the host: FPU (0), DE (2), PSE (3), TSC (4), MSR (5), PAE (6), CX8 (8), SEP
/// (11), PGE (13), CMOV (15), PAT (16), PSE-36 (17), CLFSH (19), MMX (23), FXSR (24), SSE (25),
/// SSE2 (26).
pub(super) const L1_EDX_ALLOW: u32 = 0x078B_A97D;

/// Leaf 1 EDX, always set: APIC (9).
pub(super) const L1_EDX_FORCE: u32 = 0x200;

/// Leaf 6 EAX, always set (the rest of leaf 6 is 0: no thermal or power management): ARAT (2).
pub(super) const L6_EAX_FORCE: u32 = 0x4;

/// Leaf 7 subleaf 0 EBX, from the host: BMI1 (3), SMEP (7), BMI2 (8), ERMS (9), RDSEED (18), ADX
/// (19), SMAP (20), CLFLUSHOPT (23), SHA (29).
pub(super) const L7_EBX_ALLOW: u32 = 0x209C_0388;

/// Leaf 7 subleaf 0 ECX, from the host: nothing.
pub(super) const L7_ECX_ALLOW: u32 = 0x0;

/// Leaf 7 subleaf 0 EDX, from the host: nothing.
pub(super) const L7_EDX_ALLOW: u32 = 0x0;

/// Leaf 0x8000_0001 ECX, from the host: LAHF_LM (0), ABM (5), PREFETCHW (8).
pub(super) const X1_ECX_ALLOW: u32 = 0x121;

/// Leaf 0x8000_0001 EDX, from the host: SYSCALL (11), NX (20), LM (29).
pub(super) const X1_EDX_ALLOW: u32 = 0x2010_0800;

/// Leaf 0x8000_0007 EDX, always set: INVARIANT_TSC (8).
pub(super) const X7_EDX_FORCE: u32 = 0x100;

/// Leaf 1 ECX, from the host when the guest may use XSAVE at all (a Linux qube on a host with
/// XSAVE; never a unikernel, whose XCR0 the hypervisor fixes): XSAVE (26).
pub(super) const L1_ECX_XSAVE: u32 = 0x0400_0000;

/// Leaf 1 ECX, from the host when the guest may enable AVX state: FMA (12), AVX (28), F16C (29).
pub(super) const L1_ECX_AVX: u32 = 0x3000_1000;

/// Leaf 7 EBX, from the host when the guest may enable AVX state: AVX2 (5).
pub(super) const L7_EBX_AVX: u32 = 0x20;

/// Leaf 7 ECX, from the host when the guest may enable PKRU state: PKU (3).
pub(super) const L7_ECX_PKU: u32 = 0x8;

/// Leaf 1 ECX bit 27, OSXSAVE: set when XSAVE is offered and the guest's CR4.OSXSAVE is.
pub(super) const L1_ECX_OSXSAVE: u32 = 1 << 27;
/// Leaf 7 ECX bit 4, OSPKE: set when PKU is offered and the guest's CR4.PKE is.
pub(super) const L7_ECX_OSPKE: u32 = 1 << 4;
/// Leaf 1 ECX bit 31, the hypervisor bit: the one forced bit every guest gets.
pub(super) const L1_ECX_HYPERVISOR: u32 = 1 << 31;
