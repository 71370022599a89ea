use super::*;
use std::collections::BTreeSet;

#[test]
fn decodes_cpuid_and_xcr0() {
    let leaf1 = OSXSAVE | AVX;
    let f = Features::decode(leaf1, PKU | OSPKE, || 0x207);
    assert!(f.ymm() && f.pkru());
    assert_eq!(
        f.to_string(),
        "CPUID.1:ECX AVX 1 OSXSAVE 1, XCR0 0x207, CPUID.7:ECX PKU 1 OSPKE 1"
    );
    // AVX without the kernel's OSXSAVE: XGETBV is not run, nothing is usable.
    let f = Features::decode(AVX, PKU, || panic!("XGETBV without OSXSAVE"));
    assert!(!f.ymm() && !f.pkru());
    assert_eq!(
        f.to_string(),
        "CPUID.1:ECX AVX 1 OSXSAVE 0, XCR0 -, CPUID.7:ECX PKU 1 OSPKE 0"
    );
    // XSAVE on, but the kernel does not save the YMM state (XCR0 = x87 | SSE).
    assert!(!Features::decode(leaf1, 0, || 0b11).ymm());
    // What the hypervisor shows Linux today: neither XSAVE nor OSXSAVE.
    let f = Features::decode(0, 0, || unreachable!());
    assert_eq!(f, Features::default());
    assert!(!f.ymm());
}

#[test]
fn markers_are_distinct_and_fill_every_lane() {
    let s = seed("work");
    assert_ne!(s, seed("personal"));
    let y = ymm_marker(s, 0);
    let lanes: BTreeSet<u64> = y.0.iter().flatten().copied().collect();
    assert_eq!(lanes.len(), 4 * YMM_REGS, "every lane differs");
    assert!(
        y.0.iter().all(|r| r[2] != 0 && r[3] != 0),
        "upper halves set"
    );
    assert_ne!(y, ymm_marker(s, 1));
    assert_ne!(y, ymm_marker(seed("personal"), 0));
    assert_eq!(y, ymm_marker(s, 0), "deterministic");
}

#[test]
fn pkru_markers_stay_in_keys_8_to_15() {
    let mut values = BTreeSet::new();
    for name in ["work", "personal", "appvm"] {
        for round in 0..1000 {
            let p = pkru_marker(seed(name), round);
            assert_eq!(p & !PKRU_KEYS_8_15, 0, "keys 0..7 untouched");
            assert_ne!(p, 0);
            values.insert(p);
        }
    }
    assert!(values.len() > 1000, "markers vary: {}", values.len());
}

#[test]
fn compare_names_every_register_that_differs() {
    let w = ymm_marker(1, 2);
    let mut seen = Seen {
        ymm: w,
        pkru: Some((0x1234_0000, 0x1234_0000)),
    };
    assert!(compare(&w, &seen).is_empty());
    seen.ymm.0[15][3] ^= 1 << 63;
    seen.ymm.0[3][0] = 0;
    seen.pkru = Some((0x1234_0000, 0x5555_0000));
    let m = compare(&w, &seen);
    assert_eq!(m.len(), 3);
    assert!(matches!(m[0], Mismatch::Ymm { reg: 3, .. }));
    assert!(matches!(m[1], Mismatch::Ymm { reg: 15, .. }));
    assert_eq!(m[2].to_string(), "pkru = 0x55550000 (expected 0x12340000)");
    let one = Mismatch::Ymm {
        reg: 7,
        expected: [1, 2, 3, 4],
        seen: [1, 2, 3, 0xffff],
    };
    assert_eq!(
        one.to_string(),
        "ymm7 = 0x000000000000ffff_0000000000000003_0000000000000002_0000000000000001 \
         (lanes 3 differ)"
    );
    let line = format!(
        "selftest: xstate: first mismatch, round 99999: {}",
        Mismatch::Ymm {
            reg: 15,
            expected: [0; 4],
            seen: [u64::MAX; 4]
        }
    );
    assert!(
        line.ends_with("(lanes 3 2 1 0 differ)") && line.len() <= 160,
        "{line}"
    );
    // Without PKRU, only the YMM registers count.
    seen.pkru = None;
    assert_eq!(compare(&w, &seen).len(), 2);
}

#[test]
fn summary_counts_and_keeps_the_first() {
    let mut s = Summary {
        avx: true,
        ..Summary::default()
    };
    let m = Mismatch::Pkru {
        expected: 1,
        seen: 2,
    };
    s.add_round(&[]);
    s.add_round(&[m, m]);
    s.add_round(&[Mismatch::Pkru {
        expected: 3,
        seen: 4,
    }]);
    assert_eq!(s.first, Some((1, m)));
    assert_eq!(
        s.line(),
        "selftest: xstate: 3 rounds, 3 mismatches (avx yes, pku no)"
    );
    assert_eq!(
        Summary::default().line(),
        "selftest: xstate: 0 rounds, 0 mismatches (avx no, pku no)"
    );
}

