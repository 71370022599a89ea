//! `bulkhead-agent xstate-probe SECONDS [EXIT_MS]` (the `appvm.selftest=xstate` step):
//! checks that this AppVM's extended CPU state survives the hypervisor's preemptions.
//!
//! Each round writes a marker into all 16 YMM registers (all 256 bits) and, when the CPU and
//! kernel offer protection keys, into PKRU (the bits of keys 8..15 only: no page of this
//! process uses those keys), spins on the TSC for [`ROUND_MS`] with no system call (with
//! `EXIT_MS`, a CPUID, which exits to the hypervisor, every `EXIT_MS` milliseconds), and
//! reads everything back, all in one `asm!` block ([`cpu::Usable::round`]). Linux saves and restores
//! a task's registers on its own context switches, so only a hypervisor that does not
//! switch the state between qubes can change them under the spin: any difference is one
//! qube's state reaching another.
//!
//! This module is the pure part (CPUID decoding, markers, comparison, the report), tested on
//! the host; [`cpu`] holds the instructions.

pub mod cpu;

use std::fmt;
use std::time::{Duration, Instant};

/// How long one round keeps its markers in the registers (a few time slices of the
/// hypervisor's 10 ms, and of Linux's).
pub const ROUND_MS: u64 = 30;

/// The YMM registers a round writes.
pub const YMM_REGS: usize = 16;

/// CPUID.1:ECX bit 27: the kernel has set CR4.OSXSAVE (XGETBV/XSETBV usable).
const OSXSAVE: u32 = 1 << 27;
/// CPUID.1:ECX bit 28: AVX.
const AVX: u32 = 1 << 28;
/// CPUID.(7,0):ECX bit 3: protection keys for user pages.
const PKU: u32 = 1 << 3;
/// CPUID.(7,0):ECX bit 4: the kernel has set CR4.PKE (RDPKRU/WRPKRU usable).
const OSPKE: u32 = 1 << 4;
/// XCR0 bits 1 (SSE) and 2 (AVX): the OS saves the YMM registers.
const XCR0_YMM: u64 = 0b110;
/// The PKRU bits a round may change: access- and write-disable of keys 8..15.
pub const PKRU_KEYS_8_15: u32 = 0xffff_0000;

/// All 16 YMM registers, four 64-bit lanes each (lane 0 is bits 0..63), as `vmovdqu` reads
/// and writes them.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Ymm(pub [[u64; 4]; YMM_REGS]);

impl fmt::Debug for Ymm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| Hex256(*r)))
            .finish()
    }
}

/// A 256-bit value printed as one hexadecimal number, most significant lane first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex256(pub [u64; 4]);

impl fmt::Display for Hex256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [l0, l1, l2, l3] = self.0;
        write!(f, "0x{l3:016x}_{l2:016x}_{l1:016x}_{l0:016x}")
    }
}

impl fmt::Debug for Hex256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What CPUID (and XGETBV) say about the state this process may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub avx: bool,
    pub osxsave: bool,
    /// XCR0, when OSXSAVE says XGETBV may be run.
    pub xcr0: Option<u64>,
    pub pku: bool,
    pub ospke: bool,
}

impl Features {
    /// Decodes CPUID.1:ECX and CPUID.(7,0):ECX (0 when leaf 7 does not exist); `xgetbv0`
    /// is called only when OSXSAVE is set.
    pub fn decode(leaf1_ecx: u32, leaf7_ecx: u32, xgetbv0: impl FnOnce() -> u64) -> Features {
        let osxsave = leaf1_ecx & OSXSAVE != 0;
        Features {
            avx: leaf1_ecx & AVX != 0,
            osxsave,
            xcr0: osxsave.then(xgetbv0),
            pku: leaf7_ecx & PKU != 0,
            ospke: leaf7_ecx & OSPKE != 0,
        }
    }

    /// The YMM registers may be used: AVX, enabled by the kernel (OSXSAVE), which saves them
    /// (XCR0 SSE and AVX).
    pub fn ymm(&self) -> bool {
        self.avx && self.osxsave && self.xcr0.is_some_and(|x| x & XCR0_YMM == XCR0_YMM)
    }

    /// RDPKRU/WRPKRU may be used: PKU, enabled by the kernel (CR4.PKE, seen as OSPKE).
    pub fn pkru(&self) -> bool {
        self.pku && self.ospke
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = |v: bool| u8::from(v);
        write!(
            f,
            "CPUID.1:ECX AVX {} OSXSAVE {}, XCR0 ",
            b(self.avx),
            b(self.osxsave)
        )?;
        match self.xcr0 {
            Some(x) => write!(f, "{x:#x}")?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            ", CPUID.7:ECX PKU {} OSPKE {}",
            b(self.pku),
            b(self.ospke)
        )
    }
}

/// The probe's seed: FNV-1a of the qube's name, so two qubes write different markers.
pub fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: a bijection on `u64` that spreads every input bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What round `round` writes into the YMM registers: 64 distinct lanes (the inputs to the
/// bijection `mix` differ by distinct multiples of an odd constant).
pub fn ymm_marker(seed: u64, round: u64) -> Ymm {
    let base = seed ^ mix(round.wrapping_add(0x5851_f42d_4c95_7f2d));
    let mut y = Ymm([[0; 4]; YMM_REGS]);
    for (i, reg) in y.0.iter_mut().enumerate() {
        for (j, lane) in reg.iter_mut().enumerate() {
            let k = (i * 4 + j + 1) as u64;
            *lane = mix(base ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
    }
    y
}

/// What round `round` writes into PKRU's bits for keys 8..15 (never all clear).
pub fn pkru_marker(seed: u64, round: u64) -> u32 {
    let bits = (mix(seed ^ round ^ 0x504b_5255) >> 32) as u32 & PKRU_KEYS_8_15;
    if bits == 0 { 0x5555_0000 } else { bits }
}

/// What one round read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub ymm: Ymm,
    /// `(expected, seen)` when the round used PKRU.
    pub pkru: Option<(u32, u32)>,
}

/// A register that did not read back what the round wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Ymm {
        reg: usize,
        expected: [u64; 4],
        seen: [u64; 4],
    },
    Pkru {
        expected: u32,
        seen: u32,
    },
}

