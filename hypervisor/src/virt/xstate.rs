//! The guest state a world switch must carry besides the general registers and what the
//! VMCB/VMCS hold: the XSAVE components (x87, SSE, AVX, AVX-512, PKRU) with XCR0, and the
//! debug registers DR0-DR3 (DR6 too under VMX). Unsafe module (XSETBV, MOV to and from the
//! debug registers, the areas the world switch reads). docs/guest-state.md lists every
//! piece of guest-writable state and how each backend handles it.
//!
//! **Extended state.** At boot the host turns on CR4.OSXSAVE and sets its XCR0 to every
//! component of [`xsave::SWITCHED`] the CPU has ([`enable`]). Each vCPU has an XSAVE area.
//! Right before an entry `xstate_enter` (xstate.s) restores it with XRSTOR of all of the
//! host's components, so every switched register holds this guest's value or its initial
//! state, never another guest's, and then loads the guest's own XCR0; right after the exit
//! `xstate_exit` puts the host's XCR0 back and saves all of them with XSAVE. What a guest
//! may *enable* in XCR0 is policy ([`bulkhead_platform::xsave`]): nothing for a unikernel
//! (its XCR0 stays x87|SSE), x87/SSE/AVX/PKRU for a Linux qube, through XSETBV, which exits.
//! Without XSAVE (older CPUs) FXSAVE/FXRSTOR do the same for x87/SSE.
//!
//! **Debug registers.** A guest's accesses to them exit until its first one, which hands
//! it the registers ([`DebugRegs::take`]) and is then executed again without an exit; from
//! then on its DR0-DR3 (and DR6 under VMX) are loaded before each entry and saved after each
//! exit. A guest that never touched them cannot read what another left there, and its DR7
//! (0x400, switched by the VMCB/VMCS) arms no breakpoint with them.

use crate::arch::x86::cpu;
use bulkhead_hvcore::memmap::{FrameAllocator, Frames};
use bulkhead_platform::xsave;
use core::sync::atomic::{AtomicU64, Ordering};

/// The host's XCR0 (the components every world switch moves); 0 without XSAVE.
static HOST_XCR0: AtomicU64 = AtomicU64::new(0);
/// Bytes of a standard-format XSAVE area for [`HOST_XCR0`].
static AREA_SIZE: AtomicU64 = AtomicU64::new(512);

/// CR4.OSXSAVE.
const CR4_OSXSAVE: u64 = bulkhead_platform::cpuid::CR4_OSXSAVE;
/// DR6 and DR7 at power-on.
pub const DR6_INIT: u64 = 0xFFFF_0FF0;
/// DR7 at power-on: no breakpoint armed.
pub const DR7_INIT: u64 = 0x400;

/// What [`enable`] found.
#[derive(Clone, Copy, Debug)]
pub struct XStateCaps {
    /// The host's XCR0 (the switched components); 0 without XSAVE.
    pub xcr0: u64,
    /// Bytes each vCPU's area needs.
    pub area_size: u64,
    /// The CPU has PKU but cannot switch PKRU with XSAVE (never seen): guests could then
    /// share PKRU, so [`bulkhead_platform::cpuid`] hides PKU and the unikernel CR4 policy
    /// refuses CR4.PKE; a Linux qube could still set it.
    pub pkru_unswitched: bool,
}

