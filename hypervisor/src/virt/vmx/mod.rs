//! The Intel VMX backend: detection (CPUID, IA32_FEATURE_CONTROL, the capability MSRs),
//! entering VMX operation (CR0/CR4 fixed bits, VMXON), the control values every VMCS uses,
//! TLB invalidation (INVEPT/INVVPID), and [`VmxVcpu`]. Unsafe module (MSRs, control
//! registers, VMX instructions and the world switch).
//!
//! What it needs: EPT with 4-level walks, write-back memory and 2 MiB pages, INVEPT, and
//! (optionally) VPID. Unrestricted guest is not needed: qubes start in long mode. Every I/O
//! access exits (unconditional I/O exiting), but a qube that owns ports gets I/O bitmaps
//! passing exactly those through. Every MSR access of a unikernel exits; a Linux
//! vCPU gets an MSR bitmap that lets it use its own syscall and segment-base MSRs
//! ([`crate::virt::LINUX_OWN_MSRS`]), switched per vCPU. See docs/vmx.md.

mod setup;
mod vcpu;
pub mod vmcs;

pub use vcpu::VmxVcpu;

use crate::arch::x86::cpu;
use bulkhead_abi::io_ports::PortRange;
use bulkhead_hvcore::ioports::{VMX_IO_BITMAPS_LEN, write_bitmap};
use bulkhead_hvcore::memmap::{FrameAllocator, Frames};
use core::arch::asm;
use vmcs::{entry_ctl, exit_ctl, pin, proc1, proc2};

const MSR_FEATURE_CONTROL: u32 = 0x3A;
const MSR_VMX_BASIC: u32 = 0x480;
const MSR_VMX_PINBASED_CTLS: u32 = 0x481;
const MSR_VMX_PROCBASED_CTLS: u32 = 0x482;
const MSR_VMX_EXIT_CTLS: u32 = 0x483;
const MSR_VMX_ENTRY_CTLS: u32 = 0x484;
const MSR_VMX_MISC: u32 = 0x485;
const MSR_VMX_CR0_FIXED0: u32 = 0x486;
const MSR_VMX_CR0_FIXED1: u32 = 0x487;
const MSR_VMX_CR4_FIXED0: u32 = 0x488;
const MSR_VMX_CR4_FIXED1: u32 = 0x489;
const MSR_VMX_PROCBASED_CTLS2: u32 = 0x48B;
const MSR_VMX_EPT_VPID_CAP: u32 = 0x48C;
const MSR_VMX_TRUE_PINBASED_CTLS: u32 = 0x48D;
const MSR_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48E;
const MSR_VMX_TRUE_EXIT_CTLS: u32 = 0x48F;
const MSR_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;

/// IA32_FEATURE_CONTROL bits.
const FC_LOCKED: u64 = 1 << 0;
const FC_VMX_OUTSIDE_SMX: u64 = 1 << 2;

/// CR4.VMXE.
const CR4_VMXE: u64 = 1 << 13;

/// IA32_VMX_EPT_VPID_CAP bits.
mod ept_cap {
    pub const WALK_4: u64 = 1 << 6;
    pub const WRITE_BACK: u64 = 1 << 14;
    pub const PAGES_2M: u64 = 1 << 16;
    pub const INVEPT: u64 = 1 << 20;
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    pub const INVEPT_ALL: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_SINGLE: u64 = 1 << 41;
    pub const INVVPID_ALL: u64 = 1 << 42;
}

/// EPTP: write-back paging-structure memory type, 4-level walk (length - 1 in bits 5:3).
const EPTP_WB_4LEVEL: u64 = 6 | (3 << 3);

/// The control words every VMCS gets, already reconciled with what the CPU allows.
#[derive(Clone, Copy, Debug)]
pub struct Controls {
    /// Pin-based.
    pub pin: u32,
    /// Primary processor-based.
    pub proc1: u32,
    /// Secondary processor-based.
    pub proc2: u32,
    /// VM-exit.
    pub exit: u32,
    /// VM-entry.
    pub entry: u32,
}

