//! The boot-info block a unikernel receives at entry, and the guest-physical layout the
//! hypervisor builds for it.
//!
//! A unikernel starts in 64-bit mode with paging on (its memory identity-mapped), interrupts
//! off, `rsp` at [`BootInfo::stack_top`] and `rdi` = guest-physical address of a [`BootInfo`].
//! It checks [`BootInfo::magic`] and [`BootInfo::version`] before it reads anything else.

use crate::channel::MAX_CHANNELS_PER_QUBE;
use crate::io_ports::{MAX_PORT_RANGES, PortRange};
use crate::label::Label;

/// `BootInfo::magic`: "BHBOOTIN".
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"BHBOOTIN");
/// `BootInfo::version` of this layout.
pub const BOOT_INFO_VERSION: u32 = 6;

/// Guest-physical layout of a unikernel qube. All addresses are inside the qube's own memory,
/// which starts at guest-physical 0.
pub mod layout {
    /// Where the [`super::BootInfo`] block lives.
    pub const BOOT_INFO: u64 = 0x1000;
    /// Where the guest's GDT lives (null, code64, data).
    pub const GDT: u64 = 0x2000;
    /// First page of the guest's own page tables (PML4, then PDPT, then PDs).
    pub const PAGE_TABLES: u64 = 0x3000;
    /// End (exclusive) of the region reserved for page tables.
    pub const PAGE_TABLES_END: u64 = 0x40000;
    /// Lowest address an image may be linked at.
    pub const IMAGE_BASE: u64 = 0x20_0000;
    /// Size of the initial stack, at the top of the qube's memory (a guard page below it is
    /// left unmapped). 256 KiB: decoding the configuration blob (heapless tables built on
    /// the stack) took sys-net and sys-firewall past 64 KiB, into their heaps, until the
    /// guard page showed it.
    pub const STACK_SIZE: u64 = 0x4_0000;
    /// Guest code selector in the GDT.
    pub const CODE_SELECTOR: u16 = 0x08;
    /// Guest data selector in the GDT.
    pub const DATA_SELECTOR: u16 = 0x10;
}

/// `BootInfo::flags`: hypercalls use `VMCALL` (Intel VMX) instead of `VMMCALL` (AMD SVM).
pub const FLAG_VMCALL: u32 = 1 << 0;

/// `DeviceInfo::flags`: the device's DMA goes through an IOMMU domain that maps exactly the
/// qube's memory. Without it the device can reach all memory.
pub const DEVICE_IOMMU: u32 = 1 << 0;

/// Most PCI devices one qube may be given.
pub const MAX_DEVICES_PER_QUBE: usize = 4;

/// Maximum length of a qube name, in bytes.
pub const NAME_MAX: usize = 24;
/// Maximum length of a qube's argument string, in bytes.
pub const ARGS_MAX: usize = 96;

