//! Giving PCI functions to qubes: resolving the manifest's selectors, sizing and decoding
//! the BARs, working out which pages of them the qube may map (never the MSI-X table), and
//! filtering the qube's configuration accesses.

use super::Platform;
use super::ecam::Function;
use crate::hvlog;
use bulkhead_abi::boot_info::{BarInfo, DEVICE_IOMMU, DeviceInfo, MAX_DEVICES_PER_QUBE};
use bulkhead_abi::manifest::{IommuPolicy, Manifest, PciSelect};
use bulkhead_hvcore::PAGE_SIZE;
use bulkhead_hvcore::memmap::{MemoryMap, Region};
use bulkhead_hvcore::pci::{
    self, BAR0, BarKind, CMD_BUS_MASTER, CMD_MEMORY, COMMAND, ConfigView, Write,
};
use bulkhead_hvcore::unikernel::DevicePiece;

/// Most mapped pieces (BAR ranges minus MSI-X holes) per device.
pub const MAX_PIECES: usize = 8;

/// A device a qube owns.
pub struct Assigned {
    /// The function.
    pub func: Function,
    /// What the qube sees of its configuration space.
    pub view: ConfigView,
    /// Physical ranges of its BARs the qube maps (identity: guest-physical = physical).
    pub pieces: bulkhead_hvcore::collections::ArrayVec<DevicePiece, MAX_PIECES>,
    /// Behind the IOMMU.
    pub iommu: bool,
    /// Its interrupt slot (`super::irq`), when the IOMMU remaps interrupts and the device
    /// has MSI or MSI-X.
    pub irq: Option<usize>,
}

impl Assigned {
    /// The boot-info entry, given where the qube's memory is (for the DMA offset without an
    /// IOMMU).
    pub fn info(&self, host_base: u64) -> DeviceInfo {
        let mut d = DeviceInfo::EMPTY;
        d.address = self.func.address();
        d.vendor = self.func.vendor;
        d.device = self.func.device_id;
        d.class = self.func.class;
        d.flags = if self.iommu { DEVICE_IOMMU } else { 0 };
        d.dma_offset = if self.iommu { 0 } else { host_base };
        for (out, bar) in d.bars.iter_mut().zip(self.view.bars()) {
            let mapped = self
                .pieces
                .iter()
                .any(|p| p.start >= bar.base && p.start + p.len <= bar.base + bar.size);
            if matches!(bar.kind, BarKind::Mem32 | BarKind::Mem64) && mapped {
                *out = BarInfo {
                    gpa: bar.base,
                    size: bar.size,
                };
            }
        }
        d
    }

    /// Stops the device's DMA (bus mastering off) and resets the qube's view: done when the
    /// qube stops, before its memory is reused.
    pub fn quiesce(&mut self) {
        let cmd = self.func.read(COMMAND);
        self.func
            .write(COMMAND, (cmd & 0xffff & !CMD_BUS_MASTER & !1) | CMD_MEMORY);
        self.view = ConfigView::new(*self.view.bars(), self.view.caps());
        if self.irq.is_some() {
            let caps = self.view.caps();
            super::msi::disable(&self.func, caps.msi, caps.msix);
        }
    }

    /// Programs the device's MSI (preferred: one message, no table) or MSI-X entry 0 with
    /// its slot's remappable message (the qube asked with `DeviceInterrupts`); false when it
    /// has no slot (no interrupt remapping here, or neither capability).
    pub fn enable_interrupts(&mut self) -> bool {
        let Some(slot) = self.irq else { return false };
        let caps = self.view.caps();
        match (caps.msi, caps.msix) {
            (Some(cap), _) => {
                super::msi::program_msi(&self.func, cap, slot as u16);
                true
            }
            (None, Some(cap)) => {
                super::msi::program_msix(&self.func, self.view.bars(), cap, slot as u16)
            }
            (None, None) => false,
        }
    }

