//! The instructions of `cpu-state`: reading the registers a qube owns at start, one round of
//! writing markers, giving up the CPU and reading them back, and exiting with markers left
//! in the registers. Every register is written and read inside one `asm!` block, because
//! Rust code in between could change any of them.
//!
//! The rules every unsafe block below relies on:
//! 1. This qube runs at CPL 0, so MOV to and from DR0-DR3, DR6 and DR7 is allowed; the values
//!    written enable no breakpoint (DR7's L0-L3 and G0-G3 stay clear, GD too) and DR0-DR3 are
//!    canonical, so no #GP and no #DB can follow. This image never uses debug registers.
//! 2. `r` points at a live [`Round`] (or [`Snapshot`]) that the asm alone writes while it
//!    runs; its FXSAVE area is its first field and the struct is 16-byte aligned, as FXSAVE
//!    needs.
//! 3. The hypercalls issued are Yield (2) and WaitEvent (3), whose arguments are plain numbers
//!    (no buffers), and Exit (5); the hypervisor preserves every register but rax.
//! 4. Every register the asm changes is declared clobbered or saved and restored (rbx and rbp
//!    on the stack: Rust does not let asm name them as operands); the x87 stack is empty, the
//!    x87 control word 0x037F and MXCSR 0x1F80 again when a returning block ends (FNINIT,
//!    LDMXCSR), so Rust code after it sees the state it expects.

use core::arch::asm;
use core::mem::offset_of;

/// MXCSR after reset: all exceptions masked, round to nearest.
pub const MXCSR_RESET: u32 = 0x1F80;
/// x87 control word after FNINIT: all exceptions masked, 64-bit precision, round to nearest.
pub const FCW_RESET: u16 = 0x037F;
/// DR6 after reset: reserved bits set, no breakpoint condition.
pub const DR6_RESET: u64 = 0xFFFF_0FF0;
/// DR7 after reset: only the reserved bit 10 set.
pub const DR7_RESET: u64 = 0x400;

/// An FXSAVE image (512 bytes, 16-byte aligned).
#[repr(C, align(16))]
pub struct Fx(pub [u8; 512]);

impl Fx {
    fn word<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.0[at..at + N]);
        b
    }
    /// x87 control word.
    pub fn fcw(&self) -> u16 {
        u16::from_le_bytes(self.word(0))
    }
    /// x87 status word (TOP in bits 11-13).
    pub fn fsw(&self) -> u16 {
        u16::from_le_bytes(self.word(2))
    }
    /// Abridged tag word: bit i set when physical x87 register i holds a value.
    pub fn ftw(&self) -> u8 {
        self.0[4]
    }
    /// MXCSR.
    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes(self.word(24))
    }
    /// XMM register `i` (0-15) as two 64-bit lanes, low first.
    pub fn xmm(&self, i: usize) -> [u64; 2] {
        let at = 160 + 16 * i;
        [
            u64::from_le_bytes(self.word(at)),
            u64::from_le_bytes(self.word(at + 8)),
        ]
    }
    /// x87 register ST(i)/MMi's 80 bits: the 64-bit significand and the sign+exponent.
    pub fn st(&self, i: usize) -> (u64, u16) {
        let at = 32 + 16 * i;
        (
            u64::from_le_bytes(self.word(at)),
            u16::from_le_bytes(self.word(at + 8)),
        )
    }
}

/// What a qube finds in its registers before it writes any: an FXSAVE image and DR0-DR3,
/// DR6, DR7.
#[repr(C, align(16))]
pub struct Snapshot {
    /// x87, MXCSR and XMM0-15.
    pub fx: Fx,
    /// DR0, DR1, DR2, DR3, DR6, DR7.
    pub dr: [u64; 6],
}

/// Reads the debug registers and the FXSAVE state, changing nothing.
pub fn snapshot() -> Snapshot {
    let mut s = Snapshot {
        fx: Fx([0; 512]),
        dr: [0; 6],
    };
    let r = &raw mut s;
    // SAFETY: rules 1 (only reads of debug registers) and 2 (`r` is the live snapshot, its
    // FXSAVE area first and aligned). FXSAVE only stores; rax is declared clobbered.
    unsafe {
        asm!(
            "fxsave64 [rcx]",
            "mov rax, dr0", "mov [rcx + {dr}], rax",
            "mov rax, dr1", "mov [rcx + {dr} + 8], rax",
            "mov rax, dr2", "mov [rcx + {dr} + 16], rax",
            "mov rax, dr3", "mov [rcx + {dr} + 24], rax",
            "mov rax, dr6", "mov [rcx + {dr} + 32], rax",
            "mov rax, dr7", "mov [rcx + {dr} + 40], rax",
            dr = const offset_of!(Snapshot, dr),
            in("rcx") r,
            out("rax") _,
            options(nostack, preserves_flags),
        );
    }
    s
}

