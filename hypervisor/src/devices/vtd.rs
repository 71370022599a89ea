//! The Intel VT-d DMA remapping driver: one unit, a root table whose context entries exist
//! only for assigned devices, one second-level domain per qube, and interrupt remapping
//! where the unit has it (then every invalidation goes through the invalidation queue, as
//! interrupt entries can only be invalidated there; otherwise the registers). Formats and
//! decoding live in `bulkhead_hvcore::vtd` and `bulkhead_hvcore::irq_remap`; this module
//! only touches the registers and the table frames.
//!
//! Table writes: a root or context entry is written with two ordered volatile stores, present
//! bit last ([`phys::store_ordered`]); second-level tables and fresh table pages are written
//! in full before any entry makes them reachable. On a unit without coherent page walks
//! (`ECAP.C = 0`, QEMU's among them) every written cache line is flushed with CLFLUSH before
//! the unit is pointed at it or told to drop its cached copies; a unit with `CAP.RWBF` gets
//! its write buffer flushed before each invalidation.

use crate::arch::x86::cpu;
use crate::memory::mmio::Mmio;
use crate::memory::phys;
use bulkhead_hvcore::PAGE_SIZE;
use bulkhead_hvcore::acpi::Drhd;
use bulkhead_hvcore::irq_remap::{self as ir, descriptor};
use bulkhead_hvcore::memmap::{FrameAllocator, Frames, MemoryMap, Region};
use bulkhead_hvcore::paging::{PagingError, Perm, Tables};
use bulkhead_hvcore::vtd::{
    CCMD_GLOBAL_INVALIDATE, Capabilities, ENTRY_BYTES, Fault, IOTLB_GLOBAL_INVALIDATE, VtdFormat,
    cache_lines, context_entry, entry_present, entry_stores, gcmd, reg, root_entry,
};

/// Why the unit could not be used.
#[derive(Clone, Copy, Debug)]
pub enum VtdError {
    /// Its registers are not device memory we can map.
    BadRegisters(u64),
    /// It supports neither 3- nor 4-level tables.
    NoTableDepth,
    /// Out of memory for tables.
    NoMemory,
    /// The hardware did not acknowledge a command.
    Timeout(&'static str),
    /// Too many domains.
    NoDomain,
    /// Tables could not be built.
    Paging(PagingError),
    /// Its page walks do not snoop the caches and this CPU cannot flush them (no CLFLUSH).
    NotCoherent,
    /// The device already has a context entry (it would be rewritten while live).
    AlreadyAttached(u16),
    /// The unit reported an invalidation queue error (FSTS.IQE).
    QueueError,
}

impl core::fmt::Display for VtdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VtdError::BadRegisters(a) => write!(f, "registers at {a:#x} are not usable"),
            VtdError::NoTableDepth => write!(f, "supports no 3- or 4-level tables"),
            VtdError::NoMemory => write!(f, "no memory for remapping tables"),
            VtdError::Timeout(what) => write!(f, "no answer to {what}"),
            VtdError::NoDomain => write!(f, "out of domain IDs"),
            VtdError::Paging(e) => write!(f, "tables: {e:?}"),
            VtdError::NotCoherent => write!(
                f,
                "its page walks are not coherent (ECAP.C = 0) and this CPU has no CLFLUSH to \
                 write table updates back to memory; refused"
            ),
            VtdError::QueueError => write!(f, "invalidation queue error (FSTS.IQE)"),
            VtdError::AlreadyAttached(s) => write!(
                f,
                "device {:02x}:{:02x}.{} already has a context entry",
                s >> 8,
                (s >> 3) & 0x1f,
                s & 7
            ),
        }
    }
}

/// One DMA remapping unit, translating.
pub struct Iommu {
    regs: Mmio,
    caps: Capabilities,
    levels: u8,
    root: Frames,
    contexts: [Option<Frames>; 256],
    next_domain: u16,
    /// CLFLUSH line size in bytes when table writes must be flushed (`ECAP.C = 0`), else
    /// `None`.
    flush_line: Option<u64>,
    /// The invalidation queue, once interrupt remapping is on.
    queue: Option<Queue>,
    /// The interrupt remapping table, once on.
    irt: Option<Frames>,
}

/// The invalidation queue: a page of descriptors, the next free one, and the page the
/// unit's wait descriptors write their status to.
struct Queue {
    page: Frames,
    tail: usize,
    status: Frames,
    sequence: u32,
}

