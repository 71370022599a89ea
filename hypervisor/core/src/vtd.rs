//! Intel VT-d (DMA remapping) data formats: capability registers, root and context
//! entries, second-level page-table entries and fault records. The hypervisor's driver
//! (`hypervisor/src/devices/vtd.rs`) programs the hardware with what these functions build.
//!
//! Each qube with devices gets one domain whose second-level tables map I/O virtual address
//! `p` to the qube's memory at guest-physical `p`, for exactly `[0, memory size)`. Devices
//! that belong to no qube have no context entry, so all their DMA faults.
//!
//! Table updates follow the specification's rules (VT-d 3.x, 6.1 and 6.5): a 128-bit root or
//! context entry is stored as two 64-bit halves, the high half first and the low half, which
//! holds the present bit, last ([`entry_stores`]); a unit whose page walks do not snoop the
//! CPU caches (`ECAP.C = 0`, [`Capabilities::coherent`]) reads memory, so every cache line a
//! change touched is flushed ([`cache_lines`]) before the unit is told to drop cached copies;
//! a unit with `CAP.RWBF` also needs its write buffer flushed.

use crate::paging::{EntryFormat, Perm};

/// Register offsets (from the unit's base).
pub mod reg {
    /// Version.
    pub const VER: u64 = 0x00;
    /// Capabilities.
    pub const CAP: u64 = 0x08;
    /// Extended capabilities.
    pub const ECAP: u64 = 0x10;
    /// Global command.
    pub const GCMD: u64 = 0x18;
    /// Global status.
    pub const GSTS: u64 = 0x1c;
    /// Root table address.
    pub const RTADDR: u64 = 0x20;
    /// Context command.
    pub const CCMD: u64 = 0x28;
    /// Fault status.
    pub const FSTS: u64 = 0x34;
    /// Fault event control.
    pub const FECTL: u64 = 0x38;
}

/// Global command / status bits.
pub mod gcmd {
    /// Translation enable.
    pub const TE: u32 = 1 << 31;
    /// Set root table pointer.
    pub const SRTP: u32 = 1 << 30;
    /// Write buffer flush (command); in the status register: the flush is still under way.
    pub const WBF: u32 = 1 << 27;
    /// Status bits that are one-shot commands, not states (cleared when re-writing GCMD).
    pub const ONE_SHOT: u32 = (1 << 30) | (1 << 29) | (1 << 27) | (1 << 24);
}

/// `CCMD`: invalidate the whole context cache.
pub const CCMD_GLOBAL_INVALIDATE: u64 = (1 << 63) | (1 << 61);
/// IOTLB invalidate register: invalidate everything, draining reads and writes.
pub const IOTLB_GLOBAL_INVALIDATE: u64 = (1 << 63) | (1 << 60) | (1 << 49) | (1 << 48);

/// What a unit can do, decoded from `CAP` and `ECAP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Supported second-level page-table depths (bit 1: 3 levels, bit 2: 4 levels).
    pub sagaw: u8,
    /// Maximum guest address width in bits.
    pub mgaw: u8,
    /// 2 MiB second-level pages are supported.
    pub large_pages: bool,
    /// Caching mode (domain 0 is reserved).
    pub caching_mode: bool,
    /// Number of domain IDs.
    pub domains: u32,
    /// Offset of the first fault recording register.
    pub fault_offset: u64,
    /// Number of fault recording registers.
    pub fault_records: u32,
    /// Offset of the IOTLB registers (the invalidate register is at +8).
    pub iotlb_offset: u64,
    /// `ECAP.C`: the unit's table walks snoop the CPU caches. Without it the unit reads
    /// memory directly, so table writes must be flushed from the caches (CLFLUSH).
    pub coherent: bool,
    /// `CAP.RWBF`: the unit buffers writes internally and must be told to flush them after
    /// its tables change.
    pub write_buffer_flush: bool,
}