/// How a round gives up the CPU after its spin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// No hypercall: only the hypervisor's timer takes the CPU, if it fires during the spin.
    Preemption,
    /// The Yield hypercall.
    Yield,
    /// WaitEvent with a timeout of the given nanoseconds (a sleep).
    Sleep(u64),
}

/// One round: the markers to write (inputs) and what was read back (outputs).
#[repr(C, align(16))]
pub struct Round {
    /// Out: FXSAVE after the CPU came back (x87 with our value pushed, MXCSR, XMM0-15).
    pub fx: Fx,
    /// In: XMM0-15, low lane first.
    pub xmm: [[u64; 2]; 16],
    /// In: r8-r15, rbx, rbp.
    pub gpr: [u64; 10],
    /// In: DR0-DR3, DR6, DR7.
    pub dr: [u64; 6],
    /// In: the integer pushed onto the x87 stack (FILD).
    pub x87: u64,
    /// In: MXCSR.
    pub mxcsr: u32,
    /// In: x87 control word.
    pub fcw: u16,
    /// Out: x87 status word after our value was popped again (TOP back to 0).
    pub fsw_after: u16,
    /// In: TSC ticks to spin between writing and giving up the CPU.
    pub spin_ticks: u64,
    /// Out: the longest gap between two TSC reads of the spin, in ticks: how long the CPU
    /// was taken away (by the hypervisor's timer) during it.
    pub longest_gap: u64,
    /// In: hypercall number after the spin, 0 for none.
    call: u64,
    /// In: its argument.
    call_arg: u64,
    /// In: nonzero for VMCALL (Intel), zero for VMMCALL (AMD).
    pub vmcall: u64,
    /// Out: r8-r15, rbx, rbp.
    pub gpr_out: [u64; 10],
    /// Out: DR0-DR3, DR6, DR7.
    pub dr_out: [u64; 6],
    /// Out: the integer popped from the x87 stack (FISTP).
    pub x87_out: u64,
    /// Constant: what MXCSR is set back to.
    mxcsr_reset: u32,
}

impl Round {
    /// A round with everything zero but the constants.
    pub fn new(vmcall: bool) -> Round {
        Round {
            fx: Fx([0; 512]),
            xmm: [[0; 2]; 16],
            gpr: [0; 10],
            dr: [0, 0, 0, 0, DR6_RESET, DR7_RESET],
            x87: 0,
            mxcsr: MXCSR_RESET,
            fcw: FCW_RESET,
            fsw_after: 0,
            spin_ticks: 0,
            longest_gap: 0,
            call: 0,
            call_arg: 0,
            vmcall: u64::from(vmcall),
            gpr_out: [0; 10],
            dr_out: [0; 6],
            x87_out: 0,
            mxcsr_reset: MXCSR_RESET,
        }
    }

    /// Sets how the round gives up the CPU.
    pub fn give_up(&mut self, how: GiveUp) {
        (self.call, self.call_arg) = match how {
            GiveUp::Preemption => (0, 0),
            GiveUp::Yield => (2, 0),
            GiveUp::Sleep(ns) => (3, ns),
        };
    }
}

