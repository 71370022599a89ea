//! I/O ports passed through to qubes: the checks the hypervisor applies to the manifest's
//! grants before it believes them, and the permission bitmaps the backends hand the CPU.
//!
//! Both backends use one bit per port, set = the access exits: AMD's I/O permission map
//! (12 KiB: ports 0..=0xFFFF, then bits the CPU reads for accesses that run past 0xFFFF,
//! which stay set) and Intel's I/O bitmaps A (ports 0..=0x7FFF) and B (0x8000..=0xFFFF),
//! 4 KiB each; side by side, A then B, they are the first 8 KiB of the AMD layout. A
//! multi-byte access exits unless the bits of every port it touches are clear.

use crate::collections::{ArrayVec, BoundedString};
use bulkhead_abi::boot_info::NAME_MAX;
use bulkhead_abi::io_ports::{MAX_PORT_RANGES, PortRange, reserved_in};
use bulkhead_abi::manifest::{Manifest, QubeKind};

/// Bytes of an SVM I/O permission map.
pub const SVM_IOPM_LEN: usize = 3 * 4096;
/// Bytes of VMX's I/O bitmaps A and B together.
pub const VMX_IO_BITMAPS_LEN: usize = 2 * 4096;

/// The ports of one qube.
pub type Ports = ArrayVec<PortRange, MAX_PORT_RANGES>;

/// Why the manifest's port grants are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// A port no qube may own ([`bulkhead_abi::io_ports::RESERVED`]).
    Reserved {
        /// The qube it was given to.
        qube: BoundedString<NAME_MAX>,
        /// The grant.
        ports: PortRange,
        /// What the reserved ports are.
        what: &'static str,
    },
    /// A port given twice (to two qubes, or twice to one).
    Twice {
        /// The qube of the later grant.
        qube: BoundedString<NAME_MAX>,
        /// The later grant.
        ports: PortRange,
        /// The qube of the earlier grant.
        other: BoundedString<NAME_MAX>,
    },
    /// Ports given to a Linux qube (its ports are its guest platform's).
    Linux {
        /// The qube.
        qube: BoundedString<NAME_MAX>,
    },
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ports = |r: &PortRange| if r.first == r.last { "port" } else { "ports" };
        match self {
            GrantError::Reserved {
                qube,
                ports: r,
                what,
            } => write!(
                f,
                "qube {qube} is given I/O {} {r}, which no qube may own: {what}",
                ports(r)
            ),
            GrantError::Twice {
                qube,
                ports: r,
                other,
            } => write!(
                f,
                "qube {qube} is given I/O {} {r}, which qube {other} has too",
                ports(r)
            ),
            GrantError::Linux { qube } => {
                write!(f, "qube {qube} is a Linux qube, which cannot own I/O ports")
            }
        }
    }
}

/// Checks every grant of the manifest: to a unikernel, no reserved port, no port twice.
pub fn check(m: &Manifest) -> Result<(), GrantError> {
    let name = |q: u8| {
        m.qubes
            .get(usize::from(q))
            .map(|s| s.name)
            .unwrap_or_default()
    };
    for (i, g) in m.ports.iter().enumerate() {
        let qube = name(g.qube);
        match m.qubes.get(usize::from(g.qube)).map(|q| q.kind) {
            Some(QubeKind::Unikernel) => {}
            // `Manifest::decode` refuses a grant to a qube that is not there.
            _ => return Err(GrantError::Linux { qube }),
        }
        if let Some(r) = reserved_in(&g.ports) {
            return Err(GrantError::Reserved {
                qube,
                ports: g.ports,
                what: r.what,
            });
        }
        if let Some(earlier) = m.ports.iter().take(i).find(|e| e.ports.overlaps(&g.ports)) {
            return Err(GrantError::Twice {
                qube,
                ports: g.ports,
                other: name(earlier.qube),
            });
        }
    }
    Ok(())
}

/// The ports of qube `qube` (manifest index), in manifest order.
pub fn of_qube(m: &Manifest, qube: usize) -> Ports {
    // At most MAX_PORT_RANGES grants fit a manifest, so all of one qube's fit.
    Ports::try_from_iter(
        m.ports
            .iter()
            .filter(|g| usize::from(g.qube) == qube)
            .map(|g| g.ports),
    )
    .unwrap_or_default()
}

