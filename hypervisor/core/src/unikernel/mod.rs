//! Where everything of a unikernel qube goes in its guest-physical memory, planned before a
//! byte is copied: the ELF image, its configuration blob, the heap, the stack, the boot info,
//! the GDT, the page tables with the mappings they hold (its memory, its channel windows,
//! its devices' BAR pieces), and the CPU state at entry. [`plan`] checks every input and
//! refuses what does not fit with a [`PlanError`], never a panic; [`write`] then fills the
//! qube's memory from a plan. The layout (`bulkhead_abi::boot_info::layout`,
//! docs/architecture.md):
//!
//! | range | use |
//! |---|---|
//! | `0x1000` | the boot info ([`BootInfo`]) |
//! | `0x2000` | the GDT ([`GDT`]) |
//! | `0x3000..0x40000` | the page tables: identity map, 2 MiB pages wherever a range allows |
//! | `0x200000..` | the ELF image, then the configuration blob and the heap (page-aligned) |
//! | the page below the stack | unmapped: a guard, so a stack overflow faults (the qube is stopped) instead of writing into the heap |
//! | top 256 KiB | the stack |
//! | `WINDOW_BASE + i * WINDOW_STRIDE` | channel `i` (read/write, never executable) |
//! | `bulk_window(i)` | channel `i`'s bulk area, if any: its own pool read/write, the peer's read-only ([`crate::bulk`]) |
//! | elsewhere | the device pieces, at their physical address (uncached; a framebuffer write-combining) |

use crate::collections::ArrayVec;
use crate::elf::{self, ElfError, LoadPlan};
use crate::paging::{PagingError, Perm, Tables, X86Format};
use crate::{LARGE_PAGE_SIZE, PAGE_SIZE, Range, align_up};
use bulkhead_abi::boot_info::{BootInfo, MAX_DEVICES_PER_QUBE, layout};
use bulkhead_abi::channel::{MAX_CHANNELS_PER_QUBE, WINDOW_BASE, WINDOW_STRIDE};
use bulkhead_abi::channel::{bulk_size_valid, bulk_window};

/// Most device pieces (mapped BAR ranges) one qube may have: 8 per device.
pub const MAX_PIECES: usize = MAX_DEVICES_PER_QUBE * 8;
/// Pages of the page-table arena (`PAGE_TABLES..PAGE_TABLES_END`).
pub const TABLE_PAGES: usize =
    ((layout::PAGE_TABLES_END - layout::PAGE_TABLES) / PAGE_SIZE) as usize;
/// The GDT: null, flat 64-bit code ([`layout::CODE_SELECTOR`]), flat data
/// ([`layout::DATA_SELECTOR`]).
pub const GDT: [u64; 3] = [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];
/// Bytes reserved for the boot info: its size, page-rounded.
const BOOT_INFO_BYTES: u64 = (size_of::<BootInfo>() as u64).next_multiple_of(PAGE_SIZE);
const _: () = assert!(layout::BOOT_INFO + BOOT_INFO_BYTES <= layout::GDT);
/// Addresses at or above this are not canonical: nothing may be mapped there.
const ADDRESS_LIMIT: u64 = 1 << 47;
/// Where all channel windows lie.
const WINDOWS: Range = Range {
    start: WINDOW_BASE,
    len: MAX_CHANNELS_PER_QUBE as u64 * WINDOW_STRIDE,
};

/// Why a unikernel cannot be laid out in its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The memory size is not page-aligned, too small for the image base and the stack, or
    /// reaches the channel windows.
    BadMemorySize,
    /// The image is not a loadable unikernel, or does not fit below the stack.
    Elf(ElfError),
    /// The configuration blob does not fit between the image and the stack.
    ConfigDoesNotFit,
    /// No memory is left for the heap.
    NoHeap,
    /// More channels than `MAX_CHANNELS_PER_QUBE`.
    TooManyChannels,
    /// Channel (local index) is empty, not page-aligned, or larger than its window.
    BadChannelSize(usize),
    /// Bulk area (index in the list) names no channel or a channel twice, has a size that
    /// is not a valid bulk size, or a side that is neither 0 nor 1.
    BadBulk(usize),
    /// More device pieces than [`MAX_PIECES`].
    TooManyPieces,
    /// Device piece (index) is empty, not page-aligned, or not canonical.
    BadPiece(usize),
    /// Device piece (index) overlaps the qube's memory.
    PieceInRam(usize),
    /// Device piece (index) overlaps the channel windows or the bulk windows.
    PieceInWindows(usize),
    /// Two device pieces (indices) overlap.
    PiecesOverlap(usize, usize),
    /// The page tables for these mappings need more pages than the arena has.
    PageTablesFull,
    /// [`write`] was given memory, an image or a configuration that is not the planned one.
    NotPlanned,
    /// Building the page tables failed.
    Paging(PagingError),
}

