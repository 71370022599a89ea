//! Channels: shared regions between exactly two qubes, set up from the manifest at boot.
//!
//! For each `[[channel]]` the hypervisor allocates zeroed pages, writes the layout header
//! (`bulkhead_abi::channel`), and records one [`Endpoint`] at each of the two qubes. The
//! qubes' nested page tables map the region at their endpoint's window (and nowhere else,
//! in no other qube); their boot info lists it. A channel with a bulk area also gets that
//! many zeroed bytes, mapped at each end's bulk window: side A's pool (the first half)
//! writable in A and read-only in B, side B's the other way round, never executable
//! (`bulkhead_hvcore::bulk`). After boot the hypervisor never reads the region: it only
//! raises events (`notify`) between the endpoints, and starts a region (and its bulk area)
//! over when an end restarts. The pages are owned by [`Regions`] (the scheduler's), not by
//! the endpoints: an endpoint only knows where its region is, so it cannot zero memory.

use crate::hvlog;
use crate::memory::phys;
use bulkhead_abi::channel::{Geometry, MAX_CHANNELS_PER_QUBE, WINDOW_BASE};
use bulkhead_abi::manifest::{MAX_CHANNELS, MAX_QUBES, Manifest};
use bulkhead_hvcore::PAGE_SIZE;
use bulkhead_hvcore::collections::BoundedVec;
use bulkhead_hvcore::memmap::{FrameAllocator, Frames, Region};

/// One end of a channel, as the qube at this end has it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Index of the channel in the manifest.
    pub id: usize,
    /// Its name.
    pub name: bulkhead_hvcore::collections::BoundedString<{ bulkhead_abi::boot_info::NAME_MAX }>,
    /// Where the shared pages are (owned by [`Regions`]).
    pub host: Region,
    /// Where the channel's bulk area is (owned by [`Regions`]); empty when it has none.
    pub bulk: Region,
    /// 0 = side A, 1 = side B.
    pub side: u32,
    /// Manifest index of the qube at the other end.
    pub peer: usize,
    /// Position of this channel in the peer's endpoint table (its event bit there).
    pub peer_local: usize,
}

impl Endpoint {
    /// Guest-physical address of this endpoint's window in a qube whose table has it at
    /// position `local`.
    pub fn window(local: usize) -> u64 {
        bulkhead_abi::channel::window(local)
    }

    /// The guest-physical range all channel windows of a qube lie in.
    pub fn windows() -> bulkhead_hvcore::memmap::Region {
        bulkhead_hvcore::memmap::Region {
            start: WINDOW_BASE,
            end: bulkhead_abi::channel::window(MAX_CHANNELS_PER_QUBE),
        }
    }

    /// The guest-physical range all bulk windows of a qube lie in.
    pub fn bulk_windows() -> bulkhead_hvcore::memmap::Region {
        let w = bulkhead_hvcore::bulk::WINDOWS;
        bulkhead_hvcore::memmap::Region {
            start: w.start,
            end: w.end(),
        }
    }
}

/// One channel's pages: its region and its bulk area, if any.
struct Pages {
    id: usize,
    region: Frames,
    geometry: Geometry,
    bulk: Option<Frames>,
}

/// The pages of every channel, by manifest channel index.
pub struct Regions {
    regions: BoundedVec<Pages, MAX_CHANNELS>,
}

impl Regions {
    /// Starts channel `id` over (zeroed, header, next reset generation; its bulk area
    /// zeroed) when an end restarts.
    pub fn reset(&mut self, id: usize) {
        if let Some(p) = self.regions.iter_mut().find(|p| p.id == id) {
            // The peer may be running on another CPU: volatile stores only.
            init_region(&mut p.region, &p.geometry);
            if let Some(bulk) = p.bulk.as_mut() {
                phys::shared_reset(bulk, &[]);
            }
        }
    }
}

/// A qube's endpoints; position = local channel index = event bit.
pub type Endpoints = bulkhead_hvcore::collections::BoundedVec<Endpoint, MAX_CHANNELS_PER_QUBE>;

/// Whether guest-physical `gpa` lies in the peer's pool of one of `channels`' bulk areas
/// (mapped read-only into the qube at these endpoints): a write there is a fault.
pub fn in_peer_pool(channels: &Endpoints, gpa: u64) -> bool {
    channels.iter().enumerate().any(|(local, c)| {
        let offset = gpa.wrapping_sub(bulkhead_abi::channel::bulk_window(local));
        bulkhead_hvcore::bulk::in_peer_pool(c.bulk.len(), c.side, offset)
    })
}

