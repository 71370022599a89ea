//! Choosing the virtualisation backend at boot (from CPUID) and dispatching to it. Portable
//! code holds a [`Backend`] and [`AnyVcpu`]s and never names SVM or VMX.

use super::Vcpu;
use super::svm::{self, Svm, SvmVcpu};
use super::vmx::{self, Vmx, VmxVcpu};
use crate::arch::x86::cpu;
use crate::hvlog;
use bulkhead_hvcore::memmap::FrameAllocator;
use bulkhead_hvcore::paging::NestedFormat;

/// The backend in use.
pub enum Backend {
    /// AMD SVM with nested paging.
    Svm(Svm),
    /// Intel VMX with EPT.
    Vmx(Vmx),
}

/// Why no backend could be started.
#[derive(Clone, Copy, Debug)]
pub enum BackendError {
    /// SVM refused, with its reason.
    Svm(svm::SvmError),
    /// VMX refused, with its reason.
    Vmx(vmx::VmxError),
    /// Neither vendor.
    UnknownVendor,
}

impl core::fmt::Display for BackendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BackendError::Svm(e) => write!(f, "{e}"),
            BackendError::Vmx(e) => write!(f, "{e}"),
            BackendError::UnknownVendor => write!(f, "neither an AMD nor an Intel CPU"),
        }
    }
}

/// The CPU vendor string from CPUID leaf 0.
pub fn vendor() -> [u8; 12] {
    let v = cpu::cpuid(0, 0);
    let mut out = [0u8; 12];
    for (i, r) in [v.ebx, v.edx, v.ecx].into_iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&r.to_le_bytes());
    }
    out
}

impl Backend {
    /// Detects the CPU's virtualisation, enables it, and logs what it found.
    pub fn start(frames: &mut FrameAllocator) -> Result<Backend, BackendError> {
        match &vendor() {
            b"AuthenticAMD" | b"HygonGenuine" => {
                let caps = svm::detect().map_err(BackendError::Svm)?;
                hvlog!(
                    "backend SVM rev {}: NPT yes, NRIP_SAVE {}, VGIF {}, flush-by-ASID {}, {} ASIDs",
                    caps.revision,
                    yes(caps.nrip_save),
                    yes(caps.vgif),
                    yes(caps.flush_by_asid),
                    caps.asids
                );
                Ok(Backend::Svm(
                    Svm::enable(caps, frames).map_err(BackendError::Svm)?,
                ))
            }
            b"GenuineIntel" => {
                let caps = vmx::detect().map_err(BackendError::Vmx)?;
                hvlog!(
                    "backend VMX rev {}: EPT yes, VPID {}, unrestricted guest {}, true controls {}, EFER switching {}, preemption timer {}, INVEPT {}",
                    caps.revision,
                    yes(caps.vpid),
                    yes(caps.unrestricted_guest),
                    yes(caps.true_controls),
                    yes(caps.load_efer),
                    yes(caps.preemption_timer_shift.is_some()),
                    if caps.invept_single {
                        "single-context"
                    } else {
                        "all-context"
                    }
                );
                Ok(Backend::Vmx(
                    Vmx::enable(caps, frames).map_err(BackendError::Vmx)?,
                ))
            }
            _ => Err(BackendError::UnknownVendor),
        }
    }

    /// A vCPU for qube `id` whose nested page tables are rooted at `nested_root`, passing
    /// `ports` through (only if [`Backend::passes_ports`]).
    pub fn create_vcpu(
        &self,
        frames: &mut FrameAllocator,
        id: u32,
        nested_root: u64,
        linux: bool,
        ports: &[bulkhead_abi::io_ports::PortRange],
    ) -> Option<AnyVcpu> {
        match self {
            Backend::Svm(s) => s
                .create_vcpu(frames, id, nested_root, linux, ports)
                .map(AnyVcpu::Svm),
            Backend::Vmx(v) => v
                .create_vcpu(frames, id, nested_root, ports)
                .map(AnyVcpu::Vmx),
        }
    }

    /// Whether a qube can own I/O ports: always under SVM (its I/O permission map); under
    /// VMX when the CPU has I/O bitmaps.
    pub fn passes_ports(&self) -> bool {
        match self {
            Backend::Svm(_) => true,
            Backend::Vmx(v) => v.caps.io_bitmaps,
        }
    }

    /// Whether this backend can run Linux qubes: always under SVM; under VMX when the CPU
    /// can switch EFER and use MSR bitmaps (`Vmx::runs_linux`).
    pub fn runs_linux(&self) -> bool {
        match self {
            Backend::Svm(_) => true,
            Backend::Vmx(v) => v.runs_linux(),
        }
    }

    /// Whether a guest can start in real mode (a Linux qube's secondary vCPUs, started by
    /// INIT and STARTUP): under SVM with nested paging; VMX would need unrestricted-guest
    /// mode, which the VMX backend does not use.
    pub fn starts_real_mode(&self) -> bool {
        matches!(self, Backend::Svm(_))
    }

    /// The nested page-table format this backend walks.
    pub fn nested_format(&self) -> NestedFormat {
        match self {
            Backend::Svm(_) => NestedFormat::Npt,
            Backend::Vmx(_) => NestedFormat::Ept,
        }
    }

    /// `BootInfo::flags` bits guests need (which hypercall instruction to use).
    pub fn boot_flags(&self) -> u32 {
        match self {
            Backend::Svm(_) => 0,
            Backend::Vmx(_) => bulkhead_abi::boot_info::FLAG_VMCALL,
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A vCPU of whichever backend is in use.
pub enum AnyVcpu {
    /// SVM.
    Svm(SvmVcpu),
    /// VMX.
    Vmx(VmxVcpu),
}

impl AnyVcpu {
    /// Runs this vCPU on CPU `cpu` from now on (a vCPU runs on one CPU only): under SVM
    /// with that CPU's host state page `host_state_pa`; under VMX with its VMCS cleared here
    /// and its host tables rewritten there.
    pub fn bind_cpu(&mut self, cpu: usize, host_state_pa: u64) {
        match self {
            AnyVcpu::Svm(v) => v.bind_host_state(host_state_pa),
            AnyVcpu::Vmx(v) => v.bind_cpu(cpu),
        }
    }
}

// Portable code calls the vCPU through the trait: one indirect call instead of a match
// per method.
impl core::ops::Deref for AnyVcpu {
    type Target = dyn Vcpu;
    fn deref(&self) -> &(dyn Vcpu + 'static) {
        match self {
            AnyVcpu::Svm(v) => v,
            AnyVcpu::Vmx(v) => v,
        }
    }
}

impl core::ops::DerefMut for AnyVcpu {
    fn deref_mut(&mut self) -> &mut (dyn Vcpu + 'static) {
        match self {
            AnyVcpu::Svm(v) => v,
            AnyVcpu::Vmx(v) => v,
        }
    }
}