#[test]
fn arguments() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(main(&args(&[]), "q").is_err());
    assert!(main(&args(&["x"]), "q").is_err());
    assert!(main(&args(&["-1"]), "q").is_err());
    assert!(main(&args(&["1", "2", "3"]), "q").is_err());
    assert!(main(&args(&["1", "x"]), "q").is_err());
    assert!(main(&args(&["1", "2000"]), "q").is_err());
}

/// The probe on this machine's CPU, when it has AVX: one round (and the whole probe, briefly)
/// reads back what it wrote.
#[test]
fn a_round_on_this_cpu() {
    let f = cpu::features();
    assert_eq!(f.ymm(), std::arch::is_x86_feature_detected!("avx"));
    let Some(usable) = cpu::Usable::new(&f) else {
        eprintln!("no AVX here: the round is not run");
        return;
    };
    let written = ymm_marker(seed("host"), 7);
    let seen = usable.round(&written, pkru_marker(seed("host"), 7), 100_000, 1000);
    assert_eq!(compare(&written, &seen), vec![]);
    assert_eq!(seen.pkru.is_some(), f.pkru());
    let s = probe(Duration::from_millis(100), seed("host"), None);
    assert!(s.avx && s.rounds >= 1 && s.mismatches == 0, "{s:?}");
    let s = probe(
        Duration::from_millis(100),
        seed("host"),
        Some(Duration::from_millis(1)),
    );
    assert!(s.avx && s.rounds >= 1 && s.mismatches == 0, "{s:?}");
}

/// The probe finds a foreign write: a parent process stops the child in the middle of its
/// spin with ptrace and flips one bit of YMM15's upper half through the child's XSAVE area
/// (as a hypervisor that does not switch the state would let another qube do). Skipped
/// without AVX or when ptrace is not allowed here.
#[test]
#[allow(unsafe_code)]
fn a_foreign_write_is_found() {
    const NT_X86_XSTATE: libc::c_int = 0x202;
    const PTRACE_INTERRUPT: libc::c_uint = 0x4207;
    /// YMM15's upper half in the standard XSAVE layout (component 2 at 576, 16 bytes each).
    const YMM15_HI: usize = 576 + 15 * 16;
    let Some(usable) = cpu::Usable::new(&cpu::features()) else {
        eprintln!("no AVX here: not run");
        return;
    };
    let written = ymm_marker(seed("victim"), 1);
    let ticks = cpu::tsc_per_ms().saturating_mul(1500);
    let mut fds = [0; 2];
    // SAFETY: `fds` is an array of two descriptors for the kernel to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only runs the round (no allocation, no lock), writes to the pipe
    // and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let seen = usable.round(&written, 0, ticks, ticks / 1500);
        // SAFETY: `seen.ymm` is 512 plain bytes; `_exit` skips the harness's destructors.
        unsafe {
            libc::write(fds[1], (&raw const seen.ymm).cast(), size_of::<Ymm>());
            libc::_exit(0);
        }
    }
    assert!(pid > 0);
    std::thread::sleep(Duration::from_millis(300));
    let mut area = vec![0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: area.as_mut_ptr().cast(),
        iov_len: area.len(),
    };
    let mut status = 0;
    // SAFETY: ptrace requests on our own child; `iov` describes `area`, which outlives the
    // calls; `status` is a valid out-pointer.
    let attached = unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) != 0 {
            false
        } else {
            libc::ptrace(PTRACE_INTERRUPT, pid, 0, 0);
            libc::waitpid(pid, &mut status, libc::__WALL);
            assert_eq!(
                libc::ptrace(libc::PTRACE_GETREGSET, pid, NT_X86_XSTATE, &mut iov),
                0
            );
            area[YMM15_HI + 15] ^= 0x80;
            assert_eq!(
                libc::ptrace(libc::PTRACE_SETREGSET, pid, NT_X86_XSTATE, &mut iov),
                0
            );
            libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
            true
        }
    };
    let mut back = Ymm([[0; 4]; YMM_REGS]);
    if attached {
        // SAFETY: reads at most 512 bytes into `back`, plain integers.
        let n = unsafe { libc::read(fds[0], (&raw mut back).cast(), size_of::<Ymm>()) };
        assert_eq!(n, size_of::<Ymm>() as isize);
    }
    // SAFETY: reaps our child; `status` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !attached {
        eprintln!("ptrace is not allowed here: not run");
        return;
    }
    let m = compare(
        &written,
        &Seen {
            ymm: back,
            pkru: None,
        },
    );
    let mut flipped = written.0[15];
    flipped[3] ^= 1 << 63;
    assert_eq!(
        m,
        vec![Mismatch::Ymm {
            reg: 15,
            expected: written.0[15],
            seen: flipped
        }]
    );
}
