//! `dispvm [--disposable NAME] [--template T] [--] COMMAND...` (the agent binary called
//! `dispvm`, or `bulkhead-agent dispvm ...`): runs a shell command line in a disposable and
//! shows its output, as Qubes' `qvm-run --dispvm` does. The words of COMMAND are joined with
//! spaces and run by the disposable's `/bin/sh -c`.
//!
//! 1. The request channel is the channel device whose capability names `<disposable>.req<k>`
//!    with this qube as side A (the system description's `disposables = [...]` makes one per
//!    disposable); with one, that one, otherwise `--disposable` chooses.
//! 2. One request per channel at a time: `/run/dispvm/<channel>` is locked (`flock`) for the
//!    whole request; a second `dispvm` is refused with a message.
//! 3. A disposable that served a request powers off, and the hypervisor then resets the
//!    channel (its generation moves). The lock file remembers the generation of the last
//!    request; while the channel still has it, the last disposable has not gone yet, and
//!    `dispvm` waits for it (at most [`PREVIOUS_PATIENCE`]).
//! 4. The channel device is opened here, beside the agent's event loop (which leaves side-A
//!    request channels alone); `Hello` and `Run` go into the ring and the doorbell starts the
//!    disposable ([`request::Request`] holds the conversation).
//! 5. Output is written to stdout as it arrives, made safe for a terminal ([`text`]).
//!
//! Exit status: the command's (0..=255); [`EXIT_REFUSED`] when the disposable refused;
//! [`EXIT_FAILED`] when `dispvm` could not ask or the disposable failed (messages on stderr).

pub mod request;
pub mod text;

use crate::channel::uio::{self, Found, UioChannel};
use crate::channel::{Doorbell, Side};
use crate::config::Settings;
use crate::log::printable;
use crate::services::disposable::requested_disposable;
use request::{End, Request};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Exit status when `dispvm` could not make the request or the disposable failed it.
pub const EXIT_FAILED: u8 = 125;
/// Exit status when the disposable refused the request.
pub const EXIT_REFUSED: u8 = 126;
/// Where the per-channel lock files live.
pub const LOCK_DIR: &str = "/run/dispvm";
/// How long the disposable may take to answer (a Linux boot, under TCG too).
pub const ANSWER_PATIENCE: Duration = Duration::from_secs(240);
/// How long to wait for the previous request's disposable to power off.
pub const PREVIOUS_PATIENCE: Duration = Duration::from_secs(60);

const USAGE: &str = "usage: dispvm [--disposable NAME] [--template TEMPLATE] [--] COMMAND...";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// `--disposable`: which disposable (needed only when this qube may start several).
    pub disposable: Option<String>,
    /// `--template`: the template the disposable must be made from (default: ours).
    pub template: Option<String>,
    /// The command line, its words joined with spaces.
    pub command: String,
}

impl Args {
    /// Reads the arguments after `dispvm`; `Err` is what to tell the user.
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let (mut disposable, mut template) = (None, None);
        let mut i = 0;
        while let Some(a) = args.get(i) {
            let value = |i: usize| {
                args.get(i + 1)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            match a.as_str() {
                "--disposable" | "-d" => disposable = Some(value(i)?),
                "--template" | "-t" => template = Some(value(i)?),
                "--" => {
                    i += 1;
                    break;
                }
                "-h" | "--help" => return Err(String::new()),
                o if o.starts_with('-') && o.len() > 1 => {
                    return Err(format!("unknown option {}", printable(o, 40)));
                }
                _ => break,
            }
            i += 2;
        }
        let command = args[i.min(args.len())..].join(" ");
        if command.trim().is_empty() {
            return Err("no command".into());
        }
        Ok(Args {
            disposable,
            template,
            command,
        })
    }
}

