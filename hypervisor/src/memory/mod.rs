//! Physical memory: what is free after boot, the frame allocator, and guest memory.

pub mod guest;
pub mod mmio;
pub mod phys;

use bulkhead_hvcore::bootinfo::BootEnv;
use bulkhead_hvcore::memmap::{FrameAllocator, Region};

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The hypervisor image's physical range (from the linker script).
pub fn image_region() -> Region {
    Region {
        start: (&raw const __image_start) as u64,
        end: (&raw const __image_end) as u64,
    }
}

/// The frame allocator over all RAM below the identity-map limit, minus low memory (BIOS
/// data, ROMs), the hypervisor image, the bundle and the loader's structures.
pub fn frame_allocator(env: &BootEnv) -> FrameAllocator {
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
        // A full map only happens with absurd firmware maps; then we keep fewer regions.
        let _ = map.remove(r);
    }
    FrameAllocator::new(map)
}
