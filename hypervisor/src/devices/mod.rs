//! Devices: PCI functions found through ECAM, assigned to the qubes the manifest names, and
//! fenced by the IOMMU so their DMA reaches only their qube's memory.
//!
//! - [`ecam`]: enumeration and configuration access.
//! - [`vtd`]: the Intel VT-d driver (root/context tables, domains, faults, interrupt
//!   remapping).
//! - [`irq`]: device interrupt slots (vector, remapping entry, owning qube and CPU).
//! - [`msi`]: programming a device's MSI or MSI-X with its remappable message.
//! - [`assign`]: resolving the manifest's device list and the per-device state a qube holds
//!   (emulated configuration view, mapped BAR pieces, what its boot info says).

pub mod assign;
#[allow(unsafe_code)]
pub mod ecam;
pub mod irq;
#[allow(unsafe_code)]
pub mod msi;
#[allow(unsafe_code)]
pub mod vtd;

use crate::hvlog;
use crate::memory::phys::BootMemory;
use bulkhead_hvcore::acpi;
use bulkhead_hvcore::bootinfo::BootEnv;
use bulkhead_hvcore::memmap::FrameAllocator;
use ecam::{Function, MAX_FUNCTIONS};
use vtd::Iommu;

/// What the platform offers: its PCI functions and its IOMMU, if any.
pub struct Platform {
    /// Every function found, in bus order.
    pub functions: bulkhead_hvcore::collections::BoundedVec<Function, MAX_FUNCTIONS>,
    /// The DMA remapping unit, translating (all DMA blocked until devices are attached).
    pub iommu: Option<Iommu>,
    /// The DMAR's description of the unit in use (which devices it covers).
    pub iommu_unit: Option<acpi::Drhd>,
    /// The CPUs the firmware lists (the MADT), if it could be read.
    pub madt: Option<acpi::Madt>,
    /// Functions already given to a qube (by index into `functions`).
    taken: bulkhead_hvcore::collections::BoundedVec<usize, MAX_FUNCTIONS>,
}

/// Reads the ACPI tables, lists the PCI functions and starts the IOMMU. Every problem is
/// logged and leaves the platform with fewer capabilities; none stops the boot.
pub fn discover(env: &BootEnv, frames: &mut FrameAllocator) -> Platform {
    let mut p = Platform {
        functions: bulkhead_hvcore::collections::BoundedVec::new(),
        iommu: None,
        iommu_unit: None,
        madt: None,
        taken: bulkhead_hvcore::collections::BoundedVec::new(),
    };
    let mem = BootMemory;
    let Some(rsdp) = env.rsdp.or_else(|| acpi::scan_rsdp(&mem)) else {
        hvlog!("acpi: no RSDP; no PCI devices and no IOMMU");
        return p;
    };
    let tables = match acpi::tables(&mem, rsdp) {
        Ok(t) => t,
        Err(e) => {
            hvlog!("acpi: tables unusable ({e:?}); no PCI devices and no IOMMU");
            return p;
        }
    };
    match tables.find(b"APIC").map(|a| acpi::madt(&mem, a)) {
        Some(Ok(madt)) => p.madt = Some(madt),
        Some(Err(e)) => hvlog!("acpi: MADT unusable ({e:?}); running on the boot CPU only"),
        None => {}
    }
    match tables.find(b"MCFG").map(|a| acpi::mcfg(&mem, a)) {
        Some(Ok(ecams)) => match ecam::enumerate(&ecams, &env.ram, &mut p.functions) {
            Ok(()) => hvlog!(
                "pci: {} functions through ECAM at {:#x}",
                p.functions.len(),
                ecams.first().map(|e| e.base).unwrap_or(0)
            ),
            Err(e) => hvlog!("pci: ECAM refused ({e}); no PCI devices"),
        },
        Some(Err(e)) => hvlog!("pci: MCFG unusable ({e:?}); no PCI devices"),
        None => hvlog!("pci: no MCFG (no ECAM); no PCI devices"),
    }
    match tables.find(b"DMAR").map(|a| acpi::dmar(&mem, a)) {
        Some(Ok(dmar)) => {
            // One unit is what QEMU and most desktops have; with several, the one with
            // INCLUDE_PCI_ALL (else the first) is used, and only its devices may be assigned.
            let unit = dmar
                .units
                .iter()
                .find(|u| u.include_all)
                .or(dmar.units.first());
            match unit.map(|u| (u, Iommu::start(u, &env.ram, frames))) {
                Some((u, Ok(iommu))) => {
                    let (major, minor) = iommu.version();
                    let c = iommu.capabilities();
                    hvlog!(
                        "iommu: VT-d {major}.{minor} at {:#x} ({}), {}-level tables, {} domains, {} fault records{}; DMA of unassigned devices is blocked",
                        u.base,
                        if u.include_all {
                            "all devices"
                        } else {
                            "listed devices"
                        },
                        iommu.levels(),
                        c.domains,
                        c.fault_records,
                        if iommu.flushes_caches() {
                            ", page walks not coherent (ECAP.C = 0): table writes are flushed"
                        } else {
                            ""
                        }
                    );
                    let mut iommu = iommu;
                    match iommu.enable_interrupt_remapping(frames) {
                        Ok(true) => {
                            hvlog!(
                                "iommu: interrupt remapping on ({} entries, each accepting one device's messages); compatibility-format interrupts blocked; invalidations queued",
                                bulkhead_hvcore::irq_remap::IRT_ENTRIES
                            );
                        }
                        Ok(false) => hvlog!(
                            "iommu: no interrupt remapping (ECAP.IR or ECAP.QI clear): devices' qubes poll them"
                        ),
                        Err(e) => hvlog!(
                            "iommu: interrupt remapping failed ({e}): devices' qubes poll them"
                        ),
                    }
                    p.iommu = Some(iommu);
                    p.iommu_unit = unit.cloned();
                }
                Some((u, Err(e))) => hvlog!("iommu: VT-d unit at {:#x} unusable: {e}", u.base),
                None => hvlog!("iommu: the DMAR lists no remapping unit"),
            }
        }
        Some(Err(e)) => hvlog!("iommu: DMAR unusable ({e:?})"),
        None => hvlog!("iommu: none (no DMAR table)"),
    }
    p
}
