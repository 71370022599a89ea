//! `cargo xtask`: the only entry point for people. See the README for the verbs.
#![forbid(unsafe_code)]

mod appvm;
mod bench;
mod bochs;
mod bundle;
mod deps;
mod disk;
mod guibench;
mod images;
mod iso;
mod netbench;
mod profile;
mod progress;
mod qemu;
mod qvm;
mod scenarios;
mod storagebench;
mod tcb;
mod template;
#[cfg(test)]
mod unsafe_modules;

/// The system-description compiler, a library of its own (`xtask/sysdesc/`).
use bulkhead_sysdesc as system;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use progress::Steps;
use qemu::{BootOutcome, Control, HvEvent, Media, Serial};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and measure Bulkhead")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a system description and print what it compiles to.
    Check {
        /// System description.
        #[arg(default_value = "systems/default.toml")]
        system: PathBuf,
    },
    /// Build the images a system needs and write its manifest and boot bundle.
    Build(SystemArg),
    /// Build, then boot the system in QEMU (with the host console on
    /// target/bulkhead/qvm.sock when its admin qube owns COM2).
    Run(RunArgs),
    /// Qubes' qvm-* commands from the host, while `cargo xtask run` runs: ls, run, start,
    /// shutdown, kill.
    Qvm(qvm::QvmArgs),
    /// Run the host tests and the QEMU scenario tests; ends with "N passed, N failed".
    Test {
        /// Only scenarios whose name contains this.
        filter: Option<String>,
        /// Skip the host tests (cargo test).
        #[arg(long)]
        no_host: bool,
        /// List the scenarios and exit.
        #[arg(long)]
        list: bool,
    },
    /// Measure channels: the ring on the host against other IPC, and round trips in QEMU
    /// (instructions and VM exits); `--firewall`, `--network`, `--storage`: the firewall
    /// engine, an AppVM's TCP throughput, its disk. Figures, never pass/fail.
    Bench {
        /// Only the host benchmark.
        #[arg(long, conflicts_with = "qemu")]
        host: bool,
        /// Only the in-QEMU benchmark.
        #[arg(long)]
        qemu: bool,
        /// Only the firewall benchmark: the engine's frames per second against Linux
        /// nftables between network namespaces (root for the Linux part).
        #[arg(long, conflicts_with_all = ["host", "qemu"])]
        firewall: bool,
        /// With the in-QEMU benchmark: also profile the poll-mode round trip by function
        /// (a QEMU TCG plugin counts the instructions at every address).
        /// With `--network`: the Bulkhead path's instructions per MB by function.
        #[arg(long, conflicts_with_all = ["host", "firewall"])]
        profile: bool,
        /// Only the network benchmark: bulk TCP from a Linux AppVM through sys-firewall and
        /// sys-net to the host and back, against the same kernel straight on QEMU.
        #[arg(long, conflicts_with_all = ["host", "qemu", "firewall"])]
        network: bool,
        /// Only the GUI benchmark: the idle desktop, a key press to the answer on the screen,
        /// full-window updates (instructions and VM exits, QEMU TCG plugin).
        #[arg(long, conflicts_with_all = ["host", "qemu", "firewall", "network"])]
        gui: bool,
        /// Only the storage benchmark: sequential and random reads and writes (O_DIRECT) on a
        /// Linux AppVM's private volume, against the same kernel on QEMU's own virtio-blk disk.
        #[arg(long, conflicts_with_all = ["host", "qemu", "firewall", "network", "gui", "profile"])]
        storage: bool,
        /// Rewrite docs/bench.md with the figures just measured.
        #[arg(long)]
        write_docs: bool,
    },
    /// Measure the trusted base of each image, built on its own: own and dependency lines (test
    /// code apart), unsafe sites, ELF sizes and linked text per crate.
    Tcb {
        /// Print everything (per file, per dependency crate) as JSON.
        #[arg(long)]
        json: bool,
        /// Print the generated section of docs/tcb.md.
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
        /// Rewrite docs/tcb.md with the figures just measured.
        #[arg(long)]
        write_docs: bool,
    },
    /// Build the Linux AppVM template (Debian's cloud kernel and an initramfs) into
    /// target/bulkhead/appvm (what `kind = "linux"` qubes boot). See linux-appvm/README.md.
    Appvm(AppvmArgs),
    /// Build a template's root image (debian: bookworm, debootstrapped) as squashfs with a
    /// dm-verity hash tree, into target/bulkhead/templates/NAME (root, ~1.5 min).
    Template {
        /// The template (known: debian).
        name: String,
        /// Build it again from scratch, even if it is built.
        #[arg(long)]
        rebuild: bool,
    },
    /// Build, then make a GRUB ISO that boots with BIOS and UEFI (USB stick, CD, QEMU, Bochs).
    Iso {
        #[command(flatten)]
        system: SystemArg,
        /// Where to write the ISO [default: target/bulkhead/<system>.iso].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct AppvmArgs {
    /// Use this kernel package (.deb) instead of downloading Debian's cloud kernel.
    #[arg(long, value_name = "FILE", conflicts_with = "kernel")]
    kernel_deb: Option<PathBuf>,
    /// Use this bzImage (the initramfs then has no kernel modules).
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Where to write vmlinuz and initramfs.cpio.gz [default: target/bulkhead/appvm].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Leave the agent (linux-appvm/agent) out of the initramfs.
    #[arg(long)]
    no_agent: bool,
    /// Then boot it in plain QEMU (TCG) until /init reports (60 s at most).
    #[arg(long)]
    check_in_qemu: bool,
}

