//! Choosing the virtualisation backend at boot (from CPUID) and dispatching to it. Portable
//! code holds a [`Backend`] and [`AnyVcpu`]s and never names SVM or VMX.

use super::svm::{self, Svm, SvmVcpu};
use super::vmx::{self, Vmx, VmxVcpu};
use super::{EntryState, Exit, GuestRegs, Vcpu};
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

    /// A vCPU for qube `id` whose nested page tables are rooted at `nested_root`.
    pub fn create_vcpu(
        &self,
        frames: &mut FrameAllocator,
        id: u32,
        nested_root: u64,
        linux: bool,
    ) -> Option<AnyVcpu> {
        match self {
            Backend::Svm(s) => s
                .create_vcpu(frames, id, nested_root, linux)
                .map(AnyVcpu::Svm),
            Backend::Vmx(v) => v.create_vcpu(frames, id, nested_root).map(AnyVcpu::Vmx),
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

macro_rules! dispatch {
    ($self:expr, $v:ident => $e:expr) => {
        match $self {
            AnyVcpu::Svm($v) => $e,
            AnyVcpu::Vmx($v) => $e,
        }
    };
}

impl Vcpu for AnyVcpu {
    fn reset(&mut self, entry: &EntryState) {
        dispatch!(self, v => v.reset(entry))
    }
    fn run(&mut self) -> Exit {
        dispatch!(self, v => v.run())
    }
    fn regs(&mut self) -> &mut GuestRegs {
        dispatch!(self, v => v.regs())
    }
    fn rax(&self) -> u64 {
        dispatch!(self, v => v.rax())
    }
    fn set_rax(&mut self, value: u64) {
        dispatch!(self, v => v.set_rax(value))
    }
    fn rip(&self) -> u64 {
        dispatch!(self, v => v.rip())
    }
    fn skip_instruction(&mut self, exit: &Exit) {
        dispatch!(self, v => v.skip_instruction(exit))
    }
    fn exit_count(&self) -> u64 {
        dispatch!(self, v => v.exit_count())
    }
    fn tlb_tag(&self) -> u32 {
        dispatch!(self, v => v.tlb_tag())
    }
    fn flush_tlb_before_next_run(&mut self) {
        dispatch!(self, v => v.flush_tlb_before_next_run())
    }
    fn set_slice_end(&mut self, end_ns: u64) {
        dispatch!(self, v => v.set_slice_end(end_ns))
    }
    fn reset_linux(&mut self, entry: &super::LinuxEntry) {
        dispatch!(self, v => v.reset_linux(entry))
    }
    fn set_rip(&mut self, rip: u64) {
        dispatch!(self, v => v.set_rip(rip))
    }
    fn gpr(&self, n: u8) -> u64 {
        dispatch!(self, v => v.gpr(n))
    }
    fn set_gpr(&mut self, n: u8, value: u64) {
        dispatch!(self, v => v.set_gpr(n, value))
    }
    fn paging(&self) -> super::PagingState {
        dispatch!(self, v => v.paging())
    }
    fn interruptible(&self) -> bool {
        dispatch!(self, v => v.interruptible())
    }
    fn inject(&mut self, event: super::Event) {
        dispatch!(self, v => v.inject(event))
    }
    fn set_interrupt_window(&mut self, on: bool) {
        dispatch!(self, v => v.set_interrupt_window(on))
    }
    fn set_efer(&mut self, efer: u64) {
        dispatch!(self, v => v.set_efer(efer))
    }
    fn set_pat(&mut self, pat: u64) {
        dispatch!(self, v => v.set_pat(pat))
    }
    fn cpl(&self) -> u8 {
        dispatch!(self, v => v.cpl())
    }
    fn xstate(&mut self) -> &mut super::xstate::ExtState {
        dispatch!(self, v => v.xstate())
    }
}
