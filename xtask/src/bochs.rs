//! Booting a GRUB ISO in Bochs, unattended, and watching its serial console: the Intel VMX
//! path (model `corei7_sandy_bridge_2600k`: VMX with EPT, VPID, unrestricted guest), which
//! QEMU's TCG cannot emulate, and AMD SVM with NRIP_SAVE (model `ryzen`).
//!
//! Debian's Bochs has no display-less mode and is built with its debugger, so it runs with
//! the `term` display (which draws on a pseudo-terminal of its own, not ours), a debugger
//! script that says `c` (continue) then `q`, and COM1 written to a file that [`boot`]
//! follows. Bochs ignores SIGTERM and always exits with status 1, so it is judged by the
//! console alone and stopped with SIGKILL. It runs about 80 million instructions per second:
//! keep what it boots small. With `clock: sync=none` its time is instruction time
//! (`ips` instructions per second), so runs are repeatable.

use anyhow::{Context, Result};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::deps;
use crate::qemu::{BootOutcome, Control, Event, HvEvent, Line, strip_ansi};

/// The Bochs launcher (Debian's wrapper, which `exec`s `bochs-bin`).
pub const BOCHS: &str = "bochs";
/// Intel with VMX, EPT, VPID and unrestricted guest.
pub const MODEL_VMX: &str = "corei7_sandy_bridge_2600k";
/// AMD with SVM, NPT and NRIP_SAVE.
pub const MODEL_SVM: &str = "ryzen";

/// How Bochs runs.
#[derive(Clone, Debug)]
pub struct BochsOptions {
    /// The GRUB ISO it boots from (as a CD-ROM).
    pub iso: PathBuf,
    /// `cpu: model=...`.
    pub model: String,
    /// Guest RAM in MiB.
    pub ram_mib: u32,
    /// CPUs (`cpu: count=N`; Debian's Bochs is built with SMP).
    pub cpus: u32,
    /// Emulated instructions per second (the unit of guest time).
    pub ips: u64,
    /// Stop Bochs after this much wall time.
    pub timeout: Duration,
    /// Scratch folder for the configuration, the debugger script, COM1 and Bochs' log;
    /// created by [`boot`] and removed when it returns.
    pub dir: PathBuf,
    /// Also write every console line, escapes removed, to this file.
    pub serial_log: Option<PathBuf>,
}

impl BochsOptions {
    /// Defaults: 100 M instructions per second, 120 s timeout.
    pub fn new(iso: PathBuf, model: &str, ram_mib: u32, dir: PathBuf) -> BochsOptions {
        BochsOptions {
            iso,
            model: model.to_string(),
            ram_mib,
            cpus: 1,
            ips: 100_000_000,
            timeout: Duration::from_secs(120),
            dir,
            serial_log: None,
        }
    }

    /// Where COM1's output goes.
    pub fn com1(&self) -> PathBuf {
        self.dir.join("com1.out")
    }

    /// Bochs' own log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("bochs.log")
    }

    /// The bochsrc.
    pub fn bochsrc(&self) -> String {
        format!(
            "# Written by cargo xtask for an unattended boot.\n\
             memory: guest={ram}, host={ram}\n\
             cpu: count={cpus}, model={model}, ips={ips}\n\
             romimage: file={bios}\n\
             vgaromimage: file={vgabios}\n\
             ata0-master: type=cdrom, path=\"{iso}\", status=inserted\n\
             boot: cdrom\n\
             clock: sync=none, time0=1\n\
             com1: enabled=1, mode=file, dev=\"{com1}\"\n\
             display_library: term\n\
             speaker: enabled=0\n\
             log: \"{log}\"\n\
             panic: action=fatal\n\
             error: action=report\n\
             info: action=ignore\n\
             debug: action=ignore\n",
            ram = self.ram_mib,
            model = self.model,
            cpus = self.cpus.max(1),
            ips = self.ips,
            bios = deps::BOCHS_BIOS,
            vgabios = deps::BOCHS_VGABIOS,
            iso = self.iso.display(),
            com1 = self.com1().display(),
            log = self.log().display(),
        )
    }
}

/// The debugger script: continue, and quit when the simulation ends.
pub const DEBUGGER_SCRIPT: &str = "c\nq\n";

/// A running Bochs; dropping it kills it.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Bochs ignores SIGTERM (its term display turns it into a key press).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a Bochs boot showed.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The console, as the QEMU runner reports it (`qemu_status` is Bochs' exit status if
    /// it left by itself).
    pub boot: BootOutcome,
    /// The last warnings and errors of Bochs' own log (CPU errors, VM-exit reports).
    pub bochs_log: Vec<String>,
}

/// Boots Bochs with `opts` and feeds every COM1 line to `until` until it returns
/// [`Control::Stop`], the timeout passes or Bochs exits. Bochs never outlives this call,
/// and its scratch folder neither.
pub fn boot(opts: &BochsOptions, until: impl FnMut(&Event) -> Control) -> Result<Outcome> {
    let result = watch(opts, until);
    let bochs_log = log_tail(opts, 8);
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(Outcome {
        boot: result?,
        bochs_log,
    })
}

