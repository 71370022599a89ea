//! The `appvm-smp` scenario's reading of console lines, on lines as the console shows them.

use super::*;

/// A passing run's lines, as the serial console shows them (sources padded).
const GOOD: &[&str] = &[
    "hv       | smp: qubes placed (name:CPU) work:0 doomed:1",
    "hv       | qube work: vCPU 1 of 2 placed on CPU 1",
    "hv       | qube doomed: vCPU 1 of 2 placed on CPU 0",
    "work     | [    0.000000] Linux version 6.1.0",
    "doomed   | [    0.000000] Linux version 6.1.0",
    "hv       | qube work: vCPU 1 started at SIPI vector 0x9a on CPU 1",
    "hv       | qube doomed: vCPU 1 started at SIPI vector 0x9a on CPU 0",
    "hv       | qube doomed ready",
    "doomed   | selftest: panic-on:1",
    "doomed   | selftest: panicking the kernel on cpu 1",
    "doomed   | [    9.120000] sysrq: Trigger a crash",
    "doomed   | [    9.121000] Kernel panic - not syncing: sysrq triggered crash",
    "doomed   | [    9.122000] CPU: 1 PID: 95 Comm: sh Not tainted 6.1.0",
    "hv       | qube doomed: vCPU 1: triple fault (rip=0xffffffff81a0b3c1)",
    "hv       | qube doomed stopped: triple fault (rip=0xffffffff81a0b3c1)",
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
            Some(HvEvent::Restarting { qube, attempt, .. }) => out.restarts.push((qube, attempt)),
            _ => {}
        }
    }
    out
}

/// The index of GOOD's one line that contains `part`.
fn index(part: &str) -> usize {
    let found: Vec<usize> = (0..GOOD.len())
        .filter(|&i| GOOD[i].contains(part))
        .collect();
    assert_eq!(found.len(), 1, "{part:?} is in GOOD's lines {found:?}");
    found[0]
}

/// GOOD with the line that contains `part` replaced by `with` (or removed when `with` is
/// empty).
fn changed<'a>(part: &str, with: &'a str) -> Vec<&'a str> {
    let i = index(part);
    let mut lines = GOOD.to_vec();
    if with.is_empty() {
        lines.remove(i);
    } else {
        lines[i] = with;
    }
    lines
}

/// GOOD with `extra` inserted after the line that contains `part`.
fn added<'a>(part: &str, extra: &'a str) -> Vec<&'a str> {
    let mut lines = GOOD.to_vec();
    lines.insert(index(part) + 1, extra);
    lines
}

fn hv(lines: &[&str]) -> String {
    seen(lines).check_hypervisor().unwrap_err().to_string()
}

fn probe(lines: &[&str]) -> String {
    seen(lines).check_probe().unwrap_err().to_string()
}

fn end(lines: &[&str]) -> String {
    seen(lines)
        .check_end(&outcome(lines))
        .unwrap_err()
        .to_string()
}