/// Turns on XSAVE for the host with every component the hypervisor switches. Called once
/// at boot, before the first vCPU is made (their areas are sized from it).
pub fn enable() -> XStateCaps {
    let pku = cpu::cpuid(0, 0).eax >= 7 && cpu::cpuid(7, 0).ecx & (1 << 3) != 0;
    if cpu::cpuid(1, 0).ecx & (1 << 26) == 0 {
        return XStateCaps {
            xcr0: 0,
            area_size: 512,
            pkru_unswitched: pku,
        };
    }
    let d = cpu::cpuid(0xD, 0);
    let supported = u64::from(d.eax) | u64::from(d.edx) << 32;
    let xcr0 = supported & xsave::SWITCHED | xsave::X87 | xsave::SSE;
    // SAFETY: the CPU has XSAVE (checked above), so CR4.OSXSAVE exists; setting it only
    // enables XGETBV/XSETBV/XSAVE*, changing nothing the hypervisor relies on. The XCR0
    // value holds only components the CPU reports in leaf 0xD, x87 and SSE included, and
    // AVX-512's three together with AVX (or none: SWITCHED has them all and CPUs report
    // them together), so XSETBV accepts it.
    unsafe {
        cpu::write_cr4(cpu::cr4() | CR4_OSXSAVE);
        xsetbv(xcr0);
    }
    // Leaf 0xD EBX: the area size for the XCR0 now in force.
    let area_size = u64::from(cpu::cpuid(0xD, 0).ebx).max(512 + 64);
    HOST_XCR0.store(xcr0, Ordering::Relaxed);
    AREA_SIZE.store(area_size, Ordering::Relaxed);
    XStateCaps {
        xcr0,
        area_size,
        pkru_unswitched: pku && xcr0 & xsave::PKRU == 0,
    }
}

/// The host's XCR0 (0 without XSAVE).
pub fn host_xcr0() -> u64 {
    HOST_XCR0.load(Ordering::Relaxed)
}

/// Writes XCR0.
///
/// # Safety
/// CR4.OSXSAVE must be set and `value` a valid XCR0 for this CPU (else #GP).
unsafe fn xsetbv(value: u64) {
    // SAFETY: the caller's guarantee.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32,
                         in("edx") (value >> 32) as u32, options(nomem, nostack))
    };
}

/// The block `xstate_enter`/`xstate_exit` (xstate.s) read and write. Layout shared with
/// the assembly: do not reorder.
#[repr(C)]
pub struct Switch {
    /// The guest's XSAVE (or FXSAVE) area: 64-byte aligned, [`AREA_SIZE`] bytes.
    guest_area: u64,
    /// The host's FXSAVE area (512 bytes, 16-byte aligned).
    host_fx: u64,
    /// The components XSAVE/XRSTOR move: the host's XCR0, 0 without XSAVE.
    rfbm: u64,
    /// The guest's XCR0: loaded before the entry, what the CPU had at the exit after it.
    guest_xcr0: u64,
}

const _: () = assert!(core::mem::offset_of!(Switch, guest_xcr0) == 24);

/// One vCPU's extended state and debug registers.
pub struct ExtState {
    /// The pages: the guest's area, then one page for the host's FXSAVE area. Owned by this
    /// vCPU for the rest of the run; no guest maps them.
    pages: Frames,
    switch: Switch,
    /// The guest's XCR0 as the hypervisor last allowed it.
    xcr0: u64,
    /// What the guest may enable (0: its XCR0 is fixed).
    allowed: u64,
    /// Its debug registers.
    pub debug: DebugRegs,
}

impl ExtState {
    /// Allocates the areas of one vCPU.
    pub fn new(frames: &mut FrameAllocator) -> Option<ExtState> {
        let area = AREA_SIZE.load(Ordering::Relaxed).next_multiple_of(4096);
        let pages = frames.alloc(area + 4096, 4096)?;
        let start = pages.start();
        let mut x = ExtState {
            pages,
            switch: Switch {
                guest_area: start,
                host_fx: start + area,
                rfbm: host_xcr0(),
                guest_xcr0: xsave::X87 | xsave::SSE,
            },
            xcr0: xsave::X87 | xsave::SSE,
            allowed: 0,
            debug: DebugRegs::new(),
        };
        x.reset(xsave::X87 | xsave::SSE, 0);
        Some(x)
    }

