//! I/O ports a unikernel qube may own: the range type the manifest and the boot info carry,
//! the limit on how many there are, and the ports no qube may ever own ([`RESERVED`]), which
//! the system-description compiler refuses and the hypervisor refuses again at boot.
//!
//! A granted port is passed through: the qube's IN and OUT reach the hardware without a VM
//! exit. Every other port still traps (a unikernel touching one is stopped).

/// An inclusive range of I/O ports, `first..=last` (a single port has `first == last`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive), at least `first`.
    pub last: u16,
}

/// Most port ranges one system may grant (all qubes together), and so one qube.
pub const MAX_PORT_RANGES: usize = 16;

impl PortRange {
    /// The range `first..=last`, if `first <= last`.
    pub const fn new(first: u16, last: u16) -> Option<PortRange> {
        if first <= last {
            Some(PortRange { first, last })
        } else {
            None
        }
    }

    /// One port.
    pub const fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// Whether `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// Whether the two ranges share a port.
    pub const fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// Whether an access of `width` bytes at `port` (it touches `port..port + width`) stays
    /// inside the ranges: what the CPU checks, byte by byte, before it lets the access
    /// through without an exit. An access that would wrap past 0xFFFF is never inside.
    pub fn covers(ranges: &[PortRange], port: u16, width: u16) -> bool {
        width > 0
            && (0..width).all(|i| {
                port.checked_add(i)
                    .is_some_and(|p| ranges.iter().any(|r| r.contains(p)))
            })
    }
}

impl core::fmt::Display for PortRange {
    /// `0x60`, or `0x60-0x64` for several ports (the system description's syntax).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.first == self.last {
            write!(f, "{:#x}", self.first)
        } else {
            write!(f, "{:#x}-{:#x}", self.first, self.last)
        }
    }
}

/// Ports no qube may own, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// The ports.
    pub ports: PortRange,
    /// What they are and why a qube may not have them.
    pub what: &'static str,
}

const fn reserved(first: u16, last: u16, what: &'static str) -> Reserved {
    Reserved {
        ports: PortRange { first, last },
        what,
    }
}

/// The last port of the register blocks a Linux qube's channel devices have.
const CHANNEL_IO_LAST: u16 = crate::guest_pci::IO_BASE
    + crate::guest_pci::IO_STRIDE * crate::channel::MAX_CHANNELS_PER_QUBE as u16
    - 1;

/// Ports no qube may own, in port order: those the hypervisor drives itself, those that
/// control the whole machine (reset, power, interrupts, DMA, every PCI device, the firmware's
/// SMM), and those the guest platform of Linux qubes emulates (a port means one thing on a
/// machine). The host's ACPI power-management block is where its FADT says; only QEMU q35's
/// (0x600) is listed.
pub const RESERVED: &[Reserved] = &[
    reserved(
        0x0000,
        0x001F,
        "the ISA DMA controller (it can write any memory below 16 MiB)",
    ),
    reserved(0x0020, 0x0021, "the master PIC (the hypervisor masks it)"),
    reserved(
        0x0040,
        0x0043,
        "the PIT (the hypervisor calibrates its clock with it)",
    ),
    reserved(
        0x0061,
        0x0061,
        "the PIT gate and NMI control (the hypervisor's clock calibration)",
    ),
    reserved(
        0x0070,
        0x0073,
        "the CMOS clock and NVRAM (the hypervisor reads the time; 0x70 masks NMIs)",
    ),
    reserved(
        0x0080,
        0x008F,
        "the ISA DMA page registers and the POST port",
    ),
    reserved(0x0092, 0x0092, "system control port A (fast A20 and reset)"),
    reserved(0x00A0, 0x00A1, "the slave PIC (the hypervisor masks it)"),
    reserved(
        0x00B2,
        0x00B3,
        "the APM/SMI command port (a write enters the firmware's SMM)",
    ),
    reserved(0x00C0, 0x00DF, "the second ISA DMA controller"),
    reserved(
        0x03F8,
        0x03FF,
        "COM1, the hypervisor's console (and a Linux qube's emulated UART)",
    ),
    reserved(0x04D0, 0x04D1, "the PICs' edge/level control"),
    reserved(
        0x0600,
        0x067F,
        "the ACPI power-management block (QEMU q35; a write can power off; a Linux qube's emulated PM1 ports)",
    ),
    reserved(
        0x0CF8,
        0x0CFF,
        "PCI configuration (every device) and reset control (0xcf9)",
    ),
    reserved(
        crate::guest_pci::IO_BASE,
        CHANNEL_IO_LAST,
        "the channel-device registers a Linux qube's guest platform emulates",
    ),
];

/// The first reserved block `range` touches, if any.
pub fn reserved_in(range: &PortRange) -> Option<&'static Reserved> {
    RESERVED.iter().find(|r| r.ports.overlaps(range))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn ranges() {
        let r = PortRange::new(0x60, 0x64).unwrap();
        assert!(r.contains(0x60) && r.contains(0x64) && !r.contains(0x65));
        assert_eq!(PortRange::new(2, 1), None);
        assert!(r.overlaps(&PortRange::single(0x64)));
        assert!(!r.overlaps(&PortRange::single(0x65)));
        assert_eq!(std::format!("{r}"), "0x60-0x64");
        assert_eq!(std::format!("{}", PortRange::single(0x60)), "0x60");
    }

    #[test]
    fn covers_checks_every_byte() {
        let g = [PortRange::single(0x60), PortRange::single(0x64)];
        assert!(PortRange::covers(&g, 0x60, 1));
        assert!(!PortRange::covers(&g, 0x60, 2), "0x61 is not granted");
        assert!(!PortRange::covers(&g, 0x63, 2));
        assert!(!PortRange::covers(&g, 0x64, 0));
        let top = [PortRange::new(0xFFFE, 0xFFFF).unwrap()];
        assert!(PortRange::covers(&top, 0xFFFE, 2));
        assert!(!PortRange::covers(&top, 0xFFFF, 2), "wraps");
    }

    #[test]
    fn reserved_list_is_sorted_disjoint_and_names_what_the_hypervisor_uses() {
        for w in RESERVED.windows(2) {
            assert!(w[0].ports.last < w[1].ports.first, "{:?}", w);
        }
        for port in [
            0x3F8, 0x3FF, 0x20, 0x21, 0xA1, 0x40, 0x43, 0x61, 0x70, 0x71, 0xCF8, 0xCF9,
        ] {
            assert!(reserved_in(&PortRange::single(port)).is_some(), "{port:#x}");
        }
        assert_eq!(CHANNEL_IO_LAST, 0xC07F);
        for free in [0x60, 0x64, 0x2F8, 0x3C0] {
            assert!(reserved_in(&PortRange::single(free)).is_none(), "{free:#x}");
        }
        assert!(
            reserved_in(&PortRange::new(0x60, 0x64).unwrap()).is_some(),
            "0x61"
        );
    }
}