/// FSTS.IQE: the unit found a bad descriptor.
const FSTS_IQE: u32 = 1 << 4;

/// How many times a status bit is polled before giving up.
const SPINS: u32 = 10_000_000;

impl Iommu {
    /// Takes over the unit: an empty root table (every device's DMA faults), caches
    /// invalidated, translation on.
    pub fn start(
        unit: &Drhd,
        ram: &MemoryMap,
        frames: &mut FrameAllocator,
    ) -> Result<Iommu, VtdError> {
        let window = Region::from_len(unit.base, PAGE_SIZE).ok_or(VtdError::BadRegisters(0))?;
        if ram.regions().iter().any(|r| r.overlaps(&window)) {
            return Err(VtdError::BadRegisters(unit.base));
        }
        // SAFETY: the DMAR names this page as the unit's registers, it is not RAM (checked
        // above), and nothing else in the hypervisor or any qube maps it.
        let regs =
            unsafe { Mmio::new(unit.base, PAGE_SIZE) }.ok_or(VtdError::BadRegisters(unit.base))?;
        let caps = Capabilities::decode(regs.read64(reg::CAP), regs.read64(reg::ECAP));
        let levels = caps.levels().ok_or(VtdError::NoTableDepth)?;
        let flush_line = if caps.coherent {
            None
        } else {
            // CPUID 1: EDX bit 19 is CLFLUSH, EBX[15:8] its line size in 8-byte units.
            let id = cpu::cpuid(1, 0);
            if id.edx & (1 << 19) == 0 {
                return Err(VtdError::NotCoherent);
            }
            Some(u64::from((id.ebx >> 8) & 0xff) * 8)
        };
        let root = zeroed_page(frames, flush_line)?;
        let mut iommu = Iommu {
            regs,
            caps,
            levels,
            root,
            contexts: core::array::from_fn(|_| None),
            next_domain: caps.first_domain().max(1),
            flush_line,
            queue: None,
            irt: None,
        };
        iommu.regs.write64(reg::RTADDR, iommu.root.start());
        iommu.command(gcmd::SRTP, true, "set root table pointer")?;
        iommu.invalidate()?;
        iommu.command(gcmd::TE, true, "translation enable")?;
        Ok(iommu)
    }

    /// Version register, as major.minor.
    pub fn version(&self) -> (u32, u32) {
        let v = self.regs.read32(reg::VER);
        ((v >> 4) & 0xf, v & 0xf)
    }

    /// The decoded capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Page-table depth in use.
    pub fn levels(&self) -> u8 {
        self.levels
    }

    /// True when table writes are flushed from the caches (`ECAP.C = 0`).
    pub fn flushes_caches(&self) -> bool {
        self.flush_line.is_some()
    }

    fn flush(&self, start: u64, len: u64) {
        flush(self.flush_line, start, len);
    }

