//! One SVM virtual CPU: its VMCB, its extended state and debug registers, and its
//! general-purpose registers.

use super::Svm;
use super::vmcb::{Vmcb, cr, ctl, exit, save};
use crate::virt::xstate::{DR6_INIT, DR7_INIT, ExtState, Switch};
use crate::virt::{Event, Exit, GuestRegs, PagingState, RAX, RCX, RSP, Start, Vcpu};
use bulkhead_hvcore::memmap::Frames;

unsafe extern "C" {
    /// The world switch (run.s).
    fn svm_run(regs: *mut GuestRegs, vmcb_pa: u64, host_state_pa: u64, switch: *mut Switch);
}

/// A virtual CPU under SVM.
pub struct SvmVcpu {
    vmcb: &'static mut Vmcb,
    vmcb_pa: u64,
    x: ExtState,
    regs: GuestRegs,
    host_state_pa: u64,
    iopm_pa: u64,
    msrpm_pa: u64,
    /// The qube's own I/O permission map (it owns ports), which the CPU reads while it runs.
    _own_iopm: Option<Frames>,
    asid: u32,
    npt_root: u64,
    nrip_save: bool,
    exits: u64,
}

// Segment attributes (packed VMCB format): type | S<<4 | DPL<<5 | P<<7 | L<<9 | DB<<10 | G<<11.
const CODE64: u16 = 0xB | 1 << 4 | 1 << 7 | 1 << 9 | 1 << 11;
const DATA: u16 = 0x3 | 1 << 4 | 1 << 7 | 1 << 10 | 1 << 11;
/// Real-mode code and data segments (after INIT): present, read/write (code: execute/read),
/// accessed, 16-bit.
const CODE16: u16 = 0xB | 1 << 4 | 1 << 7;
const DATA16: u16 = 0x3 | 1 << 4 | 1 << 7;
const TSS_BUSY: u16 = 0xB | 1 << 7;
const LDT: u16 = 0x2 | 1 << 7;

/// EFER.SVME, which VMRUN requires in the guest's EFER (the guest reads its own value).
const EFER_SVME: u64 = 1 << 12;
/// VINTR: the guest's RFLAGS.IF does not mask the host's interrupts.
const V_INTR_MASKING: u64 = 1 << 24;
/// VINTR: a virtual interrupt is pending (exits with VINTR once the guest can take it),
/// at the highest priority and ignoring the virtual TPR.
const V_IRQ_WINDOW: u64 = 1 << 8 | 0xF << 16 | 1 << 20;
/// EVENTINJ / EXITINTINFO: valid.
const EVENT_VALID: u64 = 1 << 31;

/// The exits every guest has besides [`FORBIDDEN`]: the host's interrupts, and what the
/// guest kinds answer (hypercalls, HLT, CPUID, ports, MSRs, XSETBV, WBINVD, shutdown).
const INTERCEPTED: [u64; 12] = [
    exit::INTR,
    exit::NMI,
    exit::SMI,
    exit::INIT,
    exit::CPUID,
    exit::HLT,
    exit::IOIO,
    exit::MSR,
    exit::SHUTDOWN,
    exit::VMMCALL,
    exit::XSETBV,
    exit::WBINVD,
];

/// Instructions and events no qube may use: each exits and is named in the qube's fault
/// (a Linux qube gets #UD instead, `crate::guest::linux`).
const FORBIDDEN: [(u64, &str); 14] = [
    (exit::RDPMC, "RDPMC"),
    (exit::INVD, "INVD"),
    (exit::INVLPGA, "INVLPGA"),
    (exit::TASK_SWITCH, "task switch"),
    (exit::VMRUN, "VMRUN"),
    (exit::VMLOAD, "VMLOAD"),
    (exit::VMSAVE, "VMSAVE"),
    (exit::STGI, "STGI"),
    (exit::CLGI, "CLGI"),
    (exit::SKINIT, "SKINIT"),
    (exit::ICEBP, "ICEBP"),
    (exit::MONITOR, "MONITOR"),
    (exit::MWAIT, "MWAIT"),
    (exit::RDPRU, "RDPRU"),
];

