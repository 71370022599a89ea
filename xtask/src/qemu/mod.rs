//! Booting Bulkhead in QEMU and watching its serial console; looking at its screen and
//! typing on it through QMP ([`qmp`], [`image`], [`keys`]).
//!
//! [`boot`] starts QEMU, hands every console line to a watcher (`until`), and stops QEMU as
//! soon as the watcher has seen enough, when the timeout passes, or when QEMU exits. Scenario
//! tests use it like this:
//!
//! ```ignore
//! let opts = BootOptions::new(Media::Direct { kernel, bundle }, 256);
//! let out = qemu::boot(&opts, |e| Control::stop_if(matches!(e.hv, Some(HvEvent::Halting))))?;
//! assert!(out.ready.contains("net") && out.panic.is_none() && !out.timed_out);
//! ```
//!
//! The console format is documented in docs/console.md.

mod command;
pub mod image;
pub mod keys;
mod process;
pub mod qmp;
mod serial;

#[allow(unused_imports, reason = "API for scenario tests")]
pub use command::{
    BOCHS_DISPLAY, BootOptions, DEBUG_EXIT_PORT, Display, Media, Nic, NicModel, QEMU, SCREEN_ID,
    Serial, debug_exit_code,
};
#[allow(unused_imports, reason = "API for scenario tests")]
pub use image::{Image, Rect};
pub use process::Qemu;
#[allow(unused_imports, reason = "API for scenario tests")]
pub use serial::{HV, HvEvent, Line, strip_ansi};

use anyhow::Result;
use std::collections::BTreeSet;
use std::process::ExitStatus;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// One console line as the watcher sees it.
#[derive(Clone, Debug)]
pub struct Event {
    /// The line, escapes removed, split into source and body.
    pub line: Line,
    /// What it means, when it is one of the hypervisor's stable lines.
    pub hv: Option<HvEvent>,
    /// Time since QEMU started.
    pub at: Duration,
}

/// What the watcher wants after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep reading.
    Continue,
    /// Seen enough: stop QEMU now.
    Stop,
    /// Kill QEMU now with SIGKILL, as a power cut would end a machine: neither QEMU nor the
    /// guest gets to run another instruction, to close or flush its disk image, or to say
    /// anything more. What QEMU had already handed to the host's kernel (a completed write
    /// in the page cache) stays in the image. Bochs runs are stopped as for [`Control::Stop`].
    Kill,
}

impl Control {
    /// `Stop` when `done`.
    pub fn stop_if(done: bool) -> Control {
        if done {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// Everything a boot showed.
#[derive(Clone, Debug, Default)]
pub struct BootOutcome {
    /// Every console line, escapes removed.
    pub lines: Vec<String>,
    /// Qubes that reported `ready`.
    pub ready: BTreeSet<String>,
    /// `(qube, reason)` for each `stopped` line, in order.
    pub stopped: Vec<(String, String)>,
    /// `(qube, status)` for each `exited` line, in order.
    pub exited: Vec<(String, i64)>,
    /// `(qube, attempt)` for each `restarting` line, in order.
    pub restarts: Vec<(String, u32)>,
    /// The hypervisor's panic message, if it panicked.
    pub panic: Option<String>,
    /// The hypervisor said `halting`.
    pub halted: bool,
    /// The hypervisor said every qube has stopped.
    pub idle: bool,
    /// The watcher asked to stop (QEMU was then stopped by us).
    pub until_met: bool,
    /// The watcher asked for [`Control::Kill`] (QEMU was then killed by us with SIGKILL).
    pub killed: bool,
    /// The timeout passed first (QEMU was then stopped by us).
    pub timed_out: bool,
    /// QEMU's exit status.
    pub qemu_status: Option<ExitStatus>,
    /// Wall time from start to stop.
    pub wall: Duration,
}

impl BootOutcome {
    /// The code the guest wrote to `isa-debug-exit`, if QEMU left that way by itself.
    pub fn debug_exit(&self) -> Option<i32> {
        if self.until_met || self.timed_out {
            return None;
        }
        self.qemu_status
            .and_then(|s| s.code())
            .and_then(debug_exit_code)
    }

    /// Lines that `source` wrote (bodies only).
    #[allow(dead_code, reason = "API for scenario tests")]
    pub fn lines_from(&self, source: &str) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| Line::parse(l))
            .filter(|l| l.source.as_deref() == Some(source))
            .map(|l| l.body)
            .collect()
    }

    /// The qubes of `expected` that never reported ready.
    pub fn not_ready<'a>(&self, expected: &[&'a str]) -> Vec<&'a str> {
        expected
            .iter()
            .copied()
            .filter(|q| !self.ready.contains(*q))
            .collect()
    }

    fn record(&mut self, event: &Event) {
        self.lines.push(event.line.text.clone());
        match &event.hv {
            Some(HvEvent::Ready(q)) => {
                self.ready.insert(q.clone());
            }
            Some(HvEvent::Stopped { qube, reason }) => {
                self.ready.remove(qube);
                self.stopped.push((qube.clone(), reason.clone()));
            }
            Some(HvEvent::Exited { qube, status }) => {
                self.ready.remove(qube);
                self.exited.push((qube.clone(), *status));
            }
            Some(HvEvent::Restarting { qube, attempt, .. }) => {
                self.restarts.push((qube.clone(), *attempt))
            }
            Some(HvEvent::Panic(message)) => self.panic = Some(message.clone()),
            Some(HvEvent::Halting) => self.halted = true,
            Some(HvEvent::Idle) => self.idle = true,
            None => {}
        }
    }
}

/// Boots QEMU with `opts` and feeds every console line to `until` until it returns
/// [`Control::Stop`], the timeout passes, or QEMU exits. QEMU never outlives this call.
pub fn boot(opts: &BootOptions, mut until: impl FnMut(&Event) -> Control) -> Result<BootOutcome> {
    let started = Instant::now();
    let deadline = opts.timeout.map(|t| started + t);
    let (mut qemu, lines) = Qemu::start(opts)?;
    let mut out = BootOutcome::default();
    loop {
        let raw = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(raw) => raw,
                    Err(RecvTimeoutError::Timeout) => {
                        out.timed_out = true;
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match lines.recv() {
                Ok(raw) => raw,
                Err(_) => break,
            },
        };
        let line = Line::parse(&raw);
        let hv = HvEvent::recognise(&line);
        let event = Event {
            line,
            hv,
            at: started.elapsed(),
        };
        out.record(&event);
        match until(&event) {
            Control::Continue => {}
            Control::Stop => {
                out.until_met = true;
                break;
            }
            Control::Kill => {
                out.until_met = true;
                out.killed = true;
                break;
            }
        }
    }
    let status = if out.killed {
        qemu.kill()?
    } else if out.until_met || out.timed_out {
        qemu.stop()?
    } else {
        qemu.wait()?
    };
    out.wall = started.elapsed();
    out.qemu_status = Some(status);
    // Lines QEMU wrote before it stopped are kept, but not shown to the watcher again.
    for raw in lines.try_iter() {
        let line = Line::parse(&raw);
        let hv = HvEvent::recognise(&line);
        out.record(&Event {
            line,
            hv,
            at: out.wall,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
