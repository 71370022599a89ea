//! The virtio PCI common configuration structure (virtio 1.x, 4.1.4.3), reached directly for
//! what `virtio-drivers` 0.13 does not do: giving the queues an MSI-X vector.
//!
//! [`find_cap`] walks the device's capability list (read through the configuration-space
//! hypercalls) for the vendor-specific capability of a `cfg_type`; everything it reads is
//! the device's word, so a list that loops, points outside the standard header's capability
//! area, or describes an impossible structure ends with a [`CapError`], never a panic.
//! [`CommonCfg`] is the structure in its mapped BAR ([`Mmio`]).

use core::fmt;

use crate::mmio::Mmio;
use crate::pci::PciDevice;

/// `cfg_type` of the common configuration structure.
pub const COMMON_CFG: u8 = 1;
/// Vendor-specific capability ID (virtio's capabilities use it).
const CAP_VENDOR: u8 = 0x09;
/// Status register bit: the device has a capability list.
const STATUS_CAP_LIST: u32 = 1 << (16 + 4);
/// Configuration offset of the first capability pointer.
const CAP_POINTER: u16 = 0x34;
/// Capabilities live after the standard header and before 0x100.
const CAP_AREA: core::ops::Range<u16> = 0x40..0x100;
/// At most this many capabilities fit the area (4 bytes each, the smallest).
const MAX_CAPS: usize = (0x100 - 0x40) / 4;
/// Bytes of `virtio_pci_cap` (cap_vndr .. length).
const VIRTIO_CAP_LEN: u8 = 16;

/// `virtio_pci_common_cfg` fields this module uses (byte offsets).
const CONFIG_MSIX_VECTOR: u64 = 16;
const QUEUE_SELECT: u64 = 22;
const QUEUE_MSIX_VECTOR: u64 = 26;
/// Bytes of the structure up to and including the last field used.
const MIN_LEN: u32 = 28;
/// `VIRTIO_MSI_NO_VECTOR`: no vector (after reset, and the device's answer to a refused one).
pub const NO_VECTOR: u16 = 0xffff;

/// Where a virtio structure lies: BAR, offset into it, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapLocation {
    /// BAR index (0..=5).
    pub bar: u8,
    /// Byte offset of the structure in the BAR.
    pub offset: u32,
    /// Its length in bytes.
    pub length: u32,
}

/// Why the structure could not be found or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// A configuration read failed.
    ConfigRead,
    /// The device says it has no capability list.
    NoCapList,
    /// A capability pointer outside 0x40..0x100 (or past the area for its length).
    BadPointer(u16),
    /// The list has more entries than fit: it loops.
    Loop,
    /// No virtio capability of that `cfg_type`.
    NotFound,
    /// The capability names a BAR that does not exist or is not mapped into this qube, or a
    /// structure too short or outside it.
    BadStructure(CapLocation),
    /// The device answered `NO_VECTOR` for queue `.0`: it refused vector 0.
    VectorRefused(u16),
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::ConfigRead => f.write_str("a configuration read failed"),
            CapError::NoCapList => f.write_str("the device has no capability list"),
            CapError::BadPointer(p) => write!(f, "capability pointer {p:#x} out of range"),
            CapError::Loop => f.write_str("the capability list loops"),
            CapError::NotFound => f.write_str("no virtio common configuration capability"),
            CapError::BadStructure(l) => write!(
                f,
                "common configuration at BAR {} offset {:#x} length {:#x} is unusable",
                l.bar, l.offset, l.length
            ),
            CapError::VectorRefused(q) => write!(f, "queue {q} refused MSI-X vector 0"),
        }
    }
}

/// The first virtio capability of `cfg_type`, walking the list with `read` (a 4-byte
/// aligned configuration read).
pub fn find_cap(
    mut read: impl FnMut(u16) -> Option<u32>,
    cfg_type: u8,
) -> Result<CapLocation, CapError> {
    let mut word = |off: u16| read(off).ok_or(CapError::ConfigRead);
    if word(0x04)? & STATUS_CAP_LIST == 0 {
        return Err(CapError::NoCapList);
    }
    // The bottom two bits of a pointer are reserved (PCI 3.0, 6.7).
    let mut at = (word(CAP_POINTER)? & 0xfc) as u16;
    for _ in 0..MAX_CAPS {
        if at == 0 {
            return Err(CapError::NotFound);
        }
        if !CAP_AREA.contains(&at) {
            return Err(CapError::BadPointer(at));
        }
        let [id, next, len, ty] = word(at)?.to_le_bytes();
        if id == CAP_VENDOR && ty == cfg_type && len >= VIRTIO_CAP_LEN {
            if at + u16::from(VIRTIO_CAP_LEN) > CAP_AREA.end {
                return Err(CapError::BadPointer(at));
            }
            let bar = word(at + 4)?.to_le_bytes()[0];
            return Ok(CapLocation {
                bar,
                offset: word(at + 8)?,
                length: word(at + 12)?,
            });
        }
        at = u16::from(next & 0xfc);
    }
    Err(CapError::Loop)
}

/// The common configuration structure, mapped.
pub struct CommonCfg {
    bar: Mmio,
    base: u64,
}