/// The bit of exit `code` (0x60..0xA0) in its intercept word (MISC1, then MISC2).
const fn intercept_bit(code: u64) -> u32 {
    1 << ((code - exit::INTR) % 32)
}

/// The permission maps a vCPU's VMCB points at.
pub(super) struct Maps {
    /// The I/O permission map: the backend's shared one or `own_iopm`.
    pub iopm: u64,
    /// The MSR permission map (the backend's).
    pub msrpm: u64,
    /// The vCPU's own I/O permission map, if its qube owns ports.
    pub own_iopm: Option<Frames>,
}

impl SvmVcpu {
    pub(super) fn new(
        svm: &Svm,
        vmcb: Frames,
        x: ExtState,
        asid: u32,
        npt_root: u64,
        maps: Maps,
    ) -> SvmVcpu {
        let vmcb_pa = vmcb.start();
        // SAFETY: all-zero is a valid VMCB (a page of offsets and flags).
        let vmcb_ref = unsafe { crate::memory::phys::leak_zeroed::<Vmcb>(vmcb) };
        SvmVcpu {
            vmcb: vmcb_ref,
            vmcb_pa,
            x,
            regs: GuestRegs::default(),
            host_state_pa: svm.host_state.start(),
            iopm_pa: maps.iopm,
            msrpm_pa: maps.msrpm,
            _own_iopm: maps.own_iopm,
            asid,
            npt_root,
            nrip_save: svm.caps.nrip_save,
            exits: 0,
        }
    }

    /// Clears the VMCB and writes the controls and the state common to every guest: no
    /// LDT, a busy TSS, empty IDT, CPL 0, debug registers and PAT at their power-on values.
    /// Every debug-register access exits until the guest's first (see `run`); a unikernel's
    /// CR4 writes exit too (its CR4 is fixed).
    fn reset_controls(&mut self, linux: bool) {
        let v = &mut *self.vmcb;
        v.clear();
        v.set_u32(ctl::INTERCEPT_CR, if linux { 0 } else { cr::CR4_WRITE });
        v.set_u32(ctl::INTERCEPT_DR, u32::MAX);
        let mut misc = [0u32; 2];
        for &code in INTERCEPTED.iter().chain(FORBIDDEN.iter().map(|(c, _)| c)) {
            misc[(code - exit::INTR) as usize / 32] |= intercept_bit(code);
        }
        v.set_u32(ctl::INTERCEPT_MISC1, misc[0]);
        v.set_u32(ctl::INTERCEPT_MISC2, misc[1]);
        v.set_u64(ctl::IOPM_BASE, self.iopm_pa);
        v.set_u64(ctl::MSRPM_BASE, self.msrpm_pa);
        v.set_u32(ctl::ASID, self.asid);
        v.set_u8(ctl::TLB_CONTROL, 1); // flush everything on the first run
        v.set_u64(ctl::VINTR, V_INTR_MASKING);
        v.set_u64(ctl::NP_ENABLE, 1);
        v.set_u64(ctl::N_CR3, self.npt_root);
        v.set_u32(ctl::CLEAN_BITS, 0);
        v.set_segment(save::IDTR, 0, 0, 0, 0);
        v.set_segment(save::TR, 0, TSS_BUSY, 0x67, 0);
        v.set_segment(save::LDTR, 0, LDT, 0, 0);
        v.set_u8(save::CPL, 0);
        v.set_u64(save::DR7, DR7_INIT);
        v.set_u64(save::DR6, DR6_INIT);
        v.set_u64(save::RAX, 0);
        v.set_u64(save::G_PAT, crate::virt::POWER_ON_PAT);
    }

