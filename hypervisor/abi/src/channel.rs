//! Channel layout, version 2: the shared memory two qubes talk through.
//!
//! A channel is one region of `size` bytes mapped into exactly two qubes (its endpoints, side
//! A and side B) at the guest-physical address their boot info gives, and optionally a bulk
//! area for payloads larger than a slot (see [`bulk`](#bulk-areas)). The hypervisor writes the
//! header before either end runs; after that it never touches the region, and each end treats
//! everything in it as written by a hostile peer.
//!
//! ```text
//! offset 0     header (one page)
//!   0   magic        u64  CHANNEL_MAGIC
//!   8   version      u32  CHANNEL_VERSION
//!   12  slot_size    u32  bytes per slot, a power of two, SLOT_HEADER + payload
//!   16  slot_count   u32  slots per ring, a power of two
//!   20  ring_size    u32  bytes per ring (control block + slots)
//!   24  ring_offset  [u32; 2]  ring 0 carries A→B, ring 1 carries B→A
//!   32  bulk_size    u32  bytes of the channel's bulk area (0: none)
//!   36..64           zero
//!   64  generation   u32  bumped by the hypervisor each time it resets the channel (when
//!                         an endpoint restarts); an end that sees it change reopens
//! ring (at ring_offset[i])
//!   0   consumer index   u32, written only by the consumer (free-running, wraps); published
//!                        every quarter ring and before the consumer waits
//!   64  consumer waiting u32, set by the consumer before it waits for an event (its own
//!                        cache line: the producer reads it after every message)
//!   128 slots: slot_count × slot_size; slot = { seq u32, len u32, payload }
//! ```
//!
//! A slot carries its own sequence word: the producer fills slot `i mod slot_count` (payload,
//! then `len`) and then stores `seq = i + 1` (release). The consumer at index `i` polls that
//! word (acquire): `i + 1` means a message, `i + 1 - slot_count` (the lap before) or 0 (never
//! written) means not yet, anything else is a breach. A message that fits one cache line with
//! its sequence word (a 64-byte slot) crosses in one line transfer; no producer index exists.
//!
//! Messages are postcard-encoded and must fit one slot's payload; larger payloads go through
//! the bulk area, passed by descriptor in a message.
//!
//! # Bulk areas
//!
//! A channel may have a bulk area of `bulk_size` bytes (a multiple of [`BULK_POOL_ALIGN`] × 2,
//! at most [`MAX_BULK_SIZE`]) at its own window ([`bulk_window`]). Its first half is side A's
//! pool, its second half side B's: each side writes buffers only in its own pool and lends
//! them to the peer by `(offset, len)` descriptors; the hypervisor maps a side's pool
//! writable into that side and read-only into the peer, so a lent buffer can be changed only
//! by its owner.

/// Header magic: "BHCHAN" then version bytes.
pub const CHANNEL_MAGIC: u64 = u64::from_le_bytes(*b"BHCHAN\x00\x02");
/// Layout version.
pub const CHANNEL_VERSION: u32 = 2;
/// Offset in the header page of the reset generation.
pub const GENERATION_OFFSET: u64 = 64;
/// Bytes of the header page.
pub const HEADER_SIZE: u64 = 4096;
/// Bytes of a ring's control block before its slots.
pub const RING_CONTROL_SIZE: u64 = 128;
/// Bytes of the header the hypervisor writes (and each end checks) before the generation.
pub const HEADER_BYTES: usize = 64;
/// Offset of the consumer index in a ring.
pub const CONSUMER_OFFSET: u64 = 0;
/// Offset of the consumer-waiting flag in a ring.
pub const WAITING_OFFSET: u64 = 64;
/// Offset of the sequence word in a slot.
pub const SEQ_OFFSET: u64 = 0;
/// Offset of the length word in a slot.
pub const LEN_OFFSET: u64 = 4;
/// Bytes before a slot's payload (sequence, length).
pub const SLOT_HEADER: u32 = 8;
/// Smallest slot.
pub const MIN_SLOT_SIZE: u32 = 64;
/// Largest slot.
pub const MAX_SLOT_SIZE: u32 = 65536;
/// Smallest channel region.
pub const MIN_CHANNEL_SIZE: u64 = 3 * 4096;
/// Largest channel region.
pub const MAX_CHANNEL_SIZE: u64 = 2 * 1024 * 1024;
/// Where channel windows start in every qube's guest-physical space.
pub const WINDOW_BASE: u64 = 0x40_0000_0000;
/// Distance between two channel windows (a qube's channel `i` is at `WINDOW_BASE + i * WINDOW_STRIDE`).
pub const WINDOW_STRIDE: u64 = MAX_CHANNEL_SIZE;
/// Most channels one qube may be an endpoint of.
pub const MAX_CHANNELS_PER_QUBE: usize = 8;
/// Largest bulk area of one channel.
pub const MAX_BULK_SIZE: u64 = 64 * 1024 * 1024;
/// A pool (half a bulk area) is a multiple of this.
pub const BULK_POOL_ALIGN: u64 = 4096;
/// Where bulk windows start in every qube's guest-physical space.
pub const BULK_WINDOW_BASE: u64 = 0x40_4000_0000;

