//! The virtual PCI devices of a Linux qube: what the hypervisor's guest platform presents
//! and what the agent inside the AppVM relies on.
//!
//! Configuration space is reached through the legacy ports 0xcf8/0xcfc (type 1 accesses,
//! 256 bytes per function; there is no MCFG). Bus 0 holds a host bridge at 00:00.0 and one
//! *channel device* per channel of the qube at 00:`FIRST_CHANNEL_SLOT + local`.0.
//!
//! A channel device:
//! - BAR0/1: a 64-bit, non-prefetchable memory BAR over the channel's shared region (the
//!   layout of [`crate::channel`]), at the same guest-physical window a unikernel would
//!   have it, sized to the region rounded up to a power of two (only the region is mapped).
//!   The hypervisor decides the address: the BAR answers the sizing protocol but never moves.
//! - BAR2: 16 I/O ports of registers ([`reg`]).
//! - BAR4/5: when the channel has a bulk area, a 64-bit, non-prefetchable memory BAR over it
//!   (side A's pool in the first half, side B's in the second; see [`crate::channel`], bulk
//!   areas), at the same guest-physical bulk window a unikernel would have it
//!   ([`crate::channel::bulk_window`]), sized to the area rounded up to a power of two (only
//!   the area is mapped: this side's pool writable, the peer's read-only, neither
//!   executable; a write to the peer's pool stops the qube). Like BAR0 it answers the sizing
//!   protocol and never moves. Without a bulk area BAR4 and BAR5 read 0 (no BAR) and the
//!   capability's bulk size is 0.
//! - INTx pin A, level-triggered, routed by the DSDT's `_PRT` to I/O APIC input
//!   `FIRST_CHANNEL_GSI + local`. It is asserted while an event is pending and
//!   `COMMAND.INTX_DISABLE` is clear, and `STATUS.INTERRUPT` shows the pending event: what
//!   `uio_pci_generic` needs (it masks with `INTX_DISABLE` in its handler; the agent reads
//!   [`reg::EVENTS`] and clears `INTX_DISABLE` again through sysfs).
//! - A vendor-specific capability at [`INFO_CAP_OFFSET`] naming the channel ([`InfoCap`]).
//!
//! Bulkhead has no PCI-SIG vendor ID: [`VENDOR_ID`] is a project-local value, chosen so that
//! no in-tree Linux driver claims the devices (class 0xff, "unassigned").

/// Vendor ID of every Bulkhead virtual device.
pub const VENDOR_ID: u16 = 0xBD00;
/// Device ID of the host bridge.
pub const HOST_BRIDGE_DEVICE_ID: u16 = 0x0000;
/// Device ID of a channel device.
pub const CHANNEL_DEVICE_ID: u16 = 0x0001;
/// Class code (base, sub, programming interface) of a channel device.
pub const CHANNEL_CLASS: u32 = 0xFF_00_00;
/// Class code of the host bridge.
pub const HOST_BRIDGE_CLASS: u32 = 0x06_00_00;
/// PCI device number of the channel device for local channel 0.
pub const FIRST_CHANNEL_SLOT: u8 = 1;
/// First I/O port of the register block (BAR2) of local channel 0.
pub const IO_BASE: u16 = 0xC000;
/// Distance between the register blocks of consecutive channels (also their size).
pub const IO_STRIDE: u16 = 0x10;
/// I/O APIC input of local channel 0's INTx; channel `i` uses `FIRST_CHANNEL_GSI + i`.
pub const FIRST_CHANNEL_GSI: u32 = 16;
/// Offset of the [`InfoCap`] in configuration space.
pub const INFO_CAP_OFFSET: u8 = 0x40;
/// Version of the [`InfoCap`] layout (2: the bulk area's size; BAR4 over the area).
pub const INFO_CAP_VERSION: u8 = 2;

/// Registers of BAR2 (32-bit accesses).
pub mod reg {
    /// Write (any value): raise the channel's event at the peer, as the `notify` hypercall
    /// does for a unikernel.
    pub const DOORBELL: u16 = 0x0;
    /// Read: 1 if the peer raised the event since the last read, else 0. Reading clears it
    /// and deasserts INTx.
    pub const EVENTS: u16 = 0x4;
}

/// Offset of the name in the [`InfoCap`].
const NAME_AT: usize = 16;

/// The vendor-specific capability (ID 0x09) naming the channel. Layout from
/// [`INFO_CAP_OFFSET`]: `[0]` 0x09, `[1]` next (0), `[2]` length ([`InfoCap::LEN`]),
/// `[3]` [`INFO_CAP_VERSION`], `[4]` side (0 = A, 1 = B), `[5..8]` 0, `[8..12]` region size
/// in bytes (little-endian), `[12..16]` bulk area size in bytes (little-endian; 0: none, and
/// no BAR4), `[16..16 + NAME_MAX]` the channel name, NUL-padded.
///
/// The sizes come from the hypervisor, not from shared memory: an end maps the bulk area
/// only when the channel header (which the peer can write) names the same size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoCap {
    /// 0 = side A, 1 = side B.
    pub side: u8,
    /// Size of the shared region in bytes.
    pub size: u32,
    /// Size of the channel's bulk area in bytes (BAR4); 0 when it has none.
    pub bulk_size: u32,
    /// The channel's name.
    pub name: crate::bounded::BoundedString<{ crate::boot_info::NAME_MAX }>,
}

impl InfoCap {
    /// Length of the capability in bytes.
    pub const LEN: usize = NAME_AT + crate::boot_info::NAME_MAX;

    /// The capability's bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = 0x09;
        b[2] = Self::LEN as u8;
        b[3] = INFO_CAP_VERSION;
        b[4] = self.side;
        b[8..12].copy_from_slice(&self.size.to_le_bytes());
        b[12..16].copy_from_slice(&self.bulk_size.to_le_bytes());
        b[NAME_AT..NAME_AT + self.name.len()].copy_from_slice(self.name.as_bytes());
        b
    }

    /// Reads a capability from its bytes (as the agent finds them in the `config` file);
    /// `None` if they are not an info capability of this version.
    pub fn parse(b: &[u8]) -> Option<InfoCap> {
        if b.len() < Self::LEN || b[0] != 0x09 || b[3] != INFO_CAP_VERSION || b[4] > 1 {
            return None;
        }
        let name = &b[NAME_AT..Self::LEN];
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        let name = core::str::from_utf8(&name[..end]).ok()?;
        Some(InfoCap {
            side: b[4],
            size: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            bulk_size: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            name: crate::bounded::BoundedString::try_from(name).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn info_cap_round_trips() {
        let c = InfoCap {
            side: 1,
            size: 0x4_0000,
            bulk_size: 0x40_0000,
            name: crate::bounded::BoundedString::try_from("work.gui").unwrap(),
        };
        let b = c.to_bytes();
        assert_eq!(b.len(), InfoCap::LEN);
        assert_eq!(&b[12..16], &[0, 0, 0x40, 0]);
        assert_eq!(&b[16..24], b"work.gui");
        assert_eq!(InfoCap::parse(&b), Some(c));
        assert!(
            usize::from(INFO_CAP_OFFSET) + InfoCap::LEN <= 256,
            "fits configuration space"
        );
    }

    #[test]
    fn another_version_is_refused() {
        let c = InfoCap {
            side: 0,
            size: 0x4000,
            bulk_size: 0,
            name: crate::bounded::BoundedString::try_from("a").unwrap(),
        };
        let mut b = c.to_bytes();
        b[3] = 1;
        assert_eq!(InfoCap::parse(&b), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = InfoCap::parse(&bytes);
        }
    }
}
