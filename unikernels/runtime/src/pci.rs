//! The PCI devices the hypervisor assigned to this qube.
//!
//! A qube reaches an assigned device two ways (see `bulkhead_abi::boot_info::DeviceInfo`):
//! its memory BARs are mapped uncached at their real addresses (identity), and its
//! configuration space is read and written word by word through the `pci_config_*`
//! hypercalls, which filter what the qube may change (BARs are emulated, I/O decoding stays
//! off, MSI/MSI-X programming is refused).
//!
//! A [`PciDevice`] can only be made from the boot info, so its index is one the hypervisor
//! gave; [`PciDevice::config_read`] and [`PciDevice::config_write`] check the offset before
//! the hypercall (a bad one would make the hypervisor stop the qube). The virtio glue over
//! these (feature `virtio`) is in [`crate::virtio`].

use core::fmt;
use core::ops::Range;

use bulkhead_abi::boot_info::{DEVICE_IOMMU, DeviceInfo};
use bulkhead_abi::hypercall::HcError;

use crate::boot::Boot;

/// Size of a device's configuration space (PCI Express: 4 KiB).
pub const CONFIG_SPACE_SIZE: u16 = 4096;

/// Why a configuration access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// The offset is not 4-byte aligned or not below [`CONFIG_SPACE_SIZE`] (refused here:
    /// the hypervisor would stop the qube for it).
    BadOffset(u16),
    /// The hypervisor refused the write (MSI or MSI-X programming).
    Denied,
    /// Another error from the hypervisor.
    Hypercall(HcError),
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::BadOffset(o) => write!(
                f,
                "configuration offset {o:#x} is not 4-byte aligned below {CONFIG_SPACE_SIZE:#x}"
            ),
            PciError::Denied => f.write_str("the hypervisor refused the write (MSI/MSI-X)"),
            PciError::Hypercall(e) => write!(f, "hypercall error {e:?}"),
        }
    }
}

impl From<HcError> for PciError {
    fn from(e: HcError) -> Self {
        match e {
            HcError::Denied => PciError::Denied,
            other => PciError::Hypercall(other),
        }
    }
}

/// Checks a configuration-space offset: 4-byte aligned and below [`CONFIG_SPACE_SIZE`].
pub const fn check_offset(offset: u16) -> Result<(), PciError> {
    if offset.is_multiple_of(4) && offset < CONFIG_SPACE_SIZE {
        Ok(())
    } else {
        Err(PciError::BadOffset(offset))
    }
}

/// A PCI address printed as `ssss:bb:dd.f`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf(pub u32);

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            a >> 16,
            (a >> 8) & 0xff,
            (a >> 3) & 0x1f,
            a & 7
        )
    }
}

/// One device assigned to this qube: its index for the hypercalls and what the boot info
/// says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciDevice {
    index: usize,
    info: DeviceInfo,
}

impl PciDevice {
    /// Device `index` of the boot info, if the qube has it.
    pub fn new(boot: &Boot, index: usize) -> Option<PciDevice> {
        boot.devices()
            .get(index)
            .map(|info| PciDevice { index, info: *info })
    }

