//! A QMP client: look at the machine's screen and type on its keyboard and mouse.
//!
//! QEMU listens for QMP when [`BootOptions::qmp_socket`](super::BootOptions) is set
//! (`-qmp unix:PATH,server=on,wait=off`); [`Qmp::connect`] waits for the socket, reads
//! QEMU's greeting and enters command mode (`qmp_capabilities`). Then every command is
//! synchronous: it is sent with an `id`, and the reply with that `id` is its answer;
//! asynchronous events in between are kept in [`Qmp::events`]. A command QEMU refuses is
//! an error carrying QEMU's own `desc`.
//!
//! Input goes where QEMU sends it by default: keys to the PS/2 keyboard, relative motion
//! and buttons to the PS/2 mouse. Absolute motion ([`Qmp::move_abs`]) needs a device that
//! takes it (`-device virtio-tablet-pci` or `usb-tablet`); without one QEMU refuses it
//! ("Input handler not found for event type abs"). A scenario uses it from its watcher:
//!
//! ```ignore
//! opts.display_device = Some(BOCHS_DISPLAY.into());
//! opts.qmp_socket = Some(qmp::socket_path("gui"));
//! // in the watcher, once the GUI qube is ready:
//! let mut qmp = Qmp::connect(opts.qmp_socket.as_ref().unwrap(), Duration::from_secs(10))?;
//! qmp.type_text("ls\n")?;
//! let screen = qmp.screendump(&dir.join("after-ls.ppm"))?;
//! ```

use super::image::Image;
use super::keys;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a command may wait for its reply unless [`Qmp::timeout`] is changed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest QMP message accepted (QEMU's replies here are a few hundred bytes).
const MAX_MESSAGE: usize = 1 << 20;

/// A mouse button, as QMP names it (`InputButton`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code, reason = "API for the GUI scenarios")]
pub enum Button {
    Left,
    Middle,
    Right,
    WheelUp,
    WheelDown,
}

impl Button {
    fn qmp_name(self) -> &'static str {
        match self {
            Button::Left => "left",
            Button::Middle => "middle",
            Button::Right => "right",
            Button::WheelUp => "wheel-up",
            Button::WheelDown => "wheel-down",
        }
    }
}

/// QEMU's range of absolute pointer positions on each axis: `0..=ABS_MAX`.
pub const ABS_MAX: u32 = 0x7fff;

/// A socket path for `name` in the temporary folder, unique to this process (Unix socket
/// paths must stay under 108 bytes, which `target/` may not).
pub fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bulkhead-qmp-{}-{name}.sock", std::process::id()))
}