/// The request channel `args` mean among the channel devices `found`: side A, named
/// `<disposable>.req<k>`; `--disposable` chooses among several.
pub fn choose<'a>(found: &'a [Found], wanted: Option<&str>) -> Result<&'a Found, String> {
    let ours: Vec<(&Found, &str)> = found
        .iter()
        .filter(|f| f.info.side == 0)
        .filter_map(|f| requested_disposable(f.info.name.as_str()).map(|d| (f, d)))
        .collect();
    let names = || {
        ours.iter()
            .map(|(_, d)| printable(d, 32))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if ours.is_empty() {
        return Err("this qube may not start disposables: no request channel \
                    (<disposable>.req<k>) on its PCI bus; `disposables = [...]` in the system \
                    description gives it one"
            .into());
    }
    match wanted {
        Some(w) => ours
            .iter()
            .find(|(_, d)| *d == w)
            .map(|(f, _)| *f)
            .ok_or_else(|| {
                format!(
                    "this qube may not start a disposable named {}; it may start: {}",
                    printable(w, 32),
                    names()
                )
            }),
        None if ours.len() == 1 => Ok(ours[0].0),
        None => Err(format!(
            "this qube may start several disposables ({}): choose one with --disposable NAME",
            names()
        )),
    }
}

/// The lock on one request channel, held for a whole request, with the channel generation
/// of the last request made over it.
#[derive(Debug)]
pub struct Lock {
    file: File,
    /// Where it is.
    pub path: PathBuf,
}

impl Lock {
    /// Takes the lock of `channel` in `dir`; `Err` says why not (another `dispvm` holds it).
    pub fn take(dir: &Path, channel: &str) -> Result<Lock, String> {
        // Channel names come from the hypervisor; keep them to one path component anyway.
        let file_name: String = channel
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(file_name.trim_start_matches('.'));
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { file, path }),
            Err(TryLockError::WouldBlock) => Err(format!(
                "another dispvm is using {} now: one request at a time per disposable",
                printable(channel, 32)
            )),
            Err(TryLockError::Error(e)) => Err(format!("locking {}: {e}", path.display())),
        }
    }

    /// The channel generation the last request saw, if one was made.
    pub fn last_generation(&mut self) -> Option<u32> {
        let mut text = String::new();
        self.file.rewind().ok()?;
        self.file.read_to_string(&mut text).ok()?;
        text.trim().parse().ok()
    }

    /// Remembers that a request goes out at `generation`.
    pub fn record(&mut self, generation: u32) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(format!("{generation}\n").as_bytes())
    }
}

/// Runs `dispvm ARGS` as `settings` say; the exit status.
pub fn main(args: &[String], settings: &Settings) -> u8 {
    let args = match Args::parse(args) {
        Ok(a) => a,
        Err(why) if why.is_empty() => {
            println!("{USAGE}");
            return 0;
        }
        Err(why) => {
            eprintln!("dispvm: {why}\n{USAGE}");
            return EXIT_FAILED;
        }
    };
    match run(&args, settings) {
        Ok(status) => status,
        Err(why) => {
            eprintln!("dispvm: {why}");
            EXIT_FAILED
        }
    }
}