#[derive(Args)]
struct SystemArg {
    /// System description.
    #[arg(long, value_name = "FILE", default_value = "systems/default.toml")]
    system: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    system: SystemArg,
    /// QEMU CPU model: max (SVM, NPT, VGIF) or EPYC (NPT only), or any other -cpu value.
    #[arg(long, default_value = "max")]
    cpu: String,
    /// Number of CPUs the machine has (QEMU -smp), 1 to 64; a qube's `cpus` names them 0
    /// (the boot CPU) to N-1. The hypervisor starts at most 16.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: u32,
    /// Stop as soon as every qube of the system has reported ready (exit status 0), or fail.
    #[arg(long)]
    until_ready: bool,
    /// Stop QEMU after this many seconds [default: 120 with --until-ready, else none].
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Also write the console, escapes removed, to this file.
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,
    /// Boot through GRUB from an ISO (-cdrom) instead of QEMU's direct kernel boot.
    #[arg(long)]
    iso: bool,
    /// Leave out the IOMMU (to see how the system refuses or warns about device assignment).
    #[arg(long)]
    no_iommu: bool,
    /// Leave out the network card.
    #[arg(long)]
    no_nic: bool,
    /// The storage qube's disk image, made on first use and kept between runs, when the
    /// system has private volumes [default: target/bulkhead/disk.img].
    #[arg(long, value_name = "FILE")]
    disk: Option<PathBuf>,
    /// With --until-ready: give the machine a Bochs display (unless it has a screen) and,
    /// once every qube is ready, save what the screen shows to this PNG file (QMP
    /// screendump).
    #[arg(long, value_name = "FILE", requires = "until_ready")]
    screenshot: Option<PathBuf>,
    /// Extra QEMU argument, passed through verbatim (repeat for more).
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
}

