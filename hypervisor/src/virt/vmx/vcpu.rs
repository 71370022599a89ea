//! One VMX virtual CPU: its VMCS, its extended state and debug registers, and its
//! general-purpose registers.
//!
//! VMX keeps only `rsp`, `rip` and `rflags` of the guest in the VMCS; every other register,
//! `rax` included, is saved by `vmx_run` (run.s). After each exit the fields the exit
//! handlers need (reason, qualification, instruction length, guest-physical address, RIP)
//! are read once, so the accessors work whichever VMCS is current.

use super::setup::{self, Target};
use super::vmcs::{self, f32, f64, fnat, reason};
use super::{Vmx, VmxCaps, invept, invvpid};
use crate::hvlog;
use crate::virt::xstate::{ExtState, Switch};
use crate::virt::{Event, Exit, GuestRegs, PagingState, RCX, RSP, Start, UNIKERNEL_EFER, Vcpu};
use bulkhead_hvcore::memmap::Frames;
use core::sync::atomic::{AtomicU64, Ordering};

unsafe extern "C" {
    /// The world switch (run.s): 0 after a VM exit, 1 if the entry failed with
    /// VMfailValid, 2 with VMfailInvalid.
    fn vmx_run(regs: *mut GuestRegs, launched: u64, switch: *mut Switch) -> u64;
}

/// The VMCS current on each CPU (VMPTRLD is skipped when it is already ours).
static CURRENT_VMCS: [AtomicU64; crate::smp::MAX_CPUS] =
    [const { AtomicU64::new(u64::MAX) }; crate::smp::MAX_CPUS];

/// What the last exit left for the exit handlers.
#[derive(Clone, Copy, Debug, Default)]
struct LastExit {
    reason: u32,
    qualification: u64,
    instruction_len: u64,
    gpa: u64,
    interruption_info: u32,
}

/// The pages a vCPU owns.
pub(super) struct Pages {
    /// Its VMCS.
    pub vmcs: Frames,
    /// Its extended state and debug registers.
    pub x: ExtState,
    /// Its MSR list page (see `setup::MsrLists`).
    pub msr_lists: Frames,
    /// Its I/O bitmaps A and B (two pages), if its qube owns ports.
    pub io_bitmaps: Option<Frames>,
}

/// A virtual CPU under VMX.
pub struct VmxVcpu {
    vmcs: Frames,
    msr_lists: Frames,
    io_bitmaps: Option<Frames>,
    /// The backend's Linux MSR bitmap.
    msr_bitmap_linux: u64,
    revision: u32,
    x: ExtState,
    regs: GuestRegs,
    /// Runs a Linux kernel (else a unikernel).
    linux: bool,
    caps: VmxCaps,
    vpid: u16,
    eptp: u64,
    launched: bool,
    /// Guest RIP as last read or set; written back before the next entry when `rip_dirty`.
    rip: u64,
    rip_dirty: bool,
    /// An instruction was skipped: clear blocking by STI / MOV SS before the next entry.
    clear_shadow: bool,
    flush_pending: bool,
    /// The guest's CR2, which the VMCS does not hold: saved after every exit, put back
    /// before every entry. Without it a Linux guest preempted between a page fault and its
    /// handler's read of CR2 would read another guest's fault address.
    cr2: u64,
    /// The end of the current time slice (ns since boot; 0: a whole slice from each entry).
    slice_end: u64,
    last: LastExit,
    exits: u64,
    /// The CPU it runs on (set by `bind_cpu`; 0 until then: its first VMCS is written on
    /// the boot CPU).
    cpu: usize,
    /// Its VMCS names another CPU's host tables: rewrite them before the next entry.
    host_stale: bool,
}