/// The boot-info block (`repr(C)`, little-endian, version [`BOOT_INFO_VERSION`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`BOOT_INFO_VERSION`].
    pub version: u32,
    /// Hypercall ABI version ([`crate::hypercall::ABI_VERSION`]).
    pub abi_version: u32,
    /// Index of this qube in the manifest.
    pub qube_id: u32,
    /// Label colour ([`Label`] as `u8`).
    pub label: u32,
    /// Size of the qube's memory in bytes (guest-physical `0..mem_size`).
    pub mem_size: u64,
    /// First byte of the loaded image.
    pub image_start: u64,
    /// First byte after the loaded image (including its `.bss`).
    pub image_end: u64,
    /// Start of the free memory the runtime may use as its heap.
    pub heap_start: u64,
    /// End (exclusive) of the free memory; the stack lies above it.
    pub heap_end: u64,
    /// Initial stack pointer.
    pub stack_top: u64,
    /// How many times the hypervisor has restarted this qube.
    pub restart_count: u32,
    /// Number of valid bytes in `name`.
    pub name_len: u32,
    /// Qube name, UTF-8.
    pub name: [u8; NAME_MAX],
    /// Number of valid bytes in `args`.
    pub args_len: u32,
    /// Platform flags ([`FLAG_VMCALL`]).
    pub flags: u32,
    /// Argument string from the system description, UTF-8.
    pub args: [u8; ARGS_MAX],
    /// Number of valid entries in `channels`.
    pub channel_count: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The channels this qube is an endpoint of; its local channel index is the position here.
    pub channels: [ChannelInfo; MAX_CHANNELS_PER_QUBE],
    /// Guest-physical address of the configuration blob from the system description
    /// (0 when there is none). It lies below `heap_start`.
    pub config_gpa: u64,
    /// Length of the configuration blob in bytes.
    pub config_len: u64,
    /// Number of valid entries in `devices`.
    pub device_count: u32,
    /// Reserved, zero.
    pub reserved2: u32,
    /// The PCI devices assigned to this qube; the position is the device index of the
    /// `pci_config_*` hypercalls.
    pub devices: [DeviceInfo; MAX_DEVICES_PER_QUBE],
    /// Number of valid entries in `io_ports`.
    pub io_port_count: u32,
    /// Reserved, zero.
    pub reserved3: u32,
    /// The I/O ports this qube owns: its IN and OUT on them reach the hardware without an
    /// exit; any other port stops it.
    pub io_ports: [PortRange; MAX_PORT_RANGES],
    /// The firmware's framebuffer, if the system description gives it to this qube and the
    /// boot loader left one (`size` 0: none).
    pub framebuffer: FramebufferInfo,
}

/// The linear framebuffer the firmware (UEFI GOP or a VBE mode set by GRUB) left, mapped
/// uncached at its physical address: 32 bits per pixel, `0x00RRGGBB` little-endian, rows
/// `pitch` bytes apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FramebufferInfo {
    /// Guest-physical (= physical) address of the first pixel.
    pub gpa: u64,
    /// Bytes mapped from `gpa` (at least `pitch * height`; 0: no framebuffer).
    pub size: u64,
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bytes from one row to the next (at least `width * 4`).
    pub pitch: u32,
    /// Bits per pixel (32).
    pub bpp: u32,
}

/// One assigned PCI device as its qube sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct DeviceInfo {
    /// `segment << 16 | bus << 8 | device << 3 | function`.
    pub address: u32,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Configuration word 2: `class << 24 | subclass << 16 | prog_if << 8 | revision`.
    pub class: u32,
    /// [`DEVICE_IOMMU`].
    pub flags: u32,
    /// Bus address of guest-physical 0: a device reaches guest-physical `p` at
    /// `p + dma_offset`. 0 behind an IOMMU.
    pub dma_offset: u64,
    /// The memory BARs, mapped uncached at `gpa` (size 0: absent, I/O or not given).
    pub bars: [BarInfo; 6],
}

/// One memory BAR of an assigned device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BarInfo {
    /// Guest-physical address where the BAR is mapped.
    pub gpa: u64,
    /// Size in bytes (0: not mapped).
    pub size: u64,
}

impl DeviceInfo {
    /// An empty entry.
    pub const EMPTY: DeviceInfo = DeviceInfo {
        address: 0,
        vendor: 0,
        device: 0,
        class: 0,
        flags: 0,
        dma_offset: 0,
        bars: [BarInfo { gpa: 0, size: 0 }; 6],
    };

    /// Bus number.
    pub const fn bus(&self) -> u8 {
        (self.address >> 8) as u8
    }

    /// Device number.
    pub const fn device_number(&self) -> u8 {
        ((self.address >> 3) & 0x1f) as u8
    }

    /// Function number.
    pub const fn function(&self) -> u8 {
        (self.address & 7) as u8
    }
}

