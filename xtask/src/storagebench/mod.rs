//! `cargo xtask bench --storage`: what an AppVM's disk I/O costs. The same measurements
//! (`bulkhead-agent blockbench`: sequential and random reads and writes with `O_DIRECT` on a
//! raw block device) in two machines, one after the other in one run:
//!
//! - *Bulkhead*: a generated system ([`system`]) of the storage qube and one Linux AppVM,
//!   `work`, whose private volume the agent serves as `/dev/nbd0` over the storage qube's
//!   channel; `appvm.nohome` keeps `/init` from mounting it, and the self-test step
//!   `blockbench:nbd0:MIB:COUNT` measures it;
//! - *no compartments*: the same Debian kernel and the template's initramfs plus the
//!   virtio-blk modules, booted straight in the same QEMU with a raw image of the same size
//!   as its own virtio-blk disk (QEMU's same defaults: raw, `cache=writeback`), measured as
//!   `/dev/vda`.
//!
//! Both QEMUs load the counting plugin (`xtask/qemu-counter`), which writes the guest
//! instructions and VMRUNs executed at each mark the agent sets around a measurement.

pub(crate) mod report;
mod system;

use crate::bench::{git_revision, replace_section};
use crate::netbench::{build_plugin, load_average, plugin_args, report::parse_marks};
use crate::progress::Steps;
use crate::qemu::{self, BootOptions, Control, HvEvent, Media};
use anyhow::{Context, Result, bail};
use report::{Measured, StorageBench};
use std::path::Path;
use std::time::{Duration, Instant};

/// MiB written and read sequentially (as the network benchmark's 64 MiB each way).
/// MiB written and read sequentially: the whole private volume. With 64 MiB the baseline's
/// sequential tests took 0.2-0.3 s, too short to time well.
const MIB: u64 = system::PRIVATE_MIB;
/// Random 4 KiB requests each way (2000 took the baseline 0.6-0.7 s).
const RANDOM: u64 = 8000;
/// How long to wait, after the AppVM powered off, for the storage qube's counters line.
const COUNTERS_PATIENCE: Duration = Duration::from_secs(10);
/// Modules the baseline loads to drive QEMU's own disk.
const BASELINE_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];
/// How long one boot and its measurements may take.
const TIMEOUT: Duration = Duration::from_secs(1200);
/// Markers of the generated part of docs/bench.md.
const BEGIN: &str = "<!-- storage:begin -->";
/// End of it.
const END: &str = "<!-- storage:end -->";

/// The verb.
pub fn run(write_docs: bool) -> Result<()> {
    let mut steps = Steps::new(5);
    crate::deps::ensure(crate::deps::QEMU)?;
    if let Err(why) = crate::appvm::kernel_available() {
        bail!("the storage benchmark boots Debian's cloud kernel, which cannot be had: {why}");
    }
    steps.next("building the counting plugin (xtask/qemu-counter)");
    let plugin = build_plugin()?;

    steps.next("building the baseline's initramfs (the template's, with virtio-blk)");
    let out = crate::bundle::out_dir().join("bench-storage");
    let baseline_dir = out.join("appvm-baseline");
    crate::appvm::verb(crate::appvm::Options {
        out: Some(baseline_dir.clone()),
        extra_modules: BASELINE_MODULES,
        ..crate::appvm::Options::default()
    })?;

    let load_before = load_average();
    let logs = crate::bundle::out_dir().join("logs");
    std::fs::create_dir_all(&logs)?;

    steps.next(&format!(
        "no compartments: the kernel straight in QEMU on a virtio-blk disk of {} MiB",
        system::PRIVATE_MIB
    ));
    let marks = logs.join("bench-storage-baseline.marks");
    let image = system::baseline_image(&out)?;
    let (lines, kernel) = boot_baseline(&baseline_dir, &image, &plugin, &marks)?;
    let baseline = collect("no compartments", &lines, &marks)?;

    steps.next("Bulkhead: an AppVM's private volume through the storage qube");
    let marks = logs.join("bench-storage-bulkhead.marks");
    let lines = boot_bulkhead(&out, &plugin, &marks)?;
    let bulkhead = collect("Bulkhead", &lines, &marks)?;
    let storage = report::storage_counters(&lines);
    if let Some(c) = storage.as_deref().filter(|c| report::counters_trouble(c)) {
        bail!("the storage qube refused requests or saw I/O errors: {c}");
    }

    steps.next("the figures");
    let bench = StorageBench {
        mib: MIB,
        random: RANDOM,
        bulkhead,
        baseline,
        kernel,
        seconds: steps.elapsed_secs(),
        load: (load_before, load_average()),
        storage,
    };
    println!("{}", bench.terminal());
    if write_docs {
        let root = crate::workspace_root();
        let doc = root.join("docs/bench.md");
        let old = std::fs::read_to_string(&doc).unwrap_or_default();
        let mut new = old.clone();
        if !old.contains(BEGIN) {
            new = format!("{}\n\n## Storage: an AppVM's disk\n\n", old.trim_end());
        }
        new = replace_section(&new, BEGIN, END, &bench.markdown(&git_revision(&root)));
        std::fs::write(&doc, new)?;
        println!("wrote {}", doc.display());
    }
    println!("done in {:.0} s", steps.elapsed_secs());
    Ok(())
}

