//! `cargo xtask bench --network`: what a user of an AppVM feels. A bulk TCP transfer each way
//! between a Linux AppVM and a server on the host, through sys-firewall and sys-net
//! (`systems/bench/network.toml`), against the same Debian kernel booted straight in the same
//! QEMU with its own virtio-net card on the same user network (the "no compartments"
//! baseline), both in one run.
//!
//! - The guest side is `bulkhead-agent netbench`, run by the template's self-test step
//!   `netbench:PORT:MIB`; the baseline's initramfs is the template's plus the virtio-net
//!   modules, and its step `uplink` configures QEMU's card.
//! - The host side is [`server`]: a free port on 127.0.0.1, which the guest reaches as 10.0.2.2;
//!   it times each transfer on the host's clock.
//! - Both QEMUs load the counting plugin (`xtask/qemu-counter`), which writes the guest
//!   instructions and VMRUNs executed at each mark the guest program sets around a transfer.

mod profile;
pub(crate) mod report;
mod server;

use crate::bench::{git_revision, replace_section};
use crate::progress::Steps;
use crate::qemu::{self, BootOptions, Control, HvEvent, Media};
use anyhow::{Context, Result, bail};
use report::NetBench;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// MiB each way: 16 MiB took the baseline under a second (too short to time well) and
/// Bulkhead 6-9 s per direction under TCG on a 2-core machine.
const MIB: u64 = 64;
/// The benchmark's system description; xtask adds the port and size to its self-test step.
const SYSTEM: &str = "systems/bench/network.toml";
/// What the description's kernel arguments say, and what xtask makes of it.
const SELFTEST: &str = "appvm.selftest=netbench\"";
/// Modules the baseline loads to drive QEMU's own card.
const BASELINE_MODULES: &[&str] = &["virtio_pci", "virtio_net"];
/// How long one boot and its two transfers may take.
const TIMEOUT: Duration = Duration::from_secs(900);
/// The counting plugin's package.
const PLUGIN: &str = "bulkhead-qemu-counter";
/// Markers of the generated part of docs/bench.md.
const BEGIN: &str = "<!-- network:begin -->";
/// End of it.
const END: &str = "<!-- network:end -->";

/// The verb. `profile`: also say where the Bulkhead path's instructions went, by function
/// (the plugin counts every block; the AppVM boots with `nokaslr norandmaps` so its kernel's
/// and agent's symbols can name them).
pub fn run(write_docs: bool, profile: bool) -> Result<()> {
    let cpus = machine_cpus()?;
    if cpus > 1 && write_docs {
        bail!("docs/bench.md holds the one-CPU figures: leave out --write-docs with {CPUS_VAR}");
    }
    let mut steps = Steps::new(5);
    crate::deps::ensure(crate::deps::QEMU)?;
    if let Err(why) = crate::appvm::kernel_available() {
        bail!("the network benchmark boots Debian's cloud kernel, which cannot be had: {why}");
    }
    steps.next("building the counting plugin (xtask/qemu-counter)");
    let plugin = build_plugin()?;

    steps.next("building the baseline's initramfs (the template's, with virtio-net)");
    let baseline_dir = crate::images::target_dir()
        .join("bulkhead")
        .join("appvm-baseline");
    crate::appvm::verb(crate::appvm::Options {
        out: Some(baseline_dir.clone()),
        extra_modules: BASELINE_MODULES,
        ..crate::appvm::Options::default()
    })?;

    let server = server::Server::start()?;
    let load_before = load_average();
    let logs = crate::bundle::out_dir().join("logs");
    std::fs::create_dir_all(&logs)?;

    steps.next(&format!(
        "no compartments: the kernel straight in QEMU, {MIB} MiB each way (server on port {})",
        server.port
    ));
    let marks = logs.join("bench-network-baseline.marks");
    let (lines, kernel) = boot_baseline(&baseline_dir, &plugin, &marks, server.port, cpus)?;
    let baseline = collect("no compartments", &lines, &server, &marks)?;

    steps.next(&format!(
        "Bulkhead: an AppVM through sys-firewall and sys-net, {MIB} MiB each way"
    ));
    let marks = logs.join("bench-network-bulkhead.marks");
    let blocks = profile.then(|| logs.join("bench-network-bulkhead.blocks"));
    let (lines, assembled) = boot_bulkhead(&plugin, &marks, blocks.as_deref(), server.port, cpus)?;
    let bulkhead = collect("Bulkhead", &lines, &server, &marks)?;
    let profiled = match &blocks {
        Some(b) => Some(profile_report(&assembled, b, &bulkhead)?),
        None => None,
    };

    steps.next("the figures");
    let bench = NetBench {
        mib: MIB,
        bulkhead,
        baseline,
        kernel,
        seconds: steps.elapsed_secs(),
        load: (load_before, load_average()),
    };
    println!("{}\n{}", bench.table(), bench.breakdown());
    if let Some(p) = &profiled {
        println!("{p}");
        let path = logs.join("bench-network-profile.md");
        std::fs::write(&path, p)?;
        println!("(also in {})", path.display());
    }
    if write_docs {
        let root = crate::workspace_root();
        let doc = root.join("docs/bench.md");
        let old = std::fs::read_to_string(&doc).unwrap_or_default();
        let mut new = old.clone();
        if !old.contains(BEGIN) {
            new = format!(
                "{}\n\n## Network: an AppVM's TCP throughput\n\n",
                old.trim_end()
            );
        }
        new = replace_section(&new, BEGIN, END, &bench.markdown(&git_revision(&root)));
        std::fs::write(&doc, new)?;
        println!("wrote {}", doc.display());
    }
    println!("done in {:.0} s", steps.elapsed_secs());
    Ok(())
}

