//! Networking through the system qubes: a client unikernel behind sys-firewall resolves a
//! name through the virtual DNS and talks TCP to a server on the host through sys-net's
//! IOMMU-fenced virtio-net card; a denied destination, a spoofed source and a second client
//! are all stopped by the firewall. System: `systems/tests/network.toml`; the host side is
//! [`super::hostnet`]. `network-e1000e` runs the same checks with an Intel e1000e card
//! (`systems/tests/network-e1000e.toml`). `network-restart` crashes sys-net under traffic;
//! `network-flood` has two clients flood the firewall's connection table while a third
//! keeps connecting.

use super::hostnet::{HostServices, TEST_NAME};
use super::{Scenario, boots, expect};
use crate::bundle::Assembled;
use crate::qemu::{self, BootOutcome, Control, HvEvent, Nic, NicModel};
use anyhow::{Result, bail};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const NETWORK: Scenario = Scenario {
    name: "network",
    about: "client -> firewall -> net -> host: DNS, TCP both ways; denied, spoofed and client-to-client traffic dropped",
    run: network,
};

pub const NETWORK_E1000E: Scenario = Scenario {
    name: "network-e1000e",
    about: "the network scenario's checks with an Intel e1000e card (82574L) in sys-net instead of virtio-net",
    run: network_e1000e,
};

/// Boots `system` until every qube of `wait_for` has exited (or a panic, or the timeout).
pub fn boot_until_exited(
    system: &str,
    log: &str,
    wait_for: &[&str],
    timeout_s: u64,
) -> Result<BootOutcome> {
    boot_assembled_until_exited(
        &boots::assemble(system)?,
        log,
        wait_for,
        timeout_s,
        (1, NicModel::default()),
    )
}

/// [`boot_until_exited`] on a machine with `cpus` CPUs and, if given, `ram_mib` of RAM
/// instead of the system description's.
pub fn boot_until_exited_on(
    system: &str,
    log: &str,
    wait_for: &[&str],
    timeout_s: u64,
    (cpus, ram_mib): (u32, Option<u32>),
) -> Result<BootOutcome> {
    let mut a = boots::assemble(system)?;
    if let Some(ram) = ram_mib {
        a.ram_mib = ram;
    }
    boot_assembled_until_exited(&a, log, wait_for, timeout_s, (cpus, NicModel::default()))
}

/// [`boot_until_exited`] for a system already assembled, on a machine with `cpus` CPUs and
/// a network card of this model.
fn boot_assembled_until_exited(
    a: &Assembled,
    log: &str,
    wait_for: &[&str],
    timeout_s: u64,
    (cpus, nic): (u32, NicModel),
) -> Result<BootOutcome> {
    let mut opts = boots::options(a, "max", timeout_s, log);
    opts.smp = cpus;
    if let Some(card) = opts.nic.as_mut() {
        card.model = nic;
    } else {
        opts.nic = Some(Nic {
            model: nic,
            ..Nic::default()
        });
    }
    let mut left: Vec<String> = wait_for.iter().map(|s| s.to_string()).collect();
    let out = qemu::boot(&opts, |e| {
        match &e.hv {
            Some(HvEvent::Panic(_)) => return Control::Stop,
            Some(HvEvent::Exited { qube, .. }) | Some(HvEvent::Stopped { qube, .. }) => {
                left.retain(|q| q != qube)
            }
            _ => {}
        }
        Control::stop_if(left.is_empty())
    })?;
    if let Some(p) = &out.panic {
        bail!("hypervisor panic: {p}");
    }
    Ok(out)
}

/// The status `qube` exited with first, if it exited.
pub fn exit_status(out: &BootOutcome, qube: &str) -> Option<i64> {
    out.exited.iter().find(|(q, _)| q == qube).map(|(_, s)| *s)
}

/// sys-net and sys-firewall were never stopped.
pub fn expect_system_qubes_kept_running(out: &BootOutcome) -> Result<()> {
    for qube in ["net", "firewall"] {
        expect(!out.stopped.iter().any(|(q, _)| q == qube), || {
            format!("{qube} was stopped: {:?}", out.stopped)
        })?;
    }
    Ok(())
}

/// Whether some line contains all of `words`.
pub fn saw(out: &BootOutcome, words: &[&str]) -> bool {
    out.lines
        .iter()
        .any(|l| words.iter().all(|w| l.contains(w)))
}

fn network() -> Result<String> {
    network_on(1, None, "network")
}

fn network_e1000e() -> Result<String> {
    let summary = network_checks(
        "systems/tests/network-e1000e.toml",
        NicModel::E1000e,
        (1, None),
        "network-e1000e",
    )?;
    Ok(format!("e1000e: {summary}"))
}

/// The network scenario on a machine with `cpus` CPUs and `ram_mib` of RAM (if given).
pub fn network_on(cpus: u32, ram_mib: Option<u32>, log: &str) -> Result<String> {
    network_checks(
        "systems/tests/network.toml",
        NicModel::VirtioNet,
        (cpus, ram_mib),
        log,
    )
}

