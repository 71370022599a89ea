//! The few ACPI tables the hypervisor reads: the RSDP, the RSDT/XSDT, the MCFG (where PCI
//! configuration space is: ECAM), the DMAR (where the Intel VT-d remapping units are) and the
//! MADT (which processors there are: [`madt()`]).
//!
//! Tables are read through [`PhysRead`], and every length, count and checksum is checked
//! before use, so firmware with broken tables gives an [`AcpiError`], never a panic.

use crate::bootinfo::PhysRead;
use crate::collections::{ArrayVec, BoundedVec as Vec};

mod madt;
pub use madt::{CpuEntry, MAX_CPUS, Madt, madt};

/// Most tables listed in the RSDT/XSDT that are looked at.
pub const MAX_TABLES: usize = 64;
/// Most ECAM ranges kept from the MCFG.
pub const MAX_ECAM: usize = 4;
/// Most DMA remapping units kept from the DMAR.
pub const MAX_DRHD: usize = 8;
/// Largest table accepted (a sanity bound on the length field).
const MAX_TABLE_LEN: u32 = 1 << 20;

/// Why ACPI tables could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP was found.
    NoRsdp,
    /// A table could not be read (outside readable memory).
    Unreadable(u64),
    /// A table's checksum is wrong.
    Checksum([u8; 4]),
    /// A table's length or an entry's length is impossible.
    Length([u8; 4]),
    /// The table at the address given is not the one asked for (its signature is shown).
    Signature([u8; 4]),
}

/// The system description tables found from the RSDP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    /// Signature and physical address of every table the RSDT/XSDT lists.
    pub tables: ArrayVec<([u8; 4], u64), MAX_TABLES>,
}

impl Tables {
    /// The address of the first table with signature `sig`.
    pub fn find(&self, sig: &[u8; 4]) -> Option<u64> {
        self.tables.iter().find(|(s, _)| s == sig).map(|(_, a)| *a)
    }
}

/// Looks for the RSDP in the BIOS areas (the first KiB of the EBDA and 0xE0000..0x100000).
pub fn scan_rsdp(mem: &impl PhysRead) -> Option<u64> {
    let ebda = mem
        .read_array::<2>(0x40e)
        .map(|b| u64::from(u16::from_le_bytes(b)) << 4);
    let areas = [
        ebda.filter(|e| *e >= 0x8_0000).map(|e| (e, e + 1024)),
        Some((0xe_0000, 0x10_0000)),
    ];
    for (start, end) in areas.into_iter().flatten() {
        let mut at = start;
        while at + 20 <= end {
            if mem.read_array::<8>(at) == Some(*b"RSD PTR ")
                && mem.read_array::<20>(at).is_some_and(|b| sum(&b) == 0)
            {
                return Some(at);
            }
            at += 16;
        }
    }
    None
}

/// Reads the RSDP at `rsdp` and lists the tables of its XSDT (revision 2+) or RSDT.
pub fn tables(mem: &impl PhysRead, rsdp: u64) -> Result<Tables, AcpiError> {
    let head = mem
        .read_array::<36>(rsdp)
        .ok_or(AcpiError::Unreadable(rsdp))?;
    if &head[..8] != b"RSD PTR " || sum(&head[..20]) != 0 {
        return Err(AcpiError::Checksum(*b"RSDP"));
    }
    let revision = head[15];
    let (root, entry_len) = if revision >= 2 && sum(&head) == 0 {
        (
            u64::from_le_bytes(head[24..32].try_into().unwrap_or([0; 8])),
            8,
        )
    } else {
        (
            u64::from(u32::from_le_bytes(
                head[16..20].try_into().unwrap_or([0; 4]),
            )),
            4,
        )
    };
    let len = checked_table(mem, root)?;
    let mut out = Tables::default();
    let mut at = root + 36;
    while at + entry_len <= root + u64::from(len) && !out.tables.is_full() {
        let addr = if entry_len == 8 {
            mem.u64(at)
        } else {
            mem.u32(at).map(u64::from)
        }
        .ok_or(AcpiError::Unreadable(at))?;
        if let Some(sig) = mem.read_array::<4>(addr) {
            let _ = out.tables.push((sig, addr));
        }
        at += entry_len;
    }
    Ok(out)
}

/// Checks the header and checksum of the table at `addr`; returns its length.
fn checked_table(mem: &impl PhysRead, addr: u64) -> Result<u32, AcpiError> {
    let head = mem
        .read_array::<36>(addr)
        .ok_or(AcpiError::Unreadable(addr))?;
    let sig: [u8; 4] = head[..4].try_into().unwrap_or([0; 4]);
    let len = u32::from_le_bytes(head[4..8].try_into().unwrap_or([0; 4]));
    if !(36..=MAX_TABLE_LEN).contains(&len) {
        return Err(AcpiError::Length(sig));
    }
    let mut s = 0u8;
    let mut chunk = [0u8; 256];
    let mut off = 0u64;
    while off < u64::from(len) {
        let n = (u64::from(len) - off).min(256) as usize;
        if !mem.read(addr + off, &mut chunk[..n]) {
            return Err(AcpiError::Unreadable(addr + off));
        }
        s = chunk[..n].iter().fold(s, |a, b| a.wrapping_add(*b));
        off += n as u64;
    }
    if s != 0 {
        return Err(AcpiError::Checksum(sig));
    }
    Ok(len)
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
}

