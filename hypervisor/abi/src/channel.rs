//! Channel layout, version 1: the shared memory two qubes talk through.
//!
//! A channel is one region of `size` bytes mapped into exactly two qubes (its endpoints, side
//! A and side B) at the guest-physical address their boot info gives. The hypervisor writes
//! the header before either end runs; after that it never touches the region, and each end
//! treats everything in it as written by a hostile peer.
//!
//! ```text
//! offset 0     header (one page)
//!   0   magic        u64  CHANNEL_MAGIC
//!   8   version      u32  CHANNEL_VERSION
//!   12  slot_size    u32  bytes per slot, a power of two, SLOT_HEADER + payload
//!   16  slot_count   u32  slots per ring, a power of two
//!   20  ring_size    u32  bytes per ring (control block + slots)
//!   24  ring_offset  [u32; 2]  ring 0 carries A→B, ring 1 carries B→A
//!   64  generation   u32  bumped by the hypervisor each time it resets the channel (when
//!                         an endpoint restarts); an end that sees it change reopens
//! ring (at ring_offset[i])
//!   0   producer index   u32, written only by the producer (free-running, wraps)
//!   64  consumer index   u32, written only by the consumer (free-running, wraps)
//!   68  consumer waiting u32, set by the consumer before it waits for an event
//!   128 slots: slot_count × slot_size; slot = { len u32, reserved u32, payload }
//! ```
//!
//! Messages are postcard-encoded and must fit one slot's payload; larger ones are refused with
//! an error at the sender (no bulk region in version 1).

/// Header magic: "BHCHAN" then version bytes.
pub const CHANNEL_MAGIC: u64 = u64::from_le_bytes(*b"BHCHAN\x00\x01");
/// Layout version.
pub const CHANNEL_VERSION: u32 = 1;
/// Offset in the header page of the reset generation.
pub const GENERATION_OFFSET: u64 = 64;
/// Bytes of the header page.
pub const HEADER_SIZE: u64 = 4096;
/// Bytes of a ring's control block before its slots.
pub const RING_CONTROL_SIZE: u64 = 128;
/// Offset of the producer index in a ring.
pub const PRODUCER_OFFSET: u64 = 0;
/// Offset of the consumer index in a ring.
pub const CONSUMER_OFFSET: u64 = 64;
/// Offset of the consumer-waiting flag in a ring.
pub const WAITING_OFFSET: u64 = 68;
/// Bytes before a slot's payload (length, reserved).
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

/// Guest-physical address of the window of a qube's channel `local` (its index in the boot
/// info's channel table, the index the guest opens it by). Every qube's windows lie in
/// `WINDOW_BASE..window(MAX_CHANNELS_PER_QUBE)`. The hypervisor, the guests and the tools all
/// use this function: the formula is written here only.
pub const fn window(local: usize) -> u64 {
    WINDOW_BASE + local as u64 * WINDOW_STRIDE
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
        })
    }

    /// Largest payload one message may have.
    pub fn max_payload(&self) -> u32 {
        self.slot_size - SLOT_HEADER
    }

    /// The header bytes the hypervisor writes at offset 0.
    pub fn header(&self) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[0..8].copy_from_slice(&CHANNEL_MAGIC.to_le_bytes());
        h[8..12].copy_from_slice(&CHANNEL_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.slot_size.to_le_bytes());
        h[16..20].copy_from_slice(&self.slot_count.to_le_bytes());
        h[20..24].copy_from_slice(&self.ring_size.to_le_bytes());
        h[24..28].copy_from_slice(&self.ring_offset[0].to_le_bytes());
        h[28..32].copy_from_slice(&self.ring_offset[1].to_le_bytes());
        h
    }

    /// Reads a header and checks it is exactly what [`Geometry::new`] gives for `size`
    /// (an end trusts only a geometry it could have computed itself).
    pub fn from_header(header: &[u8; 32], size: u64) -> Option<Geometry> {
        let u32_at =
            |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
        let magic = u64::from_le_bytes(header[0..8].try_into().ok()?);
        if magic != CHANNEL_MAGIC || u32_at(8) != CHANNEL_VERSION {
            return None;
        }
        let g = Geometry::new(size, u32_at(12))?;
        (g.header() == *header).then_some(g)
    }
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
        fn any_header_is_checked(bytes: [u8; 32], pages in 3u64..=512) {
            if let Some(g) = Geometry::from_header(&bytes, pages * 4096) {
                prop_assert_eq!(g.header(), bytes);
            }
        }
    }
}