/// Builds the plugin; its path. Fails with the reason when this QEMU cannot load plugins.
pub fn build_plugin() -> Result<PathBuf> {
    let help = Command::new(qemu::QEMU)
        .arg("-help")
        .output()
        .with_context(|| format!("running {}", qemu::QEMU))?;
    if !String::from_utf8_lossy(&help.stdout).contains("-plugin") {
        bail!(
            "{} has no -plugin option (built without --enable-plugins): the network benchmark \
             counts instructions with a TCG plugin",
            qemu::QEMU
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = ["build", "--release", "--quiet", "-p", PLUGIN];
    println!("      cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(crate::workspace_root())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("building the counting plugin failed ({status})");
    }
    let lib = crate::images::target_dir()
        .join("release")
        .join("libbulkhead_qemu_counter.so");
    if !lib.is_file() {
        bail!("{} is missing after the build", lib.display());
    }
    Ok(lib)
}

/// `-plugin` with the library and the file its marks go to (written afresh), and with
/// `blocks` the file its block counts go to.
pub(crate) fn plugin_args(plugin: &Path, marks: &Path, blocks: Option<&Path>) -> Vec<String> {
    let _ = std::fs::remove_file(marks);
    let mut arg = format!("{},out={}", plugin.display(), marks.display());
    if let Some(b) = blocks {
        for n in 1..=4 {
            let _ = std::fs::remove_file(format!("{}.mark{n}", b.display()));
        }
        arg.push_str(&format!(",blocks={}", b.display()));
    }
    vec!["-plugin".into(), arg]
}

/// The per-function profile of both transfers of the Bulkhead path.
fn profile_report(
    a: &crate::bundle::Assembled,
    blocks: &Path,
    figures: &[report::Figures],
) -> Result<String> {
    let unikernels: Vec<(String, PathBuf)> = a
        .images
        .iter()
        .map(|b| (b.image.name.to_string(), b.elf.clone()))
        .collect();
    let agent = crate::images::target_dir()
        .join("bulkhead/appvm/agent-build/x86_64-unknown-linux-gnu/release/bulkhead-agent");
    let namer = profile::Namer::new(&a.hypervisor.elf, &unikernels, Some(&agent))?;
    let mut s = String::from("### Where the Bulkhead path's instructions go\n\n");
    for (i, f) in figures.iter().enumerate() {
        let mark = |n: usize| PathBuf::from(format!("{}.mark{n}", blocks.display()));
        let functions = namer.functions(&mark(2 * i + 1), &mark(2 * i + 2))?;
        s.push_str(&profile::markdown(
            &format!("Bulkhead, {}", f.direction),
            &functions,
            f.bytes as f64 / 1e6,
            // More rows for a closer look: BULKHEAD_PROFILE_TOP=400.
            std::env::var("BULKHEAD_PROFILE_TOP")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(40),
        ));
        s.push('\n');
    }
    Ok(s)
}

/// Gives both paths this many CPUs (default 1; the figures of docs/bench.md are one CPU's).
const CPUS_VAR: &str = "BULKHEAD_BENCH_CPUS";

/// The CPUs both machines get ([`CPUS_VAR`]).
fn machine_cpus() -> Result<u32> {
    match std::env::var(CPUS_VAR) {
        Err(_) => Ok(1),
        Ok(v) => match v.parse::<u32>() {
            Ok(n) if (1..=16).contains(&n) => Ok(n),
            _ => bail!("{CPUS_VAR}={v:?}: give a number of CPUs from 1 to 16"),
        },
    }
}

/// Boots the kernel straight in QEMU with its own virtio-net card; the console lines and
/// the kernel release.
fn boot_baseline(
    dir: &Path,
    plugin: &Path,
    marks: &Path,
    port: u16,
    cpus: u32,
) -> Result<(Vec<String>, String)> {
    let mut opts = BootOptions::new(
        Media::Direct {
            kernel: dir.join("vmlinuz"),
            bundle: dir.join("initramfs.cpio.gz"),
        },
        256,
    );
    opts.iommu = false;
    opts.smp = cpus;
    opts.echo = false;
    opts.timeout = Some(TIMEOUT);
    opts.serial_log = Some(marks.with_extension("log"));
    opts.extra_args = vec![
        "-append".into(),
        format!("console=ttyS0 panic=-1 reboot=t appvm.selftest=uplink,netbench:{port}:{MIB}"),
    ];
    opts.extra_args.extend(plugin_args(plugin, marks, None));
    let out = qemu::boot(&opts, |e| {
        let t = &e.line.text;
        Control::stop_if(
            // The transfer's own line ("down N bytes in T s"), not the counters before it.
            (t.contains("netbench: down ") && t.contains(" bytes in "))
                || (t.contains("netbench") && t.contains("failed"))
                || t.contains("Kernel panic")
                || t.contains("selftest: no uplink"),
        )
    })?;
    if out.timed_out {
        bail!(
            "the baseline timed out after {} s; console in {}",
            TIMEOUT.as_secs(),
            marks.with_extension("log").display()
        );
    }
    let kernel = out
        .lines
        .iter()
        .find_map(|l| l.split_once("appvm: kernel ")?.1.split(',').next())
        .unwrap_or("?")
        .to_string();
    Ok((out.lines, kernel))
}

/// Boots the benchmark system on the hypervisor until the AppVM has powered off; the console
/// lines and the images booted. With `blocks`, the plugin counts every block and the AppVM
/// boots without address randomisation (for the profile's names).
fn boot_bulkhead(
    plugin: &Path,
    marks: &Path,
    blocks: Option<&Path>,
    port: u16,
    cpus: u32,
) -> Result<(Vec<String>, crate::bundle::Assembled)> {
    let root = crate::workspace_root();
    let text =
        std::fs::read_to_string(root.join(SYSTEM)).with_context(|| format!("reading {SYSTEM}"))?;
    if !text.contains(SELFTEST) {
        bail!("{SYSTEM} no longer says `kernel_args = \"{SELFTEST}`");
    }
    let extra = if blocks.is_some() {
        " nokaslr norandmaps"
    } else {
        ""
    };
    let text = text.replace(
        SELFTEST,
        &format!("appvm.selftest=netbench:{port}:{MIB}{extra}\""),
    );
    let system = crate::bundle::out_dir().join("bench-network.toml");
    std::fs::write(&system, text)?;
    let mut steps = Steps::new(crate::bundle::STEPS);
    let a = crate::bundle::assemble(&system, &mut steps)?;
    let mut opts = a.boot_options();
    opts.smp = cpus;
    opts.serial = qemu::Serial::Captured;
    opts.echo = false;
    opts.timeout = Some(TIMEOUT);
    opts.serial_log = Some(marks.with_extension("log"));
    opts.extra_args = plugin_args(plugin, marks, blocks);
    let out = qemu::boot(&opts, |e| {
        Control::stop_if(match &e.hv {
            Some(HvEvent::Panic(_)) => true,
            Some(HvEvent::Exited { qube, .. } | HvEvent::Stopped { qube, .. }) => qube == "work",
            _ => false,
        })
    })?;
    if let Some(p) = &out.panic {
        bail!("hypervisor panic: {p}");
    }
    if out.timed_out {
        bail!(
            "Bulkhead timed out after {} s; console in {}",
            TIMEOUT.as_secs(),
            marks.with_extension("log").display()
        );
    }
    Ok((out.lines, a))
}

/// The figures of one path: the guest's lines, the server's transfers and the marks.
fn collect(
    path: &str,
    lines: &[String],
    server: &server::Server,
    marks: &Path,
) -> Result<Vec<report::Figures>> {
    let mut guest = Vec::new();
    for l in lines {
        match report::parse_guest(l) {
            Some(Ok(g)) => guest.push(g),
            Some(Err(e)) => bail!("{path}: the guest says: {e}"),
            None => {}
        }
    }
    let mut host = Vec::new();
    for t in server.wait_for(guest.len(), Duration::from_secs(10)) {
        match t.took {
            Ok(d) => host.push((t.direction, t.bytes, d.as_secs_f64())),
            Err(e) => bail!("{path}: the server's {} transfer failed: {e}", t.direction),
        }
    }
    let text = std::fs::read_to_string(marks)
        .with_context(|| format!("reading the plugin's marks in {}", marks.display()))?;
    report::figures(&report::parse_marks(&text), &guest, &host).with_context(|| {
        format!(
            "{path} (console in {})",
            marks.with_extension("log").display()
        )
    })
}

/// The 1-minute load average (`/proc/loadavg`).
pub(crate) fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
