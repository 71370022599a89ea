//! Building 4-level x86-64 page tables in a caller-supplied arena.
//!
//! The same builder makes a qube's own page tables (written into the qube's memory) and its
//! nested page tables (written into frames the hypervisor owns). The arena is a byte slice
//! plus the physical address it lives at; the builder never follows an entry that points
//! outside its arena, so a qube that scribbles over its own tables cannot make a later walk
//! of them go astray. The entry format is a parameter: x86/NPT now, EPT with the VMX backend.

use crate::{LARGE_PAGE_SIZE, PAGE_SIZE};

/// Access rights of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// How the CPU caches it.
    pub cache: Cache,
}

/// A mapping's memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// Ordinary memory: write-back (no PAT bits in x86 entries, type WB in EPT).
    WriteBack,
    /// Device registers: uncached (PCD|PWT, [`PAT`] entry 3; type UC in EPT).
    Uncached,
    /// A framebuffer: stores are combined into bursts, never cached for reads (PWT alone,
    /// [`PAT`] entry 1; type WC in EPT).
    WriteCombining,
}

/// The page attribute table every CPU and every unikernel runs with: the power-on layout
/// with entry 1 write-combining instead of write-through (as Linux does), so PWT alone
/// selects WC and PCD|PWT stays UC. Entries 0-3: WB, WC, UC-, UC; 4-7 the same. AMD's nested
/// walks take their memory types from the host's PAT, so the hypervisor loads it at boot.
pub const PAT: u64 = 0x0007_0106_0007_0106;

impl Perm {
    /// Read, write and execute.
    pub const RWX: Perm = Perm {
        write: true,
        exec: true,
        cache: Cache::WriteBack,
    };
    /// Read and write, no execute.
    pub const RW: Perm = Perm {
        write: true,
        exec: false,
        cache: Cache::WriteBack,
    };
    /// Read only, no execute (the peer's pool of a channel's bulk area).
    pub const RO: Perm = Perm {
        write: false,
        exec: false,
        cache: Cache::WriteBack,
    };
    /// Device registers: read and write, no execute, uncached.
    pub const MMIO: Perm = Perm {
        write: true,
        exec: false,
        cache: Cache::Uncached,
    };
    /// A framebuffer: read and write, no execute, write-combining.
    pub const FRAMEBUFFER: Perm = Perm {
        write: true,
        exec: false,
        cache: Cache::WriteCombining,
    };
}

/// How entries are encoded.
pub trait EntryFormat {
    /// An entry pointing to a next-level table at `pa`.
    fn table(&self, pa: u64) -> u64;
    /// A leaf entry mapping `pa` (`large`: a 2 MiB page at the PD level).
    fn leaf(&self, pa: u64, large: bool, perm: Perm) -> u64;
    /// Whether the entry maps anything.
    fn present(&self, e: u64) -> bool;
    /// Whether a PD-level entry is a 2 MiB leaf.
    fn large(&self, e: u64) -> bool;
    /// The physical address an entry points to.
    fn addr(&self, e: u64) -> u64 {
        e & 0x000f_ffff_ffff_f000
    }
    /// Whether 2 MiB leaves may be used.
    fn large_pages(&self) -> bool {
        true
    }
}

/// Ordinary x86-64 entries, used for guest tables and for AMD nested page tables (whose
/// walks are user accesses, so `user` must be set on every level there).
#[derive(Clone, Copy, Debug)]
pub struct X86Format {
    /// Set the U/S bit on every entry.
    pub user: bool,
    /// The CPU supports and has enabled NX (EFER.NXE); otherwise the bit is reserved.
    pub nx: bool,
}