/// The network scenario's checks on `system` (the network test system, sys-net assigned the
/// card `nic`), on a machine with `cpus` CPUs and `ram_mib` of RAM (if given).
fn network_checks(
    system: &str,
    nic: NicModel,
    (cpus, ram_mib): (u32, Option<u32>),
    log: &str,
) -> Result<String> {
    let host = HostServices::start()?;
    let mut a = boots::assemble(system)?;
    if let Some(ram) = ram_mib {
        a.ram_mib = ram;
    }
    let out = boot_assembled_until_exited(&a, log, &["work", "other"], 150, (cpus, nic))?;
    // Let the host's threads finish counting what arrived.
    std::thread::sleep(Duration::from_millis(300));
    let c = &host.counters;
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })?;
    expect(saw(&out, &["IOMMU domain", "net"]), || {
        "sys-net's card was not put in an IOMMU domain".into()
    })?;
    let driver = match nic {
        NicModel::VirtioNet => "virtio-net",
        NicModel::E1000e => "e1000e",
    };
    expect(saw(&out, &["net", &format!("{driver} up in")]), || {
        format!("sys-net did not bring its card up with the {driver} driver")
    })?;
    // The card's MSI or MSI-X, through the IOMMU's interrupt remapping: no polling.
    expect(saw(&out, &["net", "net: card interrupts on"]), || {
        format!("sys-net did not turn its {driver} card's interrupts on")
    })?;
    expect_system_qubes_kept_running(&out)?;
    expect(exit_status(&out, "work") == Some(0), || {
        format!("the client `work` did not exit 0: {:?}", out.exited)
    })?;
    expect(
        saw(&out, &["work", &format!("dns {TEST_NAME} -> 10.0.2.2")]),
        || "work did not resolve the test name through the virtual DNS".into(),
    )?;
    expect(saw(&out, &["work", "tcp ok"]), || {
        "work's TCP exchange failed".into()
    })?;
    expect(c.echo_sessions.load(Ordering::Relaxed) >= 1, || {
        "the host's echo server saw no complete session".into()
    })?;
    expect(c.dns_queries.load(Ordering::Relaxed) >= 2, || {
        format!(
            "the host's DNS server answered {} queries (expected one per client)",
            c.dns_queries.load(Ordering::Relaxed)
        )
    })?;
    expect(saw(&out, &["work", "denied destination blocked"]), || {
        "work did not report the denied destination blocked".into()
    })?;
    expect(
        saw(
            &out,
            &["firewall", "dropped from client work: drop rule", ":5556"],
        ),
        || "the firewall did not log dropping work's packet to the denied port".into(),
    )?;
    expect(c.denied_connections.load(Ordering::Relaxed) == 0, || {
        "a connection to the denied port reached the host".into()
    })?;
    expect(saw(&out, &["work", "sent spoofed packet"]), || {
        "work did not send its spoofed packet".into()
    })?;
    expect(
        saw(
            &out,
            &[
                "firewall",
                "dropped from client work: spoofed source",
                "10.137.0.99",
            ],
        ),
        || "the firewall did not log dropping the spoofed packet".into(),
    )?;
    expect(c.spoof_datagrams.load(Ordering::Relaxed) == 0, || {
        "a packet with a spoofed source reached the host".into()
    })?;
    expect(exit_status(&out, "other") == Some(0), || {
        format!("the second client `other` did not exit 0: {:?}", out.exited)
    })?;
    expect(saw(&out, &["other", "other client unreachable"]), || {
        "the second client reached the first (or did not say)".into()
    })?;
    // The silence is the firewall's doing, not the first client's absence.
    expect(
        saw(
            &out,
            &[
                "firewall",
                "dropped from client other: client isolation",
                "10.137.0.10",
            ],
        ),
        || "the firewall did not log dropping other's packets to work".into(),
    )?;
    Ok(format!(
        "{} bytes echoed, {} DNS queries; denied 0, spoofed 0",
        c.echo_bytes.load(Ordering::Relaxed),
        c.dns_queries.load(Ordering::Relaxed)
    ))
}

pub const NETWORK_RESTART: Scenario = Scenario {
    name: "network-restart",
    about: "sys-net crashes under traffic; it is restarted alone and traffic flows again",
    run: network_restart,
};