/// What this CPU's VMX offers, and the controls the backend will use.
#[derive(Clone, Copy, Debug)]
pub struct VmxCaps {
    /// VMCS revision identifier (IA32_VMX_BASIC bits 30:0).
    pub revision: u32,
    /// The TRUE_* control MSRs exist (IA32_VMX_BASIC bit 55), so default-1 controls such
    /// as CR3-load exiting can be cleared.
    pub true_controls: bool,
    /// VPID is available (secondary control and INVVPID) and used.
    pub vpid: bool,
    /// Unrestricted guest is available (reported only; qubes start in long mode).
    pub unrestricted_guest: bool,
    /// EFER is switched by the VMCS (load/save IA32_EFER); otherwise guests share the
    /// host's EFER value, which is the one they need (LME, LMA, NXE).
    pub load_efer: bool,
    /// PAT is switched by the VMCS (load/save IA32_PAT), so a Linux guest's PAT is its own.
    pub load_pat: bool,
    /// MSR bitmaps can be used (a Linux vCPU's own MSRs then do not exit).
    pub msr_bitmaps: bool,
    /// I/O bitmaps can be used (a qube's own ports then do not exit).
    pub io_bitmaps: bool,
    /// INVEPT single-context (else all-context).
    pub invept_single: bool,
    /// INVVPID single-context (else all-context).
    pub invvpid_single: bool,
    /// The VMX-preemption timer counts down once every 2^this TSC ticks, when the CPU has
    /// one (`None`: no timer).
    pub preemption_timer_shift: Option<u8>,
    /// CR0 bits fixed to 1 / allowed to be 1 in VMX operation.
    pub cr0_fixed: (u64, u64),
    /// CR4 bits fixed to 1 / allowed to be 1 in VMX operation.
    pub cr4_fixed: (u64, u64),
    /// The control words.
    pub controls: Controls,
}

/// Why VMX cannot be used.
#[derive(Clone, Copy, Debug)]
pub enum VmxError {
    /// CPUID says no VMX.
    NotPresent,
    /// IA32_FEATURE_CONTROL is locked with VMX (outside SMX) disabled.
    DisabledByFirmware,
    /// No secondary controls or no EPT.
    NoEpt,
    /// EPT lacks something the hypervisor's nested page tables use.
    EptLacks(&'static str),
    /// A VM-execution, exit or entry control the backend needs cannot be set (or one it
    /// cannot handle cannot be cleared).
    Control(&'static str),
    /// CR0/CR4 cannot hold the values VMX operation requires.
    FixedBits(&'static str),
    /// VMXON failed.
    VmxonFailed,
    /// Out of memory for the VMXON region.
    NoMemory,
}

impl core::fmt::Display for VmxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmxError::NotPresent => f.write_str("the CPU has no Intel VT-x (VMX)"),
            VmxError::DisabledByFirmware => f.write_str(
                "VT-x is disabled by the firmware (IA32_FEATURE_CONTROL is locked without VMX); \
                 enable Intel Virtualization Technology (VT-x) in the firmware setup",
            ),
            VmxError::NoEpt => f.write_str("the CPU has VT-x but no EPT (extended page tables)"),
            VmxError::EptLacks(what) => write!(f, "the CPU's EPT lacks {what}"),
            VmxError::Control(what) => write!(f, "the CPU's VT-x cannot {what}"),
            VmxError::FixedBits(what) => write!(f, "VMX operation needs {what}"),
            VmxError::VmxonFailed => f.write_str("VMXON failed (is another hypervisor running?)"),
            VmxError::NoMemory => f.write_str("out of memory while enabling VMX"),
        }
    }
}

/// Reconciles the controls a backend wants with a capability MSR: the low half lists bits
/// that must be 1, the high half bits that may be 1. `required` bits must be allowed
/// (else the bits that are not are returned as the error), `optional` bits are kept where
/// allowed, and bits the CPU forces on are added.
fn adjust(msr: u64, required: u32, optional: u32) -> Result<u32, u32> {
    let must = msr as u32;
    let may = (msr >> 32) as u32;
    let missing = required & !may;
    if missing != 0 {
        return Err(missing);
    }
    Ok((required | (optional & may) | must) & may)
}

/// Reads an MSR that exists whenever CPUID reports VMX.
fn vmx_msr(msr: u32) -> u64 {
    // SAFETY: only called for the architectural VMX MSRs (0x3A, 0x480..0x490) after CPUID
    // reported VMX; the optional ones (0x48B..0x490) only after the bits that announce
    // them were checked.
    unsafe { cpu::rdmsr(msr) }
}

