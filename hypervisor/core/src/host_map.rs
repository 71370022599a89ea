//! The hypervisor's own address space: every byte of RAM identity-mapped, its code not
//! writable, its data and everything else not executable, and what lies below 4 GiB outside
//! RAM (device registers, firmware tables, ROM) uncached.
//!
//! [`plan`] lists the mappings; [`build`] writes them as x86-64 page tables into an arena
//! (2 MiB pages wherever both ends allow). The boot page tables of `entry.s` (the first
//! 4 GiB, all writable and executable) serve only until these are loaded.

use crate::collections::ArrayVec;
use crate::memmap::{MemoryMap, Region};
use crate::paging::{Cache, PagingError, Perm, Tables, X86Format};
use crate::{LARGE_PAGE_SIZE, PAGE_SIZE};

/// The image's parts (page-aligned, in this order, without gaps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSections {
    /// Code (with the boot code): read and execute.
    pub text: Region,
    /// Constants: read only.
    pub rodata: Region,
    /// Data and .bss (with the boot stack and the boot page tables): read and write.
    pub data: Region,
}

/// One identity mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Where it starts (virtual = physical).
    pub region: Region,
    /// Its rights and memory type.
    pub perm: Perm,
}

/// Most mappings [`plan`] makes.
pub const MAX_MAPPINGS: usize = 96;

impl Default for Mapping {
    fn default() -> Mapping {
        Mapping {
            region: Region { start: 0, end: 0 },
            perm: Perm::RO,
        }
    }
}

/// Code: read and execute.
pub const TEXT: Perm = Perm {
    write: false,
    exec: true,
    cache: Cache::WriteBack,
};

/// Everything below 4 GiB that is not RAM: device registers, firmware tables and ROM.
pub const LOW_4G: u64 = 4 << 30;

/// Why the plan could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The image's sections are not page-aligned, in order, without gaps, inside one RAM
    /// range.
    Image,
    /// More pieces than [`MAX_MAPPINGS`] (a memory map of hundreds of ranges).
    TooManyPieces,
}

/// The mappings for `image` and `ram` (the loader's usable RAM), in address order, covering
/// `[0, 4 GiB)` whole and every RAM range above. RAM is read and write, never execute,
/// except the image's text (read and execute) and rodata (read only).
pub fn plan(
    image: &ImageSections,
    ram: &MemoryMap,
) -> Result<ArrayVec<Mapping, MAX_MAPPINGS>, PlanError> {
    let sections = [
        (image.text, TEXT),
        (image.rodata, Perm::RO),
        (image.data, Perm::RW),
    ];
    let aligned = |r: &Region| r.start.is_multiple_of(PAGE_SIZE) && r.end.is_multiple_of(PAGE_SIZE);
    let ordered = image.text.end == image.rodata.start && image.rodata.end == image.data.start;
    if !ordered || !sections.iter().all(|(r, _)| aligned(r) && r.start < r.end) {
        return Err(PlanError::Image);
    }
    let whole = Region {
        start: image.text.start,
        end: image.data.end,
    };
    if !ram
        .regions()
        .iter()
        .any(|r| r.start <= whole.start && whole.end <= r.end)
    {
        return Err(PlanError::Image);
    }
    // RAM, page-aligned inwards, without the image.
    let mut pieces: ArrayVec<Mapping, MAX_MAPPINGS> = ArrayVec::new();
    let mut push = |region: Region, perm: Perm| {
        if region.start < region.end {
            pieces
                .push(Mapping { region, perm })
                .map_err(|_| PlanError::TooManyPieces)
        } else {
            Ok(())
        }
    };
    let mut covered = 0u64; // everything below is planned
    let ram_pieces = ram.regions().iter().filter_map(|r| {
        let start = crate::align_up(r.start, PAGE_SIZE)?;
        let end = r.end & !(PAGE_SIZE - 1);
        (start < end).then_some(Region { start, end })
    });
    // Each RAM piece, with the image carved out of it (the image is in RAM).
    for r in ram_pieces {
        if covered < r.start && covered < LOW_4G {
            push(
                Region {
                    start: covered,
                    end: r.start.min(LOW_4G),
                },
                Perm::MMIO,
            )?;
        }
        if r.start < whole.end && whole.start < r.end {
            push(
                Region {
                    start: r.start,
                    end: whole.start.max(r.start),
                },
                Perm::RW,
            )?;
            for (s, perm) in sections {
                push(
                    Region {
                        start: s.start.max(r.start),
                        end: s.end.min(r.end),
                    },
                    perm,
                )?;
            }
            push(
                Region {
                    start: whole.end.min(r.end),
                    end: r.end,
                },
                Perm::RW,
            )?;
        } else {
            push(r, Perm::RW)?;
        }
        covered = covered.max(r.end);
    }
    if covered < LOW_4G {
        push(
            Region {
                start: covered,
                end: LOW_4G,
            },
            Perm::MMIO,
        )?;
    }
    Ok(pieces)
}

/// Page-table pages [`build`] may need for `mappings`: the PML4, one PDPT per 512 GiB, one
/// page directory per GiB reached, and a page table for each end of a mapping that is not
/// 2 MiB-aligned.
pub fn arena_pages(mappings: &[Mapping]) -> usize {
    let top = mappings.iter().map(|m| m.region.end).max().unwrap_or(0);
    let gib = top.div_ceil(1 << 30) as usize;
    let unaligned = mappings
        .iter()
        .flat_map(|m| [m.region.start, m.region.end])
        .filter(|a| !a.is_multiple_of(LARGE_PAGE_SIZE))
        .count();
    1 + gib.div_ceil(512) + gib + unaligned
}

/// Writes `mappings` as page tables into `arena` (at physical `base`); returns the root
/// (CR3). Supervisor entries (no U/S bit), NX where a mapping is not executable.
pub fn build(arena: &mut [u8], base: u64, mappings: &[Mapping]) -> Result<u64, PagingError> {
    let fmt = X86Format {
        user: false,
        nx: true,
    };
    let mut t = Tables::new(arena, base, fmt)?;
    for m in mappings {
        t.map_range(m.region.start, m.region.start, m.region.len(), m.perm)?;
    }
    Ok(t.root())
}

#[cfg(test)]
#[path = "host_map_tests.rs"]
mod tests;
