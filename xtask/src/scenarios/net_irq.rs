//! sys-net with and without its card's interrupts, in the same run: `systems/tests/net-idle.toml`
//! (sys-net asks for the card's MSI-X, delivered through VT-d interrupt remapping) and
//! `net-idle-polling.toml` (`irq=off`: it polls the card every millisecond). Each sys-net
//! reports the VM exits it caused while idle (`net: idle check: ...`); the interrupt run
//! must say its interrupts are on and cause far fewer exits than the polling one.

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent};
use anyhow::{Context, Result};

pub const NETWORK_INTERRUPTS: Scenario = Scenario {
    name: "network-interrupts",
    about: "idle sys-net: VM exits per second with its card's MSI-X (through interrupt remapping) against polling",
    run: network_interrupts,
};

/// One boot: the `net: idle check` line's exits per second, and the line saying how sys-net
/// watches its card.
fn idle_exits(system: &str, log: &str) -> Result<(f64, String)> {
    let a = boots::assemble(system)?;
    let opts = boots::options(&a, "max", 120, log);
    let out = qemu::boot(&opts, |e| {
        Control::stop_if(
            matches!(e.hv, Some(HvEvent::Panic(_))) || e.line.text.contains("net: idle check:"),
        )
    })?;
    boots::finished(&out)?;
    let lines = out.lines_from("net");
    let check = lines
        .iter()
        .find(|l| l.contains("net: idle check:"))
        .context("sys-net printed no `net: idle check` line")?;
    let per_second =
        per_second(check).with_context(|| format!("no exits per second in `{check}`"))?;
    let how = lines
        .iter()
        .find(|l| l.contains("net: card interrupts"))
        .context("sys-net did not say whether its card interrupts")?
        .clone();
    Ok((per_second, how))
}

/// The number before ` per second` in `line` (after a space or an opening parenthesis).
fn per_second(line: &str) -> Option<f64> {
    let (before, _) = line.split_once(" per second")?;
    before.rsplit([' ', '(']).next()?.parse().ok()
}

fn network_interrupts() -> Result<String> {
    let (irq, irq_how) = idle_exits("systems/tests/net-idle.toml", "network-interrupts-on")?;
    let (poll, poll_how) = idle_exits(
        "systems/tests/net-idle-polling.toml",
        "network-interrupts-off",
    )?;
    expect(irq_how.contains("net: card interrupts on"), || {
        format!("with interrupt remapping, sys-net said: {irq_how}")
    })?;
    expect(poll_how.contains("polling the card"), || {
        format!("with irq=off, sys-net said: {poll_how}")
    })?;
    // Polling wakes every millisecond; with interrupts an idle sys-net wakes only for its
    // own timers (DHCP): a factor of ten is far below what either does.
    expect(irq * 10.0 < poll, || {
        format!("idle sys-net: {irq:.1} VM exits per second with interrupts, {poll:.1} polling")
    })?;
    Ok(format!(
        "idle sys-net: {irq:.1} VM exits per second with its card's interrupts, {poll:.1} polling ({:.0}x fewer)",
        poll / irq.max(0.01)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn exits_per_second_are_read_from_the_idle_line() {
        let line = "net: idle check: 12 VM exits in the last 10 s (1.2 per second), interrupts on";
        assert_eq!(super::per_second(line), Some(1.2));
        assert_eq!(super::per_second("net: idle check: none"), None);
    }
}
