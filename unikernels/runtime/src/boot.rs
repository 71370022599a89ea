//! The boot information, checked once at entry and then read through a typed view.
//!
//! [`Boot::new`] accepts a [`BootInfo`] only when its magic, version and ABI version match
//! this runtime and its memory layout is consistent: image, heap and stack lie inside the
//! qube's memory, in that order, without overlapping each other or the linked image, and the
//! configuration blob (if any) lies between the image and the heap, and each channel's bulk
//! area (if any) is at its channel's bulk window with a valid size. The heap hand-off,
//! [`Boot::config`] and [`Boot::bulk`] rely on these checks.

use core::fmt;
use core::ops::Range;

use bulkhead_abi::boot_info::{
    ARGS_MAX, BootInfo, DeviceInfo, FLAG_VMCALL, FramebufferInfo, NAME_MAX, layout,
};
use bulkhead_abi::hypercall::ABI_VERSION;
use bulkhead_abi::label::Label;

use crate::args::Args;

/// Exit statuses the runtime uses when it refuses to start.
pub mod status {
    /// The boot info is not where the contract puts it, or its magic or version is wrong.
    pub const BAD_BOOT_INFO: u64 = 102;
    /// The hypervisor speaks another hypercall ABI version.
    pub const ABI_MISMATCH: u64 = 103;
    /// The memory layout in the boot info is inconsistent.
    pub const BAD_LAYOUT: u64 = 104;
}

/// Why the runtime refused the boot info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// `rdi` at entry was not `layout::BOOT_INFO`.
    Address(u64),
    /// The magic is not "BHBOOTIN".
    Magic(u64),
    /// The boot-info layout version is not the one this runtime reads.
    Version(u32),
    /// The hypercall ABI version is not the one this runtime speaks.
    Abi(u32),
    /// The memory layout breaks the named rule.
    Layout(&'static str),
}

impl BootError {
    /// The exit status the runtime stops the qube with.
    pub const fn status(&self) -> u64 {
        match self {
            BootError::Address(_) | BootError::Magic(_) | BootError::Version(_) => {
                status::BAD_BOOT_INFO
            }
            BootError::Abi(_) => status::ABI_MISMATCH,
            BootError::Layout(_) => status::BAD_LAYOUT,
        }
    }
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Address(a) => {
                write!(f, "boot info at {a:#x}, expected {:#x}", layout::BOOT_INFO)
            }
            BootError::Magic(m) => write!(f, "boot info magic {m:#018x} is wrong"),
            BootError::Version(v) => write!(
                f,
                "boot info version {v}, this runtime reads {}",
                bulkhead_abi::boot_info::BOOT_INFO_VERSION
            ),
            BootError::Abi(v) => write!(f, "hypercall ABI {v}, this runtime speaks {ABI_VERSION}"),
            BootError::Layout(rule) => write!(f, "bad memory layout: {rule}"),
        }
    }
}

/// The checked boot information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boot {
    info: BootInfo,
    /// The configuration blob (`config_gpa..+config_len`), attached by `start` once the
    /// layout check has placed it inside this qube's memory.
    config: &'static [u8],
}

impl Boot {
    /// Checks `info`. `linked` is the image's own extent as the linker placed it
    /// (`__image_start..__image_end`, `.bss` included); it must lie inside the loaded image.
    pub fn new(info: BootInfo, linked: Range<u64>) -> Result<Boot, BootError> {
        if info.magic != bulkhead_abi::boot_info::BOOT_INFO_MAGIC {
            return Err(BootError::Magic(info.magic));
        }
        if info.version != bulkhead_abi::boot_info::BOOT_INFO_VERSION {
            return Err(BootError::Version(info.version));
        }
        if info.abi_version != ABI_VERSION {
            return Err(BootError::Abi(info.abi_version));
        }
        check_layout(&info, &linked).map_err(BootError::Layout)?;
        Ok(Boot { info, config: &[] })
    }

    /// Attaches the configuration blob's bytes (read from `config_gpa..+config_len`, which
    /// [`Boot::new`] checked).
    #[cfg_attr(test, allow(dead_code, reason = "only `start` and the tests call it"))]
    pub(crate) fn with_config(mut self, blob: &'static [u8]) -> Boot {
        self.config = blob;
        self
    }

