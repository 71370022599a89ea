//! The probe's instructions: CPUID, XGETBV, RDTSC and the round itself (YMM, PKRU). With
//! `sys`, the only module of the agent with `unsafe`. The round needs the YMM registers
//! (and, for PKRU, protection keys) to be usable; [`Usable`], made only from what CPUID and
//! XCR0 say, is the proof of that, so [`Usable::round`] is safe to call.
#![allow(unsafe_code)]

use super::{Features, PKRU_KEYS_8_15, Seen, Ymm};
use std::arch::asm;
use std::arch::x86_64::{__cpuid, __cpuid_count};
use std::time::{Duration, Instant};

/// The CPU's and kernel's answer (CPUID leaves 1 and 7, XCR0).
pub fn features() -> Features {
    let max_leaf = __cpuid(0).eax;
    let leaf1 = __cpuid(1).ecx;
    let leaf7 = if max_leaf >= 7 {
        __cpuid_count(7, 0).ecx
    } else {
        0
    };
    Features::decode(leaf1, leaf7, || {
        let (lo, hi): (u32, u32);
        // SAFETY: `decode` calls this only when CPUID says OSXSAVE, that is the kernel has
        // set CR4.OSXSAVE, which makes XGETBV with ECX = 0 (XCR0) valid in user mode. It
        // reads no memory and changes only EAX and EDX.
        unsafe {
            asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
                 options(nomem, nostack, preserves_flags));
        }
        u64::from(hi) << 32 | u64::from(lo)
    })
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter; Linux leaves CR4.TSD clear (this process does not ask
    // for it with prctl), so it does not fault in user mode.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// TSC ticks per millisecond, measured against the monotonic clock over 100 ms (a
/// preemption between the two clock reads, up to a 10 ms time slice, then errs by 10 % at
/// most).
pub fn tsc_per_ms() -> u64 {
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(Duration::from_millis(100));
    let (elapsed, ticks) = (t0.elapsed(), rdtsc().wrapping_sub(c0));
    let us = elapsed.as_micros().max(1);
    (u128::from(ticks) * 1000 / us).min(u128::from(u64::MAX)) as u64
}

/// Proof that the YMM registers may be used here (and whether PKRU may).
#[derive(Debug)]
pub struct Usable {
    pkru: bool,
}

impl Usable {
    /// `Some` when `features` says the YMM registers are usable ([`Features::ymm`]); with
    /// PKRU when [`Features::pkru`].
    pub fn new(features: &Features) -> Option<Usable> {
        features.ymm().then_some(Usable {
            pkru: features.pkru(),
        })
    }

    /// One round: writes `write` into YMM0-15 and, with PKRU, `pkru_keys` (only the bits of
    /// keys 8..15; the rest of PKRU is kept) into PKRU; spins until the TSC has advanced by
    /// `ticks`, running CPUID every `exit_ticks` (`u64::MAX`: never); reads everything back
    /// and puts the original PKRU back. No system call and no function call happen in
    /// between: nothing of this process changes the registers.
    ///
    /// CPUID exits to the hypervisor (it always does in a qube): each one is a world switch
    /// that must save and restore the guest's state too, and gives the hypervisor the CPU
    /// back even if its preemption timer was lost (seen on SVM under QEMU: a qube spinning
    /// without exits kept the CPU for seconds while the others stood still).
    pub fn round(&self, write: &Ymm, pkru_keys: u32, ticks: u64, exit_ticks: u64) -> Seen {
        let mut read = Ymm([[0; 4]; super::YMM_REGS]);
        let deadline = rdtsc().saturating_add(ticks);
        let keys = pkru_keys & PKRU_KEYS_8_15;
        let exit_ticks = exit_ticks.clamp(1, 1 << 62);
        // SAFETY: `self` exists only when CPUID and XCR0 say the kernel has enabled AVX, and
        // says PKRU only when it has set CR4.PKE: the conditions of `round_asm`.
        let (seen, orig) =
            unsafe { round_asm(write, &mut read, deadline, exit_ticks, keys, self.pkru) };
        Seen {
            ymm: read,
            pkru: self.pkru.then_some(((orig & !PKRU_KEYS_8_15) | keys, seen)),
        }
    }
}

/// The round in one `asm!` block; returns PKRU as read back and as it was before (both 0
/// without `pkru`).
///
/// # Safety
///
/// 1. The kernel has enabled AVX (CPUID OSXSAVE and AVX, XCR0 bits 1 and 2), so the VEX
///    instructions on YMM registers do not fault.
/// 2. With `pkru`, the kernel has set CR4.PKE (CPUID OSPKE), so RDPKRU/WRPKRU do not fault.
#[target_feature(enable = "avx")]
unsafe fn round_asm(
    write: &Ymm,
    read: &mut Ymm,
    deadline: u64,
    exit_ticks: u64,
    keys: u32,
    pkru: bool,
) -> (u32, u32) {
    let (seen, orig): (u32, u32);
    // SAFETY: (1) the instructions are usable by the function's conditions 1 and 2;
    // (2) `rsi` points to `write` and `rdi` to `read`, 512 bytes each (`Ymm`), which the
    // block reads and writes with unaligned moves and nothing else; (3) WRPKRU sets only
    // the bits of keys 8..15 (`keys` is masked by the caller; `and` keeps the rest), which
    // no page of this process uses (pkey 0, every page's key, stays accessible), and the
    // block writes the original value back before it ends; (4) every register it changes
    // is declared (YMM0-15, RAX, RCX, RDX, R9, R11, R12, R14, the flags; `vzeroupper`
    // leaves the upper halves clean for the SSE code after it) but RBX, which CPUID
    // writes and the block restores from R14; the stack is not touched.
    unsafe {
        asm!(
            "vmovdqu ymm0, [rsi]",
            "vmovdqu ymm1, [rsi + 32]",
            "vmovdqu ymm2, [rsi + 64]",
            "vmovdqu ymm3, [rsi + 96]",
            "vmovdqu ymm4, [rsi + 128]",
            "vmovdqu ymm5, [rsi + 160]",
            "vmovdqu ymm6, [rsi + 192]",
            "vmovdqu ymm7, [rsi + 224]",
            "vmovdqu ymm8, [rsi + 256]",
            "vmovdqu ymm9, [rsi + 288]",
            "vmovdqu ymm10, [rsi + 320]",
            "vmovdqu ymm11, [rsi + 352]",
            "vmovdqu ymm12, [rsi + 384]",
            "vmovdqu ymm13, [rsi + 416]",
            "vmovdqu ymm14, [rsi + 448]",
            "vmovdqu ymm15, [rsi + 480]",
            "xor r11d, r11d",
            "test r10b, r10b",
            "jz 2f",
            // PKRU: keep keys 0..7, put the marker into keys 8..15.
            "xor ecx, ecx",
            "rdpkru",
            "mov r11d, eax",
            "and eax, 0xffff",
            "or eax, r9d",
            "xor edx, edx",
            "wrpkru",
            "2:",
            // Spin until the deadline (R8) on RDTSC, with a CPUID every R13 ticks (R12: when
            // the next one is due).
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "lea r12, [rax + r13]",
            "3:",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "cmp rax, r8",
            "jae 4f",
            "cmp rax, r12",
            "jb 3b",
            "lea r12, [rax + r13]",
            "mov r14, rbx",
            "xor eax, eax",
            "xor ecx, ecx",
            "cpuid",
            "mov rbx, r14",
            "jmp 3b",
            "4:",
            "vmovdqu [rdi], ymm0",
            "vmovdqu [rdi + 32], ymm1",
            "vmovdqu [rdi + 64], ymm2",
            "vmovdqu [rdi + 96], ymm3",
            "vmovdqu [rdi + 128], ymm4",
            "vmovdqu [rdi + 160], ymm5",
            "vmovdqu [rdi + 192], ymm6",
            "vmovdqu [rdi + 224], ymm7",
            "vmovdqu [rdi + 256], ymm8",
            "vmovdqu [rdi + 288], ymm9",
            "vmovdqu [rdi + 320], ymm10",
            "vmovdqu [rdi + 352], ymm11",
            "vmovdqu [rdi + 384], ymm12",
            "vmovdqu [rdi + 416], ymm13",
            "vmovdqu [rdi + 448], ymm14",
            "vmovdqu [rdi + 480], ymm15",
            "xor r9d, r9d",
            "test r10b, r10b",
            "jz 5f",
            "xor ecx, ecx",
            "rdpkru",
            "mov r9d, eax",
            "mov eax, r11d",
            "xor edx, edx",
            "wrpkru",
            "5:",
            "vzeroupper",
            in("rsi") write.0.as_ptr(),
            in("rdi") read.0.as_mut_ptr(),
            in("r8") deadline,
            inout("r9") keys => seen,
            in("r10") u32::from(pkru),
            out("r11") orig,
            in("r13") exit_ticks,
            out("r12") _, out("r14") _,
            out("rax") _, out("rcx") _, out("rdx") _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }
    (seen, orig)
}