/// Whether a console line ends the measurements (the last result, or a failure).
fn finished(line: &str) -> bool {
    line.contains("blockbench: rand-read ") && line.contains(" requests of ")
        || report::parse_guest(line).is_some_and(|r| r.is_err())
        || line.contains("Kernel panic")
}

/// Boots the kernel straight in QEMU with `image` as its virtio-blk disk; the console lines
/// and the kernel release.
fn boot_baseline(
    dir: &Path,
    image: &Path,
    plugin: &Path,
    marks: &Path,
) -> Result<(Vec<String>, String)> {
    let mut opts = BootOptions::new(
        Media::Direct {
            kernel: dir.join("vmlinuz"),
            bundle: dir.join("initramfs.cpio.gz"),
        },
        system::MEMORY_MIB,
    );
    opts.iommu = false;
    opts.nic = None;
    opts.disk = Some(image.to_path_buf());
    opts.echo = false;
    opts.timeout = Some(TIMEOUT);
    opts.serial_log = Some(marks.with_extension("log"));
    // The AppVM's own console options (`xtask/sysdesc/src/cmdline.rs`), and the step.
    opts.extra_args = vec![
        "-append".into(),
        format!(
            "console=ttyS0 loglevel=4 reboot=t panic=-1 tsc=reliable \
             appvm.selftest=blockbench:vda:{MIB}:{RANDOM}"
        ),
    ];
    opts.extra_args.extend(plugin_args(plugin, marks, None));
    let out = qemu::boot(&opts, |e| Control::stop_if(finished(&e.line.text)))?;
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

/// Boots the benchmark system on the hypervisor, on a fresh disk image in `out`, until the
/// AppVM has powered off; the console lines.
fn boot_bulkhead(out: &Path, plugin: &Path, marks: &Path) -> Result<Vec<String>> {
    let path = system::write(MIB, RANDOM)?;
    let mut steps = Steps::new(crate::bundle::STEPS);
    let a = crate::bundle::assemble(&path, &mut steps)?;
    let image = crate::disk::fresh(&a.system, &out.join("disk.img"))?
        .context("the benchmark system has no volume on the storage qube's disk")?;
    println!("      {}", image.describe());
    let mut opts = a.boot_options();
    opts.nic = None;
    opts.disk = Some(image.path.clone());
    opts.serial = qemu::Serial::Captured;
    opts.echo = false;
    opts.timeout = Some(TIMEOUT);
    opts.serial_log = Some(marks.with_extension("log"));
    opts.extra_args = plugin_args(plugin, marks, None);
    // Once the AppVM has powered off, the storage qube's counters line that follows (its
    // requests, refusals and I/O errors), or COUNTERS_PATIENCE.
    let mut exited_at: Option<Instant> = None;
    let mut counted = false;
    let out = qemu::boot(&opts, |e| {
        let failed = match &e.hv {
            Some(HvEvent::Panic(_)) => true,
            Some(HvEvent::Exited { qube, .. } | HvEvent::Stopped { qube, .. })
                if qube == "work" =>
            {
                exited_at = Some(Instant::now());
                false
            }
            // A failure ends it at once; else the AppVM powers off after its last result.
            _ => report::parse_guest(&e.line.text).is_some_and(|r| r.is_err()),
        };
        if exited_at.is_some() && e.line.text.contains("storage: work: ") {
            counted = true;
        }
        Control::stop_if(
            failed || exited_at.is_some_and(|t| counted || t.elapsed() > COUNTERS_PATIENCE),
        )
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
    Ok(out.lines)
}

/// The figures of one path: the guest's lines and the marks.
fn collect(path: &str, lines: &[String], marks: &Path) -> Result<Vec<report::Figures>> {
    let log = marks.with_extension("log");
    let mut guest: Vec<Measured> = Vec::new();
    for l in lines {
        match report::parse_guest(l) {
            Some(Ok(m)) => guest.push(m),
            Some(Err(e)) => bail!("{path}: the guest says: {e} (console in {})", log.display()),
            None => {}
        }
    }
    let text = std::fs::read_to_string(marks)
        .with_context(|| format!("reading the plugin's marks in {}", marks.display()))?;
    report::figures(&parse_marks(&text), &guest)
        .with_context(|| format!("{path} (console in {})", log.display()))
}