    /// One VMRUN: the guest's debug registers (if it owns them) and extended state in, the
    /// guest run, its state out; then what the next entry must deliver again. False, without
    /// entering, if the host timer that must end this run has already fired: had the host
    /// taken that interrupt before the entry, the guest would run with no timer to stop it
    /// (seen: Linux qubes spinning for hundreds of ms past their slice). With GIF clear from
    /// here to VMRUN, a timer that fires after the check stays pending and ends the run at
    /// once.
    /// Runs this vCPU on the CPU whose host state page is `host_state_pa` from now on (a
    /// vCPU runs on one CPU only).
    pub fn bind_host_state(&mut self, host_state_pa: u64) {
        self.host_state_pa = host_state_pa;
    }

    fn enter(&mut self) -> bool {
        self.x.debug.load(false);
        // SAFETY: CLGI only holds interrupts pending (until VMRUN sets GIF or STGI below); the
        // host takes them afterwards as usual.
        unsafe { core::arch::asm!("clgi", options(nomem, nostack)) };
        if crate::arch::x86::apic::timer_expired() {
            // SAFETY: sets GIF again; the pending timer interrupt is taken right here.
            unsafe { core::arch::asm!("stgi", options(nomem, nostack)) };
            return false;
        }
        let switch = self.x.switch();
        // SAFETY: the VMCB is this vCPU's own page, fully initialised by `reset` with
        // nested paging confining the guest to its qube's memory and every port (but those
        // its qube owns, by its own I/O permission map), MSR and virtualisation instruction
        // intercepted; the host state page and permission maps belong to the hypervisor; `switch` names this vCPU's own XSAVE and FXSAVE areas
        // (64- and 16-byte aligned, sized for the host's XCR0) and a guest XCR0 the host
        // allowed. `svm_run` saves and restores every host register the System V ABI
        // requires, and the guest can only write memory mapped by its nested page tables.
        unsafe { svm_run(&mut self.regs, self.vmcb_pa, self.host_state_pa, switch) };
        self.exits += 1;
        self.x.debug.save(false);
        self.vmcb.set_u8(ctl::TLB_CONTROL, 0);
        // An event whose delivery the exit interrupted is delivered again at the next run;
        // an injected event that was delivered is not.
        let pending = self.vmcb.u64(ctl::EXIT_INT_INFO);
        let inject = if pending & EVENT_VALID != 0 {
            pending
        } else {
            0
        };
        self.vmcb.set_u64(ctl::EVENT_INJ, inject);
        true
    }

    /// Whether the last exit was a debug-register access.
    fn debug_access(&self) -> bool {
        (exit::DR_FIRST..=exit::DR_LAST).contains(&self.vmcb.u64(ctl::EXIT_CODE))
    }

    fn decode_exit(&self) -> Exit {
        let code = self.vmcb.u64(ctl::EXIT_CODE);
        let info1 = self.vmcb.u64(ctl::EXIT_INFO1);
        let info2 = self.vmcb.u64(ctl::EXIT_INFO2);
        match code {
            exit::INTR | exit::NMI | exit::SMI | exit::INIT => Exit::Interrupt,
            exit::VINTR => Exit::InterruptWindow,
            exit::WBINVD => Exit::Wbinvd,
            exit::VMMCALL => Exit::Hypercall,
            exit::HLT => Exit::Halt,
            exit::CPUID => Exit::Cpuid,
            exit::IOIO => Exit::Io {
                port: (info1 >> 16) as u16,
                input: info1 & 1 != 0,
                size: match (info1 >> 4) & 0b111 {
                    0b001 => 1,
                    0b010 => 2,
                    _ => 4,
                },
                string: info1 & (1 << 2) != 0,
            },
            exit::MSR => Exit::Msr {
                index: self.gpr(RCX) as u32,
                write: info1 & 1 != 0,
            },
            exit::NPF => Exit::NestedPageFault {
                gpa: info2,
                write: info1 & (1 << 1) != 0,
                fetch: info1 & (1 << 4) != 0,
            },
            exit::SHUTDOWN => Exit::TripleFault,
            exit::XSETBV => Exit::Xsetbv,
            exit::CR4_WRITE => Exit::Forbidden("changing CR4"),
            // Taken by `run` before it returns; here only if that went wrong.
            exit::DR_FIRST..=exit::DR_LAST => Exit::Forbidden("a debug-register access"),
            exit::INVALID | exit::INVALID_32 => Exit::InvalidState,
            other => match FORBIDDEN.iter().find(|(c, _)| *c == other) {
                Some(&(_, what)) => Exit::Forbidden(what),
                None => Exit::Unknown(other),
            },
        }
    }
}