fn run(args: &Args, settings: &Settings) -> Result<u8, String> {
    let Some(template) = args.template.as_deref().or(settings.template.as_deref()) else {
        return Err(
            "no template to ask for: this qube has no bulkhead.template=; give --template".into(),
        );
    };
    let (found, _) = uio::scan(Path::new(uio::PCI_DEVICES));
    let found = choose(&found, args.disposable.as_deref())?.clone();
    let channel = found.info.name.to_string();
    let disp = printable(requested_disposable(&channel).unwrap_or(&channel), 32);
    let mut lock = Lock::take(Path::new(LOCK_DIR), &channel)?;
    let mut ch = open(&found)?;
    if lock.last_generation() == Some(ch.ring.generation()) {
        ch = wait_for_previous(ch, &found, &disp, &lock.path)?;
    }
    lock.record(ch.ring.generation())
        .map_err(|e| format!("{}: {e}", lock.path.display()))?;
    let mut req = Request::new(ch, settings.qube(), template, &args.command);
    let mut stdout = io::stdout().lock();
    let (started, mut notified) = (Instant::now(), false);
    let end = loop {
        let moved = req.step(&mut stdout);
        if !notified && req.request_queued() {
            // The doorbell starts the disposable (the hypervisor does on a stopped one).
            notified = true;
            let ring = &mut req.transport_mut().ring;
            if let Err(e) = ring.doorbell().ring() {
                return Err(format!("cannot notify {disp} (the doorbell): {e}"));
            }
        }
        if let Some(end) = req.end() {
            break end.clone();
        }
        if !req.answered() && started.elapsed() > ANSWER_PATIENCE {
            return Err(format!(
                "no answer from {disp} in {} s",
                ANSWER_PATIENCE.as_secs()
            ));
        }
        if !moved
            && let Err(e) = req
                .transport_mut()
                .wait_for_peer(Duration::from_millis(200))
        {
            req.channel_error(e);
        }
    };
    // Say we took everything, so the disposable powers off without waiting for us.
    let ring = &mut req.transport_mut().ring;
    if let Ok(false) = ring.prepare_wait() {
        ring.finish_wait();
    }
    Ok(exit_status(&end, &disp))
}

/// The exit status for `end`, after telling the user what went wrong.
pub fn exit_status(end: &End, disp: &str) -> u8 {
    match end {
        End::Exited(status) => match u8::try_from(*status) {
            Ok(s) => s,
            Err(_) => {
                eprintln!("dispvm: {disp} reported exit status {status}, which no command has");
                EXIT_FAILED
            }
        },
        End::Refused(why) => {
            eprintln!("dispvm: {disp} refused the request: {why}");
            EXIT_REFUSED
        }
        End::Failed(f) => {
            eprintln!("dispvm: {disp} {f}");
            EXIT_FAILED
        }
    }
}

/// Opens the request channel's device (the agent bound it to `uio_pci_generic` at boot;
/// binding again is harmless).
fn open(found: &Found) -> Result<UioChannel, String> {
    let _ = uio::bind_all(std::slice::from_ref(found));
    let ch = UioChannel::open(found.clone())
        .map_err(|e| format!("cannot open {}: {e}", printable(&found.info.name, 32)))?;
    if ch.ring.side() != Side::A {
        return Err("the request channel's capability says side B".into());
    }
    Ok(ch)
}

/// The last request's disposable has not powered off yet (the channel has the generation it
/// had then): waits for the reset, then opens the channel afresh.
fn wait_for_previous(
    ch: UioChannel,
    found: &Found,
    disp: &str,
    lock: &Path,
) -> Result<UioChannel, String> {
    let reset = await_reset(
        || ch.ring.generation(),
        PREVIOUS_PATIENCE,
        || eprintln!("dispvm: waiting for {disp} to power off after the previous request"),
    );
    if reset.is_none() {
        return Err(format!(
            "{disp} is still busy with the previous request: it has not powered off in {} s \
             (if it never started, remove {} and ask again)",
            PREVIOUS_PATIENCE.as_secs(),
            lock.display()
        ));
    }
    drop(ch);
    open(found)
}

/// Waits until `generation()` moves from what it is now (a reset), at most `patience`;
/// calls `waiting` once if that takes more than half a second. How long it took, or `None`.
pub fn await_reset(
    generation: impl Fn() -> u32,
    patience: Duration,
    waiting: impl FnOnce(),
) -> Option<Duration> {
    let (since, before) = (Instant::now(), generation());
    let mut waiting = Some(waiting);
    while generation() == before {
        if since.elapsed() > patience {
            return None;
        }
        if since.elapsed() > Duration::from_millis(500)
            && let Some(say) = waiting.take()
        {
            say();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(since.elapsed())
}

#[cfg(test)]
mod tests;