/// Guest-physical address of the window of a qube's channel `local` (its index in the boot
/// info's channel table, the index the guest opens it by). Every qube's windows lie in
/// `WINDOW_BASE..window(MAX_CHANNELS_PER_QUBE)`. The hypervisor, the guests and the tools all
/// use this function: the formula is written here only.
pub const fn window(local: usize) -> u64 {
    WINDOW_BASE + local as u64 * WINDOW_STRIDE
}

/// Guest-physical address of the bulk window of a qube's channel `local` (the channel's bulk
/// area, if it has one). Every qube's bulk windows lie in
/// `BULK_WINDOW_BASE..bulk_window(MAX_CHANNELS_PER_QUBE)`.
pub const fn bulk_window(local: usize) -> u64 {
    BULK_WINDOW_BASE + local as u64 * MAX_BULK_SIZE
}

/// Whether `bulk_size` is a valid bulk area size: 0 (none), or two equal pools of whole
/// pages, at most [`MAX_BULK_SIZE`] in all.
pub const fn bulk_size_valid(bulk_size: u64) -> bool {
    bulk_size <= MAX_BULK_SIZE && bulk_size.is_multiple_of(2 * BULK_POOL_ALIGN)
}

/// The sequence word slot `index`'s producer stores when it publishes it.
#[inline]
pub const fn published_seq(index: u32) -> u32 {
    index.wrapping_add(1)
}

/// Sizes both ends (and the hypervisor) derive from the region size and the slot size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per slot.
    pub slot_size: u32,
    /// Slots per ring.
    pub slot_count: u32,
    /// Bytes per ring.
    pub ring_size: u32,
    /// Offsets of ring 0 (A→B) and ring 1 (B→A).
    pub ring_offset: [u32; 2],
    /// Bytes of the bulk area (0: none).
    pub bulk_size: u32,
}

impl Geometry {
    /// The geometry of a region of `size` bytes with `slot_size`-byte slots, or `None` when
    /// the sizes are out of range (not page-multiple, not a power of two, fewer than 2 slots).
    pub fn new(size: u64, slot_size: u32) -> Option<Geometry> {
        if !(MIN_CHANNEL_SIZE..=MAX_CHANNEL_SIZE).contains(&size) || !size.is_multiple_of(4096) {
            return None;
        }
        if !slot_size.is_power_of_two() || !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&slot_size) {
            return None;
        }
        let per_ring = (size - HEADER_SIZE) / 2;
        let fit = per_ring.checked_sub(RING_CONTROL_SIZE)? / u64::from(slot_size);
        if fit < 2 {
            return None;
        }
        let slot_count = 1u32 << (63 - fit.leading_zeros());
        let ring_size = (RING_CONTROL_SIZE + u64::from(slot_count) * u64::from(slot_size)) as u32;
        let ring0 = HEADER_SIZE as u32;
        let ring1 = ring0 + ring_size.next_multiple_of(64);
        Some(Geometry {
            slot_size,
            slot_count,
            ring_size,
            ring_offset: [ring0, ring1],
            bulk_size: 0,
        })
    }

    /// The same rings with a bulk area of `bulk_size` bytes, or `None` when that is not a
    /// valid size ([`bulk_size_valid`]).
    pub fn with_bulk(self, bulk_size: u64) -> Option<Geometry> {
        let bulk_size = u32::try_from(bulk_size).ok()?;
        bulk_size_valid(u64::from(bulk_size)).then_some(Geometry { bulk_size, ..self })
    }

    /// Bytes of each side's pool in the bulk area.
    pub fn bulk_pool_size(&self) -> u32 {
        self.bulk_size / 2
    }

    /// Largest payload one message may have.
    pub fn max_payload(&self) -> u32 {
        self.slot_size - SLOT_HEADER
    }

    /// The header bytes the hypervisor writes at offset 0.
    pub fn header(&self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h[0..8].copy_from_slice(&CHANNEL_MAGIC.to_le_bytes());
        h[8..12].copy_from_slice(&CHANNEL_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.slot_size.to_le_bytes());
        h[16..20].copy_from_slice(&self.slot_count.to_le_bytes());
        h[20..24].copy_from_slice(&self.ring_size.to_le_bytes());
        h[24..28].copy_from_slice(&self.ring_offset[0].to_le_bytes());
        h[28..32].copy_from_slice(&self.ring_offset[1].to_le_bytes());
        h[32..36].copy_from_slice(&self.bulk_size.to_le_bytes());
        h
    }

    /// Reads a header and checks it is exactly what [`Geometry::new`] and
    /// [`Geometry::with_bulk`] give for `size` and the bulk size it names (an end trusts only
    /// a geometry it could have computed itself). [`header_version`] tells a header of
    /// another layout version apart.
    pub fn from_header(header: &[u8; HEADER_BYTES], size: u64) -> Option<Geometry> {
        let u32_at =
            |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
        let magic = u64::from_le_bytes(header[0..8].try_into().ok()?);
        if magic != CHANNEL_MAGIC || u32_at(8) != CHANNEL_VERSION {
            return None;
        }
        let g = Geometry::new(size, u32_at(12))?.with_bulk(u64::from(u32_at(32)))?;
        (g.header() == *header).then_some(g)
    }
}