    /// The configuration blob from the system description (postcard
    /// `bulkhead_qubeconfig::QubeConfig`); empty when the qube has none.
    pub fn config(&self) -> &'static [u8] {
        self.config
    }

    /// The guest-physical range of the configuration blob (empty when there is none).
    pub const fn config_range(&self) -> Range<u64> {
        if self.info.config_len == 0 {
            0..0
        } else {
            self.info.config_gpa..self.info.config_gpa + self.info.config_len
        }
    }

    /// The PCI devices assigned to this qube; the position is the device index of the
    /// `pci_config_*` hypercalls (see [`crate::pci`]).
    pub fn devices(&self) -> &[DeviceInfo] {
        let n = (self.info.device_count as usize).min(self.info.devices.len());
        &self.info.devices[..n]
    }

    /// The I/O ports this qube owns (`io_ports` in the system description): its IN and OUT
    /// on them reach the hardware; any other port stops the qube. Use them through
    /// [`crate::port::IoPort`].
    pub fn io_ports(&self) -> &[bulkhead_abi::io_ports::PortRange] {
        self.info.io_ports()
    }

    /// The firmware's framebuffer (`framebuffer = true` in the system description, and the
    /// boot loader left one): 32-bit `0x00RRGGBB` pixels, rows `pitch` bytes apart, mapped
    /// uncached at `gpa`, outside this qube's memory. `None` when there is none or its
    /// numbers do not add up. Draw on it through [`crate::mmio::Mmio::of_framebuffer`].
    pub fn framebuffer(&self) -> Option<FramebufferInfo> {
        let f = self.info.framebuffer;
        let rows = u64::from(f.pitch).checked_mul(u64::from(f.height))?;
        let good = f.size != 0
            && f.bpp == 32
            && f.width != 0
            && f.height != 0
            && u64::from(f.pitch) >= u64::from(f.width) * 4
            && rows <= f.size
            && f.gpa >= self.info.mem_size
            && f.gpa.checked_add(f.size).is_some();
        good.then_some(f)
    }

    /// The raw block, as the hypervisor wrote it.
    pub const fn info(&self) -> &BootInfo {
        &self.info
    }

    /// The qube's name.
    pub fn name(&self) -> &str {
        self.info.name()
    }

    /// The qube's argument string.
    pub fn args(&self) -> Args<'_> {
        Args::new(self.info.args())
    }

    /// The label colour, if it is a known one.
    pub fn label(&self) -> Option<Label> {
        self.info.label()
    }

    /// The label's name, or "unknown".
    pub fn label_name(&self) -> &'static str {
        self.label().map_or("unknown", Label::name)
    }

    /// The channels this qube is an endpoint of; the position is the local channel index.
    pub fn channels(&self) -> &[bulkhead_abi::boot_info::ChannelInfo] {
        let n = (self.info.channel_count as usize).min(self.info.channels.len());
        &self.info.channels[..n]
    }

    /// The bulk area of local channel `local`, when the channel has one: where it is
    /// mapped (`bulkhead_abi::channel::bulk_window(local)`), its size and which pool is this
    /// qube's (checked by [`Boot::new`]).
    pub fn bulk(&self, local: usize) -> Option<BulkArea> {
        let c = self.channels().get(local)?;
        let (gpa, size) = c.bulk()?;
        Some(BulkArea {
            gpa,
            size,
            side: c.side,
        })
    }

    /// The qube's index in the manifest.
    pub const fn qube_id(&self) -> u32 {
        self.info.qube_id
    }

    /// Size of the qube's memory (guest-physical `0..mem_size`).
    pub const fn mem_size(&self) -> u64 {
        self.info.mem_size
    }

    /// Where the image was loaded (`.bss` included).
    pub const fn image(&self) -> Range<u64> {
        self.info.image_start..self.info.image_end
    }

    /// The memory the runtime gave to its heap.
    pub const fn heap(&self) -> Range<u64> {
        self.info.heap_start..self.info.heap_end
    }

    /// Size of the heap region in bytes.
    pub const fn heap_size(&self) -> u64 {
        self.info.heap_end - self.info.heap_start
    }

    /// The initial stack pointer (the stack is the [`layout::STACK_SIZE`] bytes below it).
    pub const fn stack_top(&self) -> u64 {
        self.info.stack_top
    }

    /// How many times the hypervisor has restarted this qube.
    pub const fn restart_count(&self) -> u32 {
        self.info.restart_count
    }

    /// The hypercall ABI version the hypervisor announced.
    pub const fn abi_version(&self) -> u32 {
        self.info.abi_version
    }

    /// True when hypercalls use `VMCALL` (Intel) rather than `VMMCALL` (AMD).
    pub const fn uses_vmcall(&self) -> bool {
        self.info.flags & FLAG_VMCALL != 0
    }
}

