//! The QEMU child process: started with its stdout piped, always stopped when dropped, and
//! its output pumped by a thread that echoes, logs and splits it into lines.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::command::{BootOptions, Serial};
use super::serial::strip_ansi;

/// A running QEMU. Dropping it stops QEMU, so no QEMU outlives the boot that started it.
pub struct Qemu {
    child: Child,
    pump: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Qemu {
    /// Starts QEMU; its console lines (raw, without newline) arrive on the receiver, which
    /// disconnects when QEMU closes its stdout.
    pub fn start(opts: &BootOptions) -> Result<(Qemu, Receiver<String>)> {
        let stdin = match opts.serial {
            Serial::Interactive => Stdio::inherit(),
            Serial::Captured => Stdio::null(),
        };
        let mut child = Command::new(&opts.qemu)
            .args(opts.args())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", opts.command_line()))?;
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || forward_errors(stderr));
        }
        let log = match &opts.serial_log {
            Some(path) => Some(BufWriter::new(
                File::create(path).with_context(|| format!("creating {}", path.display()))?,
            )),
            None => None,
        };
        let stdout = child.stdout.take().context("QEMU's stdout")?;
        let (tx, rx) = channel();
        let echo = opts.echo;
        let pump = std::thread::spawn(move || pump(stdout, echo, log, tx));
        Ok((
            Qemu {
                child,
                pump: Some(pump),
                status: None,
            },
            rx,
        ))
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        let status = self.child.wait().context("waiting for QEMU")?;
        self.finish(status)
    }

    /// Stops QEMU: SIGTERM first, so it restores the terminal it put in raw mode, then
    /// SIGKILL if it has not left after two seconds.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        if let Some(status) = self.child.try_wait()? {
            return self.finish(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return self.finish(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait().context("waiting for QEMU")?;
        self.finish(status)
    }

    /// Kills QEMU at once with SIGKILL: unlike [`Qemu::stop`], QEMU gets no chance to drain
    /// or flush its block devices (on SIGTERM it closes them, which flushes the image) or to
    /// run the guest any further.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().context("killing QEMU")?;
        let status = self.child.wait().context("waiting for QEMU")?;
        self.finish(status)
    }

    fn finish(&mut self, status: ExitStatus) -> Result<ExitStatus> {
        self.status = Some(status);
        // The pump ends when the last holder of QEMU's stdout closes it. That is QEMU, so it
        // ends now; should some child of QEMU still hold the pipe, leave the pump behind
        // rather than hang.
        if let Some(pump) = self.pump.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !pump.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if pump.is_finished() {
                let _ = pump.join();
            }
        }
        Ok(status)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.stop();
        }
    }
}

/// Passes QEMU's own messages on to our stderr, except the one that says we stopped it.
fn forward_errors(from: impl Read) {
    use std::io::BufRead;
    for line in std::io::BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        if !line.contains("terminating on signal") {
            eprintln!("{line}");
        }
    }
}

/// Copies QEMU's output to our stdout as it comes (so prompts without a newline show up at
/// once), and sends each complete line to the watcher.
fn pump(mut from: impl Read, echo: bool, mut log: Option<BufWriter<File>>, to: Sender<String>) {
    let mut buf = [0u8; 4096];
    let mut pending: Vec<u8> = Vec::new();
    let mut out = std::io::stdout();
    let send = |raw: &[u8], log: &mut Option<BufWriter<File>>| {
        let line = String::from_utf8_lossy(raw).into_owned();
        if let Some(log) = log {
            let _ = writeln!(log, "{}", strip_ansi(&line));
        }
        // The watcher may have gone; keep draining so QEMU never blocks on a full pipe.
        let _ = to.send(line);
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if echo {
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            send(&line[..end], &mut log);
        }
    }
    if !pending.is_empty() {
        send(&pending, &mut log);
    }
    if let Some(log) = &mut log {
        let _ = log.flush();
    }
}
