//! Physical memory: what is free after boot, the frame allocator, and guest memory.

pub mod guest;
#[allow(unsafe_code)]
pub mod mmio;
#[allow(unsafe_code)]
pub mod phys;

use bulkhead_hvcore::bootinfo::BootEnv;
use bulkhead_hvcore::memmap::{FrameAllocator, Region};

pub use phys::image_region;

/// The frame allocator over all RAM below the identity-map limit, minus low memory (BIOS
/// data, ROMs), the hypervisor image, the bundle and the loader's structures; or the range
/// that could not be kept out of it (the memory map is full), which must halt the boot:
/// the allocator could hand out the image or the bundle.
pub fn frame_allocator(env: &BootEnv) -> Result<FrameAllocator, Region> {
    let mut map = env.ram.clone();
    let mut reserved = [
        Region {
            start: 0,
            end: 0x10_0000,
        },
        image_region(),
        env.info,
        Region {
            start: phys::MAPPED_LIMIT,
            end: u64::MAX,
        },
        Region { start: 0, end: 0 },
    ];
    if let Some(b) = env.bundle {
        reserved[4] = b;
    }
    for r in reserved {
        if !map.remove(r) {
            return Err(r);
        }
    }
    Ok(FrameAllocator::new(map))
}
