//! Bulk areas with a Linux end (`systems/tests/appvm-bulk.toml`): the AppVM's agent
//! (`bulk-test`, over the channel device's BAR4) and testing unikernels (`bulk-tx`,
//! `bulk-rx`) move 8 MiB each way, every byte checked, the AppVM side A of one channel and
//! side B of the other; a hostile AppVM (a descriptor outside its pool) and a hostile unikernel
//! (the same against the AppVM) each break only their channel while the victim says why and
//! goes on; and the AppVM is stopped by the hypervisor, and only it, for writing the peer's
//! pool, which it maps read-only.

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent};
use anyhow::Result;

pub const APPVM_BULK: Scenario = Scenario {
    name: "appvm-bulk",
    about: "8 MiB each way between a Linux AppVM and unikernels through bulk areas (BAR4); hostile ends on both sides",
    run,
};

/// What a victim says about a descriptor 1 GiB past the third 64 KiB buffer of a 512 KiB pool.
const OUTSIDE: &str =
    "bulk buffer of 65536 bytes at 0x40020000 is not at a page inside the 524288-byte pool";

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/tests/appvm-bulk.toml")?;
    let opts = boots::options(&a, "max", 600, "appvm-bulk");
    // The AppVM's last step gets it stopped (or, if the write went through, it powers off).
    let out = qemu::boot(&opts, |e| {
        let end = match &e.hv {
            Some(HvEvent::Panic(_)) => true,
            Some(HvEvent::Stopped { qube, .. } | HvEvent::Exited { qube, .. }) => qube == "appvm",
            _ => false,
        };
        Control::stop_if(end)
    })?;
    boots::finished(&out)?;
    let appvm = out.lines_from("appvm");
    let said = |q: &[String], words: &str| q.iter().any(|l| l.contains(words));
    let exited_ok = |q: &str| out.exited.iter().any(|(n, s)| n == q && *s == 0);
    expect(
        said(
            &appvm,
            "selftest: bulk-rx: 8388608 bytes in 128 chunks, every byte checked",
        ) && exited_ok("source"),
        || "the 8 MiB lent to the AppVM did not arrive checked".into(),
    )?;
    let sink = out.lines_from("sink");
    expect(
        said(
            &sink,
            "bulk-rx: 8388608 bytes in 128 chunks, every byte checked",
        ) && exited_ok("sink"),
        || "the 8 MiB the AppVM lent did not arrive checked".into(),
    )?;
    // (The hypervisor cuts long console lines: look at the victim's text as one.)
    let victim = out.lines_from("victim").concat();
    expect(victim.contains(OUTSIDE), || {
        format!("the AppVM's victim did not say \"{OUTSIDE}\"")
    })?;
    expect(
        appvm
            .iter()
            .any(|l| l.contains("bulk-rx: channel from-liar broken: ") && l.contains(OUTSIDE)),
        || format!("the AppVM did not say \"{OUTSIDE}\" of the liar"),
    )?;
    expect(said(&appvm, "selftest: bulk-write-peer: writing"), || {
        "the AppVM did not reach its last step (writing the peer's pool)".into()
    })?;
    let stopped: Vec<&(String, String)> = out.stopped.iter().collect();
    let why = "the peer's pool of a channel's bulk area, which it may only read";
    expect(
        stopped.len() == 1 && stopped[0].0 == "appvm" && stopped[0].1.contains(why),
        || format!("only the AppVM should be stopped, for writing the peer's pool: {stopped:?}"),
    )?;
    let ms = |q: &[String], what: &str| {
        q.iter()
            .find_map(|l| {
                l.split_once(what)
                    .map(|(_, r)| r.trim_matches(['(', ')']).to_string())
            })
            .unwrap_or_default()
    };
    Ok(format!(
        "8 MiB each way checked (the AppVM borrowing in {}, lending in {}); both hostile ends broke only their channel; the AppVM stopped for writing the peer's pool",
        ms(&appvm, "every byte checked "),
        ms(&appvm, "lent and returned ")
    ))
}