impl core::fmt::Display for PlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlanError::BadMemorySize => f.write_str("memory size unusable for a unikernel"),
            PlanError::Elf(e) => write!(f, "bad image: {e}"),
            PlanError::ConfigDoesNotFit => f.write_str("the configuration does not fit"),
            PlanError::NoHeap => f.write_str("no memory left for the heap"),
            PlanError::TooManyChannels => f.write_str("too many channels"),
            PlanError::BadChannelSize(i) => write!(f, "channel {i}: size does not fit a window"),
            PlanError::BadBulk(i) => write!(f, "bulk area {i}: bad channel, size or side"),
            PlanError::TooManyPieces => write!(f, "more than {MAX_PIECES} device BAR pieces"),
            PlanError::BadPiece(i) => write!(f, "device piece {i}: not a mappable range"),
            PlanError::PieceInRam(i) => write!(f, "device piece {i} overlaps the qube's memory"),
            PlanError::PieceInWindows(i) => {
                write!(f, "device piece {i} overlaps the channel or bulk windows")
            }
            PlanError::PiecesOverlap(i, j) => write!(f, "device pieces {i} and {j} overlap"),
            PlanError::PageTablesFull => f.write_str("the page tables do not fit their arena"),
            PlanError::NotPlanned => f.write_str("memory, image or configuration not planned"),
            PlanError::Paging(e) => write!(f, "page tables: {e:?}"),
        }
    }
}

/// The CPU state at the unikernel's entry: 64-bit mode, paging on, interrupts off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// The ELF entry point.
    pub rip: u64,
    /// The top of the stack (the end of memory).
    pub rsp: u64,
    /// The boot info.
    pub rdi: u64,
    /// The page tables' root (PML4).
    pub cr3: u64,
    /// The GDT.
    pub gdt_base: u64,
    /// Its limit.
    pub gdt_limit: u16,
}

/// Where everything goes; every range lies in `0..memory` except the windows and pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnikernelPlan {
    /// Size of the qube's memory (guest-physical `0..memory`).
    pub memory: u64,
    /// The image's segments.
    pub elf: LoadPlan,
    /// From the lowest to one past the highest loaded byte of the image.
    pub image: Range,
    /// The configuration blob: page-aligned after the image (length 0: none).
    pub config: Range,
    /// Free memory for the runtime: page-aligned after the configuration, up to the guard
    /// page below the stack.
    pub heap: Range,
    /// The stack, at the top of memory.
    pub stack: Range,
    /// The boot info.
    pub boot_info: Range,
    /// The GDT's page.
    pub gdt: Range,
    /// The page-table arena.
    pub page_tables: Range,
    /// Pages of the arena the page tables use.
    pub page_table_pages: u64,
    /// Channel windows, by local index.
    pub windows: ArrayVec<Range, MAX_CHANNELS_PER_QUBE>,
    /// The channels' bulk areas, as given (each at its channel's bulk window).
    pub bulk: ArrayVec<BulkArea, MAX_CHANNELS_PER_QUBE>,
    /// Device pieces, mapped at their physical address.
    pub pieces: ArrayVec<DevicePiece, MAX_PIECES>,
    /// The CPU state at entry.
    pub entry: EntryState,
}

