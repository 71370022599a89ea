//! `cpu-state marker=HEX seconds=S [restarts=N]`: checks that the CPU state this qube can
//! write without a VM exit is its own: nothing of it was left by another qube (or by an
//! earlier run of this one), and nothing of it changes while another qube runs.
//!
//! - **At start**, before it writes anything, it reads DR0-DR3, DR6, DR7 and the FXSAVE state
//!   and counts as *inherited* each that is not the reset value (DR0-3 = 0, DR6 = 0xFFFF0FF0,
//!   DR7 = 0x400, MXCSR = 0x1F80, x87 control word 0x037F, x87 stack empty) and each XMM or x87
//!   register holding a marker of this mode (every marker carries [`SIG`]). The runtime's
//!   entry code is Rust compiled with SSE and has used some XMM registers by then, so XMM
//!   registers are not checked for zero, only for markers a qube left (one the runtime
//!   overwrote cannot be seen); general registers are not checked at start at all (the
//!   runtime has set them). MXCSR, x87 and the debug registers are untouched until here.
//! - **Rounds** for `seconds`: one `asm!` block writes markers derived from `marker` and the
//!   round number into r8-r15, rbx, rbp, XMM0-15 (all 128 bits), MXCSR (a rounding mode or
//!   flush-to-zero, exceptions masked), the x87 control word (precision and rounding) and
//!   stack (one value pushed), DR0-DR3, DR6 (B0-B3) and DR7 (R/W and LEN fields only, no
//!   breakpoint enabled); spins 2-3 ms on the TSC (the hypervisor's timer may preempt it);
//!   then gives up the CPU: Yield in one round of 12, a 1 ms WaitEvent in another, nothing
//!   in the rest (5 rounds in a row, over one 10 ms time slice, so the timer preempts some of
//!   them); and reads every register back. Each register that does not hold what was written
//!   is one *mismatch*. No hypercall is made between two rounds (the end is found on the
//!   TSC), so a round that gives nothing up leaves the CPU only when it is preempted.
//! - **At the end** it logs `testing: cpu-state: R rounds, M mismatches, I inherited` (with,
//!   before it, what was inherited and the first mismatch), and exits with the last round's
//!   markers still in every register (so the next qube on this CPU, or this one restarted,
//!   has something to inherit): status 0 when M and I are 0, [`EXIT_RESTART_ME`] while the
//!   qube has restarted fewer than `restarts=` times (default 0), else [`EXIT_DIRTY`].

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt::Write;
use core::time::Duration;

use bulkhead_rt::{Args, Boot, error, info, now_ns};

#[allow(
    unsafe_code,
    reason = "reading and writing CPU registers is what this mode is for"
)]
mod regs;

use regs::{DR6_RESET, DR7_RESET, FCW_RESET, GiveUp, MXCSR_RESET, Round, Snapshot};

/// The top 16 bits of every XMM marker lane (and of the x87 marker's significand), so a
/// marker is recognised whoever wrote it.
pub const SIG: u64 = 0xB7C5;
/// Exit status when something was inherited or did not read back.
pub const EXIT_DIRTY: i32 = 3;
/// Exit status that asks the restart policy for another run (`restarts=`).
pub const EXIT_RESTART_ME: i32 = 1;

/// The registers a round checks, in [`Round`] order: r8-r15, rbx, rbp, DR0-3, DR6, DR7,
/// XMM0-15, MXCSR, the x87 control word, the x87 stack (the value pushed, tag and top).
const NAMES: [&str; 35] = [
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rbx", "rbp", "dr0", "dr1", "dr2", "dr3",
    "dr6", "dr7", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
    "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "mxcsr", "fcw", "st0",
];
const DR: usize = 10;
const XMM: usize = 16;
const MXCSR: usize = 32;
const FCW: usize = 33;
const ST0: usize = 34;

/// x87 control words other than the reset one: all exceptions masked, every precision
/// (24, 53, 64 bits) with every rounding mode.
const FCWS: [u16; 11] = [
    0x007F, 0x047F, 0x087F, 0x0C7F, 0x027F, 0x067F, 0x0A7F, 0x0E7F, 0x077F, 0x0B7F, 0x0F7F,
];
/// DR7 R/W + LEN nibbles that are defined whatever CR4.DE says (R/W 01 or 11, LEN 1, 2, 8 or
/// 4 bytes).
const DR7_NIBBLES: [u64; 6] = [0x1, 0x3, 0x5, 0x7, 0xD, 0xF];

