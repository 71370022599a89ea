//! The DSDT's definition block: `\_S5` for poweroff and the PCI root bridge `\_SB.PCI0`
//! whose `_PRT` routes each channel device's INTA to its I/O APIC input
//! ([`bulkhead_abi::guest_pci`]). In ASL:
//!
//! ```text
//! Name (\_S5, Package () { 5, 0, 0, 0 })
//! Scope (\_SB) {
//!     Device (PCI0) {
//!         Name (_HID, EisaId ("PNP0A03"))
//!         Name (_UID, 0)
//!         Name (_BBN, 0)
//!         Name (_ADR, 0)
//!         Name (_PRT, Package () {
//!             Package () { 0x0001FFFF, 0, 0, 16 },   // 00:01, INTA → GSI 16
//!             ...                                     // one per channel slot
//!             Package () { 0x0008FFFF, 0, 0, 23 },
//!         })
//!         Name (_CRS, ResourceTemplate () {
//!             WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
//!                 0, 0, 0, 0, 1)
//!             IO (Decode16, 0x0CF8, 0x0CF8, 1, 8)
//!             WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
//!                 0, 0xC000, 0xC0FF, 0, 0x100)
//!             QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
//!                 ReadWrite, 0, 0x4000000000, 0x4000FFFFFF, 0, 0x1000000)
//!             QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
//!                 ReadWrite, 0, 0x4040000000, 0x405FFFFFFF, 0, 0x20000000)
//!         })
//!     }
//! }
//! ```
//!
//! A `_PRT` entry whose source is 0 names a GSI directly (level-triggered, active low). The
//! `_CRS` matters: once a root bridge has one, Linux accepts only BARs inside its windows,
//! so the I/O window covers every channel's register block and the two 64-bit memory windows
//! every channel window (BAR0) and every bulk window (BAR4): the BARs sit where the
//! hypervisor mapped the regions and areas and never move.

use super::aml::{Aml, eisa_id};
use bulkhead_abi::channel::{
    BULK_WINDOW_BASE, MAX_CHANNELS_PER_QUBE, WINDOW_BASE, bulk_window, window,
};
use bulkhead_abi::guest_pci::{FIRST_CHANNEL_GSI, FIRST_CHANNEL_SLOT, IO_BASE};

/// `SLP_TYP` of S5 (see [`super::S5_SLP_TYP`]).
const S5: u64 = super::S5_SLP_TYP as u64;
/// Size of the root bridge's I/O window from [`IO_BASE`].
pub const IO_WINDOW_LEN: u16 = 0x100;
/// Size of the root bridge's memory window from [`WINDOW_BASE`].
pub const MEM_WINDOW_LEN: u64 = window(MAX_CHANNELS_PER_QUBE) - WINDOW_BASE;
/// Size of the root bridge's memory window for the bulk areas from [`BULK_WINDOW_BASE`].
pub const BULK_WINDOW_LEN: u64 = bulk_window(MAX_CHANNELS_PER_QUBE) - BULK_WINDOW_BASE;
/// Bytes of the `_CRS` resource template.
pub const CRS_LEN: usize = 16 + 8 + 16 + 2 * 46 + 2;

/// The `_PRT` entry of local channel `local`: (address, pin, source, source index).
pub fn prt_entry(local: u8) -> [u64; 4] {
    let slot = u64::from(FIRST_CHANNEL_SLOT + local);
    [
        (slot << 16) | 0xFFFF,
        0,
        0,
        u64::from(FIRST_CHANNEL_GSI) + u64::from(local),
    ]
}

/// The resource descriptors of the root bridge's `_CRS` (ACPI 6.x section 6.4), ending with
/// the end tag.
pub fn crs() -> [u8; CRS_LEN] {
    let mut r = [0u8; CRS_LEN];
    // Word Address Space Descriptor (large item 0x08): length 13; resource type 2 (bus
    // numbers); general flags MinFixed | MaxFixed, producer, positive decode; no type flags;
    // granularity 0, bus 0 to 0, translation 0, length 1.
    r[..16].copy_from_slice(&[
        0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
    ]);
    // I/O Port Descriptor (small item 0x08, length 7): 16-bit decode, 0xCF8 to 0xCF8,
    // alignment 1, length 8 (the configuration ports, consumed by the bridge itself).
    r[16..24].copy_from_slice(&[0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08]);
    // Word Address Space Descriptor: resource type 1 (I/O), producer, MinFixed | MaxFixed,
    // type flags 3 (entire range).
    let io_max = IO_BASE + (IO_WINDOW_LEN - 1);
    r[24..30].copy_from_slice(&[0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03]);
    r[30..32].copy_from_slice(&0u16.to_le_bytes());
    r[32..34].copy_from_slice(&IO_BASE.to_le_bytes());
    r[34..36].copy_from_slice(&io_max.to_le_bytes());
    r[36..38].copy_from_slice(&0u16.to_le_bytes());
    r[38..40].copy_from_slice(&IO_WINDOW_LEN.to_le_bytes());
    // The channel windows, then the bulk windows.
    r[40..86].copy_from_slice(&qword_memory(WINDOW_BASE, MEM_WINDOW_LEN));
    r[86..132].copy_from_slice(&qword_memory(BULK_WINDOW_BASE, BULK_WINDOW_LEN));
    // End Tag (small item 0x0F, length 1): checksum 0 means "no checksum".
    r[132..134].copy_from_slice(&[0x79, 0x00]);
    r
}

/// A QWord Address Space Descriptor (large item 0x0A, length 43) for `len` bytes of memory
/// from `base`: resource type 0 (memory), producer, MinFixed | MaxFixed; type flags
/// read-write (bit 0), not cacheable (bits 2-1 = 0); granularity and translation 0.
fn qword_memory(base: u64, len: u64) -> [u8; 46] {
    let mut r = [0u8; 46];
    r[..6].copy_from_slice(&[0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x01]);
    for (i, v) in [0, base, base + len - 1, 0, len].into_iter().enumerate() {
        r[6 + 8 * i..14 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    r
}

/// Writes the definition block (everything after the table header) into `buf`; returns
/// its length, or `None` if `buf` is too small.
pub fn write(buf: &mut [u8]) -> Option<usize> {
    let mut a = Aml::new(buf);
    a.name("_S5", |a| {
        a.int_package(&[S5, 0, 0, 0]);
    });
    a.scope("\\_SB", |a| {
        a.device("PCI0", |a| {
            let hid = eisa_id("PNP0A03").unwrap_or(0);
            a.name("_HID", |a| {
                a.dword(hid);
            });
            a.name("_UID", |a| {
                a.integer(0);
            });
            a.name("_BBN", |a| {
                a.integer(0);
            });
            a.name("_ADR", |a| {
                a.integer(0);
            });
            a.name("_PRT", |a| {
                a.package(MAX_CHANNELS_PER_QUBE as u8, |a| {
                    for local in 0..MAX_CHANNELS_PER_QUBE as u8 {
                        a.int_package(&prt_entry(local));
                    }
                });
            });
            a.name("_CRS", |a| {
                a.buffer(&crs());
            });
        });
    });
    a.finish().map(<[u8]>::len)
}