fn watch(opts: &BochsOptions, mut until: impl FnMut(&Event) -> Control) -> Result<BootOutcome> {
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let rc = opts.dir.join("bochsrc");
    let script = opts.dir.join("debugger.rc");
    std::fs::write(&rc, opts.bochsrc()).with_context(|| format!("writing {}", rc.display()))?;
    std::fs::write(&script, DEBUGGER_SCRIPT)?;
    let com1 = opts.com1();
    std::fs::write(&com1, b"").with_context(|| format!("creating {}", com1.display()))?;
    let stdout = std::fs::File::create(opts.dir.join("bochs.stdout"))?;
    let stderr = stdout.try_clone()?;

    let started = Instant::now();
    let child = Command::new(BOCHS)
        .arg("-f")
        .arg(&rc)
        .arg("-rc")
        .arg(&script)
        .env("TERM", "dumb")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {BOCHS} -f {}", rc.display()))?;
    let mut bochs = Running { child };

    let mut out = BootOutcome::default();
    let mut reader = LineReader::default();
    let mut file = std::fs::File::open(&com1)?;
    let mut log = Vec::new();
    let mut exited = false;
    'watch: loop {
        let lines = reader.read(&mut file)?;
        for raw in lines {
            let event = event(&raw, started.elapsed());
            log.push(event.line.text.clone());
            record(&mut out, &event);
            if until(&event) != Control::Continue {
                out.until_met = true;
                break 'watch;
            }
        }
        if exited {
            break;
        }
        if started.elapsed() >= opts.timeout {
            out.timed_out = true;
            break;
        }
        if let Some(status) = bochs.child.try_wait()? {
            out.qemu_status = Some(status);
            exited = true; // one more read for what it wrote last
            continue;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    out.wall = started.elapsed();
    drop(bochs);
    if let Some(path) = &opts.serial_log {
        let mut text = log.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(out)
}

/// The last lines of Bochs' own log that are not informational.
fn log_tail(opts: &BochsOptions, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(opts.log()).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !is_info_line(l))
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Bochs log lines look like `00000000000i[CPU0  ] ...`: the letter after the tick count is
/// the level (i, d, e, p).
fn is_info_line(line: &str) -> bool {
    line.trim_start_matches(|c: char| c.is_ascii_digit())
        .starts_with(['i', 'd'])
}

fn event(raw: &str, at: Duration) -> Event {
    let line = Line::parse(raw);
    let hv = HvEvent::recognise(&line);
    Event { line, hv, at }
}

/// Keeps what the hypervisor's stable lines say (as the QEMU runner does).
fn record(out: &mut BootOutcome, event: &Event) {
    out.lines.push(event.line.text.clone());
    match &event.hv {
        Some(HvEvent::Ready(q)) => {
            out.ready.insert(q.clone());
        }
        Some(HvEvent::Stopped { qube, reason }) => {
            out.ready.remove(qube);
            out.stopped.push((qube.clone(), reason.clone()));
        }
        Some(HvEvent::Exited { qube, status }) => {
            out.ready.remove(qube);
            out.exited.push((qube.clone(), *status));
        }
        Some(HvEvent::Restarting { qube, attempt, .. }) => {
            out.restarts.push((qube.clone(), *attempt))
        }
        Some(HvEvent::Panic(message)) => out.panic = Some(message.clone()),
        Some(HvEvent::Halting) => out.halted = true,
        Some(HvEvent::Idle) => out.idle = true,
        None => {}
    }
}

/// Splits a growing file into complete lines.
#[derive(Default)]
struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    /// Reads what was appended since the last call; returns the complete lines.
    fn read(&mut self, from: &mut impl Read) -> Result<Vec<String>> {
        let mut buf = Vec::new();
        from.read_to_end(&mut buf)?;
        Ok(self.push(&buf))
    }

    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            lines.push(strip_ansi(&String::from_utf8_lossy(&line[..end])));
        }
        lines
    }
}

/// Whether Bochs and its pieces are installed (installing them when possible).
pub fn ensure() -> Result<()> {
    deps::ensure(deps::BOCHS)
}

/// Where a Bochs boot keeps its scratch files: one folder per run (`cargo xtask test` may
/// run in several processes on the same tree at once).
pub fn scratch_dir(name: &str) -> PathBuf {
    crate::bundle::out_dir()
        .join("bochs")
        .join(format!("{name}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bochsrc_boots_the_iso_unattended() {
        let o = BochsOptions::new(
            "/t/default.iso".into(),
            MODEL_VMX,
            256,
            "/t/bochs/vmx".into(),
        );
        let rc = o.bochsrc();
        for want in [
            "memory: guest=256, host=256\n",
            "cpu: count=1, model=corei7_sandy_bridge_2600k, ips=100000000\n",
            "ata0-master: type=cdrom, path=\"/t/default.iso\", status=inserted\n",
            "boot: cdrom\n",
            "clock: sync=none, time0=1\n",
            "com1: enabled=1, mode=file, dev=\"/t/bochs/vmx/com1.out\"\n",
            "display_library: term\n",
            "log: \"/t/bochs/vmx/bochs.log\"\n",
        ] {
            assert!(rc.contains(want), "{want:?} missing from\n{rc}");
        }
        assert_eq!(DEBUGGER_SCRIPT, "c\nq\n");
    }

    #[test]
    fn splits_a_growing_file_into_lines() {
        let mut r = LineReader::default();
        assert!(r.push(b"hv | qube ne").is_empty());
        assert_eq!(
            r.push(b"t ready\r\n\x1b[31mx\x1b[0m | y\n"),
            ["hv | qube net ready", "x | y"]
        );
        let e = event("hv       | qube net ready", Duration::ZERO);
        assert_eq!(e.hv, Some(HvEvent::Ready("net".into())));
    }

    #[test]
    fn tells_bochs_log_levels_apart() {
        assert!(is_info_line("00000000000i[      ] reading configuration"));
        assert!(!is_info_line(
            "00395658199e[CPU0  ] RDMSR: Unknown register"
        ));
        assert!(!is_info_line("00000000000p[SIM   ] panic"));
    }
}