/// One channel as an endpoint sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ChannelInfo {
    /// Guest-physical address of the region.
    pub gpa: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// Index of the channel in the manifest (the same at both ends).
    pub id: u32,
    /// 0: this qube is side A (sends on ring 0); 1: side B.
    pub side: u32,
    /// Manifest index of the qube at the other end.
    pub peer: u32,
    /// Number of valid bytes in `name`.
    pub name_len: u32,
    /// Channel name, UTF-8.
    pub name: [u8; NAME_MAX],
    /// Guest-physical address of the channel's bulk area
    /// (`channel::bulk_window(local)`; 0 when it has none).
    pub bulk_gpa: u64,
    /// Bytes of the bulk area (0: none): the first half is side A's pool, the second half
    /// side B's; this qube's own pool is writable, the peer's read-only.
    pub bulk_size: u64,
}

impl ChannelInfo {
    /// An empty entry.
    pub const EMPTY: ChannelInfo = ChannelInfo {
        gpa: 0,
        size: 0,
        id: 0,
        side: 0,
        peer: 0,
        name_len: 0,
        name: [0; NAME_MAX],
        bulk_gpa: 0,
        bulk_size: 0,
    };

    /// The bulk area as (guest-physical address, size), if the channel has one.
    pub fn bulk(&self) -> Option<(u64, u64)> {
        (self.bulk_size != 0).then_some((self.bulk_gpa, self.bulk_size))
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        bytes_str(&self.name, self.name_len)
    }

    /// Sets the name (truncated to [`NAME_MAX`]).
    pub fn set_name(&mut self, name: &str) {
        self.name_len = copy_truncated(&mut self.name, name) as u32;
    }
}

impl BootInfo {
    /// An empty block with magic and versions filled in.
    pub const fn new() -> BootInfo {
        BootInfo {
            magic: BOOT_INFO_MAGIC,
            version: BOOT_INFO_VERSION,
            abi_version: crate::hypercall::ABI_VERSION,
            qube_id: 0,
            label: 0,
            mem_size: 0,
            image_start: 0,
            image_end: 0,
            heap_start: 0,
            heap_end: 0,
            stack_top: 0,
            restart_count: 0,
            name_len: 0,
            name: [0; NAME_MAX],
            args_len: 0,
            flags: 0,
            args: [0; ARGS_MAX],
            channel_count: 0,
            reserved: 0,
            channels: [ChannelInfo::EMPTY; MAX_CHANNELS_PER_QUBE],
            config_gpa: 0,
            config_len: 0,
            device_count: 0,
            reserved2: 0,
            devices: [DeviceInfo::EMPTY; MAX_DEVICES_PER_QUBE],
            io_port_count: 0,
            reserved3: 0,
            io_ports: [PortRange { first: 0, last: 0 }; MAX_PORT_RANGES],
            framebuffer: FramebufferInfo {
                gpa: 0,
                size: 0,
                width: 0,
                height: 0,
                pitch: 0,
                bpp: 0,
            },
        }
    }

    /// The valid entries of `io_ports`.
    pub fn io_ports(&self) -> &[PortRange] {
        let n = (self.io_port_count as usize).min(MAX_PORT_RANGES);
        &self.io_ports[..n]
    }

    /// True when magic and version match this crate.
    pub fn is_valid(&self) -> bool {
        self.magic == BOOT_INFO_MAGIC && self.version == BOOT_INFO_VERSION
    }

    /// The qube's name ("?" if the bytes are not valid UTF-8).
    pub fn name(&self) -> &str {
        bytes_str(&self.name, self.name_len)
    }

    /// The argument string.
    pub fn args(&self) -> &str {
        bytes_str(&self.args, self.args_len)
    }

    /// The label, if the value is a known one.
    pub fn label(&self) -> Option<Label> {
        u8::try_from(self.label).ok().and_then(Label::from_u8)
    }

    /// Copies `name` (truncated to [`NAME_MAX`]) into the block.
    pub fn set_name(&mut self, name: &str) {
        self.name_len = copy_truncated(&mut self.name, name) as u32;
    }