/// Reads the VMX capabilities and decides the controls, or says why VMX is unusable.
/// Changes nothing but IA32_FEATURE_CONTROL (locked with VMX enabled if the firmware left
/// it unlocked, as the SDM asks a VMM to).
pub fn detect() -> Result<VmxCaps, VmxError> {
    if cpu::cpuid(1, 0).ecx & (1 << 5) == 0 {
        return Err(VmxError::NotPresent);
    }
    let fc = vmx_msr(MSR_FEATURE_CONTROL);
    if fc & FC_LOCKED == 0 {
        // SAFETY: IA32_FEATURE_CONTROL exists with VMX; it is unlocked, so writing it is
        // allowed, and enabling VMX outside SMX and locking it changes no state the
        // hypervisor relies on.
        unsafe { cpu::wrmsr(MSR_FEATURE_CONTROL, fc | FC_VMX_OUTSIDE_SMX | FC_LOCKED) };
    } else if fc & FC_VMX_OUTSIDE_SMX == 0 {
        return Err(VmxError::DisabledByFirmware);
    }

    let basic = vmx_msr(MSR_VMX_BASIC);
    let true_controls = basic & (1 << 55) != 0;
    let (pin_msr, proc_msr, exit_msr, entry_msr) = if true_controls {
        (
            MSR_VMX_TRUE_PINBASED_CTLS,
            MSR_VMX_TRUE_PROCBASED_CTLS,
            MSR_VMX_TRUE_EXIT_CTLS,
            MSR_VMX_TRUE_ENTRY_CTLS,
        )
    } else {
        (
            MSR_VMX_PINBASED_CTLS,
            MSR_VMX_PROCBASED_CTLS,
            MSR_VMX_EXIT_CTLS,
            MSR_VMX_ENTRY_CTLS,
        )
    };

    // The preemption timer bounds every guest run to one time slice even if an interrupt
    // were missed (Bochs 2.7 masks interrupts in a guest entered with IF=0 until the guest
    // itself changes IF); on real CPUs the external-interrupt exit always comes first.
    let pin = adjust(
        vmx_msr(pin_msr),
        pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
        pin::PREEMPTION_TIMER,
    )
    .map_err(|_| VmxError::Control("exit on external interrupts and NMIs"))?;

    let proc_caps = vmx_msr(proc_msr);
    let proc1 = adjust(
        proc_caps,
        proc1::HLT_EXITING
            | proc1::UNCONDITIONAL_IO_EXITING
            | proc1::SECONDARY_CONTROLS
            | proc1::MOV_DR_EXITING
            | proc1::RDPMC_EXITING
            | proc1::CR8_LOAD_EXITING
            | proc1::CR8_STORE_EXITING,
        proc1::MWAIT_EXITING | proc1::MONITOR_EXITING,
    )
    .map_err(|missing| {
        if missing & proc1::SECONDARY_CONTROLS != 0 {
            VmxError::NoEpt
        } else {
            VmxError::Control("exit on HLT, I/O, CR8, debug-register accesses and RDPMC")
        }
    })?;
    // Controls the backend does not handle must be clearable. Without true controls, CPUs
    // force CR3-load/store exiting on; with EPT a guest's CR3 is its own business.
    if proc1 & (proc1::CR3_LOAD_EXITING | proc1::CR3_STORE_EXITING) != 0 {
        return Err(VmxError::Control("leave CR3 accesses to the guest"));
    }
    if proc1 & (proc1::USE_IO_BITMAPS | proc1::USE_MSR_BITMAPS) != 0 {
        return Err(VmxError::Control("exit on every I/O port and MSR access"));
    }

    let proc2_caps = vmx_msr(MSR_VMX_PROCBASED_CTLS2);
    if (proc2_caps >> 32) as u32 & proc2::ENABLE_EPT == 0 {
        return Err(VmxError::NoEpt);
    }
    let ept = vmx_msr(MSR_VMX_EPT_VPID_CAP);
    for (bit, what) in [
        (ept_cap::WALK_4, "4-level page walks"),
        (ept_cap::WRITE_BACK, "the write-back memory type"),
        (ept_cap::PAGES_2M, "2 MiB pages"),
        (ept_cap::INVEPT, "INVEPT"),
    ] {
        if ept & bit == 0 {
            return Err(VmxError::EptLacks(what));
        }
    }
    if ept & (ept_cap::INVEPT_SINGLE | ept_cap::INVEPT_ALL) == 0 {
        return Err(VmxError::EptLacks("a single- or all-context INVEPT"));
    }
    let vpid_usable = (proc2_caps >> 32) as u32 & proc2::ENABLE_VPID != 0
        && ept & ept_cap::INVVPID != 0
        && ept & (ept_cap::INVVPID_SINGLE | ept_cap::INVVPID_ALL) != 0;
    let proc2 = adjust(
        proc2_caps,
        proc2::ENABLE_EPT,
        (if vpid_usable { proc2::ENABLE_VPID } else { 0 })
            | proc2::WBINVD_EXITING
            | proc2::ENABLE_RDTSCP
            | proc2::ENABLE_INVPCID,
    )
    .map_err(|_| VmxError::NoEpt)?;
    if proc2 & proc2::UNRESTRICTED_GUEST != 0 {
        return Err(VmxError::Control("run guests without unrestricted guest"));
    }

    // Debug controls: DR7 (and IA32_DEBUGCTL) are the guest's own, loaded at entry and
    // saved at exit (DR7 is then 0x400 for the host).
    let exit = adjust(
        vmx_msr(exit_msr),
        exit_ctl::HOST_ADDRESS_SPACE_SIZE | exit_ctl::SAVE_DEBUG_CONTROLS,
        exit_ctl::SAVE_EFER | exit_ctl::LOAD_EFER | exit_ctl::SAVE_PAT | exit_ctl::LOAD_PAT,
    )
    .map_err(|_| VmxError::Control("return to a 64-bit host, saving the guest's DR7"))?;
    if exit & exit_ctl::ACK_INTERRUPT_ON_EXIT != 0 {
        return Err(VmxError::Control("leave interrupts pending on VM exit"));
    }
    let entry = adjust(
        vmx_msr(entry_msr),
        entry_ctl::IA32E_MODE_GUEST | entry_ctl::LOAD_DEBUG_CONTROLS,
        entry_ctl::LOAD_EFER | entry_ctl::LOAD_PAT,
    )
    .map_err(|_| VmxError::Control("enter 64-bit guests with their own DR7"))?;
    let load_efer = exit & exit_ctl::LOAD_EFER != 0
        && exit & exit_ctl::SAVE_EFER != 0
        && entry & entry_ctl::LOAD_EFER != 0;
    let (exit, entry) = if load_efer {
        (exit, entry)
    } else {
        (
            exit & !(exit_ctl::LOAD_EFER | exit_ctl::SAVE_EFER),
            entry & !entry_ctl::LOAD_EFER,
        )
    };
    // PAT likewise: all three controls, or none.
    let load_pat = exit & exit_ctl::LOAD_PAT != 0
        && exit & exit_ctl::SAVE_PAT != 0
        && entry & entry_ctl::LOAD_PAT != 0;
    let (exit, entry) = if load_pat {
        (exit, entry)
    } else {
        (
            exit & !(exit_ctl::LOAD_PAT | exit_ctl::SAVE_PAT),
            entry & !entry_ctl::LOAD_PAT,
        )
    };

    Ok(VmxCaps {
        revision: basic as u32 & 0x7FFF_FFFF,
        true_controls,
        vpid: proc2 & proc2::ENABLE_VPID != 0,
        unrestricted_guest: (proc2_caps >> 32) as u32 & proc2::UNRESTRICTED_GUEST != 0,
        load_efer,
        load_pat,
        msr_bitmaps: (proc_caps >> 32) as u32 & proc1::USE_MSR_BITMAPS != 0,
        io_bitmaps: (proc_caps >> 32) as u32 & proc1::USE_IO_BITMAPS != 0,
        invept_single: ept & ept_cap::INVEPT_SINGLE != 0,
        invvpid_single: ept & ept_cap::INVVPID_SINGLE != 0,
        preemption_timer_shift: (pin & pin::PREEMPTION_TIMER != 0)
            .then(|| (vmx_msr(MSR_VMX_MISC) & 0x1F) as u8),
        cr0_fixed: (vmx_msr(MSR_VMX_CR0_FIXED0), vmx_msr(MSR_VMX_CR0_FIXED1)),
        cr4_fixed: (vmx_msr(MSR_VMX_CR4_FIXED0), vmx_msr(MSR_VMX_CR4_FIXED1)),
        controls: Controls {
            pin,
            proc1,
            proc2,
            exit,
            entry,
        },
    })
}

