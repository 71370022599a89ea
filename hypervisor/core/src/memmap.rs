//! The physical memory map and the frame allocator.
//!
//! Boot code collects the firmware's RAM ranges into a [`MemoryMap`], removes what is in use
//! (low memory, the hypervisor image, the boot bundle), and hands the rest to a
//! [`FrameAllocator`], which gives out aligned, contiguous blocks. Qube memory is never given
//! back in this version (restarts reuse a qube's own block), so the allocator is a per-region
//! bump allocator: simple enough to read at once.

/// Most regions the map holds; firmware maps are far smaller.
pub const MAX_REGIONS: usize = 64;

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Region {
    /// A region from start and length, `None` if it wraps.
    pub fn from_len(start: u64, len: u64) -> Option<Region> {
        Some(Region {
            start,
            end: start.checked_add(len)?,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether the two regions share a byte.
    pub fn overlaps(&self, other: &Region) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Sorted, non-overlapping usable RAM regions.
#[derive(Clone, Debug)]
pub struct MemoryMap {
    regions: [Region; MAX_REGIONS],
    len: usize,
}

impl Default for MemoryMap {
    fn default() -> Self {
        MemoryMap::new()
    }
}

impl MemoryMap {
    /// An empty map.
    pub const fn new() -> MemoryMap {
        MemoryMap {
            regions: [Region { start: 0, end: 0 }; MAX_REGIONS],
            len: 0,
        }
    }

    /// The regions, sorted by address.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.len]
    }

    /// Total usable bytes.
    pub fn total(&self) -> u64 {
        self.regions().iter().map(Region::len).sum()
    }

    /// Adds usable RAM, merging with neighbours. Returns false (and ignores it) when the map
    /// is full; empty regions are ignored.
    pub fn add(&mut self, r: Region) -> bool {
        if r.is_empty() {
            return true;
        }
        let mut merged = r;
        let mut out = [Region { start: 0, end: 0 }; MAX_REGIONS];
        let mut n = 0;
        let mut placed = false;
        for &cur in self.regions() {
            if cur.end < merged.start {
                out[n] = cur;
                n += 1;
            } else if merged.end < cur.start {
                if !placed {
                    if n == MAX_REGIONS {
                        return false;
                    }
                    out[n] = merged;
                    n += 1;
                    placed = true;
                }
                if n == MAX_REGIONS {
                    return false;
                }
                out[n] = cur;
                n += 1;
            } else {
                merged = Region {
                    start: merged.start.min(cur.start),
                    end: merged.end.max(cur.end),
                };
            }
        }
        if !placed {
            if n == MAX_REGIONS {
                return false;
            }
            out[n] = merged;
            n += 1;
        }
        self.regions = out;
        self.len = n;
        true
    }

    /// Removes a range (reserved memory) from the map. Returns false if the map is full
    /// (a split needed one more slot); the map is then unchanged.
    pub fn remove(&mut self, r: Region) -> bool {
        if r.is_empty() {
            return true;
        }
        let mut out = [Region { start: 0, end: 0 }; MAX_REGIONS];
        let mut n = 0;
        for &cur in self.regions() {
            let pieces = [
                Region {
                    start: cur.start,
                    end: cur.end.min(r.start),
                },
                Region {
                    start: cur.start.max(r.end),
                    end: cur.end,
                },
            ];
            for p in pieces {
                if !p.is_empty() {
                    if n == MAX_REGIONS {
                        return false;
                    }
                    out[n] = p;
                    n += 1;
                }
            }
        }
        self.regions = out;
        self.len = n;
        true
    }
}

/// Hands out aligned contiguous blocks of physical memory from a [`MemoryMap`], each as a
/// [`Frames`] owner. Not `Clone`: a copy of the allocator could hand the same frames out
/// twice.
#[derive(Debug)]
pub struct FrameAllocator {
    free: MemoryMap,
}

/// The owner of one block of RAM handed out by a [`FrameAllocator`]: not `Copy`, not
/// `Clone`, and nothing but the allocator can make one, so whoever holds it (by value or by
/// `&mut`) is the only one who can reach that memory through it. Its [`Frames::region`] is
/// a plain description of where it is (for page tables and hardware pointers), which grants
/// nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct Frames {
    region: Region,
}

impl Frames {
    /// Where the block is.
    pub fn region(&self) -> Region {
        self.region
    }

    /// Its first byte's physical address.
    pub fn start(&self) -> u64 {
        self.region.start
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.region.len()
    }

    /// Whether it is empty (never, for a block from the allocator).
    pub fn is_empty(&self) -> bool {
        self.region.len() == 0
    }
}

impl FrameAllocator {
    /// Takes over the usable memory of `map`.
    pub fn new(map: MemoryMap) -> FrameAllocator {
        FrameAllocator { free: map }
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        self.free.total()
    }

    /// Allocates `size` bytes aligned to `align` (a power of two), lowest address first.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<Frames> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let found = self.free.regions().iter().find_map(|r| {
            let start = crate::align_up(r.start, align)?;
            let end = start.checked_add(size)?;
            (end <= r.end).then_some(Region { start, end })
        })?;
        // Removing a range that lies inside one region splits it at most once; if the map
        // is full the allocation fails rather than losing track of memory.
        if self.free.remove(found) {
            Some(Frames { region: found })
        } else {
            None
        }
    }

    /// As [`FrameAllocator::alloc`], but from the top of memory down: qubes' memory comes
    /// from high RAM, leaving low RAM (below 4 GiB) to the hypervisor's own structures.
    pub fn alloc_high(&mut self, size: u64, align: u64) -> Option<Frames> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let found = self.free.regions().iter().rev().find_map(|r| {
            let start = r.end.checked_sub(size)? & !(align - 1);
            (start >= r.start).then_some(Region {
                start,
                end: start + size,
            })
        })?;
        if self.free.remove(found) {
            Some(Frames { region: found })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, end: u64) -> Region {
        Region { start, end }
    }

    #[test]
    fn alloc_high_takes_the_top_of_the_highest_range_that_fits() {
        let mut m = MemoryMap::new();
        assert!(m.add(r(0x10_0000, 0x8000_0000)));
        assert!(m.add(r(0x1_0000_0000, 0x1_0030_0000)));
        let mut a = FrameAllocator::new(m);
        let f = a.alloc_high(0x20_0000, 0x20_0000).unwrap();
        assert_eq!(f.region(), r(0x1_0000_0000, 0x1_0020_0000));
        // Too big for what is left up there: the next range down.
        let f = a.alloc_high(0x20_0000, 0x20_0000).unwrap();
        assert_eq!(f.region(), r(0x7fe0_0000, 0x8000_0000));
        let f = a.alloc_high(0x1000, 0x1000).unwrap();
        assert_eq!(f.region(), r(0x1_002f_f000, 0x1_0030_0000));
        assert!(a.alloc_high(0, 0x1000).is_none());
        assert!(a.alloc_high(0x1_0000_0000, 0x1000).is_none());
    }

    #[test]
    fn add_merges_and_sorts() {
        let mut m = MemoryMap::new();
        m.add(r(0x5000, 0x6000));
        m.add(r(0x1000, 0x2000));
        m.add(r(0x2000, 0x3000));
        assert_eq!(m.regions(), &[r(0x1000, 0x3000), r(0x5000, 0x6000)]);
        m.add(r(0x2800, 0x5800));
        assert_eq!(m.regions(), &[r(0x1000, 0x6000)]);
    }

    #[test]
    fn remove_splits() {
        let mut m = MemoryMap::new();
        m.add(r(0, 0x10000));
        m.remove(r(0x4000, 0x5000));
        assert_eq!(m.regions(), &[r(0, 0x4000), r(0x5000, 0x10000)]);
        assert_eq!(m.total(), 0xF000);
    }

    #[test]
    fn alloc_aligns_and_never_overlaps() {
        let mut m = MemoryMap::new();
        m.add(r(0x10_0000, 0x100_0000));
        let mut a = FrameAllocator::new(m);
        let x = a.alloc(0x1000, 0x1000).unwrap().region();
        let y = a.alloc(0x20_0000, 0x20_0000).unwrap().region();
        assert_eq!(y.start % 0x20_0000, 0);
        assert!(x.end <= y.start || y.end <= x.start);
        assert!(a.alloc(0x1000_0000, 0x1000).is_none());
        assert!(a.alloc(0, 0x1000).is_none());
        assert!(a.alloc(0x1000, 3).is_none());
    }

    proptest! {
        #[test]
        fn allocations_stay_inside_ram_and_disjoint(
            ram in proptest::collection::vec((0u64..1 << 32, 1u64..1 << 24), 1..12),
            holes in proptest::collection::vec((0u64..1 << 32, 1u64..1 << 22), 0..8),
            reqs in proptest::collection::vec((1u64..1 << 22, 0u32..22), 1..40),
        ) {
            let mut m = MemoryMap::new();
            for (s, l) in &ram { m.add(r(*s, s + l)); }
            let orig = m.clone();
            for (s, l) in &holes { m.remove(r(*s, s + l)); }
            let mut a = FrameAllocator::new(m);
            let mut got: std::vec::Vec<Region> = std::vec::Vec::new();
            for (size, align_log) in reqs {
                let align = 1u64 << align_log;
                if let Some(g) = a.alloc(size, align).map(|f| f.region()) {
                    prop_assert_eq!(g.start % align, 0);
                    prop_assert_eq!(g.len(), size);
                    prop_assert!(orig.regions().iter().any(|o| o.start <= g.start && g.end <= o.end));
                    for (s, l) in &holes { prop_assert!(g.end <= *s || s + l <= g.start); }
                    for o in &got { prop_assert!(g.end <= o.start || o.end <= g.start); }
                    got.push(g);
                }
            }
        }
    }
}
