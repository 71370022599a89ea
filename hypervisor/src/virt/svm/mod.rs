//! The AMD SVM backend: detection, enabling, the permission maps shared by all vCPUs, and
//! [`SvmVcpu`]. Unsafe module (MSRs, VMCB and world switch).
//!
//! Works without NRIP_SAVE, decode assists, VGIF or flush-by-ASID (QEMU's TCG has none of
//! the first, `-cpu EPYC` lacks VGIF): RIP is advanced by known instruction lengths, and the
//! TLB is flushed whole when a vCPU's mappings change.

mod vcpu;
pub mod vmcb;

pub use vcpu::SvmVcpu;

use crate::arch::x86::cpu;
use bulkhead_abi::io_ports::PortRange;
use bulkhead_hvcore::ioports::{SVM_IOPM_LEN, write_bitmap};
use bulkhead_hvcore::memmap::{FrameAllocator, Frames};

/// What this CPU's SVM offers.
#[derive(Clone, Copy, Debug)]
pub struct SvmCaps {
    /// SVM revision.
    pub revision: u32,
    /// Number of ASIDs.
    pub asids: u32,
    /// Nested paging.
    pub npt: bool,
    /// The CPU saves the next RIP on exits.
    pub nrip_save: bool,
    /// Virtual GIF.
    pub vgif: bool,
    /// TLB flush by ASID.
    pub flush_by_asid: bool,
}

/// Why SVM cannot be used.
#[derive(Clone, Copy, Debug)]
pub enum SvmError {
    /// CPUID says no SVM (not AMD, or hidden).
    NotPresent,
    /// Firmware disabled SVM (VM_CR.SVMDIS).
    DisabledByFirmware,
    /// No nested paging, which the hypervisor requires.
    NoNestedPaging,
    /// Out of memory for the host save area or permission maps.
    NoMemory,
}

impl core::fmt::Display for SvmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SvmError::NotPresent => "the CPU has no AMD SVM",
            SvmError::DisabledByFirmware => {
                "SVM is disabled by the firmware (VM_CR.SVMDIS); enable virtualisation (SVM) in the firmware setup"
            }
            SvmError::NoNestedPaging => "the CPU has SVM but no nested paging (NPT)",
            SvmError::NoMemory => "out of memory while enabling SVM",
        })
    }
}

/// Reads the SVM capabilities, or says why there are none.
pub fn detect() -> Result<SvmCaps, SvmError> {
    if cpu::cpuid(0x8000_0000, 0).eax < 0x8000_000A
        || cpu::cpuid(0x8000_0001, 0).ecx & (1 << 2) == 0
    {
        return Err(SvmError::NotPresent);
    }
    let f = cpu::cpuid(0x8000_000A, 0);
    let caps = SvmCaps {
        revision: f.eax & 0xFF,
        asids: f.ebx,
        npt: f.edx & (1 << 0) != 0,
        nrip_save: f.edx & (1 << 3) != 0,
        flush_by_asid: f.edx & (1 << 6) != 0,
        vgif: f.edx & (1 << 16) != 0,
    };
    // SAFETY: VM_CR exists on every CPU that reports SVM (checked above).
    if unsafe { cpu::rdmsr(cpu::MSR_VM_CR) } & (1 << 4) != 0 {
        return Err(SvmError::DisabledByFirmware);
    }
    if !caps.npt {
        return Err(SvmError::NoNestedPaging);
    }
    Ok(caps)
}

/// SVM switched on for this CPU, with the pages all vCPUs share.
pub struct Svm {
    /// Capabilities.
    pub caps: SvmCaps,
    /// The CPU's host save area (VM_HSAVE_PA), kept for the rest of the run.
    _host_save: Frames,
    host_state: Frames,
    iopm: Frames,
    msrpm: Frames,
    /// The MSR permission map of Linux vCPUs: as `msrpm`, but the MSRs VMLOAD/VMSAVE switch
    /// per vCPU (see [`crate::virt::LINUX_OWN_MSRS`]) are the guest's own.
    msrpm_linux: Frames,
}

/// A CPU's own SVM pages (physical addresses): VM_HSAVE_PA's area, and the page VMSAVE and
/// VMLOAD keep the host's hidden state in around each VMRUN. Two CPUs must never share one.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuPages {
    /// The host save area.
    pub hsave: u64,
    /// The host state page (`svm_run`'s third argument).
    pub host_state: u64,
}

/// Enables SVM on the CPU that runs this (an application processor; the boot CPU's is
/// [`Svm::enable`]) with its own host save area.
pub fn enable_on_this_cpu(pages: CpuPages) {
    // SAFETY: the boot CPU found SVM present and enabled (`detect`), and every CPU of the
    // machine has the same features; `pages.hsave` is a page allocated for this CPU alone
    // (`Svm::pages_for_cpu`) and kept for the rest of the run.
    unsafe {
        let efer = cpu::rdmsr(cpu::MSR_EFER);
        cpu::wrmsr(cpu::MSR_EFER, efer | (1 << 12));
        cpu::wrmsr(cpu::MSR_VM_HSAVE_PA, pages.hsave);
    }
}