/// Writes every marker of `r` into its register, spins `r.spin_ticks` TSC ticks, gives up the
/// CPU as `r` says, reads every register back into `r`, and sets x87 and MXCSR back to their
/// reset values.
pub fn run(r: &mut Round) {
    let r = &raw mut *r;
    // SAFETY: rules 1-4 of this module: the DR values come from `super::fill` (canonical,
    // no enable bit, GD clear); `r` is a live, aligned `Round`; the only hypercalls are Yield
    // and WaitEvent with a number argument; r8-r15, rax, rdx, rsi, rdi, xmm0-15 and the x87
    // registers are declared clobbered, rbx and rbp are pushed and popped (the stack is ours:
    // no `nostack`), rcx holds `r` throughout and is not changed.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            // x87 and SSE control, the x87 value, XMM0-15.
            "ldmxcsr dword ptr [rcx + {mx}]",
            "fldcw word ptr [rcx + {fcw}]",
            "fild qword ptr [rcx + {x87}]",
            "movdqu xmm0, [rcx + {xmm}]",
            "movdqu xmm1, [rcx + {xmm} + 16]",
            "movdqu xmm2, [rcx + {xmm} + 32]",
            "movdqu xmm3, [rcx + {xmm} + 48]",
            "movdqu xmm4, [rcx + {xmm} + 64]",
            "movdqu xmm5, [rcx + {xmm} + 80]",
            "movdqu xmm6, [rcx + {xmm} + 96]",
            "movdqu xmm7, [rcx + {xmm} + 112]",
            "movdqu xmm8, [rcx + {xmm} + 128]",
            "movdqu xmm9, [rcx + {xmm} + 144]",
            "movdqu xmm10, [rcx + {xmm} + 160]",
            "movdqu xmm11, [rcx + {xmm} + 176]",
            "movdqu xmm12, [rcx + {xmm} + 192]",
            "movdqu xmm13, [rcx + {xmm} + 208]",
            "movdqu xmm14, [rcx + {xmm} + 224]",
            "movdqu xmm15, [rcx + {xmm} + 240]",
            // Debug registers.
            "mov rax, [rcx + {dr}]", "mov dr0, rax",
            "mov rax, [rcx + {dr} + 8]", "mov dr1, rax",
            "mov rax, [rcx + {dr} + 16]", "mov dr2, rax",
            "mov rax, [rcx + {dr} + 24]", "mov dr3, rax",
            "mov rax, [rcx + {dr} + 32]", "mov dr6, rax",
            "mov rax, [rcx + {dr} + 40]", "mov dr7, rax",
            // General registers.
            "mov r8, [rcx + {gpr}]",
            "mov r9, [rcx + {gpr} + 8]",
            "mov r10, [rcx + {gpr} + 16]",
            "mov r11, [rcx + {gpr} + 24]",
            "mov r12, [rcx + {gpr} + 32]",
            "mov r13, [rcx + {gpr} + 40]",
            "mov r14, [rcx + {gpr} + 48]",
            "mov r15, [rcx + {gpr} + 56]",
            "mov rbx, [rcx + {gpr} + 64]",
            "mov rbp, [rcx + {gpr} + 72]",
            // Spin (the hypervisor's timer may preempt here), noting the longest gap between
            // two TSC reads (the time the CPU was elsewhere), then the hypercall if any.
            "mov qword ptr [rcx + {gap}], 0",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "mov rdi, rax",
            "add rax, [rcx + {spin}]",
            "mov rsi, rax",
            "2:",
            "pause",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "mov rdx, rax",
            "sub rdx, rdi",
            "mov rdi, rax",
            "cmp rdx, [rcx + {gap}]",
            "jbe 5f",
            "mov [rcx + {gap}], rdx",
            "5:",
            "cmp rax, rsi",
            "jb 2b",
            "mov rax, [rcx + {call}]",
            "test rax, rax",
            "jz 4f",
            "mov rdi, [rcx + {arg}]",
            "xor esi, esi",
            "xor edx, edx",
            "cmp qword ptr [rcx + {vmcall}], 0",
            "jne 3f",
            "vmmcall",
            "jmp 4f",
            "3:",
            "vmcall",
            "4:",
            // Read everything back.
            "mov [rcx + {gpo}], r8",
            "mov [rcx + {gpo} + 8], r9",
            "mov [rcx + {gpo} + 16], r10",
            "mov [rcx + {gpo} + 24], r11",
            "mov [rcx + {gpo} + 32], r12",
            "mov [rcx + {gpo} + 40], r13",
            "mov [rcx + {gpo} + 48], r14",
            "mov [rcx + {gpo} + 56], r15",
            "mov [rcx + {gpo} + 64], rbx",
            "mov [rcx + {gpo} + 72], rbp",
            "mov rax, dr0", "mov [rcx + {dro}], rax",
            "mov rax, dr1", "mov [rcx + {dro} + 8], rax",
            "mov rax, dr2", "mov [rcx + {dro} + 16], rax",
            "mov rax, dr3", "mov [rcx + {dro} + 24], rax",
            "mov rax, dr6", "mov [rcx + {dro} + 32], rax",
            "mov rax, dr7", "mov [rcx + {dro} + 40], rax",
            "fxsave64 [rcx]",
            "fistp qword ptr [rcx + {x87o}]",
            "fnstsw word ptr [rcx + {fswa}]",
            // Back to the state Rust code expects.
            "fninit",
            "ldmxcsr dword ptr [rcx + {mxr}]",
            "pop rbp",
            "pop rbx",
            mx = const offset_of!(Round, mxcsr),
            fcw = const offset_of!(Round, fcw),
            x87 = const offset_of!(Round, x87),
            xmm = const offset_of!(Round, xmm),
            dr = const offset_of!(Round, dr),
            gpr = const offset_of!(Round, gpr),
            spin = const offset_of!(Round, spin_ticks),
            gap = const offset_of!(Round, longest_gap),
            call = const offset_of!(Round, call),
            arg = const offset_of!(Round, call_arg),
            vmcall = const offset_of!(Round, vmcall),
            gpo = const offset_of!(Round, gpr_out),
            dro = const offset_of!(Round, dr_out),
            x87o = const offset_of!(Round, x87_out),
            fswa = const offset_of!(Round, fsw_after),
            mxr = const offset_of!(Round, mxcsr_reset),
            in("rcx") r,
            out("rax") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
            out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
        );
    }
}