    /// Copies `args` (truncated to [`ARGS_MAX`]) into the block.
    pub fn set_args(&mut self, args: &str) {
        self.args_len = copy_truncated(&mut self.args, args) as u32;
    }

    /// The block as bytes, to copy into guest memory.
    pub fn to_bytes(&self) -> [u8; core::mem::size_of::<BootInfo>()] {
        let mut out = [0u8; core::mem::size_of::<BootInfo>()];
        let mut w = Writer {
            buf: &mut out,
            at: 0,
        };
        w.u64(self.magic);
        w.u32(self.version);
        w.u32(self.abi_version);
        w.u32(self.qube_id);
        w.u32(self.label);
        for v in [
            self.mem_size,
            self.image_start,
            self.image_end,
            self.heap_start,
            self.heap_end,
            self.stack_top,
        ] {
            w.u64(v);
        }
        w.u32(self.restart_count);
        w.u32(self.name_len);
        w.bytes(&self.name);
        w.u32(self.args_len);
        w.u32(self.flags);
        w.bytes(&self.args);
        w.u32(self.channel_count);
        w.u32(self.reserved);
        for c in &self.channels {
            w.u64(c.gpa);
            w.u64(c.size);
            w.u32(c.id);
            w.u32(c.side);
            w.u32(c.peer);
            w.u32(c.name_len);
            w.bytes(&c.name);
            w.u64(c.bulk_gpa);
            w.u64(c.bulk_size);
        }
        w.u64(self.config_gpa);
        w.u64(self.config_len);
        w.u32(self.device_count);
        w.u32(self.reserved2);
        for d in &self.devices {
            w.u32(d.address);
            w.u32(u32::from(d.vendor) | u32::from(d.device) << 16);
            w.u32(d.class);
            w.u32(d.flags);
            w.u64(d.dma_offset);
            for b in &d.bars {
                w.u64(b.gpa);
                w.u64(b.size);
            }
        }
        w.u32(self.io_port_count);
        w.u32(self.reserved3);
        for p in &self.io_ports {
            w.u32(u32::from(p.first) | u32::from(p.last) << 16);
        }
        let f = &self.framebuffer;
        w.u64(f.gpa);
        w.u64(f.size);
        for v in [f.width, f.height, f.pitch, f.bpp] {
            w.u32(v);
        }
        out
    }
}

