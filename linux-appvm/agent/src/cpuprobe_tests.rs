//! Tests of the CPU probe: the pure parts (lists, lines, verdict), and the probe itself on
//! the host's CPUs.

use super::*;

#[test]
fn cpu_lists_read_and_write_as_the_kernel_does() {
    for (text, cpus) in [
        ("0\n", vec![0]),
        ("0-1\n", vec![0, 1]),
        ("0-1,4,6-7", vec![0, 1, 4, 6, 7]),
        ("3", vec![3]),
        ("", vec![]),
    ] {
        assert_eq!(parse_list(text), Some(cpus.clone()), "{text:?}");
        assert_eq!(format_list(&cpus), text.trim(), "{cpus:?}");
    }
    assert_eq!(format_list(&[0, 2, 3, 4, 9]), "0,2-4,9");
    for bad in [
        "x",
        "1-",
        "-1",
        "2-1",
        "0,,1",
        "0-1,1",
        "3,2",
        "0 - 1",
        "0-99999999999",
        "0-8192",
        "18446744073709551616",
    ] {
        assert_eq!(parse_list(bad), None, "{bad:?}");
    }
    assert_eq!(parse_list("0-8191").map(|l| l.len()), Some(8192));
}

#[test]
fn lines_say_what_each_thread_saw() {
    let ran = Pinned::judge(1, 1, 1, 12_345);
    assert!(ran.ok());
    assert_eq!(
        ran.to_string(),
        "cpu 1 ran pinned: getcpu 1, 12345 iterations"
    );
    let moved = Pinned::judge(1, 1, 0, 7);
    assert!(!moved.ok());
    assert_eq!(
        moved.to_string(),
        "cpu 1 WRONG: getcpu 0 (before 1, after 0), 7 iterations"
    );
    assert!(
        Pinned::judge(1, 0, 1, 7)
            .to_string()
            .starts_with("cpu 1 WRONG: getcpu 0 ")
    );
    let p = PingPong {
        a: 0,
        b: 1,
        trips: 2000,
        elapsed: Duration::from_micros(84_250),
        out_of_order: None,
    };
    assert_eq!(
        p.to_string(),
        "2000 round trips between cpu 0 and cpu 1 in 84.2 ms, values all in order"
    );
    let bad = PingPong {
        out_of_order: Some(17),
        ..p
    };
    assert!(bad.to_string().ends_with(", value out of order at 17"));
}

fn good() -> Report {
    Report {
        online: Ok(2),
        online_list: Ok(vec![0, 1]),
        pinned: vec![Pinned::judge(0, 0, 0, 10), Pinned::judge(1, 1, 1, 11)],
        ping_pong: Ok(PingPong {
            a: 0,
            b: 1,
            trips: 2000,
            elapsed: Duration::from_millis(90),
            out_of_order: None,
        }),
    }
}

#[test]
fn the_verdict_names_every_failure() {
    assert_eq!(good().verdict(), "done (ok)");
    let mut one = good();
    one.online = Ok(1);
    one.online_list = Ok(vec![0]);
    one.pinned.truncate(1);
    one.ping_pong = Err("fewer than 2 CPUs to run on (0)".into());
    assert_eq!(
        one.verdict(),
        "done (FAILED: 1 CPU(s) online, 2 needed; no round trips: fewer than 2 CPUs to run on (0))"
    );
    let mut r = good();
    r.online_list = Ok(vec![0, 1, 2]);
    r.pinned[1] = Pinned::judge(1, 0, 0, 3);
    r.pinned.push(Pinned::Failed {
        cpu: 2,
        why: "Invalid argument".into(),
    });
    if let Ok(p) = &mut r.ping_pong {
        p.out_of_order = Some(5);
    }
    assert_eq!(
        r.failures(),
        [
            "sysconf says 2 CPUs online, /sys/devices/system/cpu/online lists 3",
            "cpu 1 ran elsewhere",
            "cpu 2's thread failed",
            "round trip value out of order at 5",
        ]
    );
    let mut r = good();
    r.online = Err("EINVAL".into());
    r.online_list = Err("/sys/devices/system/cpu/online: not found".into());
    r.pinned.clear();
    assert_eq!(
        r.failures(),
        [
            "sysconf: EINVAL",
            "/sys/devices/system/cpu/online: not found",
            "no CPU to pin a thread to",
        ]
    );
}

#[test]
fn the_probe_runs_on_the_hosts_cpus() {
    let mut lines = Vec::new();
    let r = probe(Duration::from_millis(20), 50, &mut |l| {
        lines.push(l.to_string())
    });
    let allowed = cpus::allowed().unwrap();
    assert_eq!(r.pinned.len(), allowed.len());
    // Pinning works wherever the host lets this process run.
    assert!(r.pinned.iter().all(Pinned::ok), "{lines:#?}");
    assert!(r.pinned.iter().all(|p| match p {
        Pinned::Ran { iterations, .. } => *iterations > 0,
        _ => false,
    }));
    assert!(lines[0].contains(" online ("), "{lines:#?}");
    assert!(lines[1].starts_with(&format!("cpu {} ran pinned: getcpu ", allowed[0])));
    if allowed.len() >= 2 {
        let p = r.ping_pong.as_ref().unwrap();
        assert_eq!(
            (p.a, p.b, p.trips, p.out_of_order),
            (allowed[0], allowed[1], 50, None)
        );
    } else {
        assert!(r.ping_pong.is_err());
    }
    assert_eq!(lines.last(), Some(&r.verdict()));
    assert_eq!(lines.len(), 1 + allowed.len() + 2);
}

#[test]
fn a_side_that_cannot_pin_stops_the_other() {
    // CPU 1023 is past any the host has: that side fails, the other sees its pipe closed.
    let e = ping_pong(cpus::allowed().unwrap()[0], 1023, 10).unwrap_err();
    assert!(e.contains("cpu 1023's side: "), "{e}");
    let pinned = run_pinned(&[1023], Duration::from_millis(1));
    assert!(
        matches!(&pinned[..], [Pinned::Failed { cpu: 1023, .. }]),
        "{pinned:?}"
    );
}