impl VmxVcpu {
    pub(super) fn new(vmx: &Vmx, pages: Pages, vpid: u16, eptp: u64) -> VmxVcpu {
        let Pages {
            mut vmcs,
            x,
            msr_lists,
            io_bitmaps,
        } = pages;
        crate::memory::phys::with_frames(&mut vmcs, |b| b.fill(0));
        VmxVcpu {
            vmcs,
            msr_lists,
            io_bitmaps,
            msr_bitmap_linux: vmx.msr_bitmap_linux.start(),
            revision: vmx.caps.revision,
            x,
            regs: GuestRegs::default(),
            linux: false,
            caps: vmx.caps,
            vpid,
            eptp,
            launched: false,
            rip: 0,
            rip_dirty: false,
            clear_shadow: false,
            flush_pending: true,
            cr2: 0,
            slice_end: 0,
            last: LastExit::default(),
            exits: 0,
            cpu: 0,
            host_stale: false,
        }
    }

    /// Runs this vCPU on CPU `cpu` from now on (a vCPU runs on one CPU only). Called on the
    /// boot CPU, which wrote the VMCS: it is cleared here (so the other CPU can load it
    /// and launch it afresh), and its host tables are rewritten there before the first entry.
    pub fn bind_cpu(&mut self, cpu: usize) {
        if cpu == self.cpu {
            return;
        }
        let here = &CURRENT_VMCS[self.cpu];
        // SAFETY: VMX operation is on and the page is this vCPU's VMCS, which no guest runs
        // on now; VMCLEAR writes its state back to memory and makes it inactive here.
        let cleared = unsafe { vmcs::clear(self.vmcs.start()) };
        if here.load(Ordering::Relaxed) == self.vmcs.start() {
            here.store(u64::MAX, Ordering::Relaxed);
        }
        if !cleared {
            hvlog!("vmx: VMCLEAR of a qube's VMCS failed; it stays on the boot CPU");
            return;
        }
        self.cpu = cpu;
        self.launched = false;
        self.host_stale = true;
    }

    /// Makes this vCPU's VMCS the current one.
    fn make_current(&mut self) -> bool {
        let ok = self.load_vmcs();
        if ok && self.host_stale {
            // SAFETY: VMX operation on this CPU (the one the vCPU is bound to and runs on),
            // with the VMCS just made current.
            let written = unsafe { setup::write_host_tables(self.cpu) };
            self.host_stale = !written;
            return written;
        }
        ok
    }

    /// Makes this vCPU's VMCS the current one, as it is (for reads).
    fn load_vmcs(&self) -> bool {
        let current = &CURRENT_VMCS[self.cpu];
        if current.load(Ordering::Relaxed) == self.vmcs.start() {
            return true;
        }
        // SAFETY: VMX operation is on (a `VmxVcpu` exists only after VMXON) and the page is
        // this vCPU's VMCS, initialised by `reset` (revision written, VMCLEARed).
        let ok = unsafe { vmcs::load(self.vmcs.start()) };
        current.store(
            if ok { self.vmcs.start() } else { u64::MAX },
            Ordering::Relaxed,
        );
        ok
    }

    /// Starts the VMCS over: revision identifier, VMCLEAR (launch state "clear"), every
    /// field written for `start`; then the vCPU's own state. Logs and leaves the vCPU unable
    /// to enter if the CPU refused a field.
    fn start_over(&mut self, start: &Start) {
        let linux = start.linux;
        let revision = self.revision;
        crate::memory::phys::with_frames(&mut self.vmcs, |b| {
            b[..4].copy_from_slice(&revision.to_le_bytes())
        });
        setup::MsrLists::fill(&mut self.msr_lists);
        // SAFETY: the page is this vCPU's VMCS, which no guest runs on now; VMX operation
        // is on.
        let cleared = unsafe { vmcs::clear(self.vmcs.start()) };
        if CURRENT_VMCS[self.cpu].load(Ordering::Relaxed) == self.vmcs.start() {
            CURRENT_VMCS[self.cpu].store(u64::MAX, Ordering::Relaxed);
        }
        let target = Target {
            eptp: self.eptp,
            vpid: self.vpid,
            msr_lists: self.msr_lists.start(),
            linux: linux.then_some(self.msr_bitmap_linux),
            io_bitmaps: self.io_bitmaps.as_ref().map(Frames::start),
            cpu: self.cpu,
        };
        // SAFETY: the VMCS is made current first; the pages `target` names are this vCPU's
        // own (its MSR list page and I/O bitmaps) and the backend's (the Linux MSR bitmap).
        let ok = cleared
            && self.make_current()
            && unsafe { setup::write_vmcs(&self.caps, &target, start) };
        if !ok {
            hvlog!("vmx: the CPU refused the VMCS of a qube (VMCLEAR/VMPTRLD/VMWRITE)");
        }
        self.launched = false;
        self.rip = start.rip;
        self.rip_dirty = false;
        self.clear_shadow = false;
        self.flush_pending = true;
        self.cr2 = 0;
        self.last = LastExit::default();
        self.regs = start.regs;
        self.linux = linux;
        let (xcr0, allowed) = start.xstate();
        self.x.reset(xcr0, allowed);
    }