/// One ECAM range of the MCFG.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ecam {
    /// Physical address of bus 0's configuration space.
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// Parses the MCFG at `addr`.
pub fn mcfg(mem: &impl PhysRead, addr: u64) -> Result<ArrayVec<Ecam, MAX_ECAM>, AcpiError> {
    let len = u64::from(checked_table(mem, addr)?);
    let mut out = ArrayVec::new();
    let mut at = addr + 44;
    while at + 16 <= addr + len && !out.is_full() {
        let e = mem.read_array::<16>(at).ok_or(AcpiError::Unreadable(at))?;
        let base = u64::from_le_bytes(e[..8].try_into().unwrap_or([0; 8]));
        let ecam = Ecam {
            base,
            segment: u16::from_le_bytes([e[8], e[9]]),
            bus_start: e[10],
            bus_end: e[11],
        };
        if ecam.bus_end < ecam.bus_start || base % 4096 != 0 {
            return Err(AcpiError::Length(*b"MCFG"));
        }
        let _ = out.push(ecam);
        at += 16;
    }
    Ok(out)
}

/// Most device scopes kept per unit.
pub const MAX_SCOPES: usize = 16;

/// One DMA remapping hardware unit (DRHD) of the DMAR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drhd {
    /// Physical address of its registers.
    pub base: u64,
    /// PCI segment it serves.
    pub segment: u16,
    /// It serves every device of the segment not listed under another unit.
    pub include_all: bool,
    /// The devices it serves when not `include_all`.
    pub scopes: ArrayVec<Scope, MAX_SCOPES>,
}

/// A device scope entry: a PCI endpoint, or a bridge and everything below it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// 1: PCI endpoint, 2: PCI sub-hierarchy (a bridge); others (IOAPIC, HPET) are kept too.
    pub kind: u8,
    /// Bus of the first path element.
    pub bus: u8,
    /// Device of the first path element.
    pub device: u8,
    /// Function of the first path element.
    pub function: u8,
}

impl Drhd {
    /// Whether this unit translates DMA from the function at `bus:device.function` of its
    /// segment (a device on a root bus listed by itself or by its bridge is matched;
    /// deeper hierarchies are matched by their first path element's bus only).
    pub fn covers(&self, bus: u8, device: u8, function: u8) -> bool {
        self.include_all
            || self.scopes.iter().any(|s| {
                (s.kind == 1 || s.kind == 2)
                    && s.bus == bus
                    && s.device == device
                    && s.function == function
            })
    }
}

/// What the DMAR says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dmar {
    /// Host address width (bits of physical address DMA can reach).
    pub host_address_width: u8,
    /// The remapping units, in table order.
    pub units: Vec<Drhd, MAX_DRHD>,
}

/// Parses the DMAR at `addr`. Only DRHD structures are kept; reserved-memory (RMRR) and
/// other structures are skipped after their lengths are checked.
pub fn dmar(mem: &impl PhysRead, addr: u64) -> Result<Dmar, AcpiError> {
    let len = u64::from(checked_table(mem, addr)?);
    let haw = mem
        .read_array::<1>(addr + 36)
        .ok_or(AcpiError::Unreadable(addr))?[0];
    let mut out = Dmar {
        host_address_width: haw.saturating_add(1),
        units: Vec::new(),
    };
    let mut at = addr + 48;
    while at + 4 <= addr + len {
        let h = mem.read_array::<4>(at).ok_or(AcpiError::Unreadable(at))?;
        let kind = u16::from_le_bytes([h[0], h[1]]);
        let slen = u64::from(u16::from_le_bytes([h[2], h[3]]));
        if slen < 4 || at + slen > addr + len {
            return Err(AcpiError::Length(*b"DMAR"));
        }
        if kind == 0 {
            if slen < 16 {
                return Err(AcpiError::Length(*b"DMAR"));
            }
            let d = mem.read_array::<16>(at).ok_or(AcpiError::Unreadable(at))?;
            let mut unit = Drhd {
                base: u64::from_le_bytes(d[8..16].try_into().unwrap_or([0; 8])),
                segment: u16::from_le_bytes([d[6], d[7]]),
                include_all: d[4] & 1 != 0,
                scopes: ArrayVec::new(),
            };
            let mut s = at + 16;
            while s + 6 <= at + slen {
                let h = mem.read_array::<8>(s).ok_or(AcpiError::Unreadable(s))?;
                let len = u64::from(h[1]);
                if len < 6 || s + len > at + slen {
                    return Err(AcpiError::Length(*b"DMAR"));
                }
                if len >= 8 {
                    let _ = unit.scopes.push(Scope {
                        kind: h[0],
                        bus: h[5],
                        device: h[6],
                        function: h[7],
                    });
                }
                s += len;
            }
            let _ = out.units.push(unit);
        }
        at += slen;
    }
    Ok(out)
}

trait ReadArray {
    fn read_array<const N: usize>(&self, addr: u64) -> Option<[u8; N]>;
}

impl<T: PhysRead + ?Sized> ReadArray for T {
    fn read_array<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        self.read(addr, &mut b).then_some(b)
    }
}

#[cfg(test)]
mod madt_tests;
#[cfg(test)]
mod tests;