    /// Power-on state: every component initial (FCW 0x37F, MXCSR 0x1F80, all registers
    /// zero, PKRU 0), XCR0 `xcr0`, of which the guest may enable `allowed` (0: fixed), debug
    /// registers not yet the guest's and zero. Called whenever the vCPU (re)starts a guest.
    pub fn reset(&mut self, xcr0: u64, allowed: u64) {
        let host = host_xcr0();
        self.allowed = allowed & host;
        self.xcr0 = if host == 0 { 0 } else { xcr0 & host };
        self.switch.guest_xcr0 = self.xcr0;
        crate::memory::phys::with_frames(&mut self.pages, |b| {
            b.fill(0);
            // Legacy region: FCW and MXCSR (XRSTOR loads MXCSR from the area even for
            // components in their initial state). An all-zero XSAVE header: every component
            // starts initial.
            b[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
            b[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
        });
        self.debug = DebugRegs::new();
    }

    /// The block for the world switch, with the guest's XCR0 as last allowed.
    pub fn switch(&mut self) -> *mut Switch {
        self.switch.guest_xcr0 = self.xcr0;
        &raw mut self.switch
    }

    /// After an exit: false if the guest changed XCR0 without an exit (a CPU or emulator
    /// that fails to intercept XSETBV) to a value it may not have. An allowed value is
    /// taken as its own.
    pub fn check_xcr0(&mut self) -> bool {
        let seen = self.switch.guest_xcr0;
        if self.switch.rfbm == 0 || seen == self.xcr0 {
            return true;
        }
        if self.allowed != 0 && xsave::xsetbv_ok(0, seen, self.allowed) {
            self.xcr0 = seen;
            return true;
        }
        false
    }

    /// The guest's XCR0.
    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    /// What the guest may enable in XCR0 (0: nothing, its XCR0 is fixed).
    pub fn allowed(&self) -> u64 {
        self.allowed
    }

    /// XSETBV by the guest: sets its XCR0 if the value is one it may have.
    pub fn set_xcr0(&mut self, index: u32, value: u64) -> bool {
        let ok = self.allowed != 0 && xsave::xsetbv_ok(index, value, self.allowed);
        if ok {
            self.xcr0 = value;
        }
        ok
    }
}

/// A guest's DR0-DR3 and DR6 while it owns the debug registers.
pub struct DebugRegs {
    owned: bool,
    dr: [u64; 4],
    dr6: u64,
}

impl DebugRegs {
    const fn new() -> DebugRegs {
        DebugRegs {
            owned: false,
            dr: [0; 4],
            dr6: DR6_INIT,
        }
    }

    /// Whether the guest has touched its debug registers (they are then switched and its
    /// accesses no longer exit).
    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Hands the debug registers to the guest (its first access exited).
    pub fn take(&mut self) {
        self.owned = true;
    }

    /// Before an entry: puts the guest's values in DR0-DR3 (and DR6 when `dr6`: VMX, whose
    /// VMCS does not hold it).
    pub fn load(&self, dr6: bool) {
        if !self.owned {
            return;
        }
        let [d0, d1, d2, d3] = self.dr;
        // SAFETY: the host's DR7 is 0x400 (it never arms a breakpoint, and a VM exit or
        // #VMEXIT leaves DR7 at the host's value), so no address in DR0-DR3 can raise a
        // debug exception in the host; DR6 only reports. Writing them has no other effect.
        unsafe {
            core::arch::asm!("mov dr0, {}", "mov dr1, {}", "mov dr2, {}", "mov dr3, {}",
                             in(reg) d0, in(reg) d1, in(reg) d2, in(reg) d3,
                             options(nomem, nostack));
            if dr6 {
                core::arch::asm!("mov dr6, {}", in(reg) self.dr6, options(nomem, nostack));
            }
        }
    }

    /// After an exit: keeps the guest's DR0-DR3 (and DR6 when `dr6`).
    pub fn save(&mut self, dr6: bool) {
        if !self.owned {
            return;
        }
        let (d0, d1, d2, d3): (u64, u64, u64, u64);
        // SAFETY: reading debug registers at CPL 0 has no side effect.
        unsafe {
            core::arch::asm!("mov {}, dr0", "mov {}, dr1", "mov {}, dr2", "mov {}, dr3",
                             out(reg) d0, out(reg) d1, out(reg) d2, out(reg) d3,
                             options(nomem, nostack));
            if dr6 {
                core::arch::asm!("mov {}, dr6", out(reg) self.dr6, options(nomem, nostack));
            }
        }
        self.dr = [d0, d1, d2, d3];
    }
}

core::arch::global_asm!(include_str!("xstate.s"));