impl UnikernelPlan {
    /// The identity mappings of the page tables: all memory but the stack's guard page
    /// (read/write/execute), each
    /// channel window (read/write), each bulk area's two pools (its own read/write, the
    /// peer's read-only), each device piece (uncached, or write-combining for a framebuffer).
    pub fn mappings(&self) -> impl Iterator<Item = (Range, Perm)> + '_ {
        // All memory but the guard page below the stack.
        let below = Range {
            start: 0,
            len: self.stack.start - PAGE_SIZE,
        };
        let stack = Range {
            start: self.stack.start,
            len: self.memory - self.stack.start,
        };
        let pools = self.bulk.iter().flat_map(|b| {
            let window = b.window();
            crate::bulk::pools(b.size, b.side).map(|(off, len, perm)| {
                let r = Range {
                    start: window.start + off,
                    len,
                };
                (r, perm)
            })
        });
        [(below, Perm::RWX), (stack, Perm::RWX)]
            .into_iter()
            .chain(self.windows.iter().map(|w| (*w, Perm::RW)))
            .chain(pools)
            .chain(self.pieces.iter().map(|p| (p.range(), p.perm())))
    }

    /// Fills the boot info's layout fields: memory, image, heap, stack, configuration, and
    /// each channel's window and size (the caller adds who the qube and its peers are).
    pub fn describe(&self, info: &mut BootInfo) {
        info.mem_size = self.memory;
        info.image_start = self.image.start;
        info.image_end = self.image.end();
        info.heap_start = self.heap.start;
        info.heap_end = self.heap.end();
        info.stack_top = self.entry.rsp;
        if self.config.len > 0 {
            info.config_gpa = self.config.start;
            info.config_len = self.config.len;
        }
        info.channel_count = self.windows.len() as u32;
        for (w, out) in self.windows.iter().zip(info.channels.iter_mut()) {
            out.gpa = w.start;
            out.size = w.len;
        }
        for b in &self.bulk {
            if let Some(out) = info.channels.get_mut(b.local) {
                out.bulk_gpa = b.window().start;
                out.bulk_size = b.size;
            }
        }
    }
}

/// A channel's bulk area as this qube maps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkArea {
    /// Local index of its channel.
    pub local: usize,
    /// Bytes of the area (a valid bulk size, not 0).
    pub size: u64,
    /// 0: this qube is side A (its pool is the first half); 1: side B (the second half).
    pub side: u32,
}

impl BulkArea {
    /// Where it is mapped: its channel's bulk window.
    pub fn window(&self) -> Range {
        Range {
            start: bulk_window(self.local),
            len: self.size,
        }
    }
}

/// A device range a qube maps at its physical address: registers (uncached) or a
/// framebuffer (write-combining).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevicePiece {
    /// Physical (and guest-physical) address, page-aligned.
    pub start: u64,
    /// Length, a multiple of the page size.
    pub len: u64,
    /// A framebuffer, mapped write-combining; otherwise device registers, uncached.
    pub write_combining: bool,
}

impl DevicePiece {
    /// Device registers at `[start, start + len)`.
    pub const fn registers(start: u64, len: u64) -> Self {
        DevicePiece {
            start,
            len,
            write_combining: false,
        }
    }

    /// The range it covers.
    pub const fn range(&self) -> Range {
        Range {
            start: self.start,
            len: self.len,
        }
    }

    /// How it is mapped: [`Perm::MMIO`] or [`Perm::FRAMEBUFFER`].
    pub const fn perm(&self) -> Perm {
        if self.write_combining {
            Perm::FRAMEBUFFER
        } else {
            Perm::MMIO
        }
    }
}