impl Default for BootInfo {
    fn default() -> Self {
        BootInfo::new()
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

fn bytes_str(bytes: &[u8], len: u32) -> &str {
    let len = (len as usize).min(bytes.len());
    core::str::from_utf8(&bytes[..len]).unwrap_or("?")
}

/// Copies at most `dst.len()` bytes of `src`, cut at a character boundary.
fn copy_truncated(dst: &mut [u8], src: &str) -> usize {
    let mut n = src.len().min(dst.len());
    while !src.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&src.as_bytes()[..n]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_bytes_matches_repr_c_layout() {
        let mut b = BootInfo::new();
        b.qube_id = 3;
        b.mem_size = 0x400_0000;
        b.stack_top = 0x400_0000;
        b.set_name("firewall");
        b.set_args("mode=x");
        let bytes = b.to_bytes();
        assert_eq!(bytes.len(), core::mem::size_of::<BootInfo>());
        assert_eq!(&bytes[0..8], b"BHBOOTIN");
        let off = core::mem::offset_of!(BootInfo, stack_top);
        assert_eq!(&bytes[off..off + 8], &0x400_0000u64.to_le_bytes());
        let off = core::mem::offset_of!(BootInfo, name);
        assert_eq!(&bytes[off..off + 8], b"firewall");
        let off = core::mem::offset_of!(BootInfo, args);
        assert_eq!(&bytes[off..off + 6], b"mode=x");
        b.channel_count = 1;
        b.channels[1].gpa = 0x40_0020_0000;
        b.channels[1].set_name("uplink");
        let bytes = b.to_bytes();
        let c1 = core::mem::offset_of!(BootInfo, channels) + core::mem::size_of::<ChannelInfo>();
        assert_eq!(&bytes[c1..c1 + 8], &0x40_0020_0000u64.to_le_bytes());
        let name = c1 + core::mem::offset_of!(ChannelInfo, name);
        assert_eq!(&bytes[name..name + 6], b"uplink");
        b.channels[1].bulk_gpa = crate::channel::bulk_window(1);
        b.channels[1].bulk_size = 1 << 20;
        let bytes = b.to_bytes();
        let bulk = c1 + core::mem::offset_of!(ChannelInfo, bulk_gpa);
        assert_eq!(
            &bytes[bulk..bulk + 8],
            &crate::channel::bulk_window(1).to_le_bytes()
        );
        let size = c1 + core::mem::offset_of!(ChannelInfo, bulk_size);
        assert_eq!(&bytes[size..size + 8], &(1u64 << 20).to_le_bytes());
        assert_eq!(
            b.channels[1].bulk(),
            Some((crate::channel::bulk_window(1), 1 << 20))
        );
        assert_eq!(b.channels[0].bulk(), None);
        assert!(bytes.len() <= 4096, "boot info fits its page");
        b.config_len = 77;
        b.devices[1].device = 0x1041;
        b.devices[1].bars[4].size = 0x4000;
        let bytes = b.to_bytes();
        let off = core::mem::offset_of!(BootInfo, config_len);
        assert_eq!(&bytes[off..off + 8], &77u64.to_le_bytes());
        let d1 = core::mem::offset_of!(BootInfo, devices) + core::mem::size_of::<DeviceInfo>();
        let id = d1 + core::mem::offset_of!(DeviceInfo, device);
        assert_eq!(&bytes[id..id + 2], &0x1041u16.to_le_bytes());
        let bar4 = d1 + core::mem::offset_of!(DeviceInfo, bars) + 4 * 16 + 8;
        assert_eq!(&bytes[bar4..bar4 + 8], &0x4000u64.to_le_bytes());
        b.io_port_count = 2;
        b.io_ports[1] = PortRange::new(0x60, 0x64).unwrap();
        let bytes = b.to_bytes();
        assert_eq!(bytes.len(), core::mem::size_of::<BootInfo>());
        let p1 = core::mem::offset_of!(BootInfo, io_ports) + 4;
        assert_eq!(&bytes[p1..p1 + 4], &[0x60, 0, 0x64, 0]);
        let count = core::mem::offset_of!(BootInfo, io_port_count);
        assert_eq!(&bytes[count..count + 4], &2u32.to_le_bytes());
        assert_eq!(b.io_ports().len(), 2);
        b.io_port_count = 1000;
        assert_eq!(b.io_ports().len(), MAX_PORT_RANGES);
        assert!(bytes.len() <= 4096, "boot info fits its page");
        b.framebuffer = FramebufferInfo {
            gpa: 0x8000_0000,
            size: 0x30_0000,
            width: 1024,
            height: 768,
            pitch: 4096,
            bpp: 32,
        };
        let bytes = b.to_bytes();
        let fb = core::mem::offset_of!(BootInfo, framebuffer);
        assert_eq!(&bytes[fb..fb + 8], &0x8000_0000u64.to_le_bytes());
        let pitch = fb + core::mem::offset_of!(FramebufferInfo, pitch);
        assert_eq!(&bytes[pitch..pitch + 4], &4096u32.to_le_bytes());
        assert_eq!(fb + size_of::<FramebufferInfo>(), bytes.len());
    }

    #[test]
    fn long_names_are_cut_at_char_boundaries() {
        let mut b = BootInfo::new();
        b.set_name("ééééééééééééééééééééé"); // 42 bytes
        assert!(b.name_len as usize <= NAME_MAX);
        assert!(b.name().starts_with("éé"));
    }
}
