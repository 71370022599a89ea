//! The `appvm-smp` scenario's reading of console lines, on lines as the console shows them.

use super::*;

/// A passing run's lines, as the serial console shows them (sources padded).
const GOOD: &[&str] = &[
    "hv       | smp: qubes placed (name:CPU) work:0",
    "hv       | qube work: vCPU 1 of 2 placed on CPU 1",
    "work     | [    0.000000] Linux version 6.1.0",
    "hv       | qube work: vCPU 1 started at SIPI vector 0x9a on CPU 1",
    "hv       | qube work ready",
    "work     | selftest: cpus",
    "work     | selftest: cpus: 2 online (0-1), this process may run on 0-1",
    "work     | selftest: cpus: cpu 0 ran pinned: getcpu 0, 10862592 iterations",
    "work     | selftest: cpus: cpu 1 ran pinned: getcpu 1, 6402048 iterations",
    "work     | selftest: cpus: 2000 round trips between cpu 0 and cpu 1 in 198.5 ms, values all in order",
    "work     | selftest: cpus: done (ok)",
    "hv       | qube work powered off (ACPI S5)",
    "hv       | qube work exited with status 0",
];

fn seen(lines: &[&str]) -> Seen {
    let mut s = Seen::default();
    for l in lines {
        s.see(&Line::parse(l));
    }
    s
}

fn outcome(lines: &[&str]) -> BootOutcome {
    let mut out = BootOutcome::default();
    for l in lines {
        match HvEvent::recognise(&Line::parse(l)) {
            Some(HvEvent::Exited { qube, status }) => out.exited.push((qube, status)),
            Some(HvEvent::Stopped { qube, reason }) => out.stopped.push((qube, reason)),
            _ => {}
        }
    }
    out
}

/// GOOD with line `i` replaced by `with` (or removed when `with` is empty).
fn changed(i: usize, with: &str) -> Vec<&str> {
    let mut lines = GOOD.to_vec();
    if with.is_empty() {
        lines.remove(i);
    } else {
        lines[i] = with;
    }
    lines
}

#[test]
fn reads_the_hypervisor_lines() {
    assert_eq!(
        placed("qube work: vCPU 1 of 2 placed on CPU 3", "work"),
        Some((1, 2, 3))
    );
    assert_eq!(
        placed("qube work2: vCPU 1 of 2 placed on CPU 3", "work"),
        None
    );
    assert_eq!(
        started(
            "qube work: vCPU 1 started at SIPI vector 0x9a on CPU 1",
            "work"
        ),
        Some((1, 0x9a, 1))
    );
    assert_eq!(
        started(
            "qube work: vCPU 1 started at SIPI vector 0x9a0 on CPU 1",
            "work"
        ),
        None
    );
    assert_eq!(
        placement("smp: qubes placed (name:CPU) net:1 work:0 work2:1", "work"),
        Some(0)
    );
    assert_eq!(
        placement("smp: qubes placed (name:CPU) work2:1", "work"),
        None
    );
    assert_eq!(
        placement("smp: qubes placed (name:CPU) work:2,3", "work"),
        Some(2)
    );
    assert_eq!(
        placement("smp: qubes placed (name:CPU) work:", "work"),
        None
    );
    assert_eq!(
        round_trips("2000 round trips between cpu 0 and cpu 1 in 8.5 ms, value out of order at 3"),
        Some((2000, 0, 1, 8.5, false))
    );
}

#[test]
fn a_good_run_passes_with_its_figures() {
    let s = seen(GOOD);
    assert_eq!(
        s.check_hypervisor().unwrap(),
        "vCPU 0 on CPU 0, vCPU 1 on CPU 1 (started at SIPI vector 0x9a)"
    );
    assert_eq!(
        s.check_probe().unwrap(),
        "2 CPUs online; pinned threads busy 200 ms at once: cpu 0 10862592, cpu 1 6402048 \
         iterations; 2000 round trips between cpu 0 and cpu 1 in 198.5 ms (99 us each), in order"
    );
    s.check_end(&outcome(GOOD)).unwrap();
}