/// Writes a fresh channel: zeroed, the header, and the next reset generation (so an end
/// that outlived the reset notices before it touches the rings).
fn init_region(frames: &mut Frames, g: &Geometry) {
    let gen_at = bulkhead_abi::channel::GENERATION_OFFSET;
    let generation = phys::shared_read_u32(frames, gen_at).wrapping_add(1);
    let header = g.header();
    let words = header.chunks_exact(4).enumerate().map(|(i, w)| {
        let at = i as u64 * 4;
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        (at, if at == gen_at { generation } else { v })
    });
    let words = bulkhead_hvcore::collections::ArrayVec::<(u64, u32), 64>::try_from_iter(words);
    let mut words = words.unwrap_or_default();
    if !words.iter().any(|(at, _)| *at == gen_at) {
        let _ = words.push((gen_at, generation));
    }
    phys::shared_reset(frames, words.as_slice());
}

/// Allocates every channel of the manifest and returns their pages and each qube's endpoints
/// (indexed by the qube's manifest position). A channel that cannot be set up is logged and
/// left out.
pub fn create(
    manifest: &Manifest,
    frames: &mut FrameAllocator,
) -> (Regions, [Endpoints; MAX_QUBES]) {
    let mut tables: [Endpoints; MAX_QUBES] = core::array::from_fn(|_| Endpoints::new());
    let mut regions = Regions {
        regions: BoundedVec::new(),
    };
    for (id, c) in manifest.channels.iter().enumerate() {
        let (a, b) = (usize::from(c.a), usize::from(c.b));
        let name = c.name.as_str();
        let Some(geometry) = Geometry::new(u64::from(c.size), c.slot_size) else {
            hvlog!(
                "channel {name} not created: size {} with {}-byte slots is not a valid layout",
                c.size,
                c.slot_size
            );
            continue;
        };
        let Some(geometry) = geometry.with_bulk(u64::from(c.bulk_size)) else {
            hvlog!(
                "channel {name} not created: a bulk area of {} bytes is not two equal pools of \
                 whole pages, at most {} MiB",
                c.bulk_size,
                bulkhead_abi::channel::MAX_BULK_SIZE >> 20
            );
            continue;
        };
        if a == b || a >= manifest.qubes.len() || b >= manifest.qubes.len() {
            hvlog!("channel {name} not created: bad endpoints {a} and {b}");
            continue;
        }
        if tables[a].is_full() || tables[b].is_full() {
            hvlog!(
                "channel {name} not created: an endpoint has {MAX_CHANNELS_PER_QUBE} channels already"
            );
            continue;
        }
        // The bulk area first: it is the larger, and the bump allocator cannot give back
        // a region allocated before it.
        let bulk_size = u64::from(geometry.bulk_size);
        let bulk = match bulk_size {
            0 => None,
            n => match frames.alloc(n, bulkhead_hvcore::bulk::host_alignment(n)) {
                Some(mut f) => {
                    phys::with_frames(&mut f, |b| b.fill(0));
                    Some(f)
                }
                None => {
                    hvlog!(
                        "channel {name} not created: out of memory for its {} KiB bulk area",
                        n / 1024
                    );
                    continue;
                }
            },
        };
        let Some(mut pages) = frames.alloc(u64::from(c.size), PAGE_SIZE) else {
            hvlog!("channel {name} not created: out of memory");
            continue;
        };
        init_region(&mut pages, &geometry);
        let host = pages.region();
        let bulk_region = bulk
            .as_ref()
            .map_or(Region { start: 0, end: 0 }, Frames::region);
        // At most MAX_CHANNELS channels are in a manifest: this push succeeds.
        let _ = regions.regions.push(Pages {
            id,
            region: pages,
            geometry,
            bulk,
        });
        let (la, lb) = (tables[a].len(), tables[b].len());
        let end = |side, peer, peer_local| Endpoint {
            id,
            name: c.name,
            host,
            bulk: bulk_region,
            side,
            peer,
            peer_local,
        };
        // Both pushes succeed: fullness was checked above.
        let _ = tables[a].push(end(0, b, lb));
        let _ = tables[b].push(end(1, a, la));
        hvlog!(
            "channel {name}: {} <-> {}, {} KiB, {} slots of {} bytes per direction{} ({})",
            manifest.qubes[a].name.as_str(),
            manifest.qubes[b].name.as_str(),
            c.size / 1024,
            geometry.slot_count,
            geometry.slot_size,
            BulkKib(bulk_size),
            c.purpose.as_str()
        );
    }
    (regions, tables)
}

/// A bulk area's size for the channel log line: `, bulk area 1024 KiB`, nothing for none.
struct BulkKib(u64);

impl core::fmt::Display for BulkKib {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, ", bulk area {} KiB", n / 1024),
        }
    }
}
