//! The disk: the virtio-blk device the system description assigns this qube, brought up
//! with `virtio-drivers` through the runtime (`bulkhead_rt::virtio::VirtioBlk`), and the
//! volume table at its start (`bulkhead_abi::disk`), read and checked before anything is
//! served.

use alloc::vec;
use core::fmt;

use bulkhead_abi::block::SECTOR_SIZE;
use bulkhead_abi::disk::{self, DiskLayout, LAYOUT_SECTORS, LayoutError};
use bulkhead_rt::pci::PciDevice;
use bulkhead_rt::virtio::blk::BlkError;
use bulkhead_rt::virtio::{InitError, VirtioBlk};
use bulkhead_rt::{Boot, info};

/// PCI vendor of virtio devices.
const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-blk device IDs: modern (1.0) and transitional (which must offer the modern PCI
/// capabilities `virtio-drivers` uses).
pub const VIRTIO_BLK_IDS: [u16; 2] = [0x1042, 0x1001];

/// Why there is no disk to serve.
pub enum DiskError {
    /// No assigned device is a virtio-blk disk.
    NoDisk,
    /// The device could not be brought up.
    Init(InitError),
    /// Reading the volume table failed.
    Read(BlkError),
    /// The first sectors hold no Bulkhead volume table (a blank disk is all zeros).
    Blank,
    /// The volume table is there but refused.
    Layout(LayoutError),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::NoDisk => f.write_str(
                "no virtio-blk disk (1af4:1042 or 1af4:1001) among the assigned devices",
            ),
            DiskError::Init(e) => write!(f, "bringing up the disk failed: {e}"),
            DiskError::Read(e) => write!(f, "reading the volume table failed: {e}"),
            DiskError::Blank => f.write_str(
                "the disk holds no Bulkhead volume table (its first sectors are not a \
                 BKDISK01 header; a new disk is blank): xtask writes the table when it makes \
                 the image (cargo xtask run: target/bulkhead/disk.img); serving nothing",
            ),
            DiskError::Layout(e) => write!(f, "the disk's volume table is refused: {e}"),
        }
    }
}

/// The disk, up, with its checked volume table.
pub struct Disk {
    /// The device.
    pub blk: VirtioBlk,
    /// Its volumes.
    pub layout: DiskLayout,
}

/// The first assigned virtio-blk device.
fn find(boot: &Boot) -> Option<PciDevice> {
    PciDevice::all(boot)
        .find(|d| d.info().vendor == VIRTIO_VENDOR && VIRTIO_BLK_IDS.contains(&d.info().device))
}

impl Disk {
    /// Finds the disk among the assigned devices, brings it up and reads its volume table.
    pub fn open(boot: &Boot) -> Result<Disk, DiskError> {
        let dev = find(boot).ok_or(DiskError::NoDisk)?;
        info!(
            "storage: disk {} ({:04x}:{:04x}), DMA {}",
            dev.bdf(),
            dev.info().vendor,
            dev.info().device,
            if dev.behind_iommu() {
                "fenced by the IOMMU"
            } else {
                "NOT fenced (no IOMMU): the disk controller can reach all memory"
            }
        );
        let t0 = bulkhead_rt::now_ns();
        let mut blk = VirtioBlk::new(&dev).map_err(DiskError::Init)?;
        info!(
            "storage: virtio-blk up in {} ms, {} sectors{}",
            (bulkhead_rt::now_ns() - t0) / 1_000_000,
            blk.sectors(),
            if blk.read_only() { ", read-only" } else { "" }
        );
        let mut head = vec![0u8; LAYOUT_SECTORS as usize * SECTOR_SIZE as usize];
        blk.read(0, &mut head).map_err(DiskError::Read)?;
        let layout = match disk::parse(&head, blk.sectors()) {
            Ok(layout) => layout,
            Err(LayoutError::NotALayout) if head.iter().all(|&b| b == 0) => {
                return Err(DiskError::Blank);
            }
            Err(e) => return Err(DiskError::Layout(e)),
        };
        Ok(Disk { blk, layout })
    }
}