#[test]
fn today_without_a_second_vcpu_it_fails_naming_the_missing_line() {
    // What a hypervisor without multi-vCPU qubes prints: no vCPU lines, one CPU in Linux.
    let lines = [
        "hv | smp: qubes placed (name:CPU) work:0",
        "work | selftest: cpus: 1 online (0), this process may run on 0",
        "work | selftest: cpus: cpu 0 ran pinned: getcpu 0, 5 iterations",
        "work | selftest: cpus: no round trips: fewer than 2 CPUs to run on (0)",
        "work | selftest: cpus: done (FAILED: 1 CPU(s) online, 2 needed; no round trips: ...)",
    ];
    let s = seen(&lines);
    let e = s.check_hypervisor().unwrap_err().to_string();
    assert!(
        e.starts_with("no `qube work: vCPU 1 of 2 placed on CPU C` line"),
        "{e}"
    );
    let e = s.check_probe().unwrap_err().to_string();
    assert!(
        e.starts_with("Linux has 1 CPU(s) online, not 2 (done (FAILED: 1 CPU(s)"),
        "{e}"
    );
}

#[test]
fn each_wrong_line_fails_with_its_reason() {
    let hv = |lines: &[&str]| seen(lines).check_hypervisor().unwrap_err().to_string();
    let probe = |lines: &[&str]| seen(lines).check_probe().unwrap_err().to_string();
    let end = |lines: &[&str]| {
        seen(lines)
            .check_end(&outcome(lines))
            .unwrap_err()
            .to_string()
    };
    assert!(hv(&changed(0, "")).contains("did both CPUs start?"));
    assert!(
        hv(&changed(1, "hv | qube work: vCPU 1 of 2 placed on CPU 0"))
            .starts_with("both vCPUs placed on CPU 0")
    );
    assert!(hv(&changed(3, "")).contains("did not start vCPU 1"));
    assert_eq!(
        hv(&changed(
            3,
            "hv | qube work: vCPU 1 started at SIPI vector 0x9a on CPU 0"
        )),
        "vCPU 1 was placed on CPU 1 but started on CPU 0"
    );
    assert!(
        probe(&changed(
            8,
            "work | selftest: cpus: cpu 1 WRONG: getcpu 0 (before 1, after 0), 9 iterations"
        ))
        .ends_with("cpu 1 WRONG: getcpu 0 (before 1, after 0), 9 iterations")
    );
    assert!(probe(&changed(7, "")).starts_with("no line from the thread pinned to cpu 0"));
    assert!(
        probe(&changed(9, "work | selftest: cpus: 2000 round trips between cpu 0 and cpu 1 in 9.0 ms, value out of order at 4"))
            .contains("were not in order")
    );
    assert!(
        probe(&changed(
            9,
            "work | selftest: cpus: no round trips: cpu 1's side: Invalid argument"
        ))
        .contains("did not run: no round trips: cpu 1's side: Invalid argument")
    );
    assert_eq!(
        probe(&changed(
            10,
            "work | selftest: cpus: the probe failed (139)"
        )),
        "the probe ended with `the probe failed (139)`"
    );
    // Another qube's probe lines are not this one's.
    assert!(probe(&changed(6, "other | selftest: cpus: 2 online (0-1)")).contains("said nothing"));
    assert_eq!(
        end(&changed(11, "")),
        "no `qube work powered off (ACPI S5)` line"
    );
    assert!(
        end(&changed(
            12,
            "hv | qube work stopped: triple fault (shutdown) at rip 0x1000"
        ))
        .starts_with("the hypervisor said: qube work stopped: triple fault")
    );
    assert!(end(&changed(12, "hv | qube work exited with status 1")).contains("Some(1)"));
    assert!(
        end(&changed(
            4,
            "hv | qube work: vCPU 1 triple fault, halting it"
        ))
        .contains("vCPU 1 triple fault")
    );
    assert!(
        end(&changed(4, "hv | qube work: vCPU 1 stops the qube"))
            .ends_with("qube work: vCPU 1 stops the qube")
    );
}