    /// Every assigned device, in boot-info order.
    pub fn all(boot: &Boot) -> impl Iterator<Item = PciDevice> + '_ {
        boot.devices()
            .iter()
            .enumerate()
            .map(|(index, info)| PciDevice { index, info: *info })
    }

    /// The first assigned device with this vendor and one of `device_ids`.
    pub fn find(boot: &Boot, vendor: u16, device_ids: &[u16]) -> Option<PciDevice> {
        PciDevice::all(boot)
            .find(|d| d.info.vendor == vendor && device_ids.contains(&d.info.device))
    }

    /// The device index (position in `BootInfo::devices`).
    pub const fn index(&self) -> usize {
        self.index
    }

    /// What the boot info says about the device.
    pub const fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Its PCI address.
    pub const fn bdf(&self) -> Bdf {
        Bdf(self.info.address)
    }

    /// True when it is the device at `bus:device.function` (any segment).
    pub const fn is_at(&self, bus: u8, device: u8, function: u8) -> bool {
        self.info.bus() == bus
            && self.info.device_number() == device
            && self.info.function() == function
    }

    /// True when its DMA goes through an IOMMU domain that maps exactly this qube's memory.
    pub const fn behind_iommu(&self) -> bool {
        self.info.flags & DEVICE_IOMMU != 0
    }

    /// Bus address of guest-physical 0: the device reaches guest-physical `p` at
    /// `p + dma_offset` (0 behind an IOMMU).
    pub const fn dma_offset(&self) -> u64 {
        self.info.dma_offset
    }

    /// The memory BARs mapped into this qube: `(bar index, guest-physical range)`.
    pub fn mapped_bars(&self) -> impl Iterator<Item = (usize, Range<u64>)> + '_ {
        self.info
            .bars
            .iter()
            .enumerate()
            .filter(|(_, b)| b.size != 0)
            .map(|(i, b)| (i, b.gpa..b.gpa.saturating_add(b.size)))
    }

    /// True when `[addr, addr + len)` lies inside one mapped BAR.
    pub fn mmio_contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.mapped_bars()
            .any(|(_, r)| r.start <= addr && end <= r.end)
    }

    /// Asks the hypervisor to turn on the device's interrupts: it programs the device's MSI
    /// capability (or, without one, MSI-X table entry 0, unmasked) through VT-d interrupt
    /// remapping, and from then on each message the device sends raises the returned event
    /// bit in this qube (`bulkhead_abi::hypercall::device_event_bit(self.index())`), which
    /// [`crate::wait_event`] returns among the channels' bits. The message is edge-triggered:
    /// the driver acknowledges causes at the device itself, and must look at the device once
    /// after this call (a cause raised before it may have sent no message).
    /// [`HcError::Denied`]: no interrupt remapping on this machine, or the device has
    /// neither MSI nor MSI-X; the driver keeps polling. Asking again is harmless.
    pub fn request_interrupts(&self) -> Result<u32, HcError> {
        crate::hypercall::device_interrupts(self.index)
    }

    /// Reads the 32-bit word at `offset` of the configuration space.
    pub fn config_read(&self, offset: u16) -> Result<u32, PciError> {
        check_offset(offset)?;
        Ok(crate::hypercall::pci_config_read(self.index, offset)?)
    }

    /// Writes `value` to the word at `offset` of the configuration space (through the
    /// hypervisor's filter: BAR writes change only the emulated register, I/O decoding
    /// stays off, MSI/MSI-X programming is [`PciError::Denied`]).
    pub fn config_write(&self, offset: u16, value: u32) -> Result<(), PciError> {
        check_offset(offset)?;
        Ok(crate::hypercall::pci_config_write(
            self.index, offset, value,
        )?)
    }
}