    fn command(&self, bit: u32, wait_set: bool, what: &'static str) -> Result<(), VtdError> {
        let status = self.regs.read32(reg::GSTS) & !gcmd::ONE_SHOT;
        self.regs.write32(reg::GCMD, status | bit);
        for _ in 0..SPINS {
            if (self.regs.read32(reg::GSTS) & bit != 0) == wait_set {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout(what))
    }

    /// Drops every cached context entry and translation. Table writes must already be
    /// visible to the unit (flushed, for a non-coherent one).
    fn invalidate(&mut self) -> Result<(), VtdError> {
        if self.queue.is_some() {
            return self.submit(&[descriptor::CONTEXT_GLOBAL, descriptor::IOTLB_GLOBAL]);
        }
        if self.caps.write_buffer_flush {
            self.command(gcmd::WBF, false, "write buffer flush")?;
        }
        self.regs.write64(reg::CCMD, CCMD_GLOBAL_INVALIDATE);
        self.wait_clear(reg::CCMD, "context-cache invalidation")?;
        let iotlb = self.caps.iotlb_offset + 8;
        self.regs.write64(iotlb, IOTLB_GLOBAL_INVALIDATE);
        self.wait_clear(iotlb, "IOTLB invalidation")
    }

    fn wait_clear(&self, offset: u64, what: &'static str) -> Result<(), VtdError> {
        for _ in 0..SPINS {
            if self.regs.read64(offset) >> 63 == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout(what))
    }

    /// Builds a domain mapping I/O virtual `[0, memory.len())` to `memory` and returns its
    /// ID, the root of its tables (already at the unit's depth) and the tables' pages, which
    /// the caller keeps as long as a device may use the domain.
    pub fn new_domain(
        &mut self,
        memory: Region,
        frames: &mut FrameAllocator,
    ) -> Result<(u16, u64, Frames), VtdError> {
        let domain = self.next_domain;
        if u32::from(domain) >= self.caps.domains {
            return Err(VtdError::NoDomain);
        }
        let gib = memory.len().div_ceil(1 << 30);
        let small = if self.caps.large_pages {
            0
        } else {
            memory.len().div_ceil(2 << 20)
        };
        let pages = 2 + gib + small;
        let mut arena = frames
            .alloc(pages * PAGE_SIZE, PAGE_SIZE)
            .ok_or(VtdError::NoMemory)?;
        let format = VtdFormat {
            large_pages: self.caps.large_pages,
        };
        let (start, len, levels) = (arena.start(), arena.len(), self.levels);
        // No device is attached to the domain yet: only the IOMMU will read the tables.
        let root = phys::with_frames(&mut arena, |bytes| -> Result<u64, PagingError> {
            let mut t = Tables::new(bytes, start, format)?;
            t.map_range(0, memory.start, memory.len(), Perm::RW)?;
            if levels == 3 {
                // A 3-level walk starts at the PDPT: the PML4's first entry.
                let first = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
                Ok(first & !0xfff)
            } else {
                Ok(start)
            }
        })
        .map_err(VtdError::Paging)?;
        // Written in full before any context entry points here; a non-coherent unit must
        // find them in memory.
        self.flush(start, len);
        self.next_domain += 1;
        Ok((domain, root, arena))
    }

    /// Lets the function with requester ID `source` DMA through `domain`'s tables.
    pub fn attach(
        &mut self,
        source: u16,
        domain: u16,
        tables: u64,
        frames: &mut FrameAllocator,
    ) -> Result<(), VtdError> {
        let bus = usize::from(source >> 8);
        let flush_line = self.flush_line;
        if self.contexts[bus].is_none() {
            let table = zeroed_page(frames, flush_line)?;
            let entry = root_entry(table.start());
            self.contexts[bus] = Some(table);
            write_entry(flush_line, &mut self.root, bus, entry);
        }
        let entry = context_entry(tables, self.levels, domain);
        let table = self.contexts[bus].as_mut().ok_or(VtdError::NoMemory)?;
        let slot = usize::from(source & 0xff);
        // Rewriting a live entry would need it cleared and invalidated first; a device
        // belongs to one qube for the whole run, so it is never done.
        let old = phys::with_frames(table, |b| {
            let at = slot * ENTRY_BYTES as usize;
            u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
        });
        if entry_present([old, 0]) {
            return Err(VtdError::AlreadyAttached(source));
        }
        write_entry(flush_line, table, slot, entry);
        self.invalidate()
    }

    /// Turns interrupt remapping on if the unit has it (and queued invalidation, which it
    /// needs): an empty table (every remappable message faults until an entry is written),
    /// compatibility-format messages blocked. From here on every invalidation is queued.
    /// `Ok(false)` when the unit cannot remap interrupts.
    pub fn enable_interrupt_remapping(
        &mut self,
        frames: &mut FrameAllocator,
    ) -> Result<bool, VtdError> {
        let ecap = self.regs.read64(reg::ECAP);
        if !ir::has_interrupt_remapping(ecap) || !ir::has_queued_invalidation(ecap) {
            return Ok(false);
        }
        let page = zeroed_page(frames, self.flush_line)?;
        let status = zeroed_page(frames, self.flush_line)?;
        self.regs.write64(ir::reg::IQT, 0);
        self.regs.write64(ir::reg::IQA, ir::iqa(page.start()));
        self.command(ir::gcmd::QIE, true, "queued invalidation enable")?;
        self.queue = Some(Queue {
            page,
            tail: 0,
            status,
            sequence: 0,
        });
        let irt = zeroed_page(frames, self.flush_line)?;
        self.regs.write64(ir::reg::IRTA, ir::irta(irt.start()));
        self.irt = Some(irt);
        self.command(
            ir::gcmd::SIRTP,
            true,
            "set interrupt remapping table pointer",
        )?;
        self.submit(&[descriptor::IEC_GLOBAL])?;
        self.command(ir::gcmd::IRE, true, "interrupt remapping enable")?;
        Ok(true)
    }

    /// Interrupt remapping is on (its table is set).
    pub fn remaps_interrupts(&self) -> bool {
        self.irt.is_some()
    }

    /// Writes interrupt remapping entry `index` (present bit last) and drops the unit's
    /// cached entries.
    pub fn set_irte(&mut self, index: usize, entry: [u64; 2]) -> Result<(), VtdError> {
        let flush_line = self.flush_line;
        let irt = self.irt.as_mut().ok_or(VtdError::NoMemory)?;
        if index >= ir::IRT_ENTRIES {
            return Err(VtdError::NoMemory);
        }
        write_entry(flush_line, irt, index, entry);
        self.submit(&[descriptor::IEC_GLOBAL])
    }

    /// Queues `descriptors` and a wait descriptor after them, and waits until the unit has
    /// carried them all out (its status write arrives).
    fn submit(&mut self, descriptors: &[[u64; 2]]) -> Result<(), VtdError> {
        let flush_line = self.flush_line;
        let q = self.queue.as_mut().ok_or(VtdError::QueueError)?;
        q.sequence = q.sequence.wrapping_add(1);
        let wait = descriptor::wait(q.status.start(), q.sequence);
        for d in descriptors.iter().chain(core::iter::once(&wait)) {
            let at = q.page.start() + q.tail as u64 * ir::ENTRY_BYTES;
            phys::store_ordered(&mut q.page, &[(at, d[0]), (at + 8, d[1])]);
            flush(flush_line, at, ir::ENTRY_BYTES);
            q.tail = (q.tail + 1) % ir::QUEUE_DESCRIPTORS;
        }
        self.regs.write64(ir::reg::IQT, ir::iqt(q.tail));
        for _ in 0..SPINS {
            if phys::shared_read_u32(&q.status, 0) == q.sequence {
                return Ok(());
            }
            if self.regs.read32(reg::FSTS) & FSTS_IQE != 0 {
                return Err(VtdError::QueueError);
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout("queued invalidation"))
    }

    /// Takes every recorded fault off the unit and hands it to `report`.
    pub fn drain_faults(&self, mut report: impl FnMut(Fault)) {
        if self.regs.read32(reg::FSTS) == 0 {
            return;
        }
        for i in 0..u64::from(self.caps.fault_records.min(256)) {
            let at = self.caps.fault_offset + i * 16;
            let (lo, hi) = (self.regs.read64(at), self.regs.read64(at + 8));
            if let Some(f) = Fault::decode(lo, hi) {
                report(f);
                self.regs.write32(at + 12, 1 << 31); // clear F (write 1)
            }
        }
        self.regs.write32(reg::FSTS, self.regs.read32(reg::FSTS)); // clear overflow etc.
    }
}

/// Makes the written bytes `[start, start + len)` visible to the unit: nothing to do for a
/// unit that snoops the caches (`flush_line` is `None`); CLFLUSH of every line they touch for
/// one that does not.
fn flush(flush_line: Option<u64>, start: u64, len: u64) {
    if let Some(line) = flush_line {
        phys::flush_cache_lines(cache_lines(start, len, line));
    }
}

/// Writes root or context entry `index` of the table page `table` (present bit last) and
/// flushes its line for a non-coherent unit. The caller then invalidates the unit's caches.
/// The high half is stored first: until the low half sets the present bit the entry is not
/// present, whatever its high half says.
fn write_entry(flush_line: Option<u64>, table: &mut Frames, index: usize, entry: [u64; 2]) {
    let start = table.start();
    let Some(stores) = entry_stores(start, index, entry) else {
        panic!("iommu: entry {index} of table {start:#x} is outside it");
    };
    phys::store_ordered(table, &stores);
    flush(flush_line, start + index as u64 * ENTRY_BYTES, ENTRY_BYTES);
}

/// A zeroed page for a table, flushed to memory when the unit does not snoop the caches (it
/// reads every non-present entry from there).
fn zeroed_page(frames: &mut FrameAllocator, flush_line: Option<u64>) -> Result<Frames, VtdError> {
    let mut page = frames
        .alloc(PAGE_SIZE, PAGE_SIZE)
        .ok_or(VtdError::NoMemory)?;
    phys::with_frames(&mut page, |b| b.fill(0));
    flush(flush_line, page.start(), page.len());
    Ok(page)
}