/// Plans a unikernel of `memory` bytes: `image` (its ELF file), a configuration blob of
/// `config_len` bytes, channels of the given sizes (by local index), the bulk areas of some
/// of them, and the device pieces it maps.
pub fn plan(
    image: &[u8],
    memory: u64,
    config_len: u64,
    channels: &[u64],
    bulk: &[BulkArea],
    pieces: &[DevicePiece],
) -> Result<UnikernelPlan, PlanError> {
    let stack_start = memory
        .checked_sub(layout::STACK_SIZE)
        .filter(|s| *s > layout::IMAGE_BASE && memory.is_multiple_of(PAGE_SIZE))
        .filter(|_| memory <= WINDOW_BASE)
        .ok_or(PlanError::BadMemorySize)?;
    let elf = elf::plan(image, layout::IMAGE_BASE, stack_start).map_err(PlanError::Elf)?;
    let config_start = align_up(elf.end, PAGE_SIZE).ok_or(PlanError::ConfigDoesNotFit)?;
    let config = Range {
        start: config_start,
        len: config_len,
    };
    let config_end = config_start
        .checked_add(config_len)
        .filter(|e| *e <= stack_start)
        .ok_or(PlanError::ConfigDoesNotFit)?;
    // At least a page of heap, and the guard page between it and the stack.
    let guard = stack_start - PAGE_SIZE;
    let heap_start = align_up(config_end, PAGE_SIZE)
        .filter(|h| *h < guard)
        .ok_or(PlanError::NoHeap)?;

    if channels.len() > MAX_CHANNELS_PER_QUBE {
        return Err(PlanError::TooManyChannels);
    }
    let mut windows = ArrayVec::new();
    for (i, &len) in channels.iter().enumerate() {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) || len > WINDOW_STRIDE {
            return Err(PlanError::BadChannelSize(i));
        }
        let start = WINDOW_BASE + i as u64 * WINDOW_STRIDE;
        windows
            .push(Range { start, len })
            .map_err(|_| PlanError::TooManyChannels)?;
    }
    let mut areas: ArrayVec<BulkArea, MAX_CHANNELS_PER_QUBE> = ArrayVec::new();
    for (i, b) in bulk.iter().enumerate() {
        let good = b.local < windows.len()
            && b.size != 0
            && bulk_size_valid(b.size)
            && b.side <= 1
            && !areas.iter().any(|o| o.local == b.local);
        if !good {
            return Err(PlanError::BadBulk(i));
        }
        areas.push(*b).map_err(|_| PlanError::BadBulk(i))?;
    }

    let ram = Range {
        start: 0,
        len: memory,
    };
    if pieces.len() > MAX_PIECES {
        return Err(PlanError::TooManyPieces);
    }
    let mut mapped: ArrayVec<DevicePiece, MAX_PIECES> = ArrayVec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let (start, len) = (piece.start, piece.len);
        let r = piece.range();
        if len == 0
            || !start.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
            || start.checked_add(len).is_none_or(|e| e > ADDRESS_LIMIT)
        {
            return Err(PlanError::BadPiece(i));
        }
        if r.overlaps(&ram) {
            return Err(PlanError::PieceInRam(i));
        }
        if r.overlaps(&WINDOWS) || r.overlaps(&crate::bulk::WINDOWS) {
            return Err(PlanError::PieceInWindows(i));
        }
        if let Some(j) = mapped.iter().position(|o| o.range().overlaps(&r)) {
            return Err(PlanError::PiecesOverlap(j, i));
        }
        mapped.push(*piece).map_err(|_| PlanError::TooManyPieces)?;
    }

    let mut p = UnikernelPlan {
        memory,
        elf,
        image: Range {
            start: elf.start,
            len: elf.end - elf.start,
        },
        config,
        heap: Range {
            start: heap_start,
            len: guard - heap_start,
        },
        stack: Range {
            start: stack_start,
            len: layout::STACK_SIZE,
        },
        boot_info: Range {
            start: layout::BOOT_INFO,
            len: BOOT_INFO_BYTES,
        },
        gdt: Range {
            start: layout::GDT,
            len: PAGE_SIZE,
        },
        page_tables: Range {
            start: layout::PAGE_TABLES,
            len: TABLE_PAGES as u64 * PAGE_SIZE,
        },
        page_table_pages: 0,
        windows,
        bulk: areas,
        pieces: mapped,
        entry: EntryState {
            rip: elf.entry,
            rsp: memory,
            rdi: layout::BOOT_INFO,
            cr3: layout::PAGE_TABLES,
            gdt_base: layout::GDT,
            gdt_limit: (GDT.len() * 8 - 1) as u16,
        },
    };
    p.page_table_pages =
        table_pages(p.mappings().map(|(r, _)| r)).ok_or(PlanError::PageTablesFull)?;
    Ok(p)
}