/// A channel's bulk area, as the boot info gives it: the qube's own pool is mapped writable,
/// the peer's read-only (a write there stops the qube), neither executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkArea {
    /// Guest-physical address (the channel's bulk window).
    pub gpa: u64,
    /// Bytes: two equal pools of whole pages.
    pub size: u64,
    /// 0: this qube is side A (its pool is the first half); 1: side B (the second half).
    pub side: u32,
}

impl BulkArea {
    /// Side A's pool, then side B's.
    fn pools(&self) -> [Range<u64>; 2] {
        let half = self.size / 2;
        [
            self.gpa..self.gpa + half,
            self.gpa + half..self.gpa + self.size,
        ]
    }

    /// This qube's pool: the one it may write.
    pub fn own_pool(&self) -> Range<u64> {
        self.pools()[usize::from(self.side != 0)].clone()
    }

    /// The peer's pool: read-only here.
    pub fn peer_pool(&self) -> Range<u64> {
        self.pools()[usize::from(self.side == 0)].clone()
    }
}

/// The layout rules; the error names the first one broken.
fn check_layout(i: &BootInfo, linked: &Range<u64>) -> Result<(), &'static str> {
    let rule = |ok: bool, rule: &'static str| if ok { Ok(()) } else { Err(rule) };
    rule(i.name_len as usize <= NAME_MAX, "name_len > NAME_MAX")?;
    rule(i.args_len as usize <= ARGS_MAX, "args_len > ARGS_MAX")?;
    rule(i.stack_top <= i.mem_size, "stack_top above mem_size")?;
    rule(
        i.stack_top.is_multiple_of(16),
        "stack_top not 16-byte aligned",
    )?;
    rule(
        i.stack_top >= layout::STACK_SIZE,
        "stack_top below STACK_SIZE",
    )?;
    rule(
        i.image_start >= layout::IMAGE_BASE,
        "image_start below IMAGE_BASE",
    )?;
    rule(i.image_start <= i.image_end, "image_end below image_start")?;
    rule(
        i.image_start <= linked.start && linked.end <= i.image_end,
        "linked image not inside image_start..image_end",
    )?;
    rule(i.image_end <= i.heap_start, "heap_start below image_end")?;
    if i.config_len != 0 {
        let end = i.config_gpa.checked_add(i.config_len);
        rule(i.config_gpa >= i.image_end, "config blob below image_end")?;
        rule(
            end.is_some_and(|end| end <= i.heap_start),
            "config blob runs past heap_start",
        )?;
    }
    rule(i.heap_start <= i.heap_end, "heap_end below heap_start")?;
    rule(
        i.heap_end <= i.stack_top - layout::STACK_SIZE,
        "heap_end overlaps the stack (stack_top - STACK_SIZE)",
    )?;
    let count = (i.channel_count as usize).min(i.channels.len());
    for (local, c) in i.channels[..count].iter().enumerate() {
        if let Some((gpa, size)) = c.bulk() {
            rule(
                gpa == bulkhead_abi::channel::bulk_window(local)
                    && bulkhead_abi::channel::bulk_size_valid(size)
                    && c.side <= 1,
                "a channel's bulk area is not at its bulk window, or its size or side is invalid",
            )?;
        }
    }
    Ok(())
}