/// The register and the value seen; for a YMM register, which 64-bit lanes differ (lane 3
/// is bits 192..255) rather than the expected value, so that the line fits the console's 160
/// bytes.
impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Ymm {
                reg,
                expected,
                seen,
            } => {
                write!(f, "ymm{reg} = {} (lanes", Hex256(*seen))?;
                for lane in (0..4).rev().filter(|&l| seen[l] != expected[l]) {
                    write!(f, " {lane}")?;
                }
                f.write_str(" differ)")
            }
            Mismatch::Pkru { expected, seen } => {
                write!(f, "pkru = {seen:#010x} (expected {expected:#010x})")
            }
        }
    }
}

/// Every register of `seen` that differs from `written` (YMM in order, then PKRU).
pub fn compare(written: &Ymm, seen: &Seen) -> Vec<Mismatch> {
    let mut out: Vec<Mismatch> = (0..YMM_REGS)
        .filter(|&r| written.0[r] != seen.ymm.0[r])
        .map(|reg| Mismatch::Ymm {
            reg,
            expected: written.0[reg],
            seen: seen.ymm.0[reg],
        })
        .collect();
    if let Some((expected, seen)) = seen.pkru
        && expected != seen
    {
        out.push(Mismatch::Pkru { expected, seen });
    }
    out
}

/// The probe's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub rounds: u64,
    /// Registers (of 16 YMM and PKRU per round) that read back something else.
    pub mismatches: u64,
    pub avx: bool,
    pub pku: bool,
    /// The first mismatch and its round.
    pub first: Option<(u64, Mismatch)>,
}

impl Summary {
    /// Counts one round's mismatches.
    pub fn add_round(&mut self, mismatches: &[Mismatch]) {
        if let (None, Some(m)) = (self.first, mismatches.first()) {
            self.first = Some((self.rounds, *m));
        }
        self.rounds += 1;
        self.mismatches += mismatches.len() as u64;
    }

    /// The line the scenarios parse.
    pub fn line(&self) -> String {
        let yes = |v: bool| if v { "yes" } else { "no" };
        format!(
            "selftest: xstate: {} rounds, {} mismatches (avx {}, pku {})",
            self.rounds,
            self.mismatches,
            yes(self.avx),
            yes(self.pku)
        )
    }
}

/// Runs rounds for `duration` (at least one when the YMM registers are usable), with a CPUID
/// every `exit_every` if given, printing what it found on stdout: the CPU's features, the
/// first mismatch, and [`Summary::line`].
pub fn probe(duration: Duration, seed: u64, exit_every: Option<Duration>) -> Summary {
    let features = cpu::features();
    println!("selftest: xstate: {features}, seed {seed:#018x}");
    let mut summary = Summary {
        avx: features.ymm(),
        pku: features.pkru(),
        ..Summary::default()
    };
    let Some(usable) = cpu::Usable::new(&features) else {
        println!("selftest: xstate: the YMM registers are not usable here: nothing to probe");
        println!("{}", summary.line());
        return summary;
    };
    let per_ms = cpu::tsc_per_ms();
    let ticks = per_ms.saturating_mul(ROUND_MS).max(1);
    let exit_ticks = match exit_every {
        Some(d) => {
            (u128::from(per_ms) * d.as_micros() / 1000).clamp(1, u128::from(u64::MAX)) as u64
        }
        None => u64::MAX,
    };
    let exits = match exit_every {
        Some(d) => format!("a CPUID every {} ms", d.as_millis()),
        None => "no exit".into(),
    };
    println!(
        "selftest: xstate: {ROUND_MS} ms rounds ({ticks} TSC ticks, {exits}) for {:.1} s",
        duration.as_secs_f64()
    );
    let started = Instant::now();
    while summary.rounds == 0 || started.elapsed() < duration {
        let round = summary.rounds;
        let written = ymm_marker(seed, round);
        let seen = usable.round(&written, pkru_marker(seed, round), ticks, exit_ticks);
        summary.add_round(&compare(&written, &seen));
    }
    if let Some((round, m)) = &summary.first {
        println!("selftest: xstate: first mismatch, round {round}: {m}");
    }
    println!("{}", summary.line());
    summary
}

/// The `xstate-probe SECONDS [EXIT_MS]` subcommand; the seed comes from `bulkhead.name=`.
pub fn main(args: &[String], qube: &str) -> Result<Summary, String> {
    let number = |s: &str, max: f64| {
        s.parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0 && *v <= max)
            .ok_or_else(|| format!("bad number {s:?}: 0 to {max}"))
    };
    let (seconds, exit_ms) = match args {
        [s] => (number(s, 3600.0)?, None),
        [s, e] => (number(s, 3600.0)?, Some(number(e, 1000.0)?)),
        _ => return Err("usage: bulkhead-agent xstate-probe SECONDS [EXIT_MS]".into()),
    };
    let exit_every = exit_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0));
    Ok(probe(
        Duration::from_secs_f64(seconds),
        seed(qube),
        exit_every,
    ))
}

#[cfg(test)]
mod tests;