    fn decode_exit(&self) -> Exit {
        let l = &self.last;
        if l.reason & reason::ENTRY_FAILURE != 0 {
            return Exit::InvalidState;
        }
        match l.reason & 0xFFFF {
            reason::EXTERNAL_INTERRUPT
            | reason::INIT
            | reason::SIPI
            | reason::IO_SMI
            | reason::OTHER_SMI
            | reason::PREEMPTION_TIMER => Exit::Interrupt,
            // With an empty exception bitmap only NMIs exit here; `run` handed it to the host.
            reason::EXCEPTION_OR_NMI if is_nmi(l.interruption_info) => Exit::Interrupt,
            reason::INTERRUPT_WINDOW => Exit::InterruptWindow,
            reason::VMCALL => Exit::Hypercall,
            reason::HLT => Exit::Halt,
            reason::CPUID => Exit::Cpuid,
            reason::IO_INSTRUCTION => Exit::Io {
                port: (l.qualification >> 16) as u16,
                input: l.qualification & (1 << 3) != 0,
                size: (l.qualification & 0b111) as u8 + 1,
                string: l.qualification & (1 << 4) != 0,
            },
            reason::RDMSR => Exit::Msr {
                index: self.gpr(RCX) as u32,
                write: false,
            },
            reason::WRMSR => Exit::Msr {
                index: self.gpr(RCX) as u32,
                write: true,
            },
            reason::EPT_VIOLATION => Exit::NestedPageFault {
                gpa: l.gpa,
                write: l.qualification & (1 << 1) != 0,
                fetch: l.qualification & (1 << 2) != 0,
            },
            // The EPT is the hypervisor's; a misconfigured entry is its bug, not the qube's
            // doing, but only this qube is affected.
            reason::EPT_MISCONFIG => Exit::InvalidState,
            reason::TRIPLE_FAULT => Exit::TripleFault,
            // A unikernel owns no CR4 bit; a Linux qube all but those VMX fixes (VMXE).
            reason::CR_ACCESS if self.linux => Exit::Forbidden("setting a CR4 bit VMX owns (VMXE)"),
            reason::CR_ACCESS => Exit::Forbidden("changing CR4"),
            reason::RDPMC => Exit::Forbidden("RDPMC"),
            // Taken by `run` before it returns; here only if that went wrong.
            reason::MOV_DR => Exit::Forbidden("a debug-register access"),
            reason::TASK_SWITCH => Exit::Forbidden("task switch"),
            reason::GETSEC => Exit::Forbidden("GETSEC"),
            reason::INVD => Exit::Forbidden("INVD"),
            reason::WBINVD => Exit::Wbinvd,
            reason::XSETBV => Exit::Xsetbv,
            reason::MONITOR => Exit::Forbidden("MONITOR"),
            reason::MWAIT => Exit::Forbidden("MWAIT"),
            reason::VMCLEAR => Exit::Forbidden("VMCLEAR"),
            reason::VMLAUNCH => Exit::Forbidden("VMLAUNCH"),
            reason::VMPTRLD => Exit::Forbidden("VMPTRLD"),
            reason::VMPTRST => Exit::Forbidden("VMPTRST"),
            reason::VMREAD => Exit::Forbidden("VMREAD"),
            reason::VMRESUME => Exit::Forbidden("VMRESUME"),
            reason::VMWRITE => Exit::Forbidden("VMWRITE"),
            reason::VMXOFF => Exit::Forbidden("VMXOFF"),
            reason::VMXON => Exit::Forbidden("VMXON"),
            reason::INVEPT => Exit::Forbidden("INVEPT"),
            reason::INVVPID => Exit::Forbidden("INVVPID"),
            reason::VMFUNC => Exit::Forbidden("VMFUNC"),
            reason::ENCLS => Exit::Forbidden("ENCLS"),
            other => Exit::Unknown(u64::from(other)),
        }
    }

