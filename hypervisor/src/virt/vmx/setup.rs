//! The VMCS a vCPU starts from: the controls, the host state and the guest's first state,
//! that of a unikernel (the qube's own GDT, fixed CR0/CR4/EFER) or of a Linux kernel (the
//! 64-bit boot protocol's state). A Linux vCPU also gets an MSR bitmap and the MSR lists
//! that switch its syscall MSRs (see [`MsrLists`]).

use super::vmcs::{self, f16, f32, f64, fnat, proc1, seg};
use super::{CR4_VMXE, VmxCaps};
use crate::arch::x86::{cpu, descriptors};
use crate::virt::Start;
use bulkhead_hvcore::sched::TIME_SLICE_NS;

unsafe extern "C" {
    /// Where the CPU resumes the host after a VM exit (run.s); its address is HOST_RIP.
    fn vmx_exit();
}

// Segment access rights (VMX format): type | S<<4 | DPL<<5 | P<<7 | L<<13 | DB<<14 | G<<15.
const CODE64: u64 = 0xB | 1 << 4 | 1 << 7 | 1 << 13 | 1 << 15;
const DATA: u64 = 0x3 | 1 << 4 | 1 << 7 | 1 << 14 | 1 << 15;
const TSS_BUSY: u64 = 0xB | 1 << 7;
const UNUSABLE: u64 = 1 << 16;

const MSR_FS_BASE: u32 = 0xC000_0100;
const MSR_GS_BASE: u32 = 0xC000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xC000_0102;
const MSR_PAT: u32 = 0x277;

/// The MSRs of [`crate::virt::LINUX_OWN_MSRS`] that the VMCS has no guest field for:
/// STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE. (FS/GS base and SYSENTER have fields.)
const LISTED_MSRS: [u32; 5] = [
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
    MSR_KERNEL_GS_BASE,
];

/// The page of a vCPU's MSR lists (16-byte entries: index, reserved, value):
/// - at 0, [`LISTED_MSRS`] with the guest's values: the CPU stores them there at every exit
///   and loads them at every entry, so each Linux vCPU runs with its own. A unikernel's
///   list is only the last entry, KERNEL_GS_BASE, which it can change without an exit
///   (SWAPGS exchanges it with the GS base, which it sets from its own GDT); the others it
///   cannot reach (no SYSCALL, every MSR access exits);
/// - at [`MsrLists::HOST_LOAD`], one entry loading KERNEL_GS_BASE = 0 at every exit, so the
///   host never holds a guest's value (a Linux kernel's per-CPU pointer) while another runs.
pub(super) struct MsrLists;

impl MsrLists {
    const HOST_LOAD: usize = 0x100;
    /// Where a unikernel's one-entry list (KERNEL_GS_BASE) starts.
    const UNIKERNEL: usize = (LISTED_MSRS.len() - 1) * 16;

    /// Writes the list page: the entries, values zero.
    pub(super) fn fill(page: &mut bulkhead_hvcore::memmap::Frames) {
        let contents = Self::page();
        crate::memory::phys::with_frames(page, |b| {
            b.fill(0);
            b[..contents.len()].copy_from_slice(&contents);
        });
    }

    /// The list page's contents, values zero.
    fn page() -> [u8; 0x110] {
        let mut b = [0u8; 0x110];
        for (i, msr) in LISTED_MSRS.iter().enumerate() {
            b[i * 16..i * 16 + 4].copy_from_slice(&msr.to_le_bytes());
        }
        let h = Self::HOST_LOAD;
        b[h..h + 4].copy_from_slice(&MSR_KERNEL_GS_BASE.to_le_bytes());
        b
    }
}

