//! The hypervisor's own page tables (`bulkhead_hvcore::host_map`): built once at boot in
//! frames below 4 GiB (the boot tables map only those), loaded on the boot CPU at once and
//! on each other CPU as it starts (`ap.s` loads them before it touches its stack, which may
//! lie above 4 GiB). From then on all RAM is mapped, the image's code is read-only and
//! nothing else executes.

use crate::arch::x86::{cpu, smp};
use bulkhead_hvcore::bootinfo::BootEnv;
use bulkhead_hvcore::host_map::{self, LOW_4G};
use bulkhead_hvcore::memmap::FrameAllocator;

/// What [`load`] mapped.
pub struct Loaded {
    /// One past the highest RAM byte mapped.
    pub top: u64,
    /// Page-table pages used.
    pub pages: usize,
    /// RAM mapped above 4 GiB, in bytes.
    pub above_4g: u64,
}

/// Builds the tables for `env`'s RAM and loads them on this (the boot) CPU; the other CPUs
/// load them when they start. On failure the boot tables stay (the first 4 GiB, and only
/// that memory is handed out).
pub fn load(env: &BootEnv, frames: &mut FrameAllocator) -> Result<Loaded, &'static str> {
    let plan = host_map::plan(&super::phys::image_sections(), &env.ram)
        .map_err(|_| "the image's sections or the memory map cannot be mapped")?;
    let pages = host_map::arena_pages(&plan);
    let mut arena = frames
        .alloc(
            pages as u64 * bulkhead_hvcore::PAGE_SIZE,
            bulkhead_hvcore::PAGE_SIZE,
        )
        .ok_or("no memory for the page tables")?;
    if arena.region().end > LOW_4G {
        return Err("no memory below 4 GiB for the page tables");
    }
    let base = arena.start();
    let root = super::phys::with_frames(&mut arena, |bytes| host_map::build(bytes, base, &plan))
        .map_err(|_| "the page tables did not fit their arena")?;
    // The tables stay for the rest of the run: `arena` is never given back.
    core::mem::forget(arena);
    // SAFETY: `root` maps the image (text executable, data and stack writable) and all of
    // RAM at the addresses the boot tables gave them, and all device memory below 4 GiB
    // uncached, so every address the hypervisor uses keeps its meaning.
    unsafe { cpu::write_cr3(root) };
    smp::set_ap_cr3(root);
    let top = plan
        .iter()
        .filter(|m| m.perm.cache == host_map::TEXT.cache && !m.perm.exec)
        .map(|m| m.region.end)
        .max()
        .unwrap_or(LOW_4G);
    super::phys::set_mapped_end(top);
    let above_4g = env
        .ram
        .regions()
        .iter()
        .map(|r| r.end.saturating_sub(r.start.max(LOW_4G)))
        .sum();
    Ok(Loaded {
        top,
        pages,
        above_4g,
    })
}