/// Writes a permission bitmap (either layout: [`SVM_IOPM_LEN`] or [`VMX_IO_BITMAPS_LEN`]
/// bytes) in which exactly the ports of `granted` pass through and every other bit is set.
pub fn write_bitmap(bitmap: &mut [u8], granted: &[PortRange]) {
    bitmap.fill(0xFF);
    for r in granted {
        for port in r.first..=r.last {
            if let Some(byte) = bitmap.get_mut(usize::from(port / 8)) {
                *byte &= !(1 << (port % 8));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use bulkhead_abi::bounded::BoundedVec;
    use bulkhead_abi::io_ports::RESERVED;
    use bulkhead_abi::label::Label;
    use bulkhead_abi::manifest::{
        IommuPolicy, MANIFEST_VERSION, PortSpec, QubeSpec, RestartPolicy, StartPolicy,
    };
    use proptest::prelude::*;

    fn qube(name: &str, kind: QubeKind) -> QubeSpec {
        QubeSpec {
            name: BoundedString::try_from(name).unwrap(),
            kind,
            image: 1,
            memory_mib: 4,
            label: Label::Red,
            restart: RestartPolicy::Never,
            args: BoundedString::new(),
            config: None,
            start: StartPolicy::AtBoot,
            framebuffer: false,
            admin: false,
            cpus: 0,
            vcpus: 1,
        }
    }

    fn manifest(grants: &[(u8, u16, u16)]) -> Manifest {
        let linux = QubeKind::Linux {
            initrd: 2,
            cmdline: 3,
        };
        Manifest {
            version: MANIFEST_VERSION,
            system: BoundedString::try_from("t").unwrap(),
            qubes: BoundedVec::from_slice(&[
                qube("gui", QubeKind::Unikernel),
                qube("usb", QubeKind::Unikernel),
                qube("work", linux),
            ])
            .unwrap(),
            channels: BoundedVec::new(),
            devices: BoundedVec::new(),
            iommu: IommuPolicy::Required,
            ports: BoundedVec::try_from_iter(grants.iter().map(|&(qube, first, last)| PortSpec {
                qube,
                ports: PortRange { first, last },
            }))
            .unwrap(),
        }
    }

    #[test]
    fn accepts_the_keyboard_controller_for_one_unikernel() {
        let m = manifest(&[(0, 0x60, 0x60), (0, 0x64, 0x64), (1, 0x2F8, 0x2FF)]);
        assert_eq!(check(&m), Ok(()));
        assert_eq!(
            &*of_qube(&m, 0),
            &[PortRange::single(0x60), PortRange::single(0x64)]
        );
        assert_eq!(of_qube(&m, 1).len(), 1);
        assert!(of_qube(&m, 2).is_empty());
    }

    #[test]
    fn refuses_reserved_ports_twice_given_ports_and_linux_qubes() {
        let e = check(&manifest(&[(0, 0x60, 0x64)])).unwrap_err();
        assert!(
            matches!(e, GrantError::Reserved { .. }),
            "0x61 is the PIT gate"
        );
        assert!(std::format!("{e}").contains("qube gui is given I/O ports 0x60-0x64"));
        let e = check(&manifest(&[(1, 0x3F8, 0x3F8)])).unwrap_err();
        assert!(std::format!("{e}").contains("COM1"));
        for cf9 in [0xCF9, 0xCF8] {
            assert!(check(&manifest(&[(0, cf9, cf9)])).is_err());
        }
        let e = check(&manifest(&[(0, 0x60, 0x60), (1, 0x5F, 0x60)])).unwrap_err();
        assert_eq!(
            std::format!("{e}"),
            "qube usb is given I/O ports 0x5f-0x60, which qube gui has too"
        );
        assert!(check(&manifest(&[(0, 0x60, 0x60), (0, 0x60, 0x60)])).is_err());
        let e = check(&manifest(&[(2, 0x60, 0x60)])).unwrap_err();
        assert_eq!(
            e,
            GrantError::Linux {
                qube: BoundedString::try_from("work").unwrap()
            }
        );
    }

    #[test]
    fn both_layouts_pass_exactly_the_granted_ports() {
        let granted = [PortRange::single(0x60), PortRange::single(0x64)];
        for len in [SVM_IOPM_LEN, VMX_IO_BITMAPS_LEN] {
            let mut b = std::vec![0u8; len];
            write_bitmap(&mut b, &granted);
            for port in 0..=0xFFFFu16 {
                let exits = b[usize::from(port / 8)] & (1 << (port % 8)) != 0;
                assert_eq!(exits, port != 0x60 && port != 0x64, "{port:#x}");
            }
            assert!(b[0x2000..].iter().all(|&x| x == 0xFF), "past 0xFFFF");
        }
        // Bitmap B starts at byte 0x1000: port 0x8000 is its first bit.
        let mut b = std::vec![0u8; VMX_IO_BITMAPS_LEN];
        write_bitmap(&mut b, &[PortRange::new(0x7FFF, 0x8000).unwrap()]);
        assert_eq!((b[0xFFF], b[0x1000]), (0x7F, 0xFE));
        write_bitmap(&mut b, &[PortRange::new(0xFFF8, 0xFFFF).unwrap()]);
        assert_eq!(b[0x1FFF], 0);
    }

    proptest! {
        #[test]
        fn check_agrees_with_a_model(grants in proptest::collection::vec(
            (0u8..3, any::<u16>(), 0u16..300), 0..MAX_PORT_RANGES)) {
            let grants: std::vec::Vec<(u8, u16, u16)> = grants
                .into_iter()
                .map(|(q, first, n)| (q, first, first.saturating_add(n)))
                .collect();
            let m = manifest(&grants);
            // The model: port by port.
            let mut owner = std::collections::HashMap::new();
            let mut ok = true;
            for &(q, first, last) in &grants {
                for port in first..=last {
                    let reserved = RESERVED.iter().any(|r| r.ports.contains(port));
                    ok &= q != 2 && !reserved && owner.insert(port, q).is_none();
                }
            }
            prop_assert_eq!(check(&m).is_ok(), ok);
            if ok {
                for q in 0..3usize {
                    let mut b = std::vec![0u8; SVM_IOPM_LEN];
                    write_bitmap(&mut b, &of_qube(&m, q));
                    for (&port, &o) in &owner {
                        let passes = b[usize::from(port / 8)] & (1 << (port % 8)) == 0;
                        prop_assert_eq!(passes, usize::from(o) == q);
                    }
                    let clear: u32 = b.iter().map(|x| x.count_zeros()).sum();
                    let mine = owner.values().filter(|&&o| usize::from(o) == q).count();
                    prop_assert_eq!(clear as usize, mine);
                }
            }
        }
    }
}
