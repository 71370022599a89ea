//! Translating a guest-virtual address through the guest's own page tables, so the
//! hypervisor can read the instruction an MMIO exit stopped at (the exit reports only the
//! guest-physical address of the data). Long mode with 4-level paging only: Linux qubes run
//! nowhere else after the 64-bit entry (LA57 is hidden from them).

/// CR0.PG.
const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
const CR4_PAE: u64 = 1 << 5;
/// CR4.LA57.
const CR4_LA57: u64 = 1 << 12;
/// EFER.LMA.
const EFER_LMA: u64 = 1 << 10;
/// Entry bits.
const PRESENT: u64 = 1;
const LARGE: u64 = 1 << 7;
/// Physical-address bits of an entry (bits 12..52).
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

/// Why an address could not be translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The guest is not in long mode with 4-level paging.
    Mode,
    /// The address is not canonical.
    NonCanonical,
    /// A table entry on the way is not present (the guest would take a #PF).
    NotPresent,
    /// A table lies outside the guest's memory.
    TableOutsideMemory,
}

/// Translates `va` with the guest's control registers, reading 8-byte table entries at
/// guest-physical addresses through `read_u64` (`None` outside its memory). Access rights
/// are not checked: the guest already executed the instruction being read.
pub fn translate(
    va: u64,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    mut read_u64: impl FnMut(u64) -> Option<u64>,
) -> Result<u64, WalkError> {
    if cr0 & CR0_PG == 0 || cr4 & CR4_PAE == 0 || efer & EFER_LMA == 0 || cr4 & CR4_LA57 != 0 {
        return Err(WalkError::Mode);
    }
    let top = va >> 47;
    if top != 0 && top != 0x1_FFFF {
        return Err(WalkError::NonCanonical);
    }
    let mut table = cr3 & ADDR;
    // Levels: PML4 (bits 39..48), PDPT (30..39), PD (21..30), PT (12..21).
    for (level, shift) in [(4u8, 39u32), (3, 30), (2, 21), (1, 12)] {
        let index = (va >> shift) & 0x1FF;
        let entry = read_u64(table + index * 8).ok_or(WalkError::TableOutsideMemory)?;
        if entry & PRESENT == 0 {
            return Err(WalkError::NotPresent);
        }
        let frame = entry & ADDR;
        if level == 1 || (level <= 3 && entry & LARGE != 0) {
            let page_mask = (1u64 << shift) - 1;
            return Ok((frame & !page_mask) | (va & page_mask));
        }
        table = frame;
    }
    Err(WalkError::NotPresent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CR0: u64 = CR0_PG | 1;
    const CR4: u64 = CR4_PAE;
    const EFER: u64 = EFER_LMA | (1 << 8);

    extern crate std;

    /// A tiny guest memory: a map of table pages.
    struct Mem(std::collections::HashMap<u64, u64>);

    impl Mem {
        fn read(&self, gpa: u64) -> Option<u64> {
            if gpa >= 1 << 30 {
                return None;
            }
            Some(*self.0.get(&gpa).unwrap_or(&0))
        }
        fn set(&mut self, table: u64, index: u64, value: u64) {
            self.0.insert(table + index * 8, value);
        }
    }

    /// Linux-style: kernel text at 0xffffffff81000000 mapped by a 2 MiB page at 16 MiB, and
    /// one 4 KiB page for 0x400000.
    fn sample() -> Mem {
        let mut m = Mem(std::collections::HashMap::new());
        let (pml4, pdpt_hi, pd_hi, pdpt_lo, pd_lo, pt_lo) =
            (0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000);
        m.set(pml4, 511, pdpt_hi | 3);
        m.set(pdpt_hi, 510, pd_hi | 3);
        m.set(pd_hi, 8, 0x100_0000 | LARGE | 3);
        m.set(pml4, 0, pdpt_lo | 3);
        m.set(pdpt_lo, 0, pd_lo | 3);
        m.set(pd_lo, 2, pt_lo | 3);
        m.set(pt_lo, 0, 0x7_7000 | 3);
        m.set(pdpt_lo, 1, 0x4000_0000 | LARGE | 3); // a 1 GiB page at 1 GiB
        m
    }

    #[test]
    fn translates_large_and_small_pages() {
        let m = sample();
        let t = |va| translate(va, CR0, 0x1000, CR4, EFER, |a| m.read(a));
        assert_eq!(t(0xffff_ffff_8100_0123), Ok(0x100_0123));
        assert_eq!(t(0xffff_ffff_811f_fff0), Ok(0x11f_fff0));
        assert_eq!(t(0x40_0abc), Ok(0x7_7abc));
        assert_eq!(t(0x4123_4567), Ok(0x4123_4567));
        assert_eq!(t(0x40_1000), Err(WalkError::NotPresent));
        assert_eq!(t(0x8000_0000_0000), Err(WalkError::NonCanonical));
    }

    #[test]
    fn refuses_other_modes_and_tables_outside_memory() {
        let m = sample();
        let t = |cr0, cr4, efer| translate(0x40_0000, cr0, 0x1000, cr4, efer, |a| m.read(a));
        assert_eq!(t(1, CR4, EFER), Err(WalkError::Mode));
        assert_eq!(t(CR0, 0, EFER), Err(WalkError::Mode));
        assert_eq!(t(CR0, CR4 | CR4_LA57, EFER), Err(WalkError::Mode));
        assert_eq!(t(CR0, CR4, 0), Err(WalkError::Mode));
        let mut m = sample();
        m.set(0x1000, 1, (1 << 31) | 3); // a PDPT beyond the guest's memory
        let r = translate(1 << 39, CR0, 0x1000, CR4, EFER, |a| m.read(a));
        assert_eq!(r, Err(WalkError::TableOutsideMemory));
    }

    proptest! {
        #[test]
        fn arbitrary_tables_never_panic(entries in proptest::collection::vec(any::<u64>(), 0..64), va: u64, cr3: u64) {
            let table: std::vec::Vec<u64> = entries;
            let read = |gpa: u64| table.get(((gpa / 8) % 64) as usize).copied();
            let _ = translate(va, CR0, cr3, CR4, EFER, read);
        }
    }
}