/// Loads the markers of `r` (XMM0-15, r8-r15, rbx, rbp, DR0-DR3, DR6, DR7, MXCSR, x87
/// control word, and the x87 value pushed onto all eight stack slots) and exits with `status`
/// without running Rust code again: whatever the hypervisor does not clear, the next qube
/// on this CPU, or this one restarted, finds.
pub fn exit_with_markers(r: &Round, status: u64) -> ! {
    let r = &raw const *r;
    // SAFETY: rules 1-3: `r` is a live `Round` the asm only reads; the DR values come from
    // `super::fill`; the only hypercall is Exit, which does not return (the `2:` loop
    // asks again if a broken hypervisor resumed us, like `bulkhead_rt::exit`), so the x87
    // stack and control registers left dirty are never seen by Rust code.
    unsafe {
        asm!(
            "ldmxcsr dword ptr [rcx + {mx}]",
            "fldcw word ptr [rcx + {fcw}]",
            "fild qword ptr [rcx + {x87}]",
            "fild qword ptr [rcx + {x87}]",
            "fild qword ptr [rcx + {x87}]",
            "fild qword ptr [rcx + {x87}]",
            "fild qword ptr [rcx + {x87}]",
            "fild qword ptr [rcx + {x87}]",
            "fild qword ptr [rcx + {x87}]",
            "fild qword ptr [rcx + {x87}]",
            "movdqu xmm0, [rcx + {xmm}]",
            "movdqu xmm1, [rcx + {xmm} + 16]",
            "movdqu xmm2, [rcx + {xmm} + 32]",
            "movdqu xmm3, [rcx + {xmm} + 48]",
            "movdqu xmm4, [rcx + {xmm} + 64]",
            "movdqu xmm5, [rcx + {xmm} + 80]",
            "movdqu xmm6, [rcx + {xmm} + 96]",
            "movdqu xmm7, [rcx + {xmm} + 112]",
            "movdqu xmm8, [rcx + {xmm} + 128]",
            "movdqu xmm9, [rcx + {xmm} + 144]",
            "movdqu xmm10, [rcx + {xmm} + 160]",
            "movdqu xmm11, [rcx + {xmm} + 176]",
            "movdqu xmm12, [rcx + {xmm} + 192]",
            "movdqu xmm13, [rcx + {xmm} + 208]",
            "movdqu xmm14, [rcx + {xmm} + 224]",
            "movdqu xmm15, [rcx + {xmm} + 240]",
            "mov rax, [rcx + {dr}]", "mov dr0, rax",
            "mov rax, [rcx + {dr} + 8]", "mov dr1, rax",
            "mov rax, [rcx + {dr} + 16]", "mov dr2, rax",
            "mov rax, [rcx + {dr} + 24]", "mov dr3, rax",
            "mov rax, [rcx + {dr} + 32]", "mov dr6, rax",
            "mov rax, [rcx + {dr} + 40]", "mov dr7, rax",
            "mov r8, [rcx + {gpr}]",
            "mov r9, [rcx + {gpr} + 8]",
            "mov r10, [rcx + {gpr} + 16]",
            "mov r11, [rcx + {gpr} + 24]",
            "mov r12, [rcx + {gpr} + 32]",
            "mov r13, [rcx + {gpr} + 40]",
            "mov r14, [rcx + {gpr} + 48]",
            "mov r15, [rcx + {gpr} + 56]",
            "mov rbx, [rcx + {gpr} + 64]",
            "mov rbp, [rcx + {gpr} + 72]",
            "2:",
            "mov eax, 5",
            "cmp qword ptr [rcx + {vmcall}], 0",
            "jne 3f",
            "vmmcall",
            "jmp 2b",
            "3:",
            "vmcall",
            "jmp 2b",
            mx = const offset_of!(Round, mxcsr),
            fcw = const offset_of!(Round, fcw),
            x87 = const offset_of!(Round, x87),
            xmm = const offset_of!(Round, xmm),
            dr = const offset_of!(Round, dr),
            gpr = const offset_of!(Round, gpr),
            vmcall = const offset_of!(Round, vmcall),
            in("rcx") r,
            in("rdi") status,
            options(noreturn),
        );
    }
}

/// The time-stamp counter.
pub fn tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC only reads the time-stamp counter into edx:eax (declared outputs); it
    // touches no memory and no flags.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}