/// What a vCPU's VMCS points at.
pub(super) struct Target {
    /// EPT pointer.
    pub eptp: u64,
    /// VPID (used when the CPU has them).
    pub vpid: u16,
    /// The physical address of its MSR list page.
    pub msr_lists: u64,
    /// For a Linux vCPU: the physical address of the Linux MSR bitmap.
    pub linux: Option<u64>,
    /// For a qube that owns ports: the physical address of its I/O bitmaps A and B (two
    /// consecutive pages).
    pub io_bitmaps: Option<u64>,
    /// The CPU it runs on (whose GDT, TSS and IDT a VM exit loads).
    pub cpu: usize,
}

/// Rewrites the host-state fields that differ between CPUs (the GDT and TSS bases) for
/// CPU `cpu`: a vCPU whose VMCS was written on another CPU before it was placed.
///
/// # Safety
/// VMX operation on CPU `cpu`, which runs this, with the vCPU's VMCS current.
pub(super) unsafe fn write_host_tables(cpu: usize) -> bool {
    let host = descriptors::host_tables(cpu);
    // SAFETY: the caller's guarantee; the bases are this CPU's own tables.
    unsafe {
        vmcs::write(fnat::HOST_TR_BASE, host.tss_base)
            & vmcs::write(fnat::HOST_GDTR_BASE, host.gdt_base)
            & vmcs::write(fnat::HOST_IDTR_BASE, host.idt_base)
    }
}