    /// Reads a field of this vCPU's VMCS (0 if it cannot be made current).
    fn vmcs_read(&self, field: u64) -> u64 {
        if self.load_vmcs() {
            vmcs::read(field)
        } else {
            0
        }
    }

    /// Writes a field of this vCPU's VMCS; false if the CPU refused.
    fn vmcs_write(&mut self, field: u64, value: u64) -> bool {
        // SAFETY: the VMCS is this vCPU's own and made current first; the callers write
        // guest-state or entry fields with values that keep the guest confined (its own
        // registers, an event to inject, an interrupt-window exit).
        self.make_current() && unsafe { vmcs::write(field, value) }
    }

    /// Reads what the exit handlers need from the VMCS just exited.
    fn record_exit(&mut self) {
        self.last = LastExit {
            reason: vmcs::read(f32::EXIT_REASON) as u32,
            qualification: vmcs::read(fnat::EXIT_QUALIFICATION),
            instruction_len: vmcs::read(f32::EXIT_INSTRUCTION_LEN),
            gpa: vmcs::read(f64::GUEST_PHYSICAL_ADDRESS),
            interruption_info: vmcs::read(f32::EXIT_INTERRUPTION_INFO) as u32,
        };
        self.rip = vmcs::read(fnat::GUEST_RIP);
        self.rip_dirty = false;
    }

    /// Flushes the guest's cached translations: its EPT context (guest-physical and
    /// combined mappings) and its VPID.
    fn flush_now(&mut self) {
        invept(self.eptp, self.caps.invept_single);
        if self.caps.vpid {
            invvpid(self.vpid, self.caps.invvpid_single);
        }
        self.flush_pending = false;
    }

    /// Before an entry: pending TLB flush, RIP moved by `skip_instruction`, interrupt
    /// shadow of a skipped instruction, the preemption timer armed for the rest of the slice.
    fn prepare_entry(&mut self) -> bool {
        if self.flush_pending {
            self.flush_now();
        }
        let mut ok = true;
        if let (Some(shift), true) = (self.caps.preemption_timer_shift, self.slice_end != 0) {
            let left = self.slice_end.saturating_sub(crate::time::now_ns());
            let ticks = u128::from(left) * u128::from(crate::time::tsc_khz()) / 1_000_000;
            let value = (ticks >> shift).clamp(1, u128::from(u32::MAX)) as u64;
            // SAFETY: this vCPU's VMCS is current (checked by the caller); the timer only
            // makes the guest exit sooner.
            ok &= unsafe { vmcs::write(f32::PREEMPTION_TIMER, value) };
        }
        // SAFETY: this vCPU's VMCS is current (checked by the caller); a new RIP inside the
        // guest's own address space and a cleared interrupt shadow confine the guest as
        // before.
        unsafe {
            if self.rip_dirty {
                ok &= vmcs::write(fnat::GUEST_RIP, self.rip);
                self.rip_dirty = false;
            }
            if self.clear_shadow {
                let s = vmcs::read(f32::GUEST_INTERRUPTIBILITY);
                if s & 0b11 != 0 {
                    ok &= vmcs::write(f32::GUEST_INTERRUPTIBILITY, s & !0b11);
                }
                self.clear_shadow = false;
            }
        }
        ok
    }