impl EntryFormat for X86Format {
    fn table(&self, pa: u64) -> u64 {
        pa | 0b11 | if self.user { 0b100 } else { 0 }
    }
    fn leaf(&self, pa: u64, large: bool, perm: Perm) -> u64 {
        let mut e = pa | 1;
        if perm.write {
            e |= 1 << 1;
        }
        if self.user {
            e |= 1 << 2;
        }
        if large {
            e |= 1 << 7;
        }
        if self.nx && !perm.exec {
            e |= 1 << 63;
        }
        // The PAT index is PAT:PCD:PWT; PAT (bit 7 in 4 KiB entries, 12 in large ones) stays 0.
        match perm.cache {
            Cache::WriteBack => {}
            Cache::WriteCombining => e |= 1 << 3, // PWT: entry 1
            Cache::Uncached => e |= 0b11 << 3,    // PWT | PCD: entry 3
        }
        e
    }
    fn present(&self, e: u64) -> bool {
        e & 1 != 0
    }
    fn large(&self, e: u64) -> bool {
        e & (1 << 7) != 0
    }
}

/// Intel EPT entries: read/write/execute bits instead of present/user, a memory type in
/// leaves (write-back for qube memory, UC for device registers, WC for a framebuffer).
#[derive(Clone, Copy, Debug)]
pub struct EptFormat;

impl EntryFormat for EptFormat {
    fn table(&self, pa: u64) -> u64 {
        pa | 0b111
    }
    fn leaf(&self, pa: u64, large: bool, perm: Perm) -> u64 {
        // IPAT (bit 6) clear: the guest's PAT combines with this type as with an MTRR's.
        let memory_type = match perm.cache {
            Cache::Uncached => 0,
            Cache::WriteCombining => 1,
            Cache::WriteBack => 6,
        };
        let mut e = pa | 1 | (memory_type << 3);
        if perm.write {
            e |= 1 << 1;
        }
        if perm.exec {
            e |= 1 << 2;
        }
        if large {
            e |= 1 << 7;
        }
        e
    }
    fn present(&self, e: u64) -> bool {
        e & 0b111 != 0
    }
    fn large(&self, e: u64) -> bool {
        e & (1 << 7) != 0
    }
}

/// The nested-paging format of the backend in use, chosen at run time.
#[derive(Clone, Copy, Debug)]
pub enum NestedFormat {
    /// AMD NPT: ordinary entries with U set on every level.
    Npt,
    /// Intel EPT.
    Ept,
}

impl EntryFormat for NestedFormat {
    fn table(&self, pa: u64) -> u64 {
        match self {
            NestedFormat::Npt => X86Format {
                user: true,
                nx: true,
            }
            .table(pa),
            NestedFormat::Ept => EptFormat.table(pa),
        }
    }
    fn leaf(&self, pa: u64, large: bool, perm: Perm) -> u64 {
        match self {
            NestedFormat::Npt => X86Format {
                user: true,
                nx: true,
            }
            .leaf(pa, large, perm),
            NestedFormat::Ept => EptFormat.leaf(pa, large, perm),
        }
    }
    fn present(&self, e: u64) -> bool {
        match self {
            NestedFormat::Npt => X86Format {
                user: true,
                nx: true,
            }
            .present(e),
            NestedFormat::Ept => EptFormat.present(e),
        }
    }
    fn large(&self, e: u64) -> bool {
        match self {
            NestedFormat::Npt => X86Format {
                user: true,
                nx: true,
            }
            .large(e),
            NestedFormat::Ept => EptFormat.large(e),
        }
    }
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// The arena has no page left for a table.
    ArenaFull,
    /// Address or size not aligned to the page size.
    Misaligned,
    /// Something is already mapped there.
    AlreadyMapped,
    /// An entry points outside the arena (the tables were changed behind our back).
    Corrupt,
    /// The virtual address is not canonical (above 47 bits).
    NotCanonical,
}

/// Page tables under construction in an arena.
pub struct Tables<'a, F: EntryFormat> {
    arena: &'a mut [u8],
    base: u64,
    used: usize,
    fmt: F,
}

impl<'a, F: EntryFormat> Tables<'a, F> {
    /// Starts empty tables; the root (PML4) is the arena's first page, at `base`.
    /// The arena must be page-aligned in physical memory and at least one page long.
    pub fn new(arena: &'a mut [u8], base: u64, fmt: F) -> Result<Self, PagingError> {
        if !base.is_multiple_of(PAGE_SIZE) || arena.len() < PAGE_SIZE as usize {
            return Err(PagingError::Misaligned);
        }
        arena[..PAGE_SIZE as usize].fill(0);
        Ok(Tables {
            arena,
            base,
            used: 1,
            fmt,
        })
    }