/// A consistent boot info changed by `f`, checked (for other modules' tests).
#[cfg(test)]
pub(crate) fn for_tests(f: impl FnOnce(&mut BootInfo)) -> Boot {
    let mut b = tests::good();
    f(&mut b);
    Boot::new(b, tests::linked()).expect("a consistent boot info")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_abi::boot_info::BOOT_INFO_VERSION;

    const MIB: u64 = 1 << 20;

    pub(super) fn good() -> BootInfo {
        let mut b = BootInfo::new();
        b.mem_size = 64 * MIB;
        b.image_start = layout::IMAGE_BASE;
        b.image_end = layout::IMAGE_BASE + 0x3000;
        b.heap_start = layout::IMAGE_BASE + 0x3000;
        b.stack_top = 64 * MIB;
        b.heap_end = b.stack_top - layout::STACK_SIZE;
        b.label = Label::Gray as u32;
        b.set_name("sys-net");
        b.set_args("mode=idle log=debug");
        b
    }

    pub(super) fn linked() -> Range<u64> {
        layout::IMAGE_BASE..layout::IMAGE_BASE + 0x2800
    }

    #[test]
    fn a_consistent_block_is_accepted() {
        let boot = Boot::new(good(), linked()).unwrap();
        assert_eq!(boot.name(), "sys-net");
        assert_eq!(boot.label_name(), "gray");
        assert_eq!(boot.args().get("log"), Some("debug"));
        assert_eq!(
            boot.heap_size(),
            64 * MIB - layout::STACK_SIZE - layout::IMAGE_BASE - 0x3000
        );
        assert!(!boot.uses_vmcall());
    }

    #[test]
    fn the_framebuffer_is_checked() {
        let fb = FramebufferInfo {
            gpa: 0xfd00_0000,
            size: 0x30_0000,
            width: 1024,
            height: 768,
            pitch: 4096,
            bpp: 32,
        };
        assert_eq!(Boot::new(good(), linked()).unwrap().framebuffer(), None);
        let with = |f: FramebufferInfo| {
            let mut b = good();
            b.framebuffer = f;
            Boot::new(b, linked()).unwrap().framebuffer()
        };
        assert_eq!(with(fb), Some(fb));
        let mut b = good();
        b.framebuffer = fb;
        let mmio = crate::mmio::Mmio::of_framebuffer(&Boot::new(b, linked()).unwrap()).unwrap();
        assert_eq!(mmio.len(), 0x30_0000);
        assert_eq!(with(FramebufferInfo { bpp: 24, ..fb }), None);
        assert_eq!(with(FramebufferInfo { pitch: 4000, ..fb }), None);
        assert_eq!(with(FramebufferInfo { height: 769, ..fb }), None);
        assert_eq!(with(FramebufferInfo { gpa: MIB, ..fb }), None);
        assert_eq!(
            with(FramebufferInfo {
                gpa: u64::MAX - 0x1000,
                ..fb
            }),
            None
        );
        assert_eq!(
            with(FramebufferInfo {
                pitch: u32::MAX,
                height: u32::MAX,
                ..fb
            }),
            None
        );
    }

    #[test]
    fn vmcall_flag_is_read() {
        let mut b = good();
        b.flags = FLAG_VMCALL;
        assert!(Boot::new(b, linked()).unwrap().uses_vmcall());
    }

    #[test]
    fn identity_errors_have_their_own_status() {
        let mut b = good();
        b.magic = 0;
        assert_eq!(Boot::new(b, linked()), Err(BootError::Magic(0)));
        let mut b = good();
        b.version = BOOT_INFO_VERSION + 1;
        assert_eq!(
            Boot::new(b, linked()),
            Err(BootError::Version(BOOT_INFO_VERSION + 1))
        );
        let mut b = good();
        b.abi_version = 9;
        let err = Boot::new(b, linked()).unwrap_err();
        assert_eq!(err, BootError::Abi(9));
        assert_eq!(err.status(), status::ABI_MISMATCH);
        assert_eq!(BootError::Magic(0).status(), status::BAD_BOOT_INFO);
        assert_ne!(status::BAD_BOOT_INFO, bulkhead_abi::hypercall::EXIT_PANIC);
    }

    #[test]
    fn layout_rules_are_enforced() {
        type Edit = fn(&mut BootInfo);
        let cases: [(Edit, &str); 13] = [
            (|b| b.name_len = 99, "name_len"),
            (|b| b.args_len = 999, "args_len"),
            (|b| b.stack_top = b.mem_size + 16, "stack_top above"),
            (|b| b.stack_top -= 8, "aligned"),
            (|b| b.image_start = 0x1000, "IMAGE_BASE"),
            (|b| b.image_end = b.image_start - 1, "image_end below"),
            (
                |b| b.image_end = layout::IMAGE_BASE + 0x1000,
                "linked image",
            ),
            (|b| b.heap_start = b.image_end - 0x1000, "heap_start below"),
            (|b| b.heap_end = b.heap_start - 1, "heap_end below"),
            (|b| b.heap_end = b.stack_top - 0x1000, "overlaps the stack"),
            (
                |b| {
                    b.config_gpa = b.image_end - 0x10;
                    b.config_len = 0x20;
                },
                "config blob below image_end",
            ),
            (
                |b| {
                    b.heap_start += 0x1000;
                    b.config_gpa = b.heap_start - 0x10;
                    b.config_len = 0x20;
                },
                "config blob runs past heap_start",
            ),
            (
                |b| {
                    b.config_gpa = u64::MAX - 4;
                    b.config_len = 0x20;
                },
                "config blob runs past heap_start",
            ),
        ];
        for (edit, want) in cases {
            let mut b = good();
            edit(&mut b);
            match Boot::new(b, linked()) {
                Err(BootError::Layout(rule)) => assert!(rule.contains(want), "{rule} vs {want}"),
                other => panic!("{want}: got {other:?}"),
            }
        }
    }

    #[test]
    fn config_blob_between_image_and_heap_is_accepted() {
        let mut b = good();
        b.heap_start += 0x1000;
        b.config_gpa = b.image_end;
        b.config_len = 77;
        let boot = Boot::new(b, linked()).unwrap();
        assert_eq!(boot.config(), &[] as &[u8], "empty until start attaches it");
        assert_eq!(boot.config_range(), b.image_end..b.image_end + 77);
        let blob: &'static [u8] = Box::leak(vec![7u8; 77].into_boxed_slice());
        assert_eq!(boot.with_config(blob).config().len(), 77);
        // config_gpa is ignored when there is no blob.
        let mut b = good();
        b.config_gpa = 0x10;
        assert_eq!(Boot::new(b, linked()).unwrap().config_range(), 0..0);
    }

    #[test]
    fn devices_are_cut_at_the_count() {
        let mut b = good();
        assert!(Boot::new(b, linked()).unwrap().devices().is_empty());
        b.device_count = 2;
        b.devices[1].device = 0x1041;
        let boot = Boot::new(b, linked()).unwrap();
        assert_eq!(boot.devices().len(), 2);
        assert_eq!(boot.devices()[1].device, 0x1041);
        b.device_count = 99;
        assert_eq!(Boot::new(b, linked()).unwrap().devices().len(), 4);
    }

    #[test]
    fn bulk_areas_are_found_by_channel_index() {
        use bulkhead_abi::channel::bulk_window;
        let mut b = good();
        b.channel_count = 2;
        b.channels[1].bulk_gpa = bulk_window(1);
        b.channels[1].bulk_size = 2 * MIB;
        b.channels[1].side = 1;
        let boot = Boot::new(b, linked()).unwrap();
        assert_eq!(boot.bulk(0), None);
        assert_eq!(boot.bulk(2), None);
        let area = boot.bulk(1).unwrap();
        assert_eq!(
            (area.gpa, area.size, area.side),
            (bulk_window(1), 2 * MIB, 1)
        );
        assert_eq!(
            area.own_pool(),
            bulk_window(1) + MIB..bulk_window(1) + 2 * MIB
        );
        assert_eq!(area.peer_pool(), bulk_window(1)..bulk_window(1) + MIB);
        // Anywhere but its window, or of a size that is not two page pools: refused.
        for (gpa, size) in [(bulk_window(0), 2 * MIB), (bulk_window(1), 4096)] {
            let mut bad = b;
            bad.channels[1].bulk_gpa = gpa;
            bad.channels[1].bulk_size = size;
            assert!(matches!(
                Boot::new(bad, linked()),
                Err(BootError::Layout(rule)) if rule.contains("bulk")
            ));
        }
        // Past the channel count, nothing is looked at.
        b.channel_count = 1;
        b.channels[1].bulk_gpa = 7;
        assert_eq!(Boot::new(b, linked()).unwrap().bulk(1), None);
    }

    #[test]
    fn an_empty_heap_is_consistent() {
        let mut b = good();
        b.heap_end = b.heap_start;
        assert_eq!(Boot::new(b, linked()).unwrap().heap_size(), 0);
    }

    #[test]
    fn errors_print_what_is_wrong() {
        let text = format!("{}", BootError::Version(7));
        assert!(text.contains("version 7"), "{text}");
        let text = format!("{}", BootError::Layout("x"));
        assert_eq!(text, "bad memory layout: x");
    }
}