/// The byte and bit of an MSR's read-intercept bit in an MSR permission map (the write bit
/// is the next one), or `None` outside the three ranges the map covers.
fn msrpm_bit(msr: u32) -> Option<(usize, u8)> {
    let (base, offset) = match msr {
        0..=0x1FFF => (0, 0),
        0xC000_0000..=0xC000_1FFF => (0xC000_0000, 0x800),
        0xC001_0000..=0xC001_1FFF => (0xC001_0000, 0x1000),
        _ => return None,
    };
    let bit = (msr - base) as usize * 2;
    Some((offset + bit / 8, (bit % 8) as u8))
}

impl Svm {
    /// Sets EFER.SVME and VM_HSAVE_PA and builds the I/O and MSR permission maps, which
    /// intercept every port and every MSR: the maps of every qube without ports of its own.
    pub fn enable(caps: SvmCaps, frames: &mut FrameAllocator) -> Result<Svm, SvmError> {
        let mut hsave = frames.alloc(4096, 4096).ok_or(SvmError::NoMemory)?;
        let mut host_state = frames.alloc(4096, 4096).ok_or(SvmError::NoMemory)?;
        let mut iopm = frames
            .alloc(SVM_IOPM_LEN as u64, 4096)
            .ok_or(SvmError::NoMemory)?;
        let mut msrpm = frames.alloc(2 * 4096, 4096).ok_or(SvmError::NoMemory)?;
        let mut msrpm_linux = frames.alloc(2 * 4096, 4096).ok_or(SvmError::NoMemory)?;
        for (f, fill) in [
            (&mut hsave, 0u8),
            (&mut host_state, 0),
            (&mut iopm, 0xFF),
            (&mut msrpm, 0xFF),
            (&mut msrpm_linux, 0xFF),
        ] {
            crate::memory::phys::with_frames(f, |b| b.fill(fill));
        }
        crate::memory::phys::with_frames(&mut msrpm_linux, |b| {
            for (byte, bit) in crate::virt::LINUX_OWN_MSRS
                .iter()
                .filter_map(|&m| msrpm_bit(m))
            {
                b[byte] &= !(0b11 << bit);
            }
        });
        // SAFETY: SVM is present and not disabled (checked by `detect`); setting SVME and
        // the host save area is the architectural way to enable it, and the save area page
        // is owned by the hypervisor for the rest of the run.
        unsafe {
            let efer = cpu::rdmsr(cpu::MSR_EFER);
            cpu::wrmsr(cpu::MSR_EFER, efer | (1 << 12));
            cpu::wrmsr(cpu::MSR_VM_HSAVE_PA, hsave.start());
        }
        Ok(Svm {
            caps,
            _host_save: hsave,
            host_state,
            iopm,
            msrpm,
            msrpm_linux,
        })
    }

    /// The two pages another CPU needs to run guests (its host save area and host state
    /// page), zeroed; kept for the rest of the run.
    pub fn pages_for_cpu(frames: &mut FrameAllocator) -> Result<CpuPages, SvmError> {
        let mut hsave = frames.alloc(4096, 4096).ok_or(SvmError::NoMemory)?;
        let mut host_state = frames.alloc(4096, 4096).ok_or(SvmError::NoMemory)?;
        crate::memory::phys::with_frames(&mut hsave, |b| b.fill(0));
        crate::memory::phys::with_frames(&mut host_state, |b| b.fill(0));
        Ok(CpuPages {
            hsave: hsave.start(),
            host_state: host_state.start(),
        })
    }

    /// The boot CPU's pages (see [`Svm::pages_for_cpu`]).
    pub fn boot_cpu_pages(&self) -> CpuPages {
        CpuPages {
            hsave: self._host_save.start(),
            host_state: self.host_state.start(),
        }
    }

    /// A vCPU with its own VMCB, for a qube whose nested page tables are at `npt_root`. A
    /// qube that owns `ports` gets its own I/O permission map passing exactly those through;
    /// every other qube shares the one that intercepts every port.
    pub fn create_vcpu(
        &self,
        frames: &mut FrameAllocator,
        asid: u32,
        npt_root: u64,
        linux: bool,
        ports: &[PortRange],
    ) -> Option<SvmVcpu> {
        let own_iopm = match ports {
            [] => None,
            _ => {
                let mut iopm = frames.alloc(SVM_IOPM_LEN as u64, 4096)?;
                crate::memory::phys::with_frames(&mut iopm, |b| write_bitmap(b, ports));
                Some(iopm)
            }
        };
        let vmcb = frames.alloc(4096, 4096)?;
        let x = crate::virt::xstate::ExtState::new(frames)?;
        let asid = 1 + (asid % self.caps.asids.saturating_sub(1).max(1));
        let msrpm = if linux {
            &self.msrpm_linux
        } else {
            &self.msrpm
        };
        let maps = vcpu::Maps {
            iopm: own_iopm.as_ref().unwrap_or(&self.iopm).start(),
            msrpm: msrpm.start(),
            own_iopm,
        };
        Some(SvmVcpu::new(self, vmcb, x, asid, npt_root, maps))
    }
}