/// `value` with the bits VMX operation fixes to 1 set and those it fixes to 0 cleared.
fn fixed(value: u64, (fixed0, fixed1): (u64, u64)) -> u64 {
    (value | fixed0) & fixed1
}

/// VMX switched on for this CPU.
pub struct Vmx {
    /// Capabilities and controls.
    pub caps: VmxCaps,
    /// The VMXON region (owned for the rest of the run).
    _vmxon: Frames,
    /// The MSR bitmap every Linux vCPU shares: all MSRs exit but
    /// [`crate::virt::LINUX_OWN_MSRS`].
    msr_bitmap_linux: Frames,
}

/// Where an MSR's read-exit bit lies in a VMX MSR bitmap (byte, bit); the write-exit bit is
/// 2 KiB further. `None` for MSRs outside the two ranges the bitmap covers (they always
/// exit).
fn msr_bitmap_bit(msr: u32) -> Option<(usize, u8)> {
    let (base, offset) = match msr {
        0..=0x1FFF => (0, 0),
        0xC000_0000..=0xC000_1FFF => (0xC000_0000, 0x400),
        _ => return None,
    };
    let n = (msr - base) as usize;
    Some((offset + n / 8, (n % 8) as u8))
}

impl Vmx {
    /// Whether Linux qubes can run: they need their own EFER (SYSCALL enable) and the MSR
    /// bitmap, without which every context switch (FS_BASE) would exit.
    pub fn runs_linux(&self) -> bool {
        self.caps.load_efer && self.caps.msr_bitmaps
    }
}