impl Vcpu for SvmVcpu {
    fn reset(&mut self, s: &Start) {
        self.reset_controls(s.linux);
        let v = &mut *self.vmcb;
        if s.real_mode {
            v.set_segment(save::CS, s.cs, CODE16, 0xFFFF, u64::from(s.cs) << 4);
            for seg in [save::DS, save::ES, save::SS, save::FS, save::GS] {
                v.set_segment(seg, 0, DATA16, 0xFFFF, 0);
            }
            v.set_segment(save::IDTR, 0, 0, 0x3FF, 0);
        } else {
            v.set_segment(save::CS, s.cs, CODE64, 0xFFFF_FFFF, 0);
            for seg in [save::DS, save::ES, save::SS, save::FS, save::GS] {
                v.set_segment(seg, s.ds, DATA, 0xFFFF_FFFF, 0);
            }
        }
        v.set_segment(save::GDTR, 0, 0, u32::from(s.gdt_limit), s.gdt_base);
        // SVME must be set in a guest's EFER for VMRUN (the guest reads its own value).
        v.set_u64(save::EFER, s.efer | EFER_SVME);
        v.set_u64(save::CR0, s.cr0);
        v.set_u64(save::CR4, s.cr4);
        v.set_u64(save::CR3, s.cr3);
        v.set_u64(save::RFLAGS, s.rflags);
        v.set_u64(save::RIP, s.rip);
        v.set_u64(save::RSP, s.rsp);
        v.set_u64(save::G_PAT, s.pat());
        self.regs = s.regs;
        let (xcr0, allowed) = s.xstate();
        self.x.reset(xcr0, allowed);
    }

    fn run(&mut self) -> Exit {
        loop {
            if !self.enter() {
                return Exit::Interrupt;
            }
            if !self.x.check_xcr0() {
                return Exit::Forbidden("XSETBV");
            }
            if !self.debug_access() || self.x.debug.owned() {
                return self.decode_exit();
            }
            // The guest's first debug-register access: from now on they are its own,
            // switched on every entry and exit, and its accesses run without exits. The
            // instruction runs again (RIP was not moved).
            self.x.debug.take();
            self.vmcb.set_u32(ctl::INTERCEPT_DR, 0);
            self.vmcb.set_u32(ctl::CLEAN_BITS, 0);
        }
    }

    fn regs(&self) -> &GuestRegs {
        &self.regs
    }

    fn rax(&self) -> u64 {
        self.vmcb.u64(save::RAX)
    }

    fn set_rax(&mut self, v: u64) {
        self.vmcb.set_u64(save::RAX, v);
    }

    fn gpr(&self, n: u8) -> u64 {
        match n & 15 {
            RAX => self.vmcb.u64(save::RAX),
            RSP => self.vmcb.u64(save::RSP),
            k => self.regs.0[usize::from(k)],
        }
    }

    fn set_gpr(&mut self, n: u8, value: u64) {
        match n & 15 {
            RAX => self.vmcb.set_u64(save::RAX, value),
            RSP => self.vmcb.set_u64(save::RSP, value),
            k => self.regs.0[usize::from(k)] = value,
        }
    }

    fn rip(&self) -> u64 {
        self.vmcb.u64(save::RIP)
    }