/// SplitMix64 of the seed, round and register slot: a marker.
fn mix(seed: u64, round: u64, slot: u64) -> u64 {
    let mut z = seed
        ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (slot + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `x` made canonical (bits 48-63 copy bit 47), as DR0-DR3 need.
fn canonical(x: u64) -> u64 {
    ((x << 16) as i64 >> 16) as u64
}

/// Writes round `round`'s markers for `seed` into `r`.
fn fill(r: &mut Round, seed: u64, round: u64, ticks_per_ms: u64) {
    const LOW48: u64 = (1 << 48) - 1;
    for (i, xmm) in r.xmm.iter_mut().enumerate() {
        for (l, lane) in xmm.iter_mut().enumerate() {
            *lane = SIG << 48 | mix(seed, round, (2 * i + l) as u64) & LOW48;
        }
    }
    for (i, g) in r.gpr.iter_mut().enumerate() {
        *g = mix(seed, round, 32 + i as u64);
    }
    for i in 0..4 {
        r.dr[i] = canonical(mix(seed, round, 48 + i as u64));
    }
    let m = mix(seed, round, 60);
    r.dr[4] = DR6_RESET | (1 + m % 15);
    let fields = (0..4).fold(0, |acc, k| {
        acc | DR7_NIBBLES[((m >> (8 * k + 8)) % 6) as usize] << (4 * k)
    });
    r.dr[5] = DR7_RESET | fields << 16;
    r.mxcsr = MXCSR_RESET | ((1 + (m >> 40) % 7) as u32) << 13;
    r.fcw = FCWS[((m >> 48) % FCWS.len() as u64) as usize];
    r.x87 = SIG << 47 | mix(seed, round, 61) & ((1 << 47) - 1);
    r.spin_ticks = 2 * ticks_per_ms + mix(seed, round, 62) % ticks_per_ms.max(1);
    r.give_up(give_up(round));
}

/// How round `round` gives up the CPU: Yield in one round of 12, a 1 ms sleep in another,
/// nothing (the timer's preemption only) in the 5 between each (10-15 ms of spinning, more
/// than the hypervisor's 10 ms time slice).
fn give_up(round: u64) -> GiveUp {
    match round % 12 {
        0 => GiveUp::Yield,
        6 => GiveUp::Sleep(1_000_000),
        _ => GiveUp::Preemption,
    }
}

/// What differed from the reset state at start, counted and described.
fn inherited(s: &Snapshot, list: &mut String) -> u32 {
    let mut n = 0;
    let mut note = |what: core::fmt::Arguments<'_>| {
        n += 1;
        let _ = write!(list, " {what}");
    };
    for (i, &v) in s.dr[..4].iter().enumerate() {
        if v != 0 {
            note(format_args!("dr{i}={v:#x}"));
        }
    }
    if s.dr[4] != DR6_RESET {
        note(format_args!("dr6={:#x}", s.dr[4]));
    }
    if s.dr[5] != DR7_RESET {
        note(format_args!("dr7={:#x}", s.dr[5]));
    }
    if s.fx.mxcsr() != MXCSR_RESET {
        note(format_args!("mxcsr={:#x}", s.fx.mxcsr()));
    }
    if s.fx.fcw() != FCW_RESET {
        note(format_args!("fcw={:#x}", s.fx.fcw()));
    }
    let top = (s.fx.fsw() >> 11) & 7;
    if s.fx.ftw() != 0 || top != 0 {
        note(format_args!("x87-stack=tag {:#x} top {top}", s.fx.ftw()));
    }
    for i in 0..8 {
        let (significand, exp) = s.fx.st(i);
        if significand >> 48 == SIG {
            note(format_args!("st{i}={exp:#x}:{significand:#x}"));
        }
    }
    for i in 0..16 {
        let [lo, hi] = s.fx.xmm(i);
        if lo >> 48 == SIG || hi >> 48 == SIG {
            note(format_args!("xmm{i}={hi:#x}:{lo:#x}"));
        }
    }
    n
}

/// Compares what round `r` read back with what it wrote; counts each differing register in
/// `per_reg` and describes the first one ever in `first`.
fn check(r: &Round, round: u64, per_reg: &mut [u64; 35], first: &mut Option<String>) -> u64 {
    let mut bad = 0;
    let mut differ =
        |reg: usize, got: core::fmt::Arguments<'_>, wrote: core::fmt::Arguments<'_>| {
            bad += 1;
            per_reg[reg] += 1;
            if first.is_none() {
                let mut s = String::new();
                let _ = write!(s, "round {round}: {} = {got} (wrote {wrote})", NAMES[reg]);
                *first = Some(s);
            }
        };
    for i in 0..10 {
        let (got, wrote) = (r.gpr_out[i], r.gpr[i]);
        if got != wrote {
            differ(i, format_args!("{got:#x}"), format_args!("{wrote:#x}"));
        }
    }
    for i in 0..6 {
        let (got, wrote) = (r.dr_out[i], r.dr[i]);
        if got != wrote {
            differ(DR + i, format_args!("{got:#x}"), format_args!("{wrote:#x}"));
        }
    }
    for i in 0..16 {
        let (got, wrote) = (r.fx.xmm(i), r.xmm[i]);
        if got != wrote {
            differ(
                XMM + i,
                format_args!("{:#x}:{:#x}", got[1], got[0]),
                format_args!("{:#x}:{:#x}", wrote[1], wrote[0]),
            );
        }
    }
    if r.fx.mxcsr() != r.mxcsr {
        differ(
            MXCSR,
            format_args!("{:#x}", r.fx.mxcsr()),
            format_args!("{:#x}", r.mxcsr),
        );
    }
    if r.fx.fcw() != r.fcw {
        differ(
            FCW,
            format_args!("{:#x}", r.fx.fcw()),
            format_args!("{:#x}", r.fcw),
        );
    }
    let (top, top_after) = ((r.fx.fsw() >> 11) & 7, (r.fsw_after >> 11) & 7);
    if r.x87_out != r.x87 || r.fx.ftw() != 0x80 || top != 7 || top_after != 0 {
        differ(
            ST0,
            format_args!(
                "{:#x} (tag {:#x}, top {top}, then {top_after})",
                r.x87_out,
                r.fx.ftw()
            ),
            format_args!("{:#x} (tag 0x80, top 7, then 0)", r.x87),
        );
    }
    bad
}

/// TSC ticks per millisecond, measured against the hypervisor's clock over 20 ms.
fn ticks_per_ms() -> u64 {
    let (c0, t0) = (regs::tsc(), now_ns());
    bulkhead_rt::sleep(Duration::from_millis(20));
    let (c1, t1) = (regs::tsc(), now_ns());
    ((c1 - c0) as u128 * 1_000_000 / u128::from((t1 - t0).max(1))) as u64
}

/// Runs the mode (see the module documentation); never returns.
pub fn run(boot: &Boot, args: &Args<'_>) -> ! {
    // First, before anything writes the registers this mode checks.
    let start = regs::snapshot();
    let mut found = String::new();
    let inherited = u64::from(inherited(&start, &mut found));
    let marker = args
        .get("marker")
        .map(|m| u64::from_str_radix(m.trim_start_matches("0x"), 16));
    let (marker, seconds, restarts) = match (
        marker,
        args.parse::<u64>("seconds").unwrap_or(Ok(3)),
        args.parse::<u32>("restarts").unwrap_or(Ok(0)),
    ) {
        (Some(Ok(m)), Ok(s), Ok(n)) => (m, s, n),
        _ => {
            error!("testing: cpu-state needs marker=HEX and takes seconds=S restarts=N");
            bulkhead_rt::exit(crate::EXIT_BAD_MODE as u64);
        }
    };
    let per_ms = ticks_per_ms();
    info!(
        "testing: cpu-state: run {}, marker {marker:#x}, {seconds} s, TSC {per_ms} ticks/ms",
        boot.restart_count()
    );
    if inherited > 0 {
        info!("testing: cpu-state: inherited at start:{found}");
    }
    let mut r = Box::new(Round::new(boot.uses_vmcall()));
    let mut per_reg = [0u64; 35];
    let mut first = None;
    let (mut rounds, mut mismatches) = (0u64, 0u64);
    let (mut yields, mut sleeps, mut spins) = (0u64, 0u64, 0u64);
    // Rounds whose spin lost the CPU for over 2 us (a VM exit; under QEMU also the host
    // descheduling QEMU), and for over 1 ms (another qube ran meanwhile); the longest gap.
    let (mut preempted, mut switched, mut longest) = (0u64, 0u64, 0u64);
    // The end is found on the TSC, not with the TimeNs hypercall: a round that gives up
    // nothing must not exit at all (under Bochs only a stretch of 10 ms without a VM exit
    // lets the preemption timer fire).
    let end = regs::tsc() + seconds * 1000 * per_ms;
    while regs::tsc() < end {
        fill(&mut r, marker, rounds, per_ms);
        let how = give_up(rounds);
        regs::run(&mut r);
        match how {
            GiveUp::Yield => yields += 1,
            GiveUp::Sleep(_) => sleeps += 1,
            GiveUp::Preemption => spins += 1,
        }
        preempted += u64::from(r.longest_gap > per_ms / 500);
        switched += u64::from(r.longest_gap > per_ms);
        longest = longest.max(r.longest_gap);
        mismatches += check(&r, rounds, &mut per_reg, &mut first);
        rounds += 1;
    }
    info!(
        "testing: cpu-state: gave up the CPU by {yields} yields, {sleeps} sleeps and \
         {spins} spins only; the spin lost the CPU in {preempted} rounds, {switched} of them \
         for over 1 ms (longest {} us)",
        longest * 1000 / per_ms.max(1)
    );
    if let Some(first) = first {
        info!("testing: cpu-state: first mismatch in {first}");
        let mut by = String::new();
        for (name, n) in NAMES.iter().zip(per_reg) {
            if n > 0 {
                let _ = write!(by, " {name} {n}");
            }
        }
        info!("testing: cpu-state: mismatches by register:{by}");
    }
    info!("testing: cpu-state: {rounds} rounds, {mismatches} mismatches, {inherited} inherited");
    let status = if mismatches > 0 || inherited > 0 {
        EXIT_DIRTY
    } else if boot.restart_count() < restarts {
        info!("testing: cpu-state: exiting with status {EXIT_RESTART_ME} to be restarted");
        EXIT_RESTART_ME
    } else {
        0
    };
    bulkhead_rt::console::flush();
    regs::exit_with_markers(&r, status as u64)
}
