//! Physical memory: what is free after boot, the frame allocator, and guest memory.

pub mod guest;
#[allow(unsafe_code)]
pub mod host_tables;
#[allow(unsafe_code)]
pub mod mmio;
#[allow(unsafe_code)]
pub mod phys;

use bulkhead_hvcore::bootinfo::BootEnv;
use bulkhead_hvcore::memmap::{FrameAllocator, Region};

pub use phys::image_region;

/// The frame allocator over all RAM, minus low memory (BIOS data, ROMs), the hypervisor
/// image, the bundle and the loader's structures; or the range that could not be kept out
/// of it (the memory map is full), which must halt the boot: the allocator could hand out
/// the image or the bundle. Memory above 4 GiB is mapped only once `host_tables::load` ran:
/// until then only `alloc` (lowest first) may be used, and `with_frames` checks.
pub fn frame_allocator(env: &BootEnv) -> Result<FrameAllocator, Region> {
    let mut map = env.ram.clone();
    let mut reserved = [
        Region {
            start: 0,
            end: 0x10_0000,
        },
        image_region(),
        env.info,
        Region { start: 0, end: 0 },
    ];
    if let Some(b) = env.bundle {
        reserved[3] = b;
    }
    for r in reserved {
        if !map.remove(r) {
            return Err(r);
        }
    }
    Ok(FrameAllocator::new(map))
}