/// A QMP connection in command mode.
pub struct Qmp {
    stream: UnixStream,
    /// Bytes received that do not yet make a whole line.
    partial: Vec<u8>,
    next_id: u64,
    /// How long a command waits for its reply.
    pub timeout: Duration,
    /// Asynchronous events received while waiting for replies, oldest first.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects to the QMP socket at `path`, waiting up to `wait` for QEMU to open it.
    pub fn connect(path: &Path, wait: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("connecting to QMP at {} for {wait:?}", path.display())
                    });
                }
            }
        };
        Qmp::start(stream)
    }

    /// Reads QEMU's greeting on `stream` and enters command mode.
    pub fn start(stream: UnixStream) -> Result<Qmp> {
        let mut qmp = Qmp {
            stream,
            partial: Vec::new(),
            next_id: 1,
            timeout: DEFAULT_TIMEOUT,
            events: Vec::new(),
        };
        let deadline = Instant::now() + qmp.timeout;
        let greeting = qmp.message(deadline).context("reading QMP's greeting")?;
        if greeting.get("QMP").is_none() {
            bail!("QMP greeting expected, got {greeting}");
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` (a JSON object) and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({ "execute": command, "id": id });
        if arguments.as_object().is_some_and(|a| !a.is_empty()) {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        (&self.stream)
            .write_all(line.as_bytes())
            .with_context(|| format!("sending QMP {command}"))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let reply = self
                .message(deadline)
                .with_context(|| format!("waiting for QMP {command}"))?;
            if reply.get("event").is_some() {
                self.events.push(reply);
                continue;
            }
            let reply_id = reply.get("id").and_then(Value::as_u64);
            // A late reply to an earlier command that timed out.
            if reply_id.is_some_and(|got| got < id) {
                continue;
            }
            let error = reply.get("error");
            // An error without an id is QEMU refusing the request itself: still ours.
            if reply_id != Some(id) && error.is_none() {
                bail!("QMP {command}: a reply that is not to it: {reply}");
            }
            if let Some(error) = error {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("");
                let class = error.get("class").and_then(Value::as_str).unwrap_or("?");
                bail!("QEMU refused {command}: {desc} ({class})");
            }
            return reply
                .get("return")
                .cloned()
                .with_context(|| format!("QMP {command}: a reply without `return`: {reply}"));
        }
    }

    /// The next whole message, skipping blank lines.
    fn message(&mut self, deadline: Instant) -> Result<Value> {
        loop {
            if let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                if text.trim().is_empty() {
                    continue;
                }
                return serde_json::from_str(text.trim())
                    .with_context(|| format!("QMP sent something that is not JSON: {text:?}"));
            }
            if self.partial.len() > MAX_MESSAGE {
                bail!("QMP message longer than {MAX_MESSAGE} bytes");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no reply from QMP in {:?}", self.timeout);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut buf = [0u8; 4096];
            match (&self.stream).read(&mut buf) {
                Ok(0) => bail!("QEMU closed the QMP connection"),
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from QMP"),
            }
        }
    }

    /// Has QEMU write the screen to `ppm` (made absolute: QEMU resolves paths in its own
    /// working folder) and parses it.
    pub fn screendump(&mut self, ppm: &Path) -> Result<Image> {
        let ppm = std::path::absolute(ppm)?;
        self.execute("screendump", json!({ "filename": ppm }))?;
        Image::read_ppm(&ppm)
    }

    /// Presses `keys` together, then releases them (QKeyCode names: `["ctrl", "alt", "f1"]`).
    pub fn send_key(&mut self, keys: &[&str]) -> Result<()> {
        if keys.is_empty() {
            bail!("send_key needs at least one key");
        }
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| json!({ "type": "qcode", "data": k }))
            .collect();
        self.execute("send-key", json!({ "keys": keys }))?;
        Ok(())
    }

    /// Types `text` (printable ASCII, newline, tab) one key at a time, with shift where a US
    /// keyboard needs it. Nothing is sent if some character has no key.
    pub fn type_text(&mut self, text: &str) -> Result<()> {
        for stroke in keys::keystrokes(text)? {
            self.send_key(&stroke.chord())?;
        }
        Ok(())
    }

    fn input(&mut self, events: Value) -> Result<()> {
        self.execute("input-send-event", json!({ "events": events }))?;
        Ok(())
    }

    /// Moves the (PS/2) mouse by `dx`, `dy` (right and down are positive).
    pub fn move_rel(&mut self, dx: i32, dy: i32) -> Result<()> {
        self.input(json!([
            { "type": "rel", "data": { "axis": "x", "value": dx } },
            { "type": "rel", "data": { "axis": "y", "value": dy } },
        ]))
    }

    /// Moves an absolute pointer to pixel `(x, y)` of a `screen` = `(width, height)`
    /// display, scaled to QEMU's `0..=ABS_MAX`. Needs a tablet device (see the module).
    pub fn move_abs(&mut self, x: u32, y: u32, screen: (u32, u32)) -> Result<()> {
        let scale = |v: u32, side: u32| {
            let side = u64::from(side.max(2) - 1);
            (u64::from(v).min(side) * u64::from(ABS_MAX) / side) as u32
        };
        self.input(json!([
            { "type": "abs", "data": { "axis": "x", "value": scale(x, screen.0) } },
            { "type": "abs", "data": { "axis": "y", "value": scale(y, screen.1) } },
        ]))
    }

    /// Presses (`down`) or releases `button`.
    pub fn button(&mut self, button: Button, down: bool) -> Result<()> {
        let name = button.qmp_name();
        self.input(json!([{ "type": "btn", "data": { "down": down, "button": name } }]))
    }

    /// Presses and releases `button`.
    pub fn click(&mut self, button: Button) -> Result<()> {
        self.button(button, true)?;
        self.button(button, false)
    }
}

/// Connects to QMP at `socket`, has QEMU dump the screen and writes it to `png` (the PPM
/// QEMU writes goes to the temporary folder and is removed). For `cargo xtask run
/// --screenshot` and scenarios.
pub fn save_screenshot(socket: &Path, png: &Path) -> Result<Image> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let ppm = std::env::temp_dir().join(format!("bulkhead-screen-{}.ppm", std::process::id()));
    let image = qmp.screendump(&ppm);
    let _ = std::fs::remove_file(&ppm);
    let image = image?;
    image.write_png(png)?;
    Ok(image)
}

#[cfg(test)]
mod tests;