/// Which of `devices` a configuration access for `bus:device.function` at `offset` goes to:
/// the device with that address (the first, if two segments have one) and a valid offset.
/// `None` means no assigned device answers: reads see all-ones, writes are dropped, as on a
/// bus where nothing is present.
pub fn route(
    devices: &[PciDevice],
    bus: u8,
    device: u8,
    function: u8,
    offset: u16,
) -> Option<&PciDevice> {
    check_offset(offset).ok()?;
    devices.iter().find(|d| d.is_at(bus, device, function))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_abi::boot_info::{BarInfo, BootInfo, layout};

    fn boot_with_devices() -> Boot {
        let mut b = BootInfo::new();
        b.mem_size = 8 << 20;
        b.image_start = layout::IMAGE_BASE;
        b.image_end = layout::IMAGE_BASE + 0x3000;
        b.heap_start = b.image_end;
        b.stack_top = 8 << 20;
        b.heap_end = b.stack_top - layout::STACK_SIZE;
        b.device_count = 2;
        // 0000:00:03.0, a modern virtio-net behind the IOMMU, BAR 4 mapped.
        b.devices[0].address = 3 << 3;
        b.devices[0].vendor = 0x1af4;
        b.devices[0].device = 0x1041;
        b.devices[0].flags = DEVICE_IOMMU;
        b.devices[0].bars[4] = BarInfo {
            gpa: 0xfe00_0000,
            size: 0x4000,
        };
        // 0001:02:1f.7 without an IOMMU.
        b.devices[1].address = 1 << 16 | 2 << 8 | 0x1f << 3 | 7;
        b.devices[1].vendor = 0x8086;
        b.devices[1].device = 0x10d3;
        b.devices[1].dma_offset = 0x1000_0000;
        // A third entry past the count must stay invisible.
        b.devices[2].vendor = 0x1af4;
        b.devices[2].device = 0x1000;
        Boot::new(b, layout::IMAGE_BASE..layout::IMAGE_BASE + 0x1000).unwrap()
    }

    #[test]
    fn devices_come_from_the_boot_info_only() {
        let boot = boot_with_devices();
        assert_eq!(PciDevice::all(&boot).count(), 2);
        assert!(
            PciDevice::new(&boot, 2).is_none(),
            "index past device_count"
        );
        let net = PciDevice::find(&boot, 0x1af4, &[0x1041, 0x1000]).unwrap();
        assert_eq!(net.index(), 0);
        assert!(net.behind_iommu());
        assert_eq!(net.dma_offset(), 0);
        assert_eq!(format!("{}", net.bdf()), "0000:00:03.0");
        let other = PciDevice::new(&boot, 1).unwrap();
        assert!(!other.behind_iommu());
        assert_eq!(other.dma_offset(), 0x1000_0000);
        assert_eq!(format!("{}", other.bdf()), "0001:02:1f.7");
        assert!(PciDevice::find(&boot, 0x1af4, &[0x1000]).is_none());
    }

    #[test]
    fn mmio_ranges_are_the_mapped_bars() {
        let boot = boot_with_devices();
        let net = PciDevice::new(&boot, 0).unwrap();
        assert_eq!(
            net.mapped_bars().collect::<Vec<_>>(),
            [(4, 0xfe00_0000..0xfe00_4000)]
        );
        assert!(net.mmio_contains(0xfe00_0000, 0x4000));
        assert!(net.mmio_contains(0xfe00_3000, 0x38));
        assert!(!net.mmio_contains(0xfe00_3ff0, 0x20), "runs past the BAR");
        assert!(
            !net.mmio_contains(0xfdff_fff0, 0x20),
            "starts before the BAR"
        );
        assert!(!net.mmio_contains(u64::MAX - 4, 8), "wraps");
    }

    #[test]
    fn bad_offsets_are_refused_before_the_hypercall() {
        let boot = boot_with_devices();
        let net = PciDevice::new(&boot, 0).unwrap();
        // These return before issuing VMMCALL (which would not run on the host).
        assert_eq!(net.config_read(2), Err(PciError::BadOffset(2)));
        assert_eq!(net.config_read(4096), Err(PciError::BadOffset(4096)));
        assert_eq!(net.config_write(0x41, 0), Err(PciError::BadOffset(0x41)));
        assert_eq!(check_offset(0xffc), Ok(()));
        assert_eq!(check_offset(0), Ok(()));
    }

    #[test]
    fn accesses_route_to_the_device_with_that_address() {
        let boot = boot_with_devices();
        let all: Vec<PciDevice> = PciDevice::all(&boot).collect();
        assert_eq!(route(&all, 0, 3, 0, 0).map(PciDevice::index), Some(0));
        assert_eq!(route(&all, 2, 0x1f, 7, 0x10).map(PciDevice::index), Some(1));
        // Nothing else answers: other functions, devices, buses, and bad offsets.
        assert!(route(&all, 0, 3, 1, 0).is_none());
        assert!(route(&all, 0, 4, 0, 0).is_none());
        assert!(route(&all, 1, 3, 0, 0).is_none());
        assert!(route(&all, 0, 3, 0, 2).is_none());
        assert!(
            route(&all[1..], 0, 3, 0, 0).is_none(),
            "only the given devices"
        );
    }

    #[test]
    fn hypervisor_denial_maps_to_denied() {
        assert_eq!(PciError::from(HcError::Denied), PciError::Denied);
        assert_eq!(
            PciError::from(HcError::Invalid),
            PciError::Hypercall(HcError::Invalid)
        );
        assert!(format!("{}", PciError::BadOffset(3)).contains("0x3"));
    }
}