impl Capabilities {
    /// Decodes the two capability registers.
    pub fn decode(cap: u64, ecap: u64) -> Capabilities {
        Capabilities {
            sagaw: ((cap >> 8) & 0x1f) as u8,
            mgaw: ((cap >> 16) & 0x3f) as u8 + 1,
            large_pages: (cap >> 34) & 1 == 1,
            caching_mode: (cap >> 7) & 1 == 1,
            domains: 1 << (4 + 2 * (cap & 7).min(6)),
            fault_offset: ((cap >> 24) & 0x3ff) * 16,
            fault_records: ((cap >> 40) & 0xff) as u32 + 1,
            iotlb_offset: ((ecap >> 8) & 0x3ff) * 16,
            coherent: ecap & 1 == 1,
            write_buffer_flush: (cap >> 4) & 1 == 1,
        }
    }

    /// Page-table depth to use: 4 levels if supported, else 3 (39-bit), else none.
    pub fn levels(&self) -> Option<u8> {
        if self.sagaw & 0b100 != 0 {
            Some(4)
        } else if self.sagaw & 0b010 != 0 {
            Some(3)
        } else {
            None
        }
    }

    /// The first usable domain ID.
    pub fn first_domain(&self) -> u16 {
        u16::from(self.caching_mode)
    }
}

/// A root-table entry pointing to the context table of one bus.
pub fn root_entry(context_table: u64) -> [u64; 2] {
    [(context_table & !0xfff) | 1, 0]
}

/// A context entry: translate untranslated requests through second-level tables rooted at
/// `table` with `levels` levels, in domain `domain`. Faults are recorded.
pub fn context_entry(table: u64, levels: u8, domain: u16) -> [u64; 2] {
    let aw = u64::from(levels.saturating_sub(2)) & 7;
    [(table & !0xfff) | 1, aw | u64::from(domain) << 8]
}

/// Bytes in a root or context entry.
pub const ENTRY_BYTES: u64 = 16;

/// True when a root or context entry is present (bit 0 of its low half).
pub fn entry_present(entry: [u64; 2]) -> bool {
    entry[0] & 1 == 1
}

/// The two 64-bit stores that write root or context `entry` into slot `index` of the table
/// page at physical `table`, as `(physical address, value)` in the order they must be made:
/// the high half first, then the low half with the present bit, so the unit never sees a
/// present entry whose other half is stale. `None` if `index` is outside the page (256
/// entries).
pub fn entry_stores(table: u64, index: usize, entry: [u64; 2]) -> Option<[(u64, u64); 2]> {
    if index >= 256 || !table.is_multiple_of(4096) {
        return None;
    }
    let at = table + index as u64 * ENTRY_BYTES;
    Some([(at + 8, entry[1]), (at, entry[0])])
}

/// The cache lines (their `line`-aligned addresses, ascending) that hold any byte of
/// `[start, start + len)`: what must be flushed after writing that range for a unit without
/// coherent page walks. `line` is the CLFLUSH line size (CPUID 1, EBX[15:8] * 8); a size that
/// is not a power of two is treated as 64.
pub fn cache_lines(start: u64, len: u64, line: u64) -> impl Iterator<Item = u64> {
    let line = if line.is_power_of_two() { line } else { 64 };
    let first = start & !(line - 1);
    let end = if len == 0 {
        first
    } else {
        start.saturating_add(len)
    };
    (first..end).step_by(line as usize)
}

/// Second-level page-table entries: read and write bits, no execute, 2 MiB leaves only when
/// the unit supports them.
#[derive(Clone, Copy, Debug)]
pub struct VtdFormat {
    /// 2 MiB leaves allowed.
    pub large_pages: bool,
}

impl EntryFormat for VtdFormat {
    fn table(&self, pa: u64) -> u64 {
        pa | 0b11
    }
    fn leaf(&self, pa: u64, large: bool, perm: Perm) -> u64 {
        let mut e = pa | 1;
        if perm.write {
            e |= 1 << 1;
        }
        if large {
            e |= 1 << 7;
        }
        e
    }
    fn present(&self, e: u64) -> bool {
        e & 0b11 != 0
    }
    fn large(&self, e: u64) -> bool {
        e & (1 << 7) != 0
    }
    fn large_pages(&self) -> bool {
        self.large_pages
    }
}

