extern crate std;
use super::table::{self as bits, Bit, mask};
use super::*;
use proptest::prelude::*;

/// A Linux qube on a host without XSAVE: the policy as it was before XSAVE was offered.
const BASE: GuestCpu = GuestCpu {
    xcr0_allowed: 0,
    xcr0: 3,
    cr4: 0,
    platform: true,
    apic_id: 0,
};

fn base_cpuid(
    leaf: u32,
    sub: u32,
    host: impl Fn(u32, u32) -> CpuidResult,
    tsc: u64,
) -> CpuidResult {
    guest_cpuid(leaf, sub, host, tsc, &BASE)
}

fn all_ones(_: u32, _: u32) -> CpuidResult {
    CpuidResult {
        eax: !0,
        ebx: !0,
        ecx: !0,
        edx: !0,
    }
}

fn zeros(_: u32, _: u32) -> CpuidResult {
    CpuidResult::default()
}

/// A host with plausible maxima whose other answers are all-ones.
fn modern_host(leaf: u32, sub: u32) -> CpuidResult {
    match leaf {
        0 => CpuidResult {
            eax: 0x20,
            ebx: 0x756E_6547,
            ecx: 0x6C65_746E,
            edx: 0x4965_6E69,
        },
        0x8000_0000 => CpuidResult {
            eax: 0x8000_0008,
            ..CpuidResult::default()
        },
        0x8000_0008 => CpuidResult {
            eax: 0x3934,
            ..CpuidResult::default()
        }, // 52 phys, 57 linear
        _ => all_ones(leaf, sub),
    }
}