    /// Physical address of the root table (for CR3 / nCR3 / EPTP).
    pub fn root(&self) -> u64 {
        self.base
    }

    /// Pages of the arena used so far.
    pub fn pages_used(&self) -> usize {
        self.used
    }

    fn entry_at(&self, table: u64, index: u64) -> Result<(usize, u64), PagingError> {
        let off = table.checked_sub(self.base).ok_or(PagingError::Corrupt)?;
        if off % PAGE_SIZE != 0 || off >= (self.used as u64) * PAGE_SIZE {
            return Err(PagingError::Corrupt);
        }
        let at = (off + index * 8) as usize;
        let bytes: [u8; 8] = self.arena[at..at + 8]
            .try_into()
            .map_err(|_| PagingError::Corrupt)?;
        Ok((at, u64::from_le_bytes(bytes)))
    }

    fn set(&mut self, at: usize, e: u64) {
        self.arena[at..at + 8].copy_from_slice(&e.to_le_bytes());
    }

    fn new_table(&mut self) -> Result<u64, PagingError> {
        let start = self.used * PAGE_SIZE as usize;
        let end = start + PAGE_SIZE as usize;
        if end > self.arena.len() {
            return Err(PagingError::ArenaFull);
        }
        self.arena[start..end].fill(0);
        self.used += 1;
        Ok(self.base + start as u64)
    }

    /// Maps one page: 4 KiB, or 2 MiB when `large`.
    pub fn map_page(
        &mut self,
        va: u64,
        pa: u64,
        large: bool,
        perm: Perm,
    ) -> Result<(), PagingError> {
        let size = if large { LARGE_PAGE_SIZE } else { PAGE_SIZE };
        if !va.is_multiple_of(size) || !pa.is_multiple_of(size) {
            return Err(PagingError::Misaligned);
        }
        if va >= 1 << 47 {
            return Err(PagingError::NotCanonical);
        }
        let leaf_level = if large { 2 } else { 1 };
        let mut table = self.base;
        for level in (leaf_level + 1..=4).rev() {
            let index = (va >> (12 + 9 * (level - 1))) & 511;
            let (at, e) = self.entry_at(table, index)?;
            table = if !self.fmt.present(e) {
                let t = self.new_table()?;
                let e = self.fmt.table(t);
                self.set(at, e);
                t
            } else if level == 2 && self.fmt.large(e) {
                return Err(PagingError::AlreadyMapped);
            } else {
                self.fmt.addr(e)
            };
        }
        let index = (va >> (12 + 9 * (leaf_level - 1))) & 511;
        let (at, e) = self.entry_at(table, index)?;
        if self.fmt.present(e) {
            return Err(PagingError::AlreadyMapped);
        }
        let leaf = self.fmt.leaf(pa, large, perm);
        self.set(at, leaf);
        Ok(())
    }

    /// Maps `[va, va+len)` to `[pa, pa+len)`, using 2 MiB pages wherever both sides allow.
    pub fn map_range(&mut self, va: u64, pa: u64, len: u64, perm: Perm) -> Result<(), PagingError> {
        if !va.is_multiple_of(PAGE_SIZE)
            || !pa.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
        {
            return Err(PagingError::Misaligned);
        }
        let mut off = 0;
        while off < len {
            let (v, p) = (va + off, pa + off);
            let large = self.fmt.large_pages()
                && v % LARGE_PAGE_SIZE == 0
                && p % LARGE_PAGE_SIZE == 0
                && len - off >= LARGE_PAGE_SIZE;
            self.map_page(v, p, large, perm)?;
            off += if large { LARGE_PAGE_SIZE } else { PAGE_SIZE };
        }
        Ok(())
    }