/// Writes the whole VMCS of the current vCPU: controls, host state and the guest's first
/// state. False if the CPU refused a field (a hypervisor bug, reported by the caller).
///
/// # Safety
/// VMX operation, with the VMCS of the vCPU `target` describes current on this CPU; the
/// pages `target` names belong to that vCPU (or, the MSR bitmap, to the backend).
pub(super) unsafe fn write_vmcs(caps: &VmxCaps, target: &Target, g: &Start) -> bool {
    let c = caps.controls;
    let host = descriptors::host_tables(target.cpu);
    let (cr0_fixed, cr4_fixed) = (caps.cr0_fixed, caps.cr4_fixed);
    let guest_cr4 = super::fixed(g.cr4 | CR4_VMXE, cr4_fixed);
    let (code, data) = (u64::from(g.cs), u64::from(g.ds));
    // A Linux vCPU uses the MSR bitmap; every MSR of a unikernel exits. A qube that owns
    // ports uses its I/O bitmaps (unconditional I/O exiting is then ignored).
    let proc1 = match target.linux {
        Some(_) => c.proc1 | proc1::USE_MSR_BITMAPS,
        None => c.proc1,
    };
    let proc1 = match target.io_bitmaps {
        Some(_) => proc1 | proc1::USE_IO_BITMAPS,
        None => proc1,
    };
    // SAFETY: reading FS/GS base, which exist on every 64-bit CPU.
    let (fs_base, gs_base) = unsafe { (cpu::rdmsr(MSR_FS_BASE), cpu::rdmsr(MSR_GS_BASE)) };
    // SAFETY: reading EFER, which every 64-bit CPU has.
    let host_efer = unsafe { cpu::rdmsr(cpu::MSR_EFER) };
    let fields: &[(u64, u64)] = &[
        // Controls: what exits (see `super::detect`), EPT.
        (f32::PIN_CONTROLS, u64::from(c.pin)),
        (f32::PROC_CONTROLS, u64::from(proc1)),
        (f32::PROC_CONTROLS2, u64::from(c.proc2)),
        (f32::EXIT_CONTROLS, u64::from(c.exit)),
        (f32::ENTRY_CONTROLS, u64::from(c.entry)),
        (f32::EXCEPTION_BITMAP, 0),
        (f32::PF_ERROR_MASK, 0),
        (f32::PF_ERROR_MATCH, 0),
        (f32::CR3_TARGET_COUNT, 0),
        (f32::ENTRY_INTERRUPTION_INFO, 0),
        (f64::TSC_OFFSET, 0),
        (f64::EPT_POINTER, target.eptp),
        // CR0 belongs to the guest (the CPU refuses values VMX forbids with #GP). Of a
        // Linux qube's CR4 the host owns the bits VMX fixes (VMXE): the guest reads them as
        // 0, and setting one exits. A unikernel's CR4 is fixed: the host owns every bit,
        // so any change exits (and stops it); it reads the value it started with.
        (fnat::CR0_MASK, 0),
        (fnat::CR0_SHADOW, g.cr0),
        (
            fnat::CR4_MASK,
            if target.linux.is_some() {
                cr4_fixed.0
            } else {
                u64::MAX
            },
        ),
        (fnat::CR4_SHADOW, g.cr4),
        // Host state: where and how a VM exit resumes the hypervisor.
        (fnat::HOST_CR0, cpu::cr0()),
        (fnat::HOST_CR3, cpu::cr3()),
        (fnat::HOST_CR4, cpu::cr4()),
        (f16::HOST_CS, u64::from(descriptors::CODE_SELECTOR)),
        (f16::HOST_SS, u64::from(host.data_selector)),
        (f16::HOST_DS, u64::from(host.data_selector)),
        (f16::HOST_ES, u64::from(host.data_selector)),
        (f16::HOST_FS, 0),
        (f16::HOST_GS, 0),
        (f16::HOST_TR, u64::from(host.tss_selector)),
        (fnat::HOST_FS_BASE, fs_base),
        (fnat::HOST_GS_BASE, gs_base),
        (fnat::HOST_TR_BASE, host.tss_base),
        (fnat::HOST_GDTR_BASE, host.gdt_base),
        (fnat::HOST_IDTR_BASE, host.idt_base),
        (f32::HOST_SYSENTER_CS, 0),
        (fnat::HOST_SYSENTER_ESP, 0),
        (fnat::HOST_SYSENTER_EIP, 0),
        (fnat::HOST_RIP, vmx_exit as *const () as u64),
        // Guest state: 64-bit mode, paging on, the qube's GDT, interrupts off.
        (fnat::GUEST_CR0, super::fixed(g.cr0, cr0_fixed)),
        (fnat::GUEST_CR3, g.cr3),
        (fnat::GUEST_CR4, guest_cr4),
        (fnat::GUEST_DR7, 0x400),
        (f64::GUEST_DEBUGCTL, 0),
        (fnat::GUEST_RSP, g.rsp),
        (fnat::GUEST_RIP, g.rip),
        (fnat::GUEST_RFLAGS, g.rflags),
        (fnat::GUEST_PENDING_DEBUG, 0),
        (f32::GUEST_INTERRUPTIBILITY, 0),
        (f32::GUEST_ACTIVITY, 0),
        (f32::GUEST_SYSENTER_CS, 0),
        (fnat::GUEST_SYSENTER_ESP, 0),
        (fnat::GUEST_SYSENTER_EIP, 0),
        (f64::VMCS_LINK_POINTER, u64::MAX),
        (fnat::GUEST_GDTR_BASE, g.gdt_base),
        (f32::GUEST_GDTR_LIMIT, u64::from(g.gdt_limit)),
        (fnat::GUEST_IDTR_BASE, 0),
        (f32::GUEST_IDTR_LIMIT, 0),
    ];
    // Flat segments from the guest's GDT, a busy TSS and no LDT: selector, limit, rights.
    let segments = [
        (seg::CS, code, 0xFFFF_FFFF, CODE64),
        (seg::DS, data, 0xFFFF_FFFF, DATA),
        (seg::ES, data, 0xFFFF_FFFF, DATA),
        (seg::SS, data, 0xFFFF_FFFF, DATA),
        (seg::FS, data, 0xFFFF_FFFF, DATA),
        (seg::GS, data, 0xFFFF_FFFF, DATA),
        (seg::TR, 0, 0x67, TSS_BUSY),
        (seg::LDTR, 0, 0, UNUSABLE),
    ];
    let mut ok = true;
    // The preemption timer (if any) restarts at one time slice on every entry.
    let slice_ticks = crate::time::tsc_khz() * (TIME_SLICE_NS / 1000) / 1000;
    let timer = caps
        .preemption_timer_shift
        .map(|shift| (slice_ticks >> shift).clamp(1, u64::from(u32::MAX)));
    // SAFETY: this vCPU's VMCS is current (the caller's guarantee). The values confine
    // the guest: EPT maps only the qube's memory, every I/O access (but to the ports its
    // I/O bitmaps pass, those its qube owns), HLT, external interrupt and NMI exits
    // (controls from `detect`), every MSR exits but a Linux vCPU's own
    // (whose values the entry/exit MSR lists keep per vCPU), and the host state is the
    // hypervisor's own (its CR0/3/4, GDT, IDT, TSS; HOST_RIP is `vmx_exit`).
    unsafe {
        for &(field, value) in fields {
            ok &= vmcs::write(field, value);
        }
        for (n, selector, limit, rights) in segments {
            let [sel, base, lim, ar] = seg::fields(n);
            for (field, value) in [(sel, selector), (base, 0), (lim, limit), (ar, rights)] {
                ok &= vmcs::write(field, value);
            }
        }
        // Fields that exist only when the CPU has the feature.
        if caps.load_efer {
            ok &= vmcs::write(f64::GUEST_EFER, g.efer);
            ok &= vmcs::write(f64::HOST_EFER, host_efer);
        }
        if caps.load_pat {
            ok &= vmcs::write(f64::GUEST_PAT, g.pat());
            // SAFETY: IA32_PAT exists on every CPU with VMX's PAT controls.
            ok &= vmcs::write(f64::HOST_PAT, cpu::rdmsr(MSR_PAT));
        }
        if caps.vpid {
            ok &= vmcs::write(f16::VPID, u64::from(target.vpid));
        }
        if let Some(a) = target.io_bitmaps {
            ok &= vmcs::write(f64::IO_BITMAP_A, a);
            ok &= vmcs::write(f64::IO_BITMAP_B, a + 4096);
        }
        ok &= write_msr_lists(target);
        if let Some(value) = timer {
            ok &= vmcs::write(f32::PREEMPTION_TIMER, value);
        }
    }
    ok
}