/// (leaf, register index, allow, force, deny).
type FeatureRegister = (u32, usize, &'static [Bit], &'static [Bit], &'static [Bit]);

/// Every feature register.
fn feature_registers() -> [FeatureRegister; 9] {
    [
        (
            1,
            2,
            bits::L1_ECX_ALLOW,
            bits::L1_ECX_FORCE,
            bits::L1_ECX_DENY,
        ),
        (
            1,
            3,
            bits::L1_EDX_ALLOW,
            bits::L1_EDX_FORCE,
            bits::L1_EDX_DENY,
        ),
        (6, 0, &[], bits::L6_EAX_FORCE, &[]),
        (7, 1, bits::L7_EBX_ALLOW, &[], bits::L7_EBX_DENY),
        (7, 2, bits::L7_ECX_ALLOW, &[], bits::L7_ECX_DENY),
        (7, 3, bits::L7_EDX_ALLOW, &[], bits::L7_EDX_DENY),
        (0x8000_0001, 2, bits::X1_ECX_ALLOW, &[], bits::X1_ECX_DENY),
        (0x8000_0001, 3, bits::X1_EDX_ALLOW, &[], bits::X1_EDX_DENY),
        (0x8000_0007, 3, &[], bits::X7_EDX_FORCE, &[]),
    ]
}

fn reg(r: CpuidResult, i: usize) -> u32 {
    [r.eax, r.ebx, r.ecx, r.edx][i]
}

#[test]
fn tables_are_consistent() {
    for (leaf, i, allow, force, deny) in feature_registers() {
        let mut seen = 0u32;
        for b in allow.iter().chain(force).chain(deny) {
            assert!(b.bit < 32 && !b.name.is_empty() && !b.why.is_empty());
            assert_eq!(
                seen & 1 << b.bit,
                0,
                "leaf {leaf:#x} reg {i}: bit {} twice",
                b.name
            );
            seen |= 1 << b.bit;
        }
    }
}

/// The masks the image applies are exactly the documented lists.
#[test]
fn masks_are_the_tables() {
    use super::{bits as m, table as t};
    let pairs = [
        (m::L1_ECX_ALLOW, t::L1_ECX_ALLOW),
        (m::L1_ECX_FORCE, t::L1_ECX_FORCE),
        (m::L1_EDX_ALLOW, t::L1_EDX_ALLOW),
        (m::L1_EDX_FORCE, t::L1_EDX_FORCE),
        (m::L6_EAX_FORCE, t::L6_EAX_FORCE),
        (m::L7_EBX_ALLOW, t::L7_EBX_ALLOW),
        (m::L7_ECX_ALLOW, t::L7_ECX_ALLOW),
        (m::L7_EDX_ALLOW, t::L7_EDX_ALLOW),
        (m::X1_ECX_ALLOW, t::X1_ECX_ALLOW),
        (m::X1_EDX_ALLOW, t::X1_EDX_ALLOW),
        (m::X7_EDX_FORCE, t::X7_EDX_FORCE),
        (m::L1_ECX_XSAVE, t::L1_ECX_XSAVE),
        (m::L1_ECX_AVX, t::L1_ECX_AVX),
        (m::L7_EBX_AVX, t::L7_EBX_AVX),
        (m::L7_ECX_PKU, t::L7_ECX_PKU),
    ];
    for (i, (image, table)) in pairs.into_iter().enumerate() {
        assert_eq!(image, mask(table), "mask {i}");
    }
    assert_eq!(m::L1_ECX_FORCE & m::L1_ECX_HYPERVISOR, m::L1_ECX_HYPERVISOR);
}

#[test]
fn all_ones_host_gets_exactly_the_allowlist() {
    for host in [all_ones as fn(u32, u32) -> CpuidResult, modern_host] {
        for (leaf, i, allow, force, deny) in feature_registers() {
            let r = reg(base_cpuid(leaf, 0, host, 1), i);
            assert_eq!(r, mask(allow) | mask(force), "leaf {leaf:#x} reg {i}");
            assert_eq!(r & mask(deny), 0);
        }
    }
}

#[test]
fn zero_host_gets_only_the_forced_bits() {
    assert_eq!(
        base_cpuid(0, 0, zeros, 1).eax,
        1,
        "leaf 1 is always offered"
    );
    let l1 = base_cpuid(1, 0, zeros, 1);
    assert_eq!((l1.ecx, l1.edx), (1 << 24 | 1 << 31, 1 << 9));
    assert_eq!(l1.ebx, 1 << 16);
    assert_eq!(
        base_cpuid(7, 0, zeros, 1),
        CpuidResult::default(),
        "beyond max basic"
    );
    assert_eq!(base_cpuid(0x8000_0000, 0, zeros, 1).eax, 0x8000_0000);
    assert_eq!(base_cpuid(0x8000_0001, 0, zeros, 1), CpuidResult::default());
}

#[test]
fn leaf_1_gives_each_vcpu_its_initial_apic_id() {
    for host in [zeros as fn(u32, u32) -> CpuidResult, all_ones, modern_host] {
        let host_l1 = base_cpuid(1, 0, host, 1);
        for apic_id in [0u8, 1, 5, 7, 0xFF] {
            let g = GuestCpu { apic_id, ..BASE };
            let l1 = guest_cpuid(1, 0, host, 1, &g);
            assert_eq!(l1.ebx >> 24, u32::from(apic_id));
            assert_eq!(
                l1.ebx & 0x00FF_FFFF,
                host_l1.ebx & 0x00FF_FFFF,
                "the rest as before"
            );
            assert_eq!(
                (l1.eax, l1.ecx, l1.edx),
                (host_l1.eax, host_l1.ecx, host_l1.edx)
            );
        }
    }
    let u = GuestCpu::unikernel(0);
    assert_eq!(u.apic_id, 0);
    assert_eq!(guest_cpuid(1, 0, all_ones, 1, &u).ebx >> 24, 0);
}

#[test]
fn the_must_not_leak_bits() {
    for host in [all_ones as fn(u32, u32) -> CpuidResult, modern_host] {
        let l1 = base_cpuid(1, 0, host, 1);
        for (bit, what) in [
            (5, "VMX"),
            (21, "x2APIC"),
            (26, "XSAVE"),
            (28, "AVX"),
            (3, "MWAIT"),
        ] {
            assert_eq!(l1.ecx & 1 << bit, 0, "{what}");
        }
        assert_eq!(
            l1.edx & (1 << 28 | 1 << 7 | 1 << 14 | 1 << 12),
            0,
            "HTT, MCE, MCA, MTRR"
        );
        let l7 = base_cpuid(7, 0, host, 1);
        assert_eq!(l7.ecx & 1 << 16, 0, "LA57");
        assert_eq!((l7.eax, l7.ecx, l7.edx), (0, 0, 0));
        assert_eq!(
            base_cpuid(7, 1, host, 1),
            CpuidResult::default(),
            "subleaf 1"
        );
        let x1 = base_cpuid(0x8000_0001, 0, host, 1);
        assert_eq!(x1.ecx & 1 << 2, 0, "SVM");
        assert_eq!(x1.edx & (1 << 26 | 1 << 27), 0, "1 GiB pages, RDTSCP");
        assert_eq!((x1.eax, x1.ebx), (0, 0));
        for leaf in [
            2,
            3,
            4,
            5,
            0xB,
            0xD,
            0x14,
            0x15,
            0x16,
            0x8000_0009,
            0x8000_001F,
        ] {
            assert_eq!(
                base_cpuid(leaf, 0, host, 1),
                CpuidResult::default(),
                "{leaf:#x}"
            );
        }
    }
}

#[test]
fn identity_and_sizes_come_from_the_host() {
    let l0 = base_cpuid(0, 0, modern_host, 1);
    assert_eq!(l0.eax, MAX_BASIC_LEAF);
    let vendor: std::vec::Vec<u8> = [l0.ebx, l0.edx, l0.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    assert_eq!(&vendor[..], b"GenuineIntel");
    let l1 = base_cpuid(1, 0, modern_host, 1);
    assert_eq!(l1.eax, 0x0FFF_3FFF);
    assert_eq!(
        l1.ebx, 0x0001_FF00,
        "CLFLUSH size from the host, 1 CPU, APIC id 0"
    );
    assert_eq!(base_cpuid(0x8000_0000, 0, modern_host, 1).eax, 0x8000_0008);
    assert_eq!(
        base_cpuid(0x8000_0000, 0, all_ones, 1).eax,
        MAX_EXTENDED_LEAF
    );
    assert_eq!(
        base_cpuid(0x8000_0003, 0, modern_host, 1),
        all_ones(0, 0),
        "brand"
    );
    assert_eq!(
        base_cpuid(0x8000_0005, 0, modern_host, 1),
        all_ones(0, 0),
        "L1 caches"
    );
    let x8 = base_cpuid(0x8000_0008, 0, modern_host, 1);
    assert_eq!(
        x8,
        CpuidResult {
            eax: 0x3034,
            ..CpuidResult::default()
        },
        "48-bit linear"
    );
    let x7 = base_cpuid(0x8000_0007, 0, zeros, 1);
    assert_eq!(
        x7,
        CpuidResult::default(),
        "zero host: max extended is 0x8000_0000"
    );
    assert_eq!(base_cpuid(0x8000_0007, 0, all_ones, 1).edx, 1 << 8);
}

#[test]
fn hypervisor_leaves() {
    let sig = base_cpuid(HV_SIGNATURE_LEAF, 0, zeros, 2_400_000);
    assert_eq!(sig.eax, HV_TIMING_LEAF);
    let name: std::vec::Vec<u8> = [sig.ebx, sig.ecx, sig.edx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    assert_eq!(&name[..], b"BulkheadHV\0\0");
    assert_eq!(
        base_cpuid(HV_TIMING_LEAF, 0, all_ones, 2_400_000).eax,
        2_400_000
    );
    assert_eq!(base_cpuid(HV_TIMING_LEAF, 0, zeros, u64::MAX).eax, u32::MAX);
    for leaf in [
        0x4000_0001,
        0x4000_000F,
        0x4000_0011,
        0x4000_0100,
        0x4000_0200,
        0x4FFF_FFFF,
    ] {
        assert_eq!(
            base_cpuid(leaf, 0, all_ones, 1),
            CpuidResult::default(),
            "{leaf:#x}"
        );
    }
    assert_eq!(
        base_cpuid(0xC000_0000, 0, all_ones, 1),
        CpuidResult::default(),
        "Centaur"
    );
}

/// A host whose answers are arbitrary but deterministic per (leaf, sub).
fn hashed_host(seed: u64) -> impl Fn(u32, u32) -> CpuidResult {
    move |leaf, sub| {
        let mut x = seed ^ (u64::from(leaf) << 32 | u64::from(sub));
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        };
        CpuidResult {
            eax: next(),
            ebx: next(),
            ecx: next(),
            edx: next(),
        }
    }
}

proptest! {
    #[test]
    fn no_denied_bit_whatever_the_host(
        seed in any::<u64>(),
        leaf in prop_oneof![0u32..0x20, 0x4000_0000u32..0x4000_0020, 0x8000_0000u32..0x8000_0020,
                            any::<u32>()],
        sub in prop_oneof![Just(0u32), any::<u32>()],
        tsc in any::<u64>(),
    ) {
        let host = hashed_host(seed);
        let r = base_cpuid(leaf, sub, &host, tsc);
        for (l, i, allow, force, deny) in feature_registers() {
            if leaf == l {
                prop_assert_eq!(reg(r, i) & !(mask(allow) | mask(force)), 0);
                prop_assert_eq!(reg(r, i) & mask(deny), 0);
            }
        }
        if leaf == 0 {
            prop_assert!((1..=MAX_BASIC_LEAF).contains(&r.eax));
        }
        if leaf == 0x8000_0000 {
            prop_assert!((0x8000_0000..=MAX_EXTENDED_LEAF).contains(&r.eax));
        }
        if leaf == 7 && sub != 0 || leaf == 6 {
            prop_assert_eq!((r.ebx, r.ecx, r.edx), (0, 0, 0));
        }
        let max_basic = base_cpuid(0, 0, &host, tsc).eax;
        let max_ext = base_cpuid(0x8000_0000, 0, &host, tsc).eax;
        if leaf < 0x4000_0000 && leaf > max_basic || leaf >= 0x8000_0000 && leaf > max_ext {
            prop_assert_eq!(r, CpuidResult::default());
        }
        if leaf == 0x8000_0008 && leaf <= max_ext {
            prop_assert_eq!((r.eax >> 8, r.ebx, r.ecx, r.edx), (LINEAR_ADDRESS_BITS, 0, 0, 0));
        }
        let known = matches!(leaf, 0 | 1 | 6 | 7 | HV_SIGNATURE_LEAF | HV_TIMING_LEAF)
            || (0x8000_0000..=0x8000_0008).contains(&leaf);
        if !known {
            prop_assert_eq!(r, CpuidResult::default());
        }
    }
}

/// A host with XSAVE, AVX, AVX2, AVX-512 and PKU, with Intel's component layout.
fn xsave_host(leaf: u32, sub: u32) -> CpuidResult {
    let c = |eax, ebx| CpuidResult {
        eax,
        ebx,
        ecx: 0,
        edx: 0,
    };
    match (leaf, sub) {
        (0, _) => CpuidResult {
            eax: 0x20,
            ..modern_host(0, 0)
        },
        (0xD, 0) => c(0x2E7, 2696),
        (0xD, 1) => c(0xF, 0),
        (0xD, 2) => c(256, 576),
        (0xD, 5) => c(64, 1088),
        (0xD, 6) => c(512, 1152),
        (0xD, 7) => c(1024, 1664),
        (0xD, 9) => c(8, 2688),
        (0xD, _) => c(0, 0),
        _ => modern_host(leaf, sub),
    }
}

const LINUX_XSAVE: GuestCpu = GuestCpu {
    xcr0_allowed: crate::xsave::LINUX_ALLOWED,
    xcr0: 1,
    cr4: 0,
    platform: true,
    apic_id: 0,
};

#[test]
fn a_unikernel_gets_no_xsave_avx_pku_or_platform() {
    let u = GuestCpu::unikernel(CR4_OSXSAVE | CR4_PKE);
    for host in [all_ones as fn(u32, u32) -> CpuidResult, xsave_host] {
        let l1 = guest_cpuid(1, 0, host, 1, &u);
        assert_eq!(
            l1.ecx & (1 << 26 | 1 << 27 | 1 << 28 | 1 << 12 | 1 << 29 | 1 << 24),
            0
        );
        assert_eq!(l1.ecx & 1 << 31, 1 << 31, "the hypervisor bit");
        assert_eq!(l1.edx & 1 << 9, 0, "no APIC");
        let l7 = guest_cpuid(7, 0, host, 1, &u);
        assert_eq!(l7.ebx & 1 << 5, 0, "AVX2");
        assert_eq!(l7.ecx & (1 << 3 | 1 << 4), 0, "PKU, OSPKE");
        assert_eq!(guest_cpuid(0, 0, host, 1, &u).eax, MAX_BASIC_LEAF);
        assert_eq!(guest_cpuid(0xD, 0, host, 1, &u), CpuidResult::default());
        assert_eq!(guest_cpuid(6, 0, host, 1, &u), CpuidResult::default());
    }
}

#[test]
fn a_linux_qube_gets_xsave_avx_and_pku_and_its_own_cr4_bits() {
    let mut g = LINUX_XSAVE;
    let l1 = guest_cpuid(1, 0, xsave_host, 1, &g);
    assert_eq!(
        l1.ecx & (1 << 26 | 1 << 28 | 1 << 12 | 1 << 29),
        1 << 26 | 1 << 28 | 1 << 12 | 1 << 29
    );
    assert_eq!(l1.ecx & 1 << 27, 0, "OSXSAVE follows CR4");
    let l7 = guest_cpuid(7, 0, xsave_host, 1, &g);
    assert_eq!(l7.ebx & (1 << 5 | 1 << 16), 1 << 5, "AVX2 yes, AVX512F no");
    assert_eq!(l7.ecx & (1 << 3 | 1 << 4), 1 << 3);
    g.cr4 = CR4_OSXSAVE | CR4_PKE;
    assert_eq!(guest_cpuid(1, 0, xsave_host, 1, &g).ecx & 1 << 27, 1 << 27);
    assert_eq!(guest_cpuid(7, 0, xsave_host, 1, &g).ecx & 1 << 4, 1 << 4);
    assert_eq!(guest_cpuid(0, 0, xsave_host, 1, &g).eax, 0xD);
}

#[test]
fn the_xsave_leaf_offers_only_the_allowed_components() {
    let mut g = LINUX_XSAVE;
    let d0 = guest_cpuid(0xD, 0, xsave_host, 1, &g);
    assert_eq!(d0.eax, 0x207, "x87 SSE AVX PKRU, no AVX-512");
    assert_eq!((d0.ebx, d0.ecx, d0.edx), (576, 2696, 0));
    g.xcr0 = 7;
    assert_eq!(guest_cpuid(0xD, 0, xsave_host, 1, &g).ebx, 832);
    assert_eq!(
        guest_cpuid(0xD, 1, xsave_host, 1, &g).eax,
        1,
        "XSAVEOPT only"
    );
    assert_eq!(guest_cpuid(0xD, 2, xsave_host, 1, &g).eax, 256);
    assert_eq!(
        guest_cpuid(0xD, 5, xsave_host, 1, &g),
        CpuidResult::default()
    );
    assert_eq!(guest_cpuid(0xD, 9, xsave_host, 1, &g).ebx, 2688);
    // A host without PKU and without AVX offers neither.
    let old = |l, s| match (l, s) {
        (0xD, 0) => CpuidResult {
            eax: 3,
            ebx: 576,
            ..CpuidResult::default()
        },
        _ => xsave_host(l, s),
    };
    assert_eq!(guest_cpuid(0xD, 0, old, 1, &g).eax, 3);
}
