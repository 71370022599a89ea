//! PCI functions found through ECAM (the MCFG's memory-mapped configuration space).

use crate::memory::mmio::Mmio;
use bulkhead_hvcore::acpi::Ecam;
use bulkhead_hvcore::memmap::{MemoryMap, Region};

/// Most functions remembered from enumeration.
pub const MAX_FUNCTIONS: usize = 64;

/// One PCI function and its 4 KiB of configuration space.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    /// Segment group.
    pub segment: u16,
    /// Bus.
    pub bus: u8,
    /// Device.
    pub device: u8,
    /// Function.
    pub function: u8,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device_id: u16,
    /// Class register (class, subclass, prog-if, revision).
    pub class: u32,
    /// Header type without the multi-function bit (0: endpoint, 1: bridge).
    pub header_type: u8,
    config: Mmio,
}

impl Function {
    /// Reads the configuration word at `offset`.
    pub fn read(&self, offset: u16) -> u32 {
        self.config.read32(u64::from(offset))
    }

    /// Writes the configuration word at `offset`.
    pub fn write(&self, offset: u16, value: u32) {
        self.config.write32(u64::from(offset), value)
    }

    /// `segment << 16 | bus << 8 | device << 3 | function`.
    pub fn address(&self) -> u32 {
        u32::from(self.segment) << 16 | u32::from(self.source_id())
    }

    /// The requester ID the IOMMU sees: `bus << 8 | device << 3 | function`.
    pub fn source_id(&self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }
}

impl core::fmt::Display for Function {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{} [{:04x}:{:04x}]",
            self.segment, self.bus, self.device, self.function, self.vendor, self.device_id
        )
    }
}

/// Why configuration space could not be used.
#[derive(Clone, Copy, Debug)]
pub enum EcamError {
    /// The MCFG's range overlaps RAM or lies outside the identity map.
    BadRange(u64),
}

impl core::fmt::Display for EcamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EcamError::BadRange(a) => write!(f, "range at {a:#x} overlaps RAM or is unmapped"),
        }
    }
}

/// Lists the functions of every ECAM range, in bus order, into `out` (up to its capacity).
pub fn enumerate(
    ecams: &[Ecam],
    ram: &MemoryMap,
    out: &mut bulkhead_hvcore::collections::BoundedVec<Function, MAX_FUNCTIONS>,
) -> Result<(), EcamError> {
    for e in ecams {
        let buses = u64::from(e.bus_end - e.bus_start) + 1;
        let len = buses << 20;
        let range = Region::from_len(e.base, len).ok_or(EcamError::BadRange(e.base))?;
        if ram.regions().iter().any(|r| r.overlaps(&range)) {
            return Err(EcamError::BadRange(e.base));
        }
        for bus in e.bus_start..=e.bus_end {
            for device in 0..32u8 {
                for function in 0..8u8 {
                    let offset = (u64::from(bus - e.bus_start) << 20)
                        | u64::from(device) << 15
                        | u64::from(function) << 12;
                    // SAFETY: inside the MCFG's ECAM range, which the firmware describes as
                    // configuration space and which overlaps no RAM (checked above).
                    let Some(config) = (unsafe { Mmio::new(e.base + offset, 4096) }) else {
                        return Err(EcamError::BadRange(e.base));
                    };
                    let id = config.read32(0);
                    if id & 0xffff == 0xffff {
                        if function == 0 {
                            break;
                        }
                        continue;
                    }
                    let header = (config.read32(0x0c) >> 16) as u8;
                    let f = Function {
                        segment: e.segment,
                        bus,
                        device,
                        function,
                        vendor: id as u16,
                        device_id: (id >> 16) as u16,
                        class: config.read32(0x08),
                        header_type: header & 0x7f,
                        config,
                    };
                    if out.push(f).is_err() {
                        return Ok(());
                    }
                    if function == 0 && header & 0x80 == 0 {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}