    fn skip_instruction(&mut self, exit: &Exit) {
        // The instruction completed: an interrupt shadow it was in (STI; HLT) ends.
        self.vmcb.set_u64(ctl::INTERRUPT_SHADOW, 0);
        let rip = self.rip();
        let next = match exit {
            Exit::Io { .. } => self.vmcb.u64(ctl::EXIT_INFO2), // always the next RIP
            _ if self.nrip_save => self.vmcb.u64(ctl::NEXT_RIP),
            Exit::Hypercall => rip + 3, // VMMCALL: 0F 01 D9
            Exit::Halt => rip + 1,      // F4
            Exit::Cpuid | Exit::Msr { .. } => rip + 2, // 0F A2, 0F 32/30
            Exit::Xsetbv => rip + 3,    // 0F 01 D1
            Exit::Wbinvd => rip + 2,    // 0F 09
            _ => rip,
        };
        self.vmcb.set_u64(save::RIP, next);
    }

    fn exit_count(&self) -> u64 {
        self.exits
    }

    fn tlb_tag(&self) -> u32 {
        self.asid
    }

    fn flush_tlb_before_next_run(&mut self) {
        // TLB_CONTROL 1 flushes every ASID: the only flush TCG's SVM offers.
        self.vmcb.set_u8(ctl::TLB_CONTROL, 1);
    }

    fn set_slice_end(&mut self, _end_ns: u64) {
        // The host timer's interrupt always ends the run (V_INTR_MASKING, INTR intercept).
    }

    fn set_rip(&mut self, rip: u64) {
        self.vmcb.set_u64(save::RIP, rip);
    }

    fn paging(&self) -> PagingState {
        PagingState {
            cr0: self.vmcb.u64(save::CR0),
            cr3: self.vmcb.u64(save::CR3),
            cr4: self.vmcb.u64(save::CR4),
            efer: self.vmcb.u64(save::EFER) & !EFER_SVME,
        }
    }

    fn interruptible(&self) -> bool {
        self.vmcb.u64(save::RFLAGS) & (1 << 9) != 0
            && self.vmcb.u64(ctl::INTERRUPT_SHADOW) & 1 == 0
            && self.vmcb.u64(ctl::EVENT_INJ) & EVENT_VALID == 0
    }

    fn inject(&mut self, event: Event) {
        let value = match event {
            Event::Interrupt(vector) => u64::from(vector) | EVENT_VALID,
            Event::Exception { vector, error } => {
                let base = u64::from(vector) | 3 << 8 | EVENT_VALID;
                match error {
                    Some(code) => base | 1 << 11 | u64::from(code) << 32,
                    None => base,
                }
            }
        };
        self.vmcb.set_u64(ctl::EVENT_INJ, value);
    }

    fn set_interrupt_window(&mut self, on: bool) {
        let v = &mut *self.vmcb;
        let misc1 = v.u64(ctl::INTERCEPT_MISC1) as u32;
        let bit = intercept_bit(exit::VINTR);
        if on {
            v.set_u64(ctl::VINTR, V_INTR_MASKING | V_IRQ_WINDOW);
            v.set_u32(ctl::INTERCEPT_MISC1, misc1 | bit);
        } else {
            v.set_u64(ctl::VINTR, V_INTR_MASKING);
            v.set_u32(ctl::INTERCEPT_MISC1, misc1 & !bit);
        }
    }

    fn set_efer(&mut self, efer: u64) {
        self.vmcb.set_u64(save::EFER, efer | EFER_SVME);
    }

    fn set_pat(&mut self, pat: u64) {
        self.vmcb.set_u64(save::G_PAT, pat);
    }

    fn cpl(&self) -> u8 {
        (self.vmcb.u64(save::CPL) & 3) as u8
    }

    fn xstate(&mut self) -> &mut crate::virt::xstate::ExtState {
        &mut self.x
    }
}

core::arch::global_asm!(include_str!("run.s"));