impl CommonCfg {
    /// Finds the structure of `dev` (walking its capabilities) in its mapped BAR.
    pub fn of(dev: &PciDevice) -> Result<CommonCfg, CapError> {
        let loc = find_cap(|off| dev.config_read(off).ok(), COMMON_CFG)?;
        let bad = CapError::BadStructure(loc);
        if loc.bar > 5 || loc.length < MIN_LEN {
            return Err(bad);
        }
        let bar = Mmio::of_bar(dev, usize::from(loc.bar)).ok_or(bad)?;
        let end = u64::from(loc.offset) + u64::from(MIN_LEN);
        if end > bar.len() || !loc.offset.is_multiple_of(4) {
            return Err(bad);
        }
        Ok(CommonCfg {
            bar,
            base: u64::from(loc.offset),
        })
    }

    fn write16(&self, field: u64, value: u16) {
        self.bar.write16(self.base + field, value);
    }

    fn read16(&self, field: u64) -> u16 {
        self.bar.read16(self.base + field).unwrap_or(NO_VECTOR)
    }

    /// Gives queue `queue` MSI-X vector `vector` and reads back what the device kept.
    pub fn set_queue_vector(&self, queue: u16, vector: u16) -> u16 {
        self.write16(QUEUE_SELECT, queue);
        self.write16(QUEUE_MSIX_VECTOR, vector);
        self.read16(QUEUE_MSIX_VECTOR)
    }

    /// Gives configuration changes MSI-X vector `vector` and reads back what the device kept.
    pub fn set_config_vector(&self, vector: u16) -> u16 {
        self.write16(CONFIG_MSIX_VECTOR, vector);
        self.read16(CONFIG_MSIX_VECTOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 256-byte configuration space with a capability list.
    struct Space([u8; 256]);

    impl Space {
        fn new(first: u8) -> Space {
            let mut s = [0u8; 256];
            s[0x06] = 1 << 4;
            s[0x34] = first;
            Space(s)
        }
        fn cap(&mut self, at: usize, id: u8, next: u8, bytes: &[u8]) {
            self.0[at] = id;
            self.0[at + 1] = next;
            self.0[at + 2..at + 2 + bytes.len()].copy_from_slice(bytes);
        }
        fn virtio(&mut self, at: usize, next: u8, ty: u8, bar: u8, offset: u32, length: u32) {
            let mut b = [0u8; 14];
            b[0] = 16;
            b[1] = ty;
            b[2] = bar;
            b[6..10].copy_from_slice(&offset.to_le_bytes());
            b[10..14].copy_from_slice(&length.to_le_bytes());
            self.cap(at, CAP_VENDOR, next, &b);
        }
        fn read(&self, off: u16) -> Option<u32> {
            let o = usize::from(off);
            assert!(off.is_multiple_of(4), "unaligned read {off:#x}");
            let b = self.0.get(o..o + 4)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
    }

    #[test]
    fn finds_the_common_configuration_among_others() {
        let mut s = Space::new(0x40);
        s.cap(0x40, 0x11, 0x84, &[0; 10]); // MSI-X
        s.virtio(0x84, 0x70, 3, 4, 0x1000, 0x1000); // ISR
        s.virtio(0x70, 0x50, COMMON_CFG, 4, 0, 0x38);
        s.virtio(0x50, 0, COMMON_CFG, 2, 0x40, 0x38); // a second one: not used
        let loc = find_cap(|o| s.read(o), COMMON_CFG).unwrap();
        assert_eq!(
            loc,
            CapLocation {
                bar: 4,
                offset: 0,
                length: 0x38
            }
        );
        assert_eq!(find_cap(|o| s.read(o), 2), Err(CapError::NotFound));
    }

    #[test]
    fn garbage_lists_end_with_an_error() {
        let mut s = Space::new(0x40);
        s.cap(0x40, 0x05, 0x48, &[0; 2]);
        s.cap(0x48, 0x05, 0x40, &[0; 2]);
        assert_eq!(find_cap(|o| s.read(o), COMMON_CFG), Err(CapError::Loop));
        let mut s = Space::new(0x40);
        s.cap(0x40, 0x05, 0x40, &[0; 2]);
        assert_eq!(find_cap(|o| s.read(o), COMMON_CFG), Err(CapError::Loop));
        let s = Space::new(0x10);
        assert_eq!(
            find_cap(|o| s.read(o), COMMON_CFG),
            Err(CapError::BadPointer(0x10))
        );
        let mut s = Space::new(0xf8);
        s.cap(0xf8, CAP_VENDOR, 0, &[16, COMMON_CFG]); // would run past 0x100
        assert_eq!(
            find_cap(|o| s.read(o), COMMON_CFG),
            Err(CapError::BadPointer(0xf8))
        );
        let mut s = Space::new(0x40);
        s.0[0x06] = 0;
        assert_eq!(
            find_cap(|o| s.read(o), COMMON_CFG),
            Err(CapError::NoCapList)
        );
        assert_eq!(find_cap(|_| None, COMMON_CFG), Err(CapError::ConfigRead));
        // The reserved low bits of pointers are masked, not followed.
        let mut s = Space::new(0x43);
        s.virtio(0x40, 0, COMMON_CFG, 1, 8, 0x38);
        assert_eq!(find_cap(|o| s.read(o), COMMON_CFG).unwrap().bar, 1);
    }

    #[test]
    fn every_single_byte_corruption_terminates() {
        let mut good = Space::new(0x40);
        good.virtio(0x40, 0x60, 2, 4, 0x3000, 0x1000);
        good.virtio(0x60, 0, COMMON_CFG, 4, 0, 0x38);
        for at in 0..256 {
            for v in [0x00, 0x03, 0x40, 0x41, 0x60, 0xfc, 0xff] {
                let mut s = Space(good.0);
                s.0[at] = v;
                let _ = find_cap(|o| s.read(o), COMMON_CFG);
            }
        }
    }
}