impl Vmx {
    /// Applies the CR0/CR4 fixed bits (CR4.VMXE among them) and executes VMXON.
    pub fn enable(caps: VmxCaps, frames: &mut FrameAllocator) -> Result<Vmx, VmxError> {
        let region = Vmx::region_for_cpu(&caps, frames)?;
        let mut msr_bitmap_linux = frames.alloc(4096, 4096).ok_or(VmxError::NoMemory)?;
        // The Linux MSR bitmap: every bit set (exit), then the read and write bits of the
        // MSRs a Linux vCPU owns cleared.
        crate::memory::phys::with_frames(&mut msr_bitmap_linux, |b| {
            b.fill(0xFF);
            for (byte, bit) in crate::virt::LINUX_OWN_MSRS
                .iter()
                .filter_map(|&m| msr_bitmap_bit(m))
            {
                b[byte] &= !(1 << bit);
                b[byte + 0x800] &= !(1 << bit);
            }
        });
        enable_on_this_cpu(&caps, region.start())?;
        Ok(Vmx {
            caps,
            _vmxon: region,
            msr_bitmap_linux,
        })
    }

    /// A VMXON region for a CPU: zeroed, then the revision identifier in its first four
    /// bytes as the SDM requires; kept for the rest of the run.
    pub fn region_for_cpu(caps: &VmxCaps, frames: &mut FrameAllocator) -> Result<Frames, VmxError> {
        let mut region = frames.alloc(4096, 4096).ok_or(VmxError::NoMemory)?;
        crate::memory::phys::with_frames(&mut region, |b| {
            b.fill(0);
            b[..4].copy_from_slice(&caps.revision.to_le_bytes());
        });
        Ok(region)
    }

