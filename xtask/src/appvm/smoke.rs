//! `cargo xtask appvm --check-in-qemu`: boots the template in plain QEMU (TCG; not the
//! hypervisor) and waits for `/init` (and the agent, when it is in the image) to report.

use super::{AGENT_READY, INIT_OK, SMOKE_NET, Template};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the whole boot may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Console lines worth showing while waiting.
fn interesting(line: &str) -> bool {
    line.starts_with("appvm:") || line.starts_with("agent:") || line.contains("Kernel panic")
}

/// Boots, waits, kills QEMU; the console goes to `log`.
pub fn check(template: &Template, log: &Path) -> Result<()> {
    let args = template.qemu_args(SMOKE_NET);
    println!("      $ qemu-system-x86_64 {}", args.join(" "));
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("QEMU's stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut buf) {
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            buf.clear();
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut file = std::fs::File::create(log)?;
    let mut init_at = None;
    let mut agent_at = None;
    let mut gave_up = None;
    let done = |init: Option<Duration>, agent: Option<Duration>| {
        init.is_some() && (agent.is_some() || !template.has_agent)
    };
    while !done(init_at, agent_at) {
        let left = TIMEOUT.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                writeln!(file, "{line}")?;
                if interesting(&line) {
                    println!("      | {line}");
                }
                if line.contains(INIT_OK) {
                    init_at.get_or_insert(started.elapsed());
                }
                if line.contains(AGENT_READY) {
                    agent_at.get_or_insert(started.elapsed());
                }
                if line.contains("appvm: agent exited") || line.contains("Kernel panic") {
                    gave_up = Some(line);
                    break;
                }
            }
            Err(_) => break, // timed out, or QEMU closed its output
        }
    }
    let _ = child.kill();
    let status = child.wait()?;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    match (init_at, agent_at) {
        (Some(init), agent) if done(init_at, agent_at) => {
            print!("      \"{INIT_OK}\" after {:.1} s", init.as_secs_f64());
            if let Some(agent) = agent {
                print!(", \"{AGENT_READY}\" after {:.1} s", agent.as_secs_f64());
            }
            println!(" (console: {})", log.display());
            Ok(())
        }
        _ => {
            let what = if init_at.is_some() {
                AGENT_READY
            } else {
                INIT_OK
            };
            let why = if let Some(line) = gave_up {
                format!("stopped at \"{line}\"")
            } else if started.elapsed() >= TIMEOUT {
                format!("timed out after {} s", TIMEOUT.as_secs())
            } else {
                format!("QEMU ended ({status})")
            };
            bail!(
                "no \"{what}\" on the console: {why}; console in {}{}",
                log.display(),
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nQEMU said: {}", stderr.trim())
                }
            )
        }
    }
}