/// Pages [`Tables`] takes for the identity map of `ranges` (page-aligned, non-empty, not
/// overlapping): the PML4, a PDPT per 512 GiB, a PD per GiB, and a page table per 2 MiB
/// block some range only partly covers (`map_range` maps the rest with 2 MiB pages).
/// `None` if that is more than [`TABLE_PAGES`].
fn table_pages(ranges: impl Iterator<Item = Range>) -> Option<u64> {
    fn add(set: &mut ArrayVec<u64, TABLE_PAGES>, block: u64) -> Option<()> {
        if !set.contains(&block) {
            set.push(block).ok()?;
        }
        Some(())
    }
    let (mut pdpts, mut pds, mut pts) = (ArrayVec::new(), ArrayVec::new(), ArrayVec::new());
    for r in ranges {
        let last = r.end() - 1;
        for b in r.start >> 39..=last >> 39 {
            add(&mut pdpts, b)?;
        }
        for b in r.start >> 30..=last >> 30 {
            add(&mut pds, b)?;
        }
        if !r.start.is_multiple_of(LARGE_PAGE_SIZE) {
            add(&mut pts, r.start / LARGE_PAGE_SIZE)?;
        }
        if !r.end().is_multiple_of(LARGE_PAGE_SIZE) {
            add(&mut pts, last / LARGE_PAGE_SIZE)?;
        }
    }
    let n = 1 + pdpts.len() + pds.len() + pts.len();
    (n <= TABLE_PAGES).then_some(n as u64)
}

/// Builds the plan's page tables in `arena`, the bytes at `plan.page_tables`.
pub fn page_tables<'a>(
    arena: &'a mut [u8],
    plan: &UnikernelPlan,
) -> Result<Tables<'a, X86Format>, PagingError> {
    let fmt = X86Format {
        user: false,
        nx: true,
    };
    let mut t = Tables::new(arena, plan.page_tables.start, fmt)?;
    for (r, perm) in plan.mappings() {
        t.map_range(r.start, r.start, r.len, perm)?;
    }
    Ok(t)
}

/// Fills `memory` (the qube's, `plan.memory` bytes) from `plan`: zeroes it, copies the
/// image's segments from `image` and `config` (both as planned), writes `info`, the [`GDT`]
/// and the page tables. Returns CR3.
pub fn write(
    memory: &mut [u8],
    plan: &UnikernelPlan,
    image: &[u8],
    config: &[u8],
    info: &BootInfo,
) -> Result<u64, PlanError> {
    if memory.len() as u64 != plan.memory || config.len() as u64 != plan.config.len {
        return Err(PlanError::NotPlanned);
    }
    memory.fill(0);
    for s in plan.elf.segments() {
        let src = bytes(image, s.file_offset, s.file_len).ok_or(PlanError::NotPlanned)?;
        bytes_mut(memory, s.gpa, s.file_len)?.copy_from_slice(src);
    }
    bytes_mut(memory, plan.config.start, plan.config.len)?.copy_from_slice(config);
    let info = info.to_bytes();
    bytes_mut(memory, plan.boot_info.start, info.len() as u64)?.copy_from_slice(&info);
    let gdt = bytes_mut(memory, plan.gdt.start, GDT.len() as u64 * 8)?;
    for (d, out) in GDT.iter().zip(gdt.chunks_exact_mut(8)) {
        out.copy_from_slice(&d.to_le_bytes());
    }
    let arena = bytes_mut(memory, plan.page_tables.start, plan.page_tables.len)?;
    let t = page_tables(arena, plan).map_err(PlanError::Paging)?;
    Ok(t.root())
}

fn bytes(b: &[u8], at: u64, len: u64) -> Option<&[u8]> {
    let at = usize::try_from(at).ok()?;
    b.get(at..at.checked_add(usize::try_from(len).ok()?)?)
}

fn bytes_mut(b: &mut [u8], at: u64, len: u64) -> Result<&mut [u8], PlanError> {
    let range = usize::try_from(at)
        .ok()
        .and_then(|a| Some(a..a.checked_add(usize::try_from(len).ok()?)?));
    range
        .and_then(|r| b.get_mut(r))
        .ok_or(PlanError::NotPlanned)
}

#[cfg(test)]
mod tests;
