//! `cargo xtask bench --gui`: what the gui qube costs (`systems/bench/gui.toml`), counted by
//! the QEMU plugin (`xtask/qemu-counter`) between the marks the gui qube sets with `marks=N`
//! (`unikernels/gui/src/bench.rs`), under `-icount shift=0` (one instruction per virtual ns):
//!
//! - the idle desktop for 2 s of guest time: VM exits and instructions per second;
//! - a key press (typed through QMP into the focused window) until the client's answer is
//!   on the screen: instructions and VM exits;
//! - 20 full-window updates of a 1000x700 window: instructions and VM exits per update, and
//!   the updates per second that makes at one instruction per ns.
//!
//! All counts are of the whole machine (hypervisor, gui qube, client).

use crate::bench::{git_revision, replace_section};
use crate::netbench::report::{Counters, parse_marks};
use crate::progress::Steps;
use crate::qemu::qmp::{self, Button, Qmp};
use crate::qemu::{self, BOCHS_DISPLAY, Control, HvEvent, Line};
use anyhow::{Context, Result, bail};
use std::time::Duration;

const SYSTEM: &str = "systems/bench/gui.toml";
/// Full-window updates the gui qube times (`FULL_UPDATES` there).
const UPDATES: u64 = 20;
/// The idle span, seconds of guest time (`IDLE_NS` there).
const IDLE_S: u64 = 2;
const BEGIN: &str = "<!-- gui:begin -->";
const END: &str = "<!-- gui:end -->";

/// The figures.
struct GuiBench {
    idle: Counters,
    key: Counters,
    updates: Counters,
}

pub fn run(write_docs: bool) -> Result<()> {
    let mut steps = Steps::new(4);
    steps.next("building the counting plugin");
    let plugin = crate::netbench::build_plugin()?;
    steps.next(&format!("building {SYSTEM}"));
    let a = crate::bundle::assemble(
        &crate::workspace_root().join(SYSTEM),
        &mut Steps::new(crate::bundle::STEPS),
    )?;
    steps.next("booting it under the plugin (-icount shift=0)");
    let marks = crate::bundle::out_dir().join("bench-gui.marks");
    let _ = std::fs::remove_file(&marks);
    let mut opts = a.boot_options();
    opts.serial = qemu::Serial::Captured;
    opts.echo = false;
    opts.timeout = Some(Duration::from_secs(600));
    opts.serial_log = Some(marks.with_extension("log"));
    opts.display_device = Some(BOCHS_DISPLAY.into());
    let socket = qmp::socket_path("bench-gui");
    opts.qmp_socket = Some(socket.clone());
    opts.extra_args = vec![
        "-icount".into(),
        "shift=0,align=off,sleep=off".into(),
        "-plugin".into(),
        format!("{},out={}", plugin.display(), marks.display()),
    ];
    let mut window = None;
    let mut failed = None;
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        let line = Line::parse(&e.line.text);
        if line.source.as_deref() != Some("gui") {
            return Control::Continue;
        }
        let b = &line.body;
        if let Some(p) = crate::scenarios::placement(b).filter(|p| p.qube == "work") {
            window = Some((p.area.x, p.area.y, p.area.w, p.area.h));
        }
        let step = if b.contains("gui: bench: idle span done") {
            // Focus the window (a click), then one key.
            window.context("no window placed").and_then(|w| {
                with_qmp(&socket, |q| {
                    q.move_rel(w.0 + w.2 / 2 - 512, w.1 + w.3 / 2 - 384)?;
                    q.click(Button::Left)?;
                    std::thread::sleep(Duration::from_millis(300));
                    q.send_key(&["a"])
                })
            })
        } else if b.contains("gui: bench: key to pixels done") {
            with_qmp(&socket, |q| q.send_key(&["f"]))
        } else {
            Ok(())
        };
        if let Err(e) = step {
            failed = Some(e);
            return Control::Stop;
        }
        Control::stop_if(b.contains("full-window updates done"))
    })?;
    let _ = std::fs::remove_file(&socket);
    if let Some(e) = failed {
        return Err(e);
    }
    if out.timed_out {
        bail!(
            "timed out; console in {}",
            marks.with_extension("log").display()
        );
    }
    let text =
        std::fs::read_to_string(&marks).with_context(|| format!("reading {}", marks.display()))?;
    let m = parse_marks(&text);
    if m.len() < 6 {
        bail!(
            "{} marks in {}, 6 expected (console in {})",
            m.len(),
            marks.display(),
            marks.with_extension("log").display()
        );
    }
    let bench = GuiBench {
        idle: m[0].until(&m[1]),
        key: m[2].until(&m[3]),
        updates: m[4].until(&m[5]),
    };
    steps.next("figures");
    let md = bench.markdown(&git_revision(&crate::workspace_root()));
    println!("{md}");
    if write_docs {
        let doc = crate::workspace_root().join("docs/bench.md");
        let old = std::fs::read_to_string(&doc)?;
        if !old.contains(BEGIN) {
            bail!("docs/bench.md has no {BEGIN} ... {END} section");
        }
        std::fs::write(&doc, replace_section(&old, BEGIN, END, &md))?;
        println!("wrote {}", doc.display());
    }
    Ok(())
}

fn with_qmp(socket: &std::path::Path, f: impl FnOnce(&mut Qmp) -> Result<()>) -> Result<()> {
    let mut q = Qmp::connect(socket, Duration::from_secs(10))?;
    f(&mut q)
}

impl GuiBench {
    fn markdown(&self, revision: &str) -> String {
        let per = |n: u64, d: u64| n as f64 / d as f64;
        let u = &self.updates;
        // One instruction per virtual ns; halted time is skipped (sleep=off), so the span's
        // instructions bound its guest time from below.
        let updates_per_s = UPDATES as f64 / (u.insns as f64 / 1e9);
        format!(
            "Generated by `cargo xtask bench --gui --write-docs` at commit {revision}; do not edit by hand.\n\n\
             Whole-machine counts (hypervisor, gui qube, client) from the QEMU plugin between the gui \
             qube's marks, under `-icount shift=0` (`{SYSTEM}`: a 1024x768 screen, one client with a \
             1000x700 window).\n\n\
             | What | Instructions | VM exits |\n|---|--:|--:|\n\
             | idle desktop, per second of guest time | {:.0} | {:.0} |\n\
             | key press to the client's answer on the screen | {} | {} |\n\
             | one full-window update (1000x700: client redraw, damage, copy, present), mean of {UPDATES} | {:.0} | {:.1} |\n\n\
             - Full-window updates per second at one instruction per ns: {updates_per_s:.1} \
             (a bound from the instruction count; TCG's own speed is not a figure).\n\
             - By part, per update: hypervisor {:.0}, unikernels {:.0} instructions.\n",
            per(self.idle.insns, IDLE_S),
            per(self.idle.vmruns, IDLE_S),
            self.key.insns,
            self.key.vmruns,
            per(u.insns, UPDATES),
            per(u.vmruns, UPDATES),
            per(u.parts[0], UPDATES),
            per(u.parts[1], UPDATES),
        )
    }
}