fn network_restart() -> Result<String> {
    let host = HostServices::start()?;
    // `crash-after-ms` is a test hook: this system runs the hooked sys-net.
    let a = boots::assemble_with_test_hooks("systems/tests/network-restart.toml")?;
    let out = boot_assembled_until_exited(
        &a,
        "network-restart",
        &["work"],
        150,
        (1, NicModel::default()),
    )?;
    let c = &host.counters;
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })?;
    expect(
        out.exited.iter().any(|(q, s)| q == "net" && *s == 101),
        || format!("sys-net did not crash (panic status 101): {:?}", out.exited),
    )?;
    expect(
        out.restarts.iter().any(|(q, n)| q == "net" && *n == 1),
        || "sys-net was not restarted".into(),
    )?;
    expect(!out.stopped.iter().any(|(q, _)| q == "firewall"), || {
        "the firewall was stopped".into()
    })?;
    let restart_at = out
        .lines
        .iter()
        .position(|l| l.contains("qube net restarting"))
        .ok_or_else(|| anyhow::anyhow!("no `qube net restarting` line"))?;
    let ok_round =
        |l: &String| l.starts_with("work") && l.contains("net-echo: round") && l.contains(" ok");
    let before = out.lines[..restart_at]
        .iter()
        .filter(|l| ok_round(l))
        .count();
    let after = out.lines[restart_at..]
        .iter()
        .filter(|l| ok_round(l))
        .count();
    expect(before >= 1, || {
        "no successful round before sys-net crashed".into()
    })?;
    expect(after >= 1, || {
        "no successful round after sys-net came back".into()
    })?;
    expect(exit_status(&out, "work") == Some(0), || {
        format!("the client did not exit 0: {:?}", out.exited)
    })?;
    Ok(format!(
        "{before} rounds ok before the crash, {after} after the restart; {} echo sessions",
        c.echo_sessions.load(Ordering::Relaxed)
    ))
}

pub const NETWORK_FLOOD: Scenario = Scenario {
    name: "network-flood",
    about: "two clients flood sys-firewall's connection table; a third still connects every time",
    run: network_flood,
};

/// The firewall engine's connection table (`bulkhead_firewall_engine::MAX_CONNECTIONS`).
const FIREWALL_CONNECTIONS: u32 = 8192;

/// The first line of `qube` containing `words`, by position.
fn line_of(out: &BootOutcome, qube: &str, words: &[&str]) -> Option<usize> {
    out.lines
        .iter()
        .position(|l| l.starts_with(qube) && words.iter().all(|w| l.contains(w)))
}

/// The number `qube` logged after `net-flood: done, `.
fn flows_of(out: &BootOutcome, qube: &str) -> Option<u32> {
    let line = out.lines[line_of(out, qube, &["net-flood: done, "])?].as_str();
    let rest = &line[line.find("net-flood: done, ")? + "net-flood: done, ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn network_flood() -> Result<String> {
    let host = HostServices::start()?;
    let out = boot_until_exited(
        "systems/tests/network-flood.toml",
        "network-flood",
        &["synflood", "udpflood", "work"],
        200,
    )?;
    let c = &host.counters;
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })?;
    expect_system_qubes_kept_running(&out)?;
    for flooder in ["synflood", "udpflood"] {
        expect(exit_status(&out, flooder) == Some(0), || {
            format!("{flooder} did not exit 0: {:?}", out.exited)
        })?;
    }
    let syn = flows_of(&out, "synflood").unwrap_or(0);
    let udp = flows_of(&out, "udpflood").unwrap_or(0);
    expect(
        syn >= FIREWALL_CONNECTIONS && udp >= FIREWALL_CONNECTIONS,
        || format!("the flood was too small to fill the table: {syn} SYN and {udp} UDP flows"),
    )?;
    // The table is full once each flooder has sent a table's worth of flows (SYNs last
    // 120 s, unanswered UDP 30 s); the rounds that count ran after that and before the
    // flood ended.
    let full_line = format!("net-flood: {FIREWALL_CONNECTIONS} new flows");
    let full = ["synflood", "udpflood"]
        .map(|q| line_of(&out, q, &[&full_line]))
        .into_iter()
        .collect::<Option<Vec<usize>>>()
        .and_then(|v| v.into_iter().max());
    let ended = ["synflood", "udpflood"]
        .map(|q| line_of(&out, q, &["net-flood: done"]))
        .into_iter()
        .collect::<Option<Vec<usize>>>()
        .and_then(|v| v.into_iter().min());
    let (Some(full), Some(ended)) = (full, ended) else {
        bail!("the flooders did not log filling the table and ending");
    };
    let is_round = |l: &String, how: &str| {
        l.starts_with("work") && l.contains("net-echo: round") && l.contains(how)
    };
    let during = out.lines[full..ended]
        .iter()
        .filter(|l| is_round(l, " ok"))
        .count();
    let failed = out.lines.iter().filter(|l| is_round(l, " failed")).count();
    expect(failed == 0, || {
        format!("{failed} of the third client's rounds failed during the flood")
    })?;
    expect(during >= 3, || {
        format!("only {during} of the third client's rounds ran while the table was full")
    })?;
    expect(exit_status(&out, "work") == Some(0), || {
        format!("the third client did not exit 0: {:?}", out.exited)
    })?;
    for full in ["connection table full", "connection share full"] {
        expect(
            !saw(&out, &["firewall", "dropped from client work", full]),
            || format!("the firewall refused the third client a connection: {full}"),
        )?;
    }
    let total = out.lines.iter().filter(|l| is_round(l, " ok")).count();
    Ok(format!(
        "{syn} SYN and {udp} UDP flows against a {FIREWALL_CONNECTIONS}-entry table; \
         the third client: {total} rounds ok ({during} while the table was full), 0 failed; \
         {} echo sessions",
        c.echo_sessions.load(Ordering::Relaxed)
    ))
}