    /// One entry: the guest's debug registers (if it owns them), CR2 and extended state
    /// in, the guest run, its state out; then what the next entry must deliver again.
    fn enter(&mut self) -> Result<(), Exit> {
        if !self.make_current() || !self.prepare_entry() {
            hvlog!("vmx: cannot make a qube's VMCS current or update it");
            return Err(Exit::InvalidState);
        }
        self.x.debug.load(true);
        if crate::arch::x86::cpu::cr2() != self.cr2 {
            crate::arch::x86::cpu::write_cr2(self.cr2);
        }
        let switch = self.x.switch();
        // SAFETY: the VMCS is this vCPU's own and current, fully written by `reset`: EPT
        // confines the guest to its qube's memory, every port, MSR, HLT, external interrupt,
        // NMI and VMX instruction exits, and the host state resumes at `vmx_exit` with the
        // hypervisor's own control registers and descriptor tables. `vmx_run` saves and
        // restores every register the System V ABI requires and host RFLAGS (so IF), and
        // loads and saves the guest's extended state from and to its own areas (`switch`:
        // aligned, sized for the host's XCR0, a guest XCR0 the host allowed).
        let status = unsafe { vmx_run(&mut self.regs, u64::from(self.launched), switch) };
        self.exits += 1;
        self.x.debug.save(true);
        // No host code between the exit and here takes a page fault (one would be fatal).
        self.cr2 = crate::arch::x86::cpu::cr2();
        if status != 0 {
            let error = if status == 1 {
                vmcs::read(f32::VM_INSTRUCTION_ERROR)
            } else {
                0
            };
            hvlog!(
                "vmx: {} failed (status {status}, VM-instruction error {error})",
                if self.launched {
                    "VMRESUME"
                } else {
                    "VMLAUNCH"
                }
            );
            return Err(Exit::InvalidState);
        }
        self.launched = true;
        self.record_exit();
        // An event whose delivery the exit interrupted is delivered again at the next entry.
        let vectoring = vmcs::read(f32::IDT_VECTORING_INFO);
        if vectoring & (1 << 31) != 0 {
            let error = vmcs::read(f32::IDT_VECTORING_ERROR);
            self.vmcs_write(f32::ENTRY_EXCEPTION_ERROR, error);
            self.vmcs_write(f32::ENTRY_INTERRUPTION_INFO, vectoring & !(1 << 12));
        }
        if self.last.reason & 0xFFFF == reason::EXCEPTION_OR_NMI
            && is_nmi(self.last.interruption_info)
        {
            // The NMI ended the guest's run instead of reaching the host: deliver it to
            // the host's own handler, as it would have been without a guest running.
            // SAFETY: vector 2 is the host's NMI handler (IST stack, returns with IRET).
            unsafe { core::arch::asm!("int 2", options(nomem)) };
        }
        Ok(())
    }
}

/// Whether the exit interruption information describes an NMI (valid, type 2).
fn is_nmi(info: u32) -> bool {
    info & (1 << 31) != 0 && (info >> 8) & 0b111 == 2
}

impl Vcpu for VmxVcpu {
    fn reset(&mut self, start: &Start) {
        self.start_over(start);
    }

    fn run(&mut self) -> Exit {
        loop {
            if let Err(exit) = self.enter() {
                return exit;
            }
            if !self.x.check_xcr0() {
                return Exit::Forbidden("XSETBV");
            }
            let exit = self.decode_exit();
            if self.last.reason & 0xFFFF != reason::MOV_DR || self.x.debug.owned() {
                return exit;
            }
            // The guest's first debug-register access: from now on they are its own,
            // switched on every entry and exit, and its accesses run without exits. The
            // instruction runs again (RIP was not moved).
            self.x.debug.take();
            let controls = self.vmcs_read(f32::PROC_CONTROLS) as u32;
            self.vmcs_write(
                f32::PROC_CONTROLS,
                u64::from(controls & !vmcs::proc1::MOV_DR_EXITING),
            );
        }
    }

    fn rip(&self) -> u64 {
        self.rip
    }

    fn skip_instruction(&mut self, _exit: &Exit) {
        // The CPU reports the length of the instruction that exited (prefixes included).
        self.rip = self.rip.wrapping_add(self.last.instruction_len);
        self.rip_dirty = true;
        self.clear_shadow = true;
    }