    /// Translates `va` through the tables (for tests and diagnostics).
    pub fn translate(&self, va: u64) -> Option<u64> {
        let mut table = self.base;
        for level in (1..=4).rev() {
            let index = (va >> (12 + 9 * (level - 1))) & 511;
            let (_, e) = self.entry_at(table, index).ok()?;
            if !self.fmt.present(e) {
                return None;
            }
            if level == 2 && self.fmt.large(e) {
                return Some(
                    self.fmt.addr(e) & !(LARGE_PAGE_SIZE - 1) | (va & (LARGE_PAGE_SIZE - 1)),
                );
            }
            if level == 1 {
                return Some(self.fmt.addr(e) | (va & (PAGE_SIZE - 1)));
            }
            table = self.fmt.addr(e);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;

    const FMT: X86Format = X86Format {
        user: true,
        nx: true,
    };

    #[test]
    fn maps_and_translates() {
        let mut arena = std::vec![0xAAu8; 16 * 4096];
        let mut t = Tables::new(&mut arena, 0x10_0000, FMT).unwrap();
        t.map_range(0, 0x4000_0000, 8 << 20, Perm::RWX).unwrap();
        t.map_page(0x8000_0000, 0x1234_5000, false, Perm::RW)
            .unwrap();
        assert_eq!(t.translate(0x1234), Some(0x4000_1234));
        assert_eq!(
            t.translate((8 << 20) - 1),
            Some(0x4000_0000 + (8 << 20) - 1)
        );
        assert_eq!(t.translate(8 << 20), None);
        assert_eq!(t.translate(0x8000_0010), Some(0x1234_5010));
        assert_eq!(
            t.map_page(0, 0, true, Perm::RW),
            Err(PagingError::AlreadyMapped)
        );
        assert_eq!(
            t.map_page(0x1000, 0, false, Perm::RW),
            Err(PagingError::AlreadyMapped)
        );
        assert_eq!(t.pages_used(), 5); // PML4, PDPT, PD for 0 GiB, PD for 2 GiB, one PT
    }

    #[test]
    fn ept_entries_carry_permissions_and_write_back() {
        let mut arena = std::vec![0u8; 8 * 4096];
        let mut t = Tables::new(&mut arena, 0x1000, NestedFormat::Ept).unwrap();
        t.map_range(0, 0x20_0000, 4 << 20, Perm::RW).unwrap();
        assert_eq!(t.translate(0x1234), Some(0x20_1234));
        let leaf = EptFormat.leaf(0x20_0000, true, Perm::RW);
        assert_eq!(leaf & 0b111, 0b011, "read+write, no execute");
        assert_eq!((leaf >> 3) & 0b111, 6, "write-back");
    }

    /// The EPT entry formats of the Intel SDM (vol. 3C, "EPT translation mechanism"):
    /// a non-leaf entry has R/W/X and bits 7:3 reserved (zero); a 2 MiB leaf has bit 7 set,
    /// the memory type in bits 5:3 and bits 20:12 reserved; a 4 KiB leaf has no bit 7. None
    /// may be writable without being readable (an EPT misconfiguration).
    #[test]
    fn ept_entries_follow_the_sdm() {
        let table = EptFormat.table(0x1234_5000);
        assert_eq!(table, 0x1234_5000 | 0b111);
        assert_eq!(table & 0xF8, 0, "bits 7:3 of a non-leaf entry are reserved");
        let large = EptFormat.leaf(0x4020_0000, true, Perm::RWX);
        assert_eq!(large & 0b111, 0b111);
        assert_eq!((large >> 3) & 0b111, 6, "write-back");
        assert_ne!(large & (1 << 7), 0, "a 2 MiB leaf has bit 7 set");
        assert_eq!(
            large & 0x1F_F000,
            0,
            "bits 20:12 of a 2 MiB leaf are reserved"
        );
        assert_eq!(large & (1 << 6), 0, "the guest's PAT still applies");
        let small = EptFormat.leaf(0x4020_1000, false, Perm::RW);
        assert_eq!(small & (1 << 7), 0);
        assert_eq!(small & 0b111, 0b011);
        for perm in [Perm::RW, Perm::RWX] {
            for large in [false, true] {
                let e = EptFormat.leaf(0x20_0000, large, perm);
                assert!(e & 1 != 0 || e & 2 == 0, "writable but not readable");
                assert!(EptFormat.present(e));
                assert_eq!(EptFormat.large(e), large);
            }
        }
        assert!(!EptFormat.present(0x20_0000 | (6 << 3)));
    }

    /// The memory type each kind of mapping gets, read back through the PAT as the CPU
    /// does: the x86 entry's PCD:PWT (PAT bit clear) indexes [`PAT`]; EPT's type is direct.
    #[test]
    fn memory_types_select_the_pat_entries_they_name() {
        let pat_type = |e: u64| (PAT >> (8 * ((e >> 3) & 0b11))) & 0xFF;
        const WB: u64 = 6;
        const WC: u64 = 1;
        const UC: u64 = 0;
        for (perm, want) in [
            (Perm::RWX, WB),
            (Perm::RO, WB),
            (Perm::MMIO, UC),
            (Perm::FRAMEBUFFER, WC),
        ] {
            for large in [false, true] {
                let x = FMT.leaf(0x20_0000, large, perm);
                assert_eq!(pat_type(x), want, "{perm:?} x86");
                let pat_bit = if large { 1 << 12 } else { 1 << 7 };
                assert_eq!(x & pat_bit & !(1 << 7), 0, "PAT bit set");
                let e = EptFormat.leaf(0x20_0000, large, perm);
                assert_eq!((e >> 3) & 0b111, want, "{perm:?} EPT");
                assert_eq!(
                    e & (1 << 6),
                    0,
                    "IPAT set: the guest's PAT would be ignored"
                );
            }
        }
        // The layout itself: entries 0-3 WB, WC, UC-, UC, repeated in 4-7.
        assert_eq!(PAT.to_le_bytes(), [6, 1, 7, 0, 6, 1, 7, 0]);
    }

    #[test]
    fn reports_a_full_arena_and_bad_input() {
        let mut arena = std::vec![0u8; 2 * 4096];
        let mut t = Tables::new(&mut arena, 0, FMT).unwrap();
        assert_eq!(
            t.map_page(0, 0, true, Perm::RW),
            Err(PagingError::ArenaFull)
        );
        assert_eq!(
            t.map_page(0x1000, 0, true, Perm::RW),
            Err(PagingError::Misaligned)
        );
        assert_eq!(
            t.map_page(1 << 47, 0, false, Perm::RW),
            Err(PagingError::NotCanonical)
        );
    }

    proptest! {
        #[test]
        fn every_mapped_page_translates_and_nothing_else(
            pages in proptest::collection::btree_map(0u64..(1 << 20), 0u64..(1 << 24), 1..40),
            probes in proptest::collection::vec(0u64..(1 << 20), 1..40),
        ) {
            let mut arena = std::vec![0u8; 256 * 4096];
            let mut t = Tables::new(&mut arena, 0x20_0000, FMT).unwrap();
            for (vpn, ppn) in &pages {
                t.map_page(vpn << 12, ppn << 12, false, Perm::RW).unwrap();
            }
            for (vpn, ppn) in &pages {
                prop_assert_eq!(t.translate((vpn << 12) | 0x7), Some((ppn << 12) | 0x7));
            }
            for vpn in probes {
                if !pages.contains_key(&vpn) {
                    prop_assert_eq!(t.translate(vpn << 12), None);
                }
            }
        }

        #[test]
        fn scribbled_tables_never_escape_the_arena(pos in 0usize..(4 * 4096), val: u64, va in 0u64..(1 << 40)) {
            let mut arena = std::vec![0u8; 8 * 4096];
            {
                let mut t = Tables::new(&mut arena, 0x1000, FMT).unwrap();
                t.map_range(0, 0, 4 << 20, Perm::RW).unwrap();
            }
            let at = pos & !7;
            arena[at..at + 8].copy_from_slice(&val.to_le_bytes());
            // Re-open the scribbled arena as if the builder still owned 4 pages.
            let mut t = Tables { arena: &mut arena, base: 0x1000, used: 4, fmt: FMT };
            let _ = t.translate(va);
            let _ = t.map_page(va & !0xfff, 0, false, Perm::RW);
        }
    }
}