/// Runs the verb. A system description with problems prints exactly its diagnostics
/// (`file:line:column: key: message` and a hint for each), other errors as anyhow shows them.
/// A standard error that was closed is not written to (and not a panic).
fn main() -> ExitCode {
    match verb(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A call's exit status: its output and any refusal were already printed.
            if let Some(qvm::ExitStatus(code)) = e.downcast_ref() {
                return ExitCode::from(*code);
            }
            let text = match e.downcast_ref::<system::Error>() {
                Some(system::Error::Problems(diagnostics)) => format!("{diagnostics}\n"),
                _ => format!("error: {e:#}\n"),
            };
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to standard output. A reader that went away (`cargo xtask check F | head
/// -1`) is not an error: the rest is not wanted.
fn print_unless_closed(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn verb(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Check { system } => {
            let compiled = system::compile_file(&resolve(&system))?;
            print_unless_closed(&format!("{}\n", compiled.summary()))
        }
        Cmd::Build(args) => {
            let mut steps = Steps::new(bundle::STEPS);
            bundle::assemble(&resolve(&args.system), &mut steps)?;
            println!("built in {:.1} s", steps.elapsed_secs());
            Ok(())
        }
        Cmd::Iso { system, out } => {
            let mut steps = Steps::new(bundle::STEPS + 1);
            deps::ensure(deps::ISO)?;
            let assembled = bundle::assemble(&resolve(&system.system), &mut steps)?;
            steps.next("making the ISO");
            let out = out.unwrap_or_else(|| iso::default_path(&assembled.name));
            iso::make(&assembled, &out)?;
            Ok(())
        }
        Cmd::Run(args) => run(args),
        Cmd::Qvm(args) => qvm::verb(args),
        Cmd::Appvm(a) => appvm::verb(appvm::Options {
            kernel_deb: a.kernel_deb,
            kernel: a.kernel,
            out: a.out,
            no_agent: a.no_agent,
            check_in_qemu: a.check_in_qemu,
            extra_modules: &[],
        }),
        Cmd::Template { name, rebuild } => template::verb(&name, rebuild),
        Cmd::Tcb {
            json,
            markdown,
            write_docs,
        } => tcb_verb(json, markdown, write_docs),
        Cmd::Test {
            filter,
            no_host,
            list,
        } => {
            if list {
                for s in scenarios::all() {
                    println!("{:<22} {}", s.name, s.about);
                }
                return Ok(());
            }
            scenarios::run(filter.as_deref(), no_host || filter.is_some())
        }
        Cmd::Bench {
            firewall: true,
            write_docs,
            ..
        } => bench::firewall(write_docs),
        Cmd::Bench {
            gui: true,
            write_docs,
            ..
        } => guibench::run(write_docs),
        Cmd::Bench {
            storage: true,
            write_docs,
            ..
        } => storagebench::run(write_docs),
        Cmd::Bench {
            network: true,
            write_docs,
            profile,
            ..
        } => netbench::run(write_docs, profile),
        Cmd::Bench {
            host,
            qemu,
            profile,
            write_docs,
            ..
        } => bench_verb(host, qemu, profile, write_docs),
    }
}

fn bench_verb(host_only: bool, qemu_only: bool, profile: bool, write_docs: bool) -> Result<()> {
    if !qemu_only {
        bench::host(write_docs)?;
    }
    if !host_only {
        println!("== in QEMU (-icount shift=0: nanoseconds are instructions)");
        let q = scenarios::qemu_bench()?;
        let body = format!(
            "Measured by `cargo xtask bench --qemu`: each system of `systems/bench/` booted alone \
             in QEMU under `-icount shift=0`, so the guest's clock counts instructions (the \
             hypervisor's and the qubes' together); exits are the two qubes' own counts.\n\n{}",
            q.markdown()
        );
        println!("{body}");
        if write_docs {
            let path = workspace_root().join("docs/bench.md");
            let doc = std::fs::read_to_string(&path)?;
            let doc = bench::replace_section(&doc, bench::QEMU_BEGIN, bench::QEMU_END, &body);
            std::fs::write(&path, doc)?;
            println!("wrote {}", path.display());
        }
    }
    if profile {
        println!("== where a poll-mode round trip's instructions go (QEMU plugin)");
        let body = format!(
            "Measured by `cargo xtask bench --qemu --profile`. {}",
            profile::profile_round_trip()?.markdown(30)
        );
        println!("{body}");
        if write_docs {
            let path = workspace_root().join("docs/bench.md");
            let doc = std::fs::read_to_string(&path)?;
            let doc = bench::replace_section(&doc, PROFILE_BEGIN, PROFILE_END, &body);
            std::fs::write(&path, doc)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

const PROFILE_BEGIN: &str = "<!-- profile:begin -->";
const PROFILE_END: &str = "<!-- profile:end -->";

fn run(args: RunArgs) -> Result<()> {
    let mut steps = Steps::new(bundle::STEPS + usize::from(args.iso) + 1);
    deps::ensure(deps::QEMU)?;
    if args.iso {
        deps::ensure(deps::ISO)?;
    }
    let assembled = bundle::assemble(&resolve(&args.system.system), &mut steps)?;
    let mut opts = assembled.boot_options();
    if args.iso {
        steps.next("making the ISO");
        let iso = iso::make(&assembled, &iso::default_path(&assembled.name))?;
        opts.media = Media::Iso(iso);
    }
    opts.cpu = args.cpu;
    opts.smp = args.cpus;
    opts.extra_args = args.qemu_args;
    opts.iommu = !args.no_iommu;
    if args.no_nic {
        opts.nic = None;
    }
    let disk_path = args.disk.unwrap_or_else(disk::default_path);
    if let Some(image) = disk::prepare(&assembled.system, &disk_path)? {
        println!("      {}", image.describe());
        opts.disk = Some(image.path);
    }
    opts.serial_log = args.serial_log;
    // The gui qube's screen: QEMU's bochs-display, shown in a window where the host has a
    // display, else served over VNC (an interactive run), or only looked at through QMP.
    opts.display_device
        .get_or_insert_with(|| qemu::BOCHS_DISPLAY.to_string());
    if args.screenshot.is_some() {
        opts.qmp_socket = Some(qemu::qmp::socket_path("run"));
    }
    if qvm::admin_owns_com2(&assembled.system.manifest) {
        opts.host_console = Some(qvm::default_socket());
    }
    if !args.until_ready {
        let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
        opts.display = if has_display {
            qemu::Display::Window
        } else {
            println!(
                "      no display here: the screen is served over VNC on 127.0.0.1:5900 \
                 (e.g. `vncviewer 127.0.0.1:5900`, or `ssh -L 5900:127.0.0.1:5900` first)"
            );
            qemu::Display::Vnc("127.0.0.1:0".into())
        };
    }
    opts.serial = if args.until_ready {
        Serial::Captured
    } else {
        Serial::detect()
    };
    opts.timeout = match (args.timeout, args.until_ready) {
        (Some(secs), _) => Some(Duration::from_secs(secs)),
        (None, true) => Some(Duration::from_secs(120)),
        (None, false) => None,
    };

    steps.next(&format!(
        "booting {} in QEMU (-cpu {}, {} MiB)",
        assembled.name, opts.cpu, opts.ram_mib
    ));
    println!("      {}", opts.command_line());
    if opts.serial == Serial::Interactive {
        println!("      Ctrl-A X leaves QEMU, Ctrl-A C switches to its monitor");
    }
    if opts.host_console.is_some() {
        println!(
            "      from another terminal: `cargo xtask qvm ls`, `cargo xtask qvm run QUBE -- CMD`"
        );
    }
    let qubes = assembled.qube_names();
    let until_ready = args.until_ready;
    let captured = opts.serial == Serial::Captured;
    let mut ready = std::collections::BTreeSet::new();
    let mut all_ready_at = None;
    let mut screenshot = None;
    let outcome = qemu::boot(&opts, |event| match &event.hv {
        Some(HvEvent::Ready(qube)) if until_ready => {
            ready.insert(qube.clone());
            let done = qubes.iter().all(|q| ready.contains(*q));
            if done {
                all_ready_at = Some(event.at);
                if let (Some(png), Some(socket)) = (&args.screenshot, &opts.qmp_socket) {
                    // Clients open their windows after they say ready: a moment for them
                    // to appear (the picture is for people; tests wait for log lines).
                    std::thread::sleep(std::time::Duration::from_millis(1500));
                    screenshot = Some(qemu::qmp::save_screenshot(socket, png));
                }
            }
            Control::stop_if(done)
        }
        Some(HvEvent::Stopped { qube, .. } | HvEvent::Exited { qube, .. }) => {
            ready.remove(qube);
            Control::Continue
        }
        // Without a person to look at it, a panicked or idle machine has nothing more to say.
        Some(HvEvent::Panic(_) | HvEvent::Idle) => Control::stop_if(until_ready || captured),
        _ => Control::Continue,
    });
    for socket in [&opts.qmp_socket, &opts.host_console].into_iter().flatten() {
        let _ = std::fs::remove_file(socket);
    }
    let outcome = outcome?;

    if until_ready {
        if let Some(at) = all_ready_at {
            println!(
                "all {} qubes ready after {:.1} s",
                qubes.len(),
                at.as_secs_f64()
            );
            if let (Some(shot), Some(png)) = (screenshot, &args.screenshot) {
                let image = shot?;
                let (w, h) = (image.width(), image.height());
                println!("screenshot ({w}x{h}) written to {}", png.display());
            }
            return Ok(());
        }
        let missing = outcome.not_ready(&qubes).join(", ");
        bail!("not ready: {missing} ({})", why_stopped(&outcome));
    }
    if outcome.panic.is_some() || outcome.timed_out {
        bail!("{}", why_stopped(&outcome));
    }
    if outcome.idle {
        let clean = outcome.stopped.is_empty() && outcome.exited.iter().all(|(_, s)| *s == 0);
        if clean {
            println!(
                "every qube finished after {:.1} s",
                outcome.wall.as_secs_f64()
            );
            return Ok(());
        }
        bail!("{}", why_stopped(&outcome));
    }
    match outcome.qemu_status.and_then(|s| s.code()) {
        Some(0) => Ok(()),
        Some(code) if qemu::debug_exit_code(code) == Some(0) => Ok(()),
        _ => bail!("{}", why_stopped(&outcome)),
    }
}

fn tcb_verb(json: bool, markdown: bool, write_docs: bool) -> Result<()> {
    let tcb_images: Vec<tcb::TcbImage> = images::ALL
        .iter()
        .map(|i| tcb::TcbImage {
            name: i.name.to_string(),
            package: i.package.to_string(),
            bin: i.bin.to_string(),
        })
        .collect();
    let report = tcb::measure(&workspace_root(), &images::target_dir(), &tcb_images)?;
    let json_path = images::target_dir().join("bulkhead").join("tcb.json");
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json_path, report.to_json())?;
    if write_docs {
        let doc = workspace_root().join("docs/tcb.md");
        std::fs::write(
            &doc,
            format!("# Trusted computing base\n\n{}", report.markdown()),
        )?;
        println!("wrote {}", doc.display());
    }
    match (json, markdown) {
        (true, _) => println!("{}", report.to_json()),
        (_, true) => print!("{}", report.markdown()),
        _ => {
            print!("{}", report.table());
            println!(
                "full report (per file, per dependency): {}",
                json_path.display()
            );
        }
    }
    Ok(())
}

/// Why a boot ended, in words, with every qube that failed on the way.
fn why_stopped(outcome: &BootOutcome) -> String {
    let wall = outcome.wall.as_secs_f64();
    let mut why = if let Some(message) = &outcome.panic {
        format!("the hypervisor panicked after {wall:.1} s: {message}")
    } else if outcome.timed_out {
        "timed out".to_string()
    } else if outcome.idle {
        "every qube stopped".to_string()
    } else {
        match (outcome.debug_exit(), outcome.qemu_status) {
            (Some(code), _) => format!("the guest ended QEMU with code {code}"),
            (None, Some(status)) => format!("QEMU exited ({status})"),
            (None, None) => "QEMU exited".to_string(),
        }
    };
    if outcome.panic.is_none() {
        why.push_str(&format!(" after {wall:.1} s"));
    }
    let stops = outcome
        .stopped
        .iter()
        .map(|(q, reason)| format!("{q} stopped: {reason}"));
    let exits = outcome.exited.iter().filter(|(_, s)| *s != 0);
    let troubles: Vec<String> = stops
        .chain(exits.map(|(q, s)| format!("{q} exited with status {s}")))
        .collect();
    if !troubles.is_empty() {
        why.push_str("; ");
        why.push_str(&troubles.join("; "));
    }
    why
}

/// A relative system path is looked up in the current directory, then in the workspace root.
fn resolve(path: &Path) -> PathBuf {
    if path.is_relative() && !path.exists() {
        let in_root = workspace_root().join(path);
        if in_root.exists() {
            return in_root;
        }
    }
    path.to_path_buf()
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
}
