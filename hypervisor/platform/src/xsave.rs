//! The XSAVE state components a guest may enable in XCR0, and the checks of XSETBV.
//!
//! The hypervisor switches every component of [`SWITCHED`] the host CPU has on every world
//! switch (XSAVE/XRSTOR of the whole set), whatever the guest enabled; what a guest may
//! *enable* is a smaller set: nothing beyond x87/SSE for a unikernel (no XSAVE in CPUID, XCR0
//! fixed), x87/SSE/AVX and PKRU for a Linux qube ([`LINUX_ALLOWED`]). The XCR0 a guest runs
//! with is its own: the hypervisor loads it before every entry and the host's after every
//! exit.

/// x87 state (XCR0 bit 0, always set).
pub const X87: u64 = 1 << 0;
/// SSE state: XMM0-15 and MXCSR.
pub const SSE: u64 = 1 << 1;
/// AVX state: the upper halves of YMM0-15.
pub const AVX: u64 = 1 << 2;
/// AVX-512 opmask registers k0-k7.
pub const OPMASK: u64 = 1 << 5;
/// The upper halves of ZMM0-15.
pub const ZMM_HI256: u64 = 1 << 6;
/// ZMM16-31.
pub const HI16_ZMM: u64 = 1 << 7;
/// The three AVX-512 components, which XCR0 enables together or not at all.
pub const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
/// The protection-key rights register PKRU.
pub const PKRU: u64 = 1 << 9;

/// Every user-state component the hypervisor saves and restores per vCPU when the host CPU
/// has it. MPX (bits 3-4, withdrawn) and AMX (17-18, 8 KiB of tiles that need XFD) are
/// never enabled in the host's XCR0, so no guest can enable them either.
pub const SWITCHED: u64 = X87 | SSE | AVX | AVX512 | PKRU;

/// What a Linux qube may enable (of what the host has): AVX for its user space, PKRU for
/// memory protection keys. AVX-512 is not offered (no test machine has it).
pub const LINUX_ALLOWED: u64 = X87 | SSE | AVX | PKRU;

/// Whether XSETBV(`index`, `value`) is one a CPU offering `allowed` in CPUID leaf 0xD
/// accepts; anything else raises #GP. Only XCR0 exists; x87 is always on; AVX needs SSE;
/// the AVX-512 components go together and need AVX.
pub fn xsetbv_ok(index: u32, value: u64, allowed: u64) -> bool {
    index == 0
        && value & X87 != 0
        && value & !allowed == 0
        && (value & AVX == 0 || value & SSE != 0)
        && (value & AVX512 == 0 || (value & AVX512 == AVX512 && value & AVX != 0))
}

/// Bytes of a standard-format XSAVE area holding the components of `xcr0`: the 512-byte
/// legacy region and 64-byte header, then each further component at the offset the CPU
/// gives (`component(i)` = CPUID leaf 0xD subleaf i: EAX size, EBX offset).
pub fn area_size(xcr0: u64, component: impl Fn(u32) -> (u32, u32)) -> u32 {
    (2..63)
        .filter(|i| xcr0 & (1 << i) != 0)
        .map(|i| {
            let (size, offset) = component(i);
            offset.saturating_add(size)
        })
        .fold(512 + 64, u32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn xsetbv_rules() {
        let all = X87 | SSE | AVX | AVX512 | PKRU;
        assert!(xsetbv_ok(0, X87, all));
        assert!(xsetbv_ok(0, X87 | SSE | AVX, all));
        assert!(xsetbv_ok(0, X87 | PKRU, all));
        assert!(xsetbv_ok(0, X87 | SSE | AVX | AVX512, all));
        assert!(!xsetbv_ok(1, X87, all), "XCR1 does not exist");
        assert!(!xsetbv_ok(0, 0, all), "x87 must stay on");
        assert!(!xsetbv_ok(0, SSE, all));
        assert!(!xsetbv_ok(0, X87 | AVX, all), "AVX needs SSE");
        assert!(
            !xsetbv_ok(0, X87 | SSE | AVX | OPMASK, all),
            "AVX-512 all or none"
        );
        assert!(!xsetbv_ok(0, X87 | SSE | AVX512, all), "AVX-512 needs AVX");
        assert!(!xsetbv_ok(0, X87 | SSE | AVX, X87 | SSE), "not offered");
        assert!(!xsetbv_ok(0, X87 | 1 << 17, all), "AMX is never offered");
    }

    #[test]
    fn area_sizes() {
        // Offsets and sizes as Intel and AMD CPUs report them.
        let cpu = |i| match i {
            2 => (256, 576),
            5 => (64, 1088),
            6 => (512, 1152),
            7 => (1024, 1664),
            9 => (8, 2688),
            _ => (0, 0),
        };
        assert_eq!(area_size(X87 | SSE, cpu), 576);
        assert_eq!(area_size(X87 | SSE | AVX, cpu), 832);
        assert_eq!(area_size(X87 | SSE | AVX | AVX512, cpu), 2688);
        assert_eq!(area_size(SWITCHED, cpu), 2696);
    }

    proptest! {
        #[test]
        fn accepted_values_stay_in_the_offer(index in 0u32..3, value in any::<u64>(),
                                             allowed in any::<u64>()) {
            if xsetbv_ok(index, value, allowed) {
                prop_assert_eq!(index, 0);
                prop_assert_eq!(value & !allowed, 0);
                prop_assert!(value & X87 != 0);
            }
        }
    }
}