    fn exit_count(&self) -> u64 {
        self.exits
    }

    fn tlb_tag(&self) -> u32 {
        u32::from(self.vpid)
    }

    fn flush_tlb_before_next_run(&mut self) {
        self.flush_pending = true;
    }

    fn set_slice_end(&mut self, end_ns: u64) {
        self.slice_end = end_ns;
    }

    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
        self.rip_dirty = true;
        self.clear_shadow = true;
    }

    fn regs(&self) -> &GuestRegs {
        &self.regs
    }

    fn rax(&self) -> u64 {
        self.regs.0[0]
    }

    fn set_rax(&mut self, v: u64) {
        self.regs.0[0] = v;
    }

    fn gpr(&self, n: u8) -> u64 {
        match n & 15 {
            RSP => self.vmcs_read(fnat::GUEST_RSP),
            k => self.regs.0[usize::from(k)],
        }
    }

    fn set_gpr(&mut self, n: u8, value: u64) {
        match n & 15 {
            RSP => {
                self.vmcs_write(fnat::GUEST_RSP, value);
            }
            k => self.regs.0[usize::from(k)] = value,
        }
    }

    fn paging(&self) -> PagingState {
        PagingState {
            cr0: self.vmcs_read(fnat::GUEST_CR0),
            cr3: self.vmcs_read(fnat::GUEST_CR3),
            cr4: self.vmcs_read(fnat::GUEST_CR4),
            efer: if self.caps.load_efer {
                self.vmcs_read(f64::GUEST_EFER)
            } else {
                UNIKERNEL_EFER
            },
        }
    }

    fn interruptible(&self) -> bool {
        self.vmcs_read(fnat::GUEST_RFLAGS) & (1 << 9) != 0
            && self.vmcs_read(f32::GUEST_INTERRUPTIBILITY) & 0b11 == 0
            && !self.clear_shadow
            && self.vmcs_read(f32::ENTRY_INTERRUPTION_INFO) & (1 << 31) == 0
    }

    fn inject(&mut self, event: Event) {
        let (info, error) = match event {
            Event::Interrupt(vector) => (u64::from(vector) | 1 << 31, None),
            Event::Exception { vector, error } => {
                let base = u64::from(vector) | 3 << 8 | 1 << 31;
                match error {
                    Some(code) => (base | 1 << 11, Some(code)),
                    None => (base, None),
                }
            }
        };
        if let Some(code) = error {
            self.vmcs_write(f32::ENTRY_EXCEPTION_ERROR, u64::from(code));
        }
        self.vmcs_write(f32::ENTRY_INTERRUPTION_INFO, info);
    }

    fn set_interrupt_window(&mut self, on: bool) {
        let controls = self.vmcs_read(f32::PROC_CONTROLS) as u32;
        let bit = vmcs::proc1::INTERRUPT_WINDOW_EXITING;
        let want = if on { controls | bit } else { controls & !bit };
        if want != controls {
            self.vmcs_write(f32::PROC_CONTROLS, u64::from(want));
        }
    }

    fn set_efer(&mut self, efer: u64) {
        if self.caps.load_efer {
            self.vmcs_write(f64::GUEST_EFER, efer);
        }
    }

    fn cpl(&self) -> u8 {
        // SS.DPL is the CPL (SDM 3C, 28.3.1.5).
        ((self.vmcs_read(vmcs::seg::fields(vmcs::seg::SS)[3]) >> 5) & 3) as u8
    }

    fn xstate(&mut self) -> &mut crate::virt::xstate::ExtState {
        &mut self.x
    }

    fn set_pat(&mut self, pat: u64) {
        // Without the PAT controls the guest's PAT is not switched: the host's stays, and
        // with EPT's write-back type the guest's memory is cached as the host's PAT says.
        if self.caps.load_pat {
            self.vmcs_write(f64::GUEST_PAT, pat);
        }
    }
}

core::arch::global_asm!(include_str!("run.s"));
