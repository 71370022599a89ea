//! A virtio-blk disk (modern PCI transport, behind the IOMMU when there is one), driven by
//! `virtio-drivers`' `VirtIOBlk` one request at a time: each call hands the device one
//! request and waits (polling its used ring) until the device has completed it, so a write
//! has reached the device's backing store (its cache; [`VirtioBlk::flush`] makes it durable)
//! when [`VirtioBlk::write`] returns.
//!
//! The buffers are the caller's, lent to the device for the call; they must be in this
//! qube's own memory (the heap or the stack), which is all the device can reach through the
//! IOMMU: a channel's shared windows are not. Lengths and ranges are checked here, before
//! the driver sees them (its `read_blocks` and `write_blocks` panic on a length that is not
//! a whole number of sectors).
//!
//! No unsafe code: the driver's blocking calls are safe; what is unsafe (the HAL, the
//! transport) is in the parent module.
#![forbid(unsafe_code)]

use core::fmt;

use virtio_drivers::device::blk::{SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::transport::{DeviceType, Transport};

use super::{InitError, PlatformTransport, RtHal, transport};
use crate::pci::PciDevice;

/// Bytes per sector of a virtio-blk device.
pub const BLK_SECTOR: usize = SECTOR_SIZE;

/// Why a request to the disk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// The buffer is empty or not a whole number of sectors (nothing was sent).
    BadLength(usize),
    /// The sectors reach past the end of the disk (nothing was sent).
    OutOfRange {
        /// First sector asked for.
        sector: u64,
        /// Sectors asked for.
        count: u64,
        /// Sectors of the disk.
        capacity: u64,
    },
    /// The device (or the driver) reported an error.
    Device(virtio_drivers::Error),
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::BadLength(n) => {
                write!(f, "a buffer of {n} bytes is not a whole number of sectors")
            }
            BlkError::OutOfRange {
                sector,
                count,
                capacity,
            } => write!(
                f,
                "sectors {sector}..+{count} reach past the end of the disk ({capacity} sectors)"
            ),
            BlkError::Device(e) => write!(f, "virtio-blk: {e}"),
        }
    }
}

/// `sector` as the driver's block number, if a buffer of `len` bytes from there is a whole,
/// non-zero number of sectors inside a disk of `capacity` sectors.
fn checked_range(sector: u64, len: usize, capacity: u64) -> Result<usize, BlkError> {
    if len == 0 || !len.is_multiple_of(BLK_SECTOR) {
        return Err(BlkError::BadLength(len));
    }
    let count = (len / BLK_SECTOR) as u64;
    let fits = sector.checked_add(count).is_some_and(|end| end <= capacity);
    let first = usize::try_from(sector).ok().filter(|_| fits);
    first.ok_or(BlkError::OutOfRange {
        sector,
        count,
        capacity,
    })
}

/// Counters of a [`VirtioBlk`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    /// Read requests completed.
    pub reads: u64,
    /// Write requests completed.
    pub writes: u64,
    /// Flushes completed.
    pub flushes: u64,
    /// Sectors read.
    pub sectors_read: u64,
    /// Sectors written.
    pub sectors_written: u64,
    /// Requests the device failed.
    pub errors: u64,
}

/// A virtio-blk disk that is up.
pub struct VirtioBlk {
    raw: VirtIOBlk<RtHal, PlatformTransport>,
    capacity: u64,
    read_only: bool,
    iommu: bool,
    /// Counters.
    pub stats: BlkStats,
}

impl VirtioBlk {
    /// Brings up `device`: the PCI transport (memory decoding, bus mastering,
    /// `VIRTIO_F_ACCESS_PLATFORM` when offered), then the driver's one request queue.
    /// Interrupts stay off: every request is polled to completion.
    pub fn new(device: &PciDevice) -> Result<VirtioBlk, InitError> {
        let transport = transport(device)?;
        if transport.device_type() != DeviceType::Block {
            return Err(InitError::NotBlock(transport.device_type()));
        }
        let mut raw = VirtIOBlk::<RtHal, _>::new(transport).map_err(InitError::Block)?;
        raw.disable_interrupts();
        let capacity = raw.capacity();
        let read_only = raw.readonly();
        Ok(VirtioBlk {
            raw,
            capacity,
            read_only,
            iommu: device.behind_iommu(),
            stats: BlkStats::default(),
        })
    }

    /// Size of the disk in sectors of [`BLK_SECTOR`] bytes.
    pub fn sectors(&self) -> u64 {
        self.capacity
    }

    /// Whether the device refuses writes (it offered `VIRTIO_BLK_F_RO`).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the device's DMA goes through an IOMMU.
    pub fn behind_iommu(&self) -> bool {
        self.iommu
    }

    /// The sectors `buf` covers from `sector`, checked against the disk.
    fn range(&self, sector: u64, len: usize) -> Result<usize, BlkError> {
        checked_range(sector, len, self.capacity)
    }

    /// Reads `buf.len() / BLK_SECTOR` sectors from `sector` into `buf`; returns when the
    /// device has delivered them.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        let first = self.range(sector, buf.len())?;
        let done = self.raw.read_blocks(first, buf);
        self.count(done, |s| {
            s.reads += 1;
            s.sectors_read += (buf.len() / BLK_SECTOR) as u64;
        })
    }

    /// Writes `buf` to the sectors from `sector`; returns when the device has completed the
    /// write (it is in the device's backing store, durable after [`VirtioBlk::flush`]).
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        let first = self.range(sector, buf.len())?;
        let done = self.raw.write_blocks(first, buf);
        self.count(done, |s| {
            s.writes += 1;
            s.sectors_written += (buf.len() / BLK_SECTOR) as u64;
        })
    }

    /// Makes every completed write durable (the device's cache written out); returns when
    /// the device says it is. A device without a cache to flush (no `VIRTIO_BLK_F_FLUSH`)
    /// answers at once: its writes are durable when they complete.
    pub fn flush(&mut self) -> Result<(), BlkError> {
        let done = self.raw.flush();
        self.count(done, |s| s.flushes += 1)
    }

    fn count(
        &mut self,
        done: Result<(), virtio_drivers::Error>,
        ok: impl FnOnce(&mut BlkStats),
    ) -> Result<(), BlkError> {
        match done {
            Ok(()) => {
                ok(&mut self.stats);
                Ok(())
            }
            Err(e) => {
                self.stats.errors += 1;
                Err(BlkError::Device(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_sectors_inside_the_disk_reach_the_driver() {
        assert_eq!(checked_range(0, 512, 8), Ok(0));
        assert_eq!(checked_range(6, 1024, 8), Ok(6));
        for len in [0, 1, 511, 513] {
            assert_eq!(checked_range(0, len, 8), Err(BlkError::BadLength(len)));
        }
        let past = |sector, count| BlkError::OutOfRange {
            sector,
            count,
            capacity: 8,
        };
        assert_eq!(checked_range(7, 1024, 8), Err(past(7, 2)));
        assert_eq!(checked_range(8, 512, 8), Err(past(8, 1)));
        assert_eq!(checked_range(u64::MAX, 512, 8), Err(past(u64::MAX, 1)));
    }
}