fn doomed(lines: &[&str]) -> String {
    seen(lines)
        .check_doomed(&outcome(lines))
        .unwrap_err()
        .to_string()
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
        placement("smp: qubes placed (name:CPU) work:0 doomed:1", "doomed"),
        Some(1)
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
fn reads_the_lines_of_the_fault_on_vcpu_1() {
    assert_eq!(
        vcpu_fault(
            "qube doomed: vCPU 1: triple fault (rip=0xffffffff81a0b3c1)",
            "doomed"
        ),
        Some((1, "triple fault (rip=0xffffffff81a0b3c1)"))
    );
    assert_eq!(
        vcpu_fault("qube doomed2: vCPU 1: triple fault (rip=0x1)", "doomed"),
        None
    );
    // The other lines a secondary vCPU prints are not faults.
    for body in [
        "qube doomed: vCPU 1 stops the qube",
        "qube doomed: vCPU 1 started at SIPI vector 0x9a on CPU 0",
        "qube doomed: vCPU 1 of 2 placed on CPU 0",
        "qube doomed: vCPU 1 not created: no memory",
        "qube doomed stopped: triple fault (rip=0x1)",
    ] {
        assert_eq!(vcpu_fault(body, "doomed"), None, "{body}");
    }
    assert!(about(
        "qube doomed stopped: triple fault (rip=0x1)",
        "doomed"
    ));
    assert!(about(
        "qube doomed: vCPU 1: triple fault (rip=0x1)",
        "doomed"
    ));
    assert!(!about(
        "qube doomed2 stopped: triple fault (rip=0x1)",
        "doomed"
    ));
    assert!(!about(
        "qube work stopped: triple fault (rip=0x1)",
        "doomed"
    ));
    assert!(!about(
        "smp: qubes placed (name:CPU) work:0 doomed:1",
        "doomed"
    ));
    assert_eq!(
        panicking("selftest: panicking the kernel on cpu 1"),
        Some(1)
    );
    assert_eq!(panicking("selftest: panicking the kernel"), None);
    assert_eq!(panicking("selftest: panicking the kernel on cpu x"), None);
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
    assert_eq!(
        s.check_doomed(&outcome(GOOD)).unwrap(),
        "doomed: vCPU 0 on CPU 1, vCPU 1 on CPU 0; panicked on vCPU 1 (CPU 0), triple fault \
         (rip=0xffffffff81a0b3c1) contained to it, not restarted"
    );
}

#[test]
fn today_without_a_second_vcpu_it_fails_naming_the_missing_line() {
    // What a hypervisor without multi-vCPU qubes prints: no vCPU lines, one CPU in Linux.
    let lines = [
        "hv | smp: qubes placed (name:CPU) work:0 doomed:1",
        "work | selftest: cpus: 1 online (0), this process may run on 0",
        "work | selftest: cpus: cpu 0 ran pinned: getcpu 0, 5 iterations",
        "work | selftest: cpus: no round trips: fewer than 2 CPUs to run on (0)",
        "work | selftest: cpus: done (FAILED: 1 CPU(s) online, 2 needed; no round trips: ...)",
        "doomed | selftest: panicking the kernel on cpu 1",
        "doomed | taskset: can't set pid 95's affinity: Invalid argument",
        "hv | qube doomed powered off (ACPI S5)",
        "hv | qube doomed exited with status 0",
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
    let e = s.check_doomed(&outcome(&lines)).unwrap_err().to_string();
    assert!(
        e.starts_with("no `qube doomed: vCPU 1 of 2 placed on CPU C` line"),
        "{e}"
    );
}

#[test]
fn each_wrong_line_of_work_fails_with_its_reason() {
    assert!(hv(&changed("smp: qubes placed", "")).contains("did both CPUs start?"));
    assert!(
        hv(&changed(
            "qube work: vCPU 1 of 2",
            "hv | qube work: vCPU 1 of 2 placed on CPU 0"
        ))
        .starts_with("work: both vCPUs placed on CPU 0")
    );
    assert!(hv(&changed("qube work: vCPU 1 started", "")).contains("did not start vCPU 1"));
    assert_eq!(
        hv(&changed(
            "qube work: vCPU 1 started",
            "hv | qube work: vCPU 1 started at SIPI vector 0x9a on CPU 0"
        )),
        "work: vCPU 1 was placed on CPU 1 but started on CPU 0"
    );
    // doomed's vCPU lines are not work's.
    assert!(
        hv(&changed(
            "qube work: vCPU 1 of 2",
            "hv | qube doomed: vCPU 1 of 2 placed on CPU 1"
        ))
        .starts_with("no `qube work: vCPU 1 of 2 placed on CPU C` line")
    );
    assert!(
        probe(&changed(
            "cpu 1 ran pinned",
            "work | selftest: cpus: cpu 1 WRONG: getcpu 0 (before 1, after 0), 9 iterations"
        ))
        .ends_with("cpu 1 WRONG: getcpu 0 (before 1, after 0), 9 iterations")
    );
    assert!(
        probe(&changed("cpu 0 ran pinned", ""))
            .starts_with("no line from the thread pinned to cpu 0")
    );
    assert!(
        probe(&changed("round trips between", "work | selftest: cpus: 2000 round trips between cpu 0 and cpu 1 in 9.0 ms, value out of order at 4"))
            .contains("were not in order")
    );
    assert!(
        probe(&changed(
            "round trips between",
            "work | selftest: cpus: no round trips: cpu 1's side: Invalid argument"
        ))
        .contains("did not run: no round trips: cpu 1's side: Invalid argument")
    );
    assert_eq!(
        probe(&changed(
            "done (ok)",
            "work | selftest: cpus: the probe failed (139)"
        )),
        "the probe ended with `the probe failed (139)`"
    );
    // Another qube's probe lines are not this one's.
    assert!(
        probe(&changed(
            "2 online",
            "other | selftest: cpus: 2 online (0-1)"
        ))
        .contains("said nothing")
    );
    assert_eq!(
        end(&changed("qube work powered off", "")),
        "no `qube work powered off (ACPI S5)` line"
    );
    assert!(
        end(&changed(
            "qube work exited",
            "hv | qube work stopped: triple fault (shutdown) at rip 0x1000"
        ))
        .starts_with("the hypervisor said: qube work stopped: triple fault")
    );
    assert!(
        end(&changed(
            "qube work exited",
            "hv | qube work exited with status 1"
        ))
        .contains("Some(1)")
    );
    assert!(
        end(&changed(
            "qube work ready",
            "hv | qube work: vCPU 1: triple fault (rip=0x1)"
        ))
        .ends_with("qube work: vCPU 1: triple fault (rip=0x1)")
    );
    assert!(
        end(&changed(
            "qube work ready",
            "hv | qube work: vCPU 1 stops the qube"
        ))
        .ends_with("qube work: vCPU 1 stops the qube")
    );
}

#[test]
fn the_trouble_of_work_is_only_lines_about_work() {
    // GOOD holds doomed's fault and stop: they are not work's trouble.
    assert!(seen(GOOD).trouble.is_empty());
    // A third qube's stop is.
    assert!(
        end(&added(
            "qube work ready",
            "hv | qube other stopped: triple fault (rip=0x1)"
        ))
        .ends_with("qube other stopped: triple fault (rip=0x1)")
    );
}

#[test]
fn each_wrong_line_of_doomed_fails_with_its_reason() {
    assert_eq!(
        doomed(&changed(
            "qube doomed: vCPU 1 of 2",
            "hv | qube doomed: vCPU 1 of 2 placed on CPU 1"
        )),
        "doomed: both vCPUs placed on CPU 1: the second should run on the other CPU"
    );
    assert!(
        doomed(&changed("qube doomed: vCPU 1 started", ""))
            .starts_with("no `qube doomed: vCPU 1 started at SIPI vector 0xVV on CPU 0` line")
    );
    assert!(
        doomed(&changed("panicking the kernel", ""))
            .starts_with("no `selftest: panicking the kernel on cpu 1` line from doomed")
    );
    // The line from work's console is not doomed's.
    assert!(
        doomed(&changed(
            "panicking the kernel",
            "work | selftest: panicking the kernel on cpu 1"
        ))
        .starts_with("no `selftest: panicking the kernel on cpu 1` line from doomed")
    );
    assert_eq!(
        doomed(&changed(
            "panicking the kernel",
            "doomed | selftest: panicking the kernel on cpu 0"
        )),
        "doomed panicked its kernel on cpu 0, not 1"
    );
    // A fault on vCPU 0 is stopped by the primary, with no vCPU line.
    assert_eq!(
        doomed(&changed("qube doomed: vCPU 1: triple", "")),
        "no `qube doomed: vCPU 1: triple fault (rip=0x...)` line: doomed stopped (triple \
         fault (rip=0xffffffff81a0b3c1)) with no vCPU's fault before"
    );
    assert_eq!(
        doomed(&changed(
            "qube doomed: vCPU 1: triple",
            "hv | qube doomed: vCPU 1 stops the qube"
        )),
        "no `qube doomed: vCPU 1: triple fault (rip=0x...)` line: doomed stopped (triple \
         fault (rip=0xffffffff81a0b3c1)) with no vCPU's fault before (qube doomed: vCPU 1 \
         stops the qube)"
    );
    assert_eq!(
        doomed(&changed(
            "qube doomed: vCPU 1: triple",
            "hv | qube doomed: vCPU 1 ends the qube (status 0)"
        )),
        "no `qube doomed: vCPU 1: triple fault (rip=0x...)` line: doomed stopped (triple \
         fault (rip=0xffffffff81a0b3c1)) with no vCPU's fault before (qube doomed: vCPU 1 \
         ends the qube (status 0))"
    );
    assert_eq!(
        doomed(&changed(
            "qube doomed: vCPU 1: triple",
            "hv | qube doomed: vCPU 1: write to guest-physical 0x1000 (rip=0x2)"
        )),
        "doomed: vCPU 1: write to guest-physical 0x1000 (rip=0x2), not a triple fault on vCPU 1"
    );
    assert_eq!(
        doomed(&changed("qube doomed stopped", "")),
        "doomed's vCPU 1 reported `triple fault (rip=0xffffffff81a0b3c1)` but the qube was \
         not stopped"
    );
    assert_eq!(
        doomed(&changed(
            "qube doomed stopped",
            "hv | qube doomed stopped: triple fault (rip=0x1234)"
        )),
        "doomed's vCPU 1 reported `triple fault (rip=0xffffffff81a0b3c1)` but the qube \
         stopped with `triple fault (rip=0x1234)`"
    );
    // The stop before the fault.
    let mut swapped = GOOD.to_vec();
    swapped.swap(
        index("qube doomed: vCPU 1: triple"),
        index("qube doomed stopped"),
    );
    assert_eq!(
        doomed(&swapped),
        "doomed stopped (triple fault (rip=0xffffffff81a0b3c1)) before its vCPU 1 reported \
         `triple fault (rip=0xffffffff81a0b3c1)`"
    );
    assert_eq!(
        doomed(&added(
            "qube doomed stopped",
            "hv | qube doomed restarting (attempt 1 of 3)"
        )),
        "doomed was restarted 1 time(s): its policy is never"
    );
    assert_eq!(
        doomed(&added(
            "qube doomed stopped",
            "hv | qube doomed: vCPU 1: triple fault (rip=0x5)"
        )),
        "doomed's vCPUs faulted more than once: vCPU 1: triple fault (rip=0xffffffff81a0b3c1); \
         vCPU 1: triple fault (rip=0x5)"
    );
    // Without its panic (taskset missing, say) it powers off instead.
    let mut off = changed(
        "qube doomed: vCPU 1: triple",
        "hv | qube doomed powered off (ACPI S5)",
    );
    off[index("qube doomed stopped")] = "hv | qube doomed exited with status 0";
    assert_eq!(
        doomed(&off),
        "no `qube doomed: vCPU 1: triple fault (rip=0x...)` line: doomed was not stopped \
         (qube doomed powered off (ACPI S5))"
    );
    // work is judged without doomed's stop.
    assert!(seen(&off).check_end(&outcome(&off)).is_ok());
}
