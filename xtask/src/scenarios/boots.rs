//! The default system boots to all-qubes-ready: under `-cpu max` (SVM with VGIF), under
//! `-cpu EPYC` (NPT only), and through GRUB from the ISO (the multiboot2 path).

use super::{Scenario, expect};
use crate::bundle::{self, Assembled};
use crate::progress::Steps;
use crate::qemu::{self, BootOptions, BootOutcome, Control, HvEvent, Media, Serial};
use crate::{deps, iso};
use anyhow::{Result, bail};
use std::time::Duration;

pub const DEFAULT_MAX: Scenario = Scenario {
    name: "boot-default-max",
    about: "the default system (the desktop) boots under -cpu max: all qubes ready, both AppVMs' terminal windows shown",
    run: super::screen::desktop,
};

pub const DEFAULT_EPYC: Scenario = Scenario {
    name: "boot-services-epyc",
    about: "the service qubes (systems/tests/services.toml) boot to all ready under -cpu EPYC (no VGIF)",
    run: || boot_default("EPYC", false),
};

pub const GRUB_ISO: Scenario = Scenario {
    name: "boot-grub-iso",
    about: "the GRUB ISO (multiboot2) boots the service qubes to all ready",
    run: || boot_default("max", true),
};

/// Assembles a system quietly enough for the test log.
pub fn assemble(system: &str) -> Result<Assembled> {
    deps::ensure(deps::QEMU)?;
    let mut steps = Steps::new(bundle::STEPS);
    bundle::assemble(&crate::workspace_root().join(system), &mut steps)
}

/// [`assemble`] with the test-only hooks compiled into the images that have them (sys-net's
/// `dma-escape=` and `crash-after-ms=`, the storage qube's `corrupt-template=`), for the
/// scenarios that drive one.
pub fn assemble_with_test_hooks(system: &str) -> Result<Assembled> {
    deps::ensure(deps::QEMU)?;
    let mut steps = Steps::new(bundle::STEPS);
    bundle::assemble_with_test_hooks(&crate::workspace_root().join(system), &mut steps)
}

/// A new disk image of `scenario`'s own (`target/bulkhead/<scenario>-test/disk.img`, an
/// old one removed first) holding `a`'s volumes and template roots.
pub fn fresh_disk(a: &Assembled, scenario: &str) -> Result<crate::disk::DiskImage> {
    let path = bundle::out_dir()
        .join(format!("{scenario}-test"))
        .join("disk.img");
    crate::disk::fresh(&a.system, &path)?.ok_or_else(|| {
        anyhow::anyhow!("{scenario}: the system has no volume on a storage qube's disk")
    })
}

/// Fails if the hypervisor panicked or the boot ran out of time (naming the last line).
pub fn finished(out: &BootOutcome) -> Result<()> {
    if let Some(p) = &out.panic {
        bail!("hypervisor panic: {p}");
    }
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })
}

/// Captured-serial boot options with a timeout; the console goes to
/// `target/bulkhead/logs/<log>.log` instead of the terminal.
pub fn options(a: &Assembled, cpu: &str, timeout_s: u64, log: &str) -> BootOptions {
    let mut opts = a.boot_options();
    opts.cpu = cpu.to_string();
    opts.serial = Serial::Captured;
    opts.timeout = Some(Duration::from_secs(timeout_s));
    opts.echo = false;
    let dir = bundle::out_dir().join("logs");
    let _ = std::fs::create_dir_all(&dir);
    opts.serial_log = Some(dir.join(format!("{log}.log")));
    opts
}

/// Checks a boot of an all-good system: it came up through `proto` (`"boot: PVH"` or
/// `"boot: multiboot2"`), every qube of `qubes` reported ready and none was stopped; returns
/// the `all N qubes ready` figures (VM exits, ms since boot).
pub fn check_all_ready(out: &BootOutcome, qubes: &[&str], proto: &str) -> Result<(u64, u64)> {
    expect(out.lines.iter().any(|l| l.contains(proto)), || {
        format!("no `{proto}` line")
    })?;
    let missing = out.not_ready(qubes);
    expect(missing.is_empty(), || {
        format!("not ready: {}", missing.join(", "))
    })?;
    expect(out.stopped.is_empty(), || {
        format!("qubes stopped: {:?}", out.stopped)
    })?;
    all_ready_figures(&out.lines).ok_or_else(|| anyhow::anyhow!("no `all N qubes ready` line"))
}

/// The `all N qubes ready: X VM exits, Y ms since boot` figures.
pub fn all_ready_figures(lines: &[String]) -> Option<(u64, u64)> {
    lines.iter().find_map(|l| {
        let rest = l.split_once("| all ")?.1;
        let rest = rest.split_once("qubes ready: ")?.1;
        let (exits, rest) = rest.split_once(" VM exits, ")?;
        let ms = rest.split_once(" ms")?.0;
        Some((exits.parse().ok()?, ms.parse().ok()?))
    })
}

/// Boots the service qubes (`systems/tests/services.toml`) until all are ready.
fn boot_default(cpu: &str, via_iso: bool) -> Result<String> {
    let a = assemble("systems/tests/services.toml")?;
    let log = format!(
        "boot-{}{}",
        cpu.to_lowercase(),
        if via_iso { "-iso" } else { "" }
    );
    let mut opts = options(&a, cpu, 90, &log);
    if via_iso {
        deps::ensure(deps::ISO)?;
        let path = iso::make(&a, &iso::default_path(&a.name))?;
        opts.media = Media::Iso(path);
    }
    let out = qemu::boot(&opts, |e| {
        let done = matches!(e.hv, Some(HvEvent::Panic(_))) || e.line.text.contains("qubes ready:");
        Control::stop_if(done)
    })?;
    if let Some(p) = &out.panic {
        bail!("hypervisor panic: {p}");
    }
    let banner = out.lines.iter().any(|l| l.contains("backend SVM"));
    expect(banner, || "no CPU/backend line in the boot summary".into())?;
    let proto = if via_iso {
        "boot: multiboot2"
    } else {
        "boot: PVH"
    };
    let (exits, ms) = check_all_ready(&out, &a.qube_names(), proto)?;
    Ok(format!(
        "all {} qubes ready: {exits} VM exits, {ms} ms guest time",
        a.qube_names().len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ready_figures() {
        let lines =
            vec!["hv       | all 4 qubes ready: 55 VM exits, 377 ms since boot".to_string()];
        assert_eq!(all_ready_figures(&lines), Some((55, 377)));
        assert_eq!(
            all_ready_figures(&["hv | qube net ready".to_string()]),
            None
        );
    }
}
