//! Bulk areas in QEMU (`systems/tests/bulk.toml`): 4 MiB lent through a channel's bulk area in
//! 64 KiB buffers, every byte checked, in polling and event mode; three hostile peers, each of
//! which breaks only its own channel while its victim says why (a rewritten buffer, a
//! descriptor outside the pool, buffers never returned); markers that cross both ways in a
//! 2 MiB-page area and a 4 KiB-page one; and a qube stopped by the hypervisor for writing the
//! peer's pool, which it maps read-only, after making it writable in its own page tables.

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent};
use anyhow::{Result, bail};

pub const BULK: Scenario = Scenario {
    name: "bulk",
    about: "4 MiB through a bulk area (poll and event); hostile lenders and borrowers",
    run,
};

/// What a probe says when the peer's markers crossed into its view of the peer's pool.
const MARKERS: &str = "the peer's markers are in its pool; ours are in ours";

/// What the victims must say, by qube.
const VICTIMS: [(&str, &str); 3] = [
    (
        "rewrite-victim",
        "bulk buffer of 65536 bytes at 0x20000 changed after it was lent",
    ),
    (
        "liar-victim",
        "bulk buffer of 65536 bytes at 0x40020000 is not at a page inside the 524288-byte pool",
    ),
    (
        "hoard-victim",
        "the peer holds 128 of the 128 pages of our bulk pool (8 buffers not returned)",
    ),
];

fn run() -> Result<String> {
    let a = boots::assemble("systems/tests/bulk.toml")?;
    let mut opts = boots::options(&a, "max", 240, "bulk");
    opts.extra_args = vec!["-icount".into(), "shift=0,align=off,sleep=off".into()];
    let mut done = 0;
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        let t = &e.line.text;
        if t.contains("bulk-rx: ") || t.contains("bulk channel") || t.contains(MARKERS) {
            done += 1;
        }
        if matches!(&e.hv, Some(HvEvent::Stopped { qube, .. }) if qube == "intruder") {
            done += 1;
        }
        // Two transfers, three victims, markers in four probes, the intruder stopped.
        Control::stop_if(done >= 10)
    })?;
    boots::finished(&out)?;
    let mut figures = Vec::new();
    for mode in ["poll", "event"] {
        let rx = format!("rx-{mode}");
        let line = out
            .lines_from(&rx)
            .into_iter()
            .find(|l| l.contains("bulk-rx: 4194304 bytes in 64 chunks, every byte checked"));
        let Some(line) = line else {
            bail!("{rx}: the 4 MiB did not arrive checked")
        };
        let exited_ok = |q: &str| out.exited.iter().any(|(n, s)| n == q && *s == 0);
        expect(exited_ok(&rx) && exited_ok(&format!("tx-{mode}")), || {
            format!("the {mode} pair did not both exit 0")
        })?;
        let per_mib = line
            .split(": ")
            .last()
            .unwrap_or_default()
            .replace(" of this qube", "");
        figures.push(format!("{mode}: {per_mib}"));
    }
    for (victim, why) in VICTIMS {
        let said = out.lines_from(victim).iter().any(|l| l.contains(why));
        expect(said, || format!("{victim} did not say \"{why}\""))?;
    }
    for q in ["bulk-a", "bulk-b", "owner", "intruder"] {
        let crossed = out.lines_from(q).iter().any(|l| l.contains(MARKERS));
        expect(crossed, || format!("{q}: the markers did not cross"))?;
    }
    let hurt = |q: &str| out.stopped.iter().any(|(n, _)| n == q);
    for q in [
        "rewriter",
        "rewrite-victim",
        "liar",
        "liar-victim",
        "hoarder",
        "hoard-victim",
        "owner",
    ] {
        expect(!hurt(q), || format!("{q} was stopped"))?;
    }
    let intruder = out
        .stopped
        .iter()
        .find(|(n, _)| n == "intruder")
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    let why = "write to guest-physical 0x4040000000, the peer's pool of a channel's bulk area, \
               which it may only read";
    expect(intruder.contains(why), || {
        format!("the intruder was not stopped for writing the peer's pool: {intruder:?}")
    })?;
    Ok(format!(
        "4 MiB checked in each mode ({}); every hostile peer broke only its channel",
        figures.join("; ")
    ))
}
