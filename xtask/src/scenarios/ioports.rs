//! I/O ports passed through: a qube that owns the PS/2 controller's ports reads the i8042's
//! status register and gets a real value without a VM exit, a port it does not own still
//! stops it, a qube without ports is stopped for any port as before, and the hypervisor
//! refuses a manifest that gives a qube its own serial port. System:
//! `systems/tests/io-ports.toml`.

use super::{Scenario, boots, containment, expect};
use crate::qemu::{self, BootOutcome, Control, HvEvent, Media};
use anyhow::{Context, Result};

pub const IO_PORTS: Scenario = Scenario {
    name: "io-ports",
    about: "a qube's own I/O ports reach the hardware without exits; other ports still stop it",
    run: io_ports,
};

pub const SYSTEM: &str = "systems/tests/io-ports.toml";

/// Qubes that must be stopped, and words the reason must contain.
pub const STOPS: &[(&str, &str)] = &[
    ("kbd", "I/O port access (in from port 0x61) is not allowed"),
    ("t-io", "I/O port access (out to port 0x80) is not allowed"),
];

/// Heartbeats required after both stops.
const BEATS_AFTER: usize = 5;

/// The checks on the port-owning qube's own lines, shared with the Bochs (VMX) run: the
/// hypervisor's pass-through line, the runtime's refusal, a read without a VM exit that
/// returned a device's value, and the count of exits over many reads. Returns the value
/// read and the exits of the many reads, for the note.
pub fn check_kbd(out: &BootOutcome, reads: u32) -> Result<(String, String)> {
    let has = |words: &str| out.lines.iter().any(|l| l.contains(words));
    expect(
        has("qube kbd: I/O ports 0x60 0x64 passed through, every other port traps"),
        || "no pass-through line for kbd".into(),
    )?;
    expect(
        has("io-ports: the runtime refuses 0x61: I/O port 0x61 is not this qube's"),
        || "the runtime did not refuse 0x61".into(),
    )?;
    let clean = out
        .lines
        .iter()
        .find_map(|l| l.split_once("io-ports: in from 0x64 = ").map(|(_, r)| r))
        .ok_or_else(|| anyhow::anyhow!("kbd never read 0x64 without a VM exit"))?;
    expect(clean.contains("without a VM exit"), || {
        format!("unexpected read line {clean:?}")
    })?;
    let value = clean.split_whitespace().next().unwrap_or("?").to_string();
    expect(value != "0xff", || {
        "0x64 read 0xff: no i8042 answered".into()
    })?;
    let many = out
        .lines
        .iter()
        .find_map(|l| {
            l.split_once(&format!("io-ports: {reads} reads of 0x64 in "))
                .map(|(_, r)| r)
        })
        .ok_or_else(|| anyhow::anyhow!("kbd did not report its {reads} reads"))?;
    let exits: u64 = many
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    // Only the timer's preemptions may fall in the loop; one exit per read would be `reads`.
    expect(exits < u64::from(reads / 10), || {
        format!("{reads} reads of 0x64 took {exits} VM exits")
    })?;
    expect(!has("still running after io-ports"), || {
        "kbd survived its read of 0x61".into()
    })?;
    Ok((value, many.to_string()))
}

fn io_ports() -> Result<String> {
    let a = boots::assemble(SYSTEM)?;
    let opts = boots::options(&a, "max", 60, "io-ports");
    let (mut stopped, mut beats_after) = (0, 0);
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        if matches!(e.hv, Some(HvEvent::Stopped { .. })) {
            stopped += 1;
        } else if stopped >= STOPS.len()
            && e.line.source.as_deref() == Some("heartbeat")
            && e.line.body.contains("heartbeat ")
        {
            beats_after += 1;
        }
        Control::stop_if(beats_after >= BEATS_AFTER)
    })?;
    boots::finished(&out)?;
    containment::check_stops(&out, STOPS)?;
    containment::check_unhurt(&out, &["heartbeat"])?;
    let (value, many) = check_kbd(&out, 1000)?;
    let refused = refuses_a_grant_of_the_console(&a)?;
    Ok(format!(
        "0x64 read {value} without an exit, 1000 reads in {many}, 0x61 and 0x80 still stop; \
         {refused}"
    ))
}

/// The same bundle with kbd's first grant changed to 0x3f8 (COM1): the hypervisor must
/// refuse the manifest before any qube starts, whatever the compiler would have said.
fn refuses_a_grant_of_the_console(a: &crate::bundle::Assembled) -> Result<String> {
    let mut bytes = std::fs::read(&a.bundle_path)?;
    let (at, len) = {
        let b = bulkhead_abi::bundle::Bundle::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("bundle: {e}"))?;
        let m = b.manifest();
        (m.as_ptr() as usize - bytes.as_ptr() as usize, m.len())
    };
    // The port records are the manifest's last bytes: qube, 0, first, last (two each).
    let first = at + len - 2 * bulkhead_abi::manifest::PORT_LEN + 2;
    let record = bytes
        .get_mut(first..first + 4)
        .context("the manifest has no port records")?;
    expect(record == [0x60, 0, 0x60, 0], || {
        format!("kbd's first grant is not 0x60: {record:02x?}")
    })?;
    record.copy_from_slice(&[0xF8, 0x03, 0xF8, 0x03]);
    let path = crate::bundle::out_dir().join("damaged-io-ports-console.bundle");
    std::fs::write(&path, &bytes)?;
    let mut opts = boots::options(a, "max", 30, "damaged-io-ports-console");
    opts.media = Media::Direct {
        kernel: a.hypervisor.elf.clone(),
        bundle: path,
    };
    let out = qemu::boot(&opts, |e| {
        Control::stop_if(matches!(e.hv, Some(HvEvent::Halting)))
    })?;
    let msg = out.panic.clone().unwrap_or_default();
    let expected = "manifest refused: qube kbd is given I/O port 0x3f8, which no qube may own";
    expect(out.halted && msg.contains(expected), || {
        format!("expected a refusal containing {expected:?}, got {msg:?}")
    })?;
    expect(out.ready.is_empty(), || "a qube started anyway".into())?;
    Ok("a manifest giving kbd 0x3f8 is refused at boot".into())
}
