//! A virtio transport that accepts `VIRTIO_F_ACCESS_PLATFORM` when the device offers it.
//!
//! A virtio device behind an IOMMU (QEMU: `iommu_platform=on`) offers the feature and
//! refuses `FEATURES_OK` unless the driver accepts it: accepting it tells the device to send
//! its DMA through the platform's IOMMU instead of using addresses as physical. virtio-drivers'
//! net driver does not list the feature, so this wrapper adds it to whatever the driver
//! accepts, when the device offers it, and passes everything else through.

use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// `VIRTIO_F_ACCESS_PLATFORM` (feature bit 33).
pub const ACCESS_PLATFORM: u64 = 1 << 33;

/// [`PciTransport`] that negotiates [`ACCESS_PLATFORM`].
pub struct PlatformTransport {
    inner: PciTransport,
    offered: u64,
}

impl PlatformTransport {
    /// Wraps a PCI transport.
    pub fn new(inner: PciTransport) -> PlatformTransport {
        PlatformTransport { inner, offered: 0 }
    }

    /// Whether the device asked for (and got) IOMMU translation of its DMA.
    pub fn access_platform(&self) -> bool {
        self.offered & ACCESS_PLATFORM != 0
    }
}

impl Transport for PlatformTransport {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.offered = self.inner.read_device_features();
        self.offered
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        let extra = self.offered & ACCESS_PLATFORM;
        self.inner.write_driver_features(driver_features | extra)
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.inner.notify(queue)
    }
    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status)
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }
    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue)
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }
    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T> {
        self.inner.read_config_space(offset)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<()> {
        self.inner.write_config_space(offset, value)
    }
}