/// Points the VMCS at a vCPU's MSR list page, filled by [`MsrLists::fill`] (a Linux vCPU:
/// all of [`LISTED_MSRS`], and the MSR bitmap; a unikernel: KERNEL_GS_BASE only).
///
/// # Safety
/// As for [`write_vmcs`].
unsafe fn write_msr_lists(target: &Target) -> bool {
    let lists = target.msr_lists;
    let (guest_list, guest) = match target.linux {
        Some(_) => (lists, LISTED_MSRS.len() as u64),
        None => (lists + MsrLists::UNIKERNEL as u64, 1),
    };
    // SAFETY: the caller's guarantee: `lists` is this vCPU's own page, which no guest
    // maps; the bitmap is the backend's, filled at VMXON. The lists name only the MSRs a
    // Linux vCPU owns, so loading them at entry gives the guest nothing of the host's.
    unsafe {
        let bitmap = match target.linux {
            Some(bitmap) => vmcs::write(f64::MSR_BITMAP, bitmap),
            None => true,
        };
        bitmap
            & vmcs::write(f64::EXIT_MSR_STORE_ADDR, guest_list)
            & vmcs::write(f32::EXIT_MSR_STORE_COUNT, guest)
            & vmcs::write(f64::ENTRY_MSR_LOAD_ADDR, guest_list)
            & vmcs::write(f32::ENTRY_MSR_LOAD_COUNT, guest)
            & vmcs::write(f64::EXIT_MSR_LOAD_ADDR, lists + MsrLists::HOST_LOAD as u64)
            & vmcs::write(f32::EXIT_MSR_LOAD_COUNT, 1)
    }
}