    /// Gives the device an interrupt slot routed to `cpu` for qube `qube` (its `device`-th),
    /// with an interrupt remapping entry that accepts only its requester ID: at boot, when
    /// the IOMMU remaps interrupts and the device has MSI or MSI-X. Logged.
    pub fn route_interrupts(
        &mut self,
        iommu: &mut super::vtd::Iommu,
        qube: usize,
        cpu: usize,
        device: usize,
        name: &str,
    ) {
        let caps = self.view.caps();
        if !self.iommu || !iommu.remaps_interrupts() || (caps.msi.is_none() && caps.msix.is_none())
        {
            return;
        }
        let route = super::irq::Route { qube, cpu, device };
        let Some(slot) = super::irq::allocate(route) else {
            hvlog!(
                "device {} of qube {name}: no interrupt slot left; it polls",
                self.func
            );
            return;
        };
        let apic_id = crate::smp::CPUS[cpu]
            .apic_id
            .load(core::sync::atomic::Ordering::Relaxed) as u8;
        let vector = super::irq::FIRST_VECTOR + slot as u8;
        let entry = bulkhead_hvcore::irq_remap::irte(vector, apic_id, self.func.source_id());
        match iommu.set_irte(slot, entry) {
            Ok(()) => {
                self.irq = Some(slot);
                hvlog!(
                    "device {} of qube {name}: interrupts through remapping entry {slot} (vector {vector:#x}, CPU {cpu}, {}) when it asks",
                    self.func,
                    if caps.msi.is_some() { "MSI" } else { "MSI-X" }
                );
            }
            Err(e) => hvlog!(
                "device {} of qube {name}: interrupt entry not written ({e}); it polls",
                self.func
            ),
        }
    }

    /// A configuration read by the qube (offset checked by the caller).
    pub fn config_read(&self, offset: u16) -> u32 {
        self.view.read(offset, self.func.read(offset))
    }

    /// A configuration write by the qube; false when refused.
    pub fn config_write(&mut self, offset: u16, value: u32) -> bool {
        match self.view.write(offset, value, self.func.read(offset)) {
            Write::Hardware(v) => {
                self.func.write(offset, v);
                true
            }
            Write::Absorbed => true,
            Write::Denied => false,
        }
    }
}

/// Resolves the devices the manifest gives qube `qube`, logging every device refused and
/// why. `reserved` is the guest-physical range the qube already uses (its memory and channel
/// windows); a BAR overlapping it is not mapped.
pub fn for_qube(
    platform: &mut Platform,
    manifest: &Manifest,
    qube: usize,
    ram: &MemoryMap,
    reserved: &[Region],
) -> bulkhead_hvcore::collections::BoundedVec<Assigned, MAX_DEVICES_PER_QUBE> {
    let mut out = bulkhead_hvcore::collections::BoundedVec::new();
    let name = manifest
        .qubes
        .get(qube)
        .map(|q| q.name.as_str())
        .unwrap_or("?");
    for spec in manifest
        .devices
        .iter()
        .filter(|d| usize::from(d.qube) == qube)
    {
        let sel = Selector(spec.select);
        let Some(index) = find(platform, &spec.select) else {
            hvlog!("device {sel} for qube {name}: not found");
            continue;
        };
        let func = platform.functions[index];
        if platform.taken.iter().any(|&t| t == index) {
            hvlog!("device {sel} ({func}) for qube {name}: already assigned");
            continue;
        }
        if func.header_type != 0 {
            hvlog!("device {sel} ({func}) for qube {name}: bridges cannot be assigned");
            continue;
        }
        let iommu = platform.iommu.is_some()
            && platform.iommu_unit.as_ref().is_some_and(|u| {
                u.segment == func.segment && u.covers(func.bus, func.device, func.function)
            });
        if !iommu {
            match manifest.iommu {
                IommuPolicy::Required => {
                    hvlog!(
                        "device {sel} ({func}) for qube {name}: refused: no IOMMU, and the system description does not accept DMA to all memory"
                    );
                    continue;
                }
                IommuPolicy::AcceptRisk => hvlog!(
                    "WARNING: device {func} given to qube {name} WITHOUT an IOMMU: it can read and write ALL memory (the system description accepted this risk)"
                ),
            }
        }
        if out.is_full() {
            hvlog!("device {sel} for qube {name}: a qube may have {MAX_DEVICES_PER_QUBE} devices");
            continue;
        }
        let a = prepare(func, iommu, ram, reserved, name);
        let _ = platform.taken.push(index);
        hvlog!(
            "device {func} class {:06x} -> qube {name}: {} BAR pieces mapped ({} write-combining), DMA {}",
            func.class >> 8,
            a.pieces.len(),
            a.pieces.iter().filter(|p| p.write_combining).count(),
            if iommu {
                "through the IOMMU"
            } else {
                "UNFENCED"
            }
        );
        let _ = out.push(a);
    }
    out
}

