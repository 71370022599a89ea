//! qrexec through the admin qube: the unikernel-only check (`qrexec-unikernels`,
//! `systems/tests/qrexec-unikernels.toml`). A test client calls a test server's
//! `test.Echo` (allowed), `test.Denied` (no policy entry), `admin.vm.List` at `@adminvm`,
//! and a qube that does not exist; the admin qube logs each decision once, and the server
//! never hears of the denied call.

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent};
use anyhow::Result;

pub const QREXEC_UNIKERNELS: Scenario = Scenario {
    name: "qrexec-unikernels",
    about: "the admin qube allows, denies and relays service calls between two unikernels by the policy",
    run: unikernels,
};

const SYSTEM: &str = "systems/tests/qrexec-unikernels.toml";

fn unikernels() -> Result<String> {
    let a = boots::assemble(SYSTEM)?;
    let opts = boots::options(&a, "max", 60, "qrexec-unikernels");
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        Control::stop_if(
            e.line.source.as_deref() == Some("client")
                && (e.line.body.contains("checks passed") || e.line.body.contains("FAILED")),
        )
    })?;
    boots::finished(&out)?;
    let client = out.lines_from("client");
    let admin = out.lines_from("admin");
    let server = out.lines_from("server");
    let failed: Vec<&String> = client.iter().filter(|l| l.contains("FAILED")).collect();
    expect(failed.is_empty(), || {
        format!("the client's checks failed: {failed:?}")
    })?;
    expect(
        client.iter().any(|l| l.contains("all 5 checks passed")),
        || format!("the client did not finish: {client:?}"),
    )?;
    // Each decision logged exactly once, naming both qubes.
    for decision in [
        "policy: test.Echo client -> server: allowed to server, policy entry 1",
        "policy: test.Denied client -> server: denied (NoMatch)",
        "policy: admin.vm.List client -> @adminvm: allowed to @adminvm, policy entry 2",
        "policy: test.Echo client -> nosuch: denied (InvalidCall)",
    ] {
        let n = admin.iter().filter(|l| l.contains(decision)).count();
        expect(n == 1, || {
            format!("the admin qube logged {decision:?} {n} times: {admin:?}")
        })?;
    }
    expect(
        server
            .iter()
            .any(|l| l.contains("call test.Echo+ from client")),
        || format!("the server never got the allowed call: {server:?}"),
    )?;
    expect(!server.iter().any(|l| l.contains("test.Denied")), || {
        format!("the denied call reached the server: {server:?}")
    })?;
    let listed = client.iter().filter(|l| l.contains("qvm-ls:")).count();
    Ok(format!(
        "allowed call echoed, denied and malformed calls refused before the server, admin hypercalls refused, \
         qvm-ls listed {} qubes; {} decisions logged once each",
        listed.saturating_sub(1),
        4
    ))
}