/// The layout version a header names, if it starts with a channel magic of any version
/// (so an end can say "layout version 1, this end speaks 2" instead of "not a channel").
pub fn header_version(header: &[u8; HEADER_BYTES]) -> Option<u32> {
    let magic = u64::from_le_bytes(header[0..8].try_into().ok()?);
    if magic & 0x0000_FFFF_FFFF_FFFF != CHANNEL_MAGIC & 0x0000_FFFF_FFFF_FFFF {
        return None;
    }
    Some(u32::from_le_bytes(header[8..12].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn windows_are_one_largest_channel_apart() {
        assert_eq!(window(0), 0x40_0000_0000);
        assert_eq!(window(1) - window(0), MAX_CHANNEL_SIZE);
        assert_eq!(window(MAX_CHANNELS_PER_QUBE), 0x40_0100_0000);
    }

    #[test]
    fn sixteen_kib_with_128_byte_slots() {
        let g = Geometry::new(16384, 128).unwrap();
        assert_eq!(g.slot_count, 32);
        assert_eq!(g.ring_offset[0], 4096);
        assert!(u64::from(g.ring_offset[1] + g.ring_size) <= 16384);
        assert_eq!(Geometry::from_header(&g.header(), 16384), Some(g));
        assert_eq!(Geometry::from_header(&g.header(), 32768), None);
        let b = g.with_bulk(1 << 20).unwrap();
        assert_eq!(b.bulk_pool_size(), 512 * 1024);
        assert_eq!(Geometry::from_header(&b.header(), 16384), Some(b));
        assert_eq!(header_version(&b.header()), Some(CHANNEL_VERSION));
    }

    #[test]
    fn bulk_sizes_are_two_page_pools() {
        let g = Geometry::new(16384, 128).unwrap();
        assert!(g.with_bulk(0).is_some());
        assert!(g.with_bulk(8192).is_some());
        assert!(g.with_bulk(4096).is_none());
        assert!(g.with_bulk(MAX_BULK_SIZE).is_some());
        assert!(g.with_bulk(MAX_BULK_SIZE + 8192).is_none());
        assert_eq!(bulk_window(1) - bulk_window(0), MAX_BULK_SIZE);
        assert!(window(MAX_CHANNELS_PER_QUBE) <= BULK_WINDOW_BASE);
    }

    #[test]
    fn a_version_1_header_is_named() {
        let mut h = Geometry::new(16384, 128).unwrap().header();
        h[6..8].copy_from_slice(&[0, 1]);
        h[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(Geometry::from_header(&h, 16384), None);
        assert_eq!(header_version(&h), Some(1));
    }

    #[test]
    fn refuses_bad_sizes() {
        assert_eq!(Geometry::new(4096, 64), None);
        assert_eq!(Geometry::new(16384, 100), None);
        assert_eq!(Geometry::new(16384 + 1, 64), None);
        assert_eq!(Geometry::new(16384, 8192), None);
    }

    proptest! {
        #[test]
        fn rings_fit_the_region(pages in 3u64..=512, slot_log in 6u32..=16) {
            let size = pages * 4096;
            if let Some(g) = Geometry::new(size, 1 << slot_log) {
                prop_assert!(g.slot_count.is_power_of_two() && g.slot_count >= 2);
                prop_assert!(u64::from(g.ring_offset[1]) + u64::from(g.ring_size) <= size);
                prop_assert!(g.ring_offset[0] + g.ring_size <= g.ring_offset[1]);
            }
        }

        #[test]
        fn any_header_is_checked(bytes: [u8; HEADER_BYTES], pages in 3u64..=512) {
            if let Some(g) = Geometry::from_header(&bytes, pages * 4096) {
                prop_assert_eq!(g.header(), bytes);
            }
        }
    }
}