fn find(p: &Platform, sel: &PciSelect) -> Option<usize> {
    match *sel {
        PciSelect::Address {
            segment,
            bus,
            device,
            function,
        } => p.functions.iter().position(|f| {
            (f.segment, f.bus, f.device, f.function) == (segment, bus, device, function)
        }),
        PciSelect::Id {
            vendor,
            device,
            index,
        } => p
            .functions
            .iter()
            .enumerate()
            .filter(|(_, f)| f.vendor == vendor && f.device_id == device)
            .nth(usize::from(index))
            .map(|(i, _)| i),
    }
}

/// Sizes the BARs (decoding off meanwhile), finds the MSI-X structures, and leaves the
/// device with memory decoding on and bus mastering off until the qube enables it.
fn prepare(
    func: Function,
    iommu: bool,
    ram: &MemoryMap,
    reserved: &[Region],
    name: &str,
) -> Assigned {
    let cmd = func.read(COMMAND) & 0xffff;
    func.write(COMMAND, cmd & !(CMD_MEMORY | CMD_BUS_MASTER | 1));
    let mut raw = [0u32; 6];
    let mut sized = [0u32; 6];
    for i in 0..6u16 {
        let off = BAR0 + 4 * i;
        raw[usize::from(i)] = func.read(off);
        func.write(off, u32::MAX);
        sized[usize::from(i)] = func.read(off);
        func.write(off, raw[usize::from(i)]);
    }
    func.write(COMMAND, (cmd & !(CMD_BUS_MASTER | 1)) | CMD_MEMORY);
    let bars = pci::decode_bars(raw, sized);
    let caps = pci::find_caps(|o| func.read(o));
    let holes = caps
        .msix
        .map(|c| pci::msix_regions(|o| func.read(o), c))
        .unwrap_or_default();
    let mut pieces = bulkhead_hvcore::collections::ArrayVec::new();
    for (i, bar) in bars.iter().enumerate() {
        if !matches!(bar.kind, BarKind::Mem32 | BarKind::Mem64) || bar.size == 0 {
            continue;
        }
        let Some(region) = Region::from_len(bar.base, bar.size) else {
            continue;
        };
        if bar.size < PAGE_SIZE || bar.base % PAGE_SIZE != 0 {
            hvlog!("qube {name}: BAR{i} of {func} is smaller than a page; not mapped");
            continue;
        }
        if ram
            .regions()
            .iter()
            .chain(reserved)
            .any(|r| r.overlaps(&region))
        {
            hvlog!(
                "qube {name}: BAR{i} of {func} at {:#x} overlaps memory; not mapped",
                bar.base
            );
            continue;
        }
        let mut in_bar = [(0u64, 0u64); 2];
        let mut n = 0;
        let mine = holes.iter().filter(|(b, _, l)| *b == i && *l > 0);
        for (slot, (_, off, l)) in in_bar.iter_mut().zip(mine) {
            *slot = (bar.base + off, *l);
            n += 1;
        }
        // A display controller's prefetchable BAR is its framebuffer: write-combining.
        let write_combining = func.class >> 24 == pci::CLASS_DISPLAY && bar.prefetchable();
        for &(start, len) in pci::without_holes(bar.base, bar.size, &in_bar[..n]).iter() {
            let piece = DevicePiece {
                start,
                len,
                write_combining,
            };
            if pieces.push(piece).is_err() {
                hvlog!("qube {name}: too many BAR pieces for {func}; some not mapped");
            }
        }
    }
    Assigned {
        func,
        view: ConfigView::new(bars, caps),
        pieces,
        iommu,
        irq: None,
    }
}

/// A selector as written in system descriptions.
struct Selector(PciSelect);

impl core::fmt::Display for Selector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            PciSelect::Address {
                segment,
                bus,
                device,
                function,
            } => write!(f, "pci:{segment:04x}:{bus:02x}:{device:02x}.{function}"),
            PciSelect::Id {
                vendor,
                device,
                index,
            } => write!(f, "pci-id:{vendor:04x}:{device:04x}#{index}"),
        }
    }
}