/// One recorded DMA fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Requester: `bus << 8 | device << 3 | function`.
    pub source: u16,
    /// Fault reason code.
    pub reason: u8,
    /// The page the device tried to reach (I/O virtual address).
    pub address: u64,
    /// A write (else a read).
    pub write: bool,
}

impl Fault {
    /// Decodes a 128-bit fault recording register; `None` if its F bit is clear.
    pub fn decode(lo: u64, hi: u64) -> Option<Fault> {
        if hi >> 63 == 0 {
            return None;
        }
        Some(Fault {
            source: hi as u16,
            reason: (hi >> 32) as u8,
            address: lo & !0xfff,
            write: (hi >> 62) & 1 == 0,
        })
    }

    /// What the reason code means.
    pub fn reason_text(&self) -> &'static str {
        match self.reason {
            0x1 => "no root entry for the bus",
            0x2 => "device assigned to no qube (no context entry)",
            0x3 => "invalid context entry",
            0x4 => "address beyond the domain's width",
            0x5 => "write to a page the domain does not map writable (outside the qube's memory)",
            0x6 => "read from a page the domain does not map (outside the qube's memory)",
            0x7 => "invalid paging entry",
            0x20 => "interrupt message with reserved bits set",
            0x21 => "interrupt message naming an entry beyond the remapping table",
            0x22 => "interrupt message naming an entry no device was given",
            0x23 => "remapping table unreadable",
            0x24 => "remapping entry with reserved bits set",
            0x25 => "compatibility-format interrupt message (blocked)",
            0x26 => "interrupt message naming another device's entry",
            _ => "other remapping fault",
        }
    }

    /// An interrupt remapping fault (reasons 0x20-0x26): a message, not a DMA access; its
    /// entry index is [`Fault::interrupt_index`].
    pub fn is_interrupt(&self) -> bool {
        (0x20..=0x26).contains(&self.reason)
    }

    /// The remapping entry an interrupt fault's message named (FI bits 63:48; meaningless
    /// for a DMA fault).
    pub fn interrupt_index(&self) -> u16 {
        (self.address >> 48) as u16
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::paging::Tables;
    use proptest::prelude::*;

    #[test]
    fn decodes_qemu_like_capabilities() {
        // QEMU's intel-iommu (aw-bits=39): SAGAW 3-level, MGAW 39, 8 fault records at 0x220.
        let cap = (0x2u64 << 8) | (38 << 16) | (0x22 << 24) | (7 << 40) | (1 << 34) | 2;
        let ecap = 0x50 << 8;
        let c = Capabilities::decode(cap, ecap);
        assert_eq!(c.levels(), Some(3));
        assert_eq!(c.mgaw, 39);
        assert!(c.large_pages);
        assert_eq!(c.fault_offset, 0x220);
        assert_eq!(c.fault_records, 8);
        assert_eq!(c.iotlb_offset, 0x500);
        assert_eq!(c.domains, 256);
        assert!(!c.coherent, "QEMU's unit does not snoop: ECAP.C = 0");
        assert!(!c.write_buffer_flush);
        let c = Capabilities::decode(cap | 1 << 4, ecap | 1);
        assert!(c.coherent && c.write_buffer_flush);
        assert_eq!(Capabilities::decode(4 << 8, 0).levels(), Some(4));
        assert_eq!(Capabilities::decode(0, 0).levels(), None);
    }

    #[test]
    fn entries_encode_as_the_spec_says() {
        assert_eq!(root_entry(0x5000), [0x5001, 0]);
        assert_eq!(context_entry(0x6000, 3, 7), [0x6001, 1 | 7 << 8]);
        assert_eq!(context_entry(0x6000, 4, 1), [0x6001, 2 | 1 << 8]);
    }

    #[test]
    fn entries_are_stored_high_half_first_present_bit_last() {
        let e = context_entry(0x6000, 3, 7);
        let [first, last] = entry_stores(0x5000, 3, e).unwrap();
        assert_eq!(first, (0x5038, e[1]), "the high half goes first");
        assert_eq!(
            last,
            (0x5030, e[0]),
            "the low half, with the present bit, goes last"
        );
        assert!(entry_present([last.1, first.1]));
        assert_eq!(entry_stores(0x5000, 255, e).unwrap()[1].0, 0x5ff0);
        assert_eq!(entry_stores(0x5000, 256, e), None);
        assert_eq!(entry_stores(0x5008, 0, e), None);
        assert!(entry_present(root_entry(0x5000)));
        assert!(!entry_present([0, u64::MAX]));
    }

    #[test]
    fn cache_lines_cover_exactly_the_written_bytes() {
        let lines = |s, l, n| cache_lines(s, l, n).collect::<std::vec::Vec<u64>>();
        // One 16-byte entry never straddles a line.
        assert_eq!(lines(0x5030, 16, 64), [0x5000]);
        assert_eq!(lines(0x5ff0, 16, 64), [0x5fc0]);
        // A range straddling lines, unaligned at both ends.
        assert_eq!(lines(0x503c, 8, 64), [0x5000, 0x5040]);
        assert_eq!(lines(0x5000, 0x81, 64), [0x5000, 0x5040, 0x5080]);
        // A page is 64 lines of 64 bytes, 32 of 128.
        assert_eq!(lines(0x7000, 4096, 64).len(), 64);
        assert_eq!(lines(0x7000, 4096, 128).len(), 32);
        // Nothing written, nothing flushed; a nonsense line size counts as 64.
        assert!(lines(0x5000, 0, 64).is_empty());
        assert_eq!(lines(0x5000, 4096, 0).len(), 64);
        assert_eq!(lines(0x5000, 4096, 48).len(), 64);
        // The top of the address space does not wrap.
        assert_eq!(lines(u64::MAX - 15, 16, 64), [!63]);
    }

    proptest! {
        #[test]
        fn cache_lines_are_the_lines_the_range_touches(
            start in 0u64..1 << 40,
            len in 0u64..20_000,
            shift in 5u32..8,
        ) {
            let line = 1u64 << shift;
            let got: std::vec::Vec<u64> = cache_lines(start, len, line).collect();
            // Aligned, ascending, each touching the range.
            for w in got.windows(2) {
                prop_assert_eq!(w[1], w[0] + line);
            }
            for &l in &got {
                prop_assert_eq!(l % line, 0);
                prop_assert!(l < start + len && start < l + line);
            }
            // Every written byte is in one of them (first, last and a middle one).
            if len > 0 {
                for b in [start, start + len / 2, start + len - 1] {
                    prop_assert!(got.iter().any(|&l| l <= b && b < l + line));
                }
            } else {
                prop_assert!(got.is_empty());
            }
        }
    }

    #[test]
    fn small_pages_only_without_large_page_support() {
        let mut arena = std::vec![0u8; 8 * 4096];
        let mut t = Tables::new(&mut arena, 0x10_0000, VtdFormat { large_pages: false }).unwrap();
        t.map_range(0, 0x4000_0000, 0x20_0000, Perm::RW).unwrap();
        assert_eq!(t.pages_used(), 4, "PML4, PDPT, PD and one page table");
        assert_eq!(t.translate(0x1234), Some(0x4000_1234));
        assert_eq!(t.translate(0x20_0000), None);
    }

    #[test]
    fn fault_records_decode() {
        let hi = (1u64 << 63) | (1 << 62) | (6u64 << 32) | 0x0018;
        let f = Fault::decode(0x1234_5678, hi).unwrap();
        assert_eq!(
            (f.source, f.reason, f.address, f.write),
            (0x18, 6, 0x1234_5000, false)
        );
        assert_eq!(Fault::decode(0, 6 << 32), None);
        assert!(!f.is_interrupt());
    }

    #[test]
    fn interrupt_faults_name_their_entry() {
        // Reason 0x26 (source-ID check failed) for entry 5, from requester 00:03.0.
        let hi = (1u64 << 63) | (0x26u64 << 32) | 0x0018;
        let f = Fault::decode(5 << 48, hi).unwrap();
        assert!(f.is_interrupt());
        assert_eq!(f.interrupt_index(), 5);
        assert_eq!(
            f.reason_text(),
            "interrupt message naming another device's entry"
        );
    }
}