    /// A vCPU with its own VMCS and the page of its MSR load/store lists, for qube `id`
    /// whose EPT root is `ept_root`; with its own I/O bitmaps if it owns `ports` (the CPU
    /// must have them, [`VmxCaps::io_bitmaps`]).
    pub fn create_vcpu(
        &self,
        frames: &mut FrameAllocator,
        id: u32,
        ept_root: u64,
        ports: &[PortRange],
    ) -> Option<VmxVcpu> {
        let io_bitmaps = match ports {
            [] => None,
            _ if !self.caps.io_bitmaps => return None,
            _ => {
                let mut pages = frames.alloc(VMX_IO_BITMAPS_LEN as u64, 4096)?;
                crate::memory::phys::with_frames(&mut pages, |b| write_bitmap(b, ports));
                Some(pages)
            }
        };
        let vmcs = frames.alloc(4096, 4096)?;
        let x = crate::virt::xstate::ExtState::new(frames)?;
        let msr_lists = frames.alloc(4096, 4096)?;
        // VPIDs are 16 bits and 0 is the host's: 1..=0xFFFF.
        let vpid = 1 + (id % 0xFFFF) as u16;
        Some(VmxVcpu::new(
            self,
            vcpu::Pages {
                vmcs,
                x,
                msr_lists,
                io_bitmaps,
            },
            vpid,
            ept_root | EPTP_WB_4LEVEL,
        ))
    }
}

/// Applies the CR0/CR4 fixed bits (CR4.VMXE among them) and executes VMXON with the region
/// at `vmxon_pa` (from [`Vmx::region_for_cpu`]) on the CPU that runs this: the boot CPU in
/// [`Vmx::enable`], each other CPU as it starts (every CPU has the boot CPU's features).
pub fn enable_on_this_cpu(caps: &VmxCaps, vmxon_pa: u64) -> Result<(), VmxError> {
    let cr0 = cpu::cr0();
    let new_cr0 = fixed(cr0, caps.cr0_fixed);
    const PE_PG: u64 = 1 | 1 << 31;
    if new_cr0 & PE_PG != PE_PG {
        return Err(VmxError::FixedBits("paging and protected mode off (CR0)"));
    }
    let cr4 = cpu::cr4();
    let new_cr4 = fixed(cr4 | CR4_VMXE, caps.cr4_fixed);
    if new_cr4 & CR4_VMXE == 0 {
        return Err(VmxError::FixedBits(
            "CR4.VMXE, which the CPU does not allow",
        ));
    }
    const CR4_KEPT: u64 = 1 << 5 | 1 << 9 | 1 << 10; // PAE, OSFXSR, OSXMMEXCPT
    if new_cr4 & CR4_KEPT != cr4 & CR4_KEPT {
        return Err(VmxError::FixedBits(
            "a CR4 change the hypervisor cannot make",
        ));
    }

    // SAFETY: the new CR0/CR4 differ from the current ones only in bits VMX operation
    // requires (CR0.NE, CR4.VMXE, which change nothing the hypervisor relies on); PE, PG,
    // PAE and the SSE bits were checked to stay. VMXON gets a page the hypervisor owns
    // for the rest of the run, with the revision identifier written.
    let ok = unsafe {
        if new_cr0 != cr0 {
            cpu::write_cr0(new_cr0);
        }
        cpu::write_cr4(new_cr4);
        let ok: u8;
        asm!("vmxon [{p}]", "seta {ok}", p = in(reg) &vmxon_pa, ok = out(reg_byte) ok,
                 options(nostack));
        ok != 0
    };
    if !ok {
        return Err(VmxError::VmxonFailed);
    }
    Ok(())
}

/// Invalidates the EPT-derived translations of `eptp` (single context) or of every EPTP.
fn invept(eptp: u64, single: bool) {
    let desc: [u64; 2] = [eptp, 0];
    let kind: u64 = if single { 1 } else { 2 };
    // SAFETY: the CPU is in VMX operation (a `VmxVcpu` exists only after VMXON) and INVEPT
    // of a supported type (checked by `detect`) only drops cached translations; the 16-byte
    // descriptor lives on our stack and is only read.
    unsafe {
        asm!("invept {k}, [{d}]", k = in(reg) kind, d = in(reg) &desc, options(nostack));
    }
}

/// Invalidates the translations tagged with `vpid` (single context) or with any VPID but
/// the host's.
fn invvpid(vpid: u16, single: bool) {
    let desc: [u64; 2] = [u64::from(vpid), 0];
    let kind: u64 = if single { 1 } else { 2 };
    // SAFETY: as for `invept`: VMX operation, a supported type, a descriptor only read.
    unsafe {
        asm!("invvpid {k}, [{d}]", k = in(reg) kind, d = in(reg) &desc, options(nostack));
    }
}
