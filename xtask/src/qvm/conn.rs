//! The host's end of the console link: the Unix socket QEMU serves as the machine's COM2,
//! which the admin qube drives. Frames as `bulkhead_abi::qrexec::host_console` says:
//! postcard, COBS, a 0x00 after each.

use anyhow::{Context, Result, bail};
use bulkhead_abi::qrexec::host_console::{Deframer, FRAME_MAX};
use bulkhead_abi::qrexec::{FromAdmin, QREXEC_VERSION, ToAdmin};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the hello is repeated until the admin qube answers.
const HELLO_EVERY: Duration = Duration::from_secs(1);

/// A connection to the admin qube's console.
pub struct Conn {
    stream: UnixStream,
    deframer: Box<Deframer>,
    buf: Box<[u8; 4096]>,
    /// Received bytes `buf[at..len]` not yet framed.
    at: usize,
    len: usize,
    /// Frames that did not decode (dropped).
    pub garbled: u64,
}

impl Conn {
    /// Connects to the socket at `path`; says what to do when nothing listens there.
    pub fn connect(path: &Path) -> Result<Conn> {
        match UnixStream::connect(path) {
            Ok(stream) => Ok(Conn::new(stream)),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                bail!(
                    "nothing listens on {}: `cargo xtask run` must be running (with a system \
                     that has an admin qube, owning COM2: io_ports = [\"0x2f8-0x2ff\"])",
                    path.display()
                )
            }
            Err(e) => Err(e).with_context(|| format!("connecting to {}", path.display())),
        }
    }

    /// A connection over `stream` (a test's socket pair).
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            deframer: Box::new(Deframer::new()),
            buf: Box::new([0; 4096]),
            at: 0,
            len: 0,
            garbled: 0,
        }
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &ToAdmin<'_>) -> Result<()> {
        let mut buf = [0u8; FRAME_MAX + 1];
        let frame = postcard::to_slice_cobs(msg, &mut buf).context("encoding a message")?;
        self.stream
            .write_all(frame)
            .context("writing to the admin qube's console")
    }

    /// Starts the session: sends hello (after a 0x00 that ends any half frame left on the
    /// line) until the admin qube answers with its own, for up to `wait`.
    pub fn hello(&mut self, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            self.stream
                .write_all(&[0])
                .context("writing to the admin qube's console")?;
            self.send(&ToAdmin::Hello {
                version: QREXEC_VERSION,
            })?;
            let until = deadline.min(Instant::now() + HELLO_EVERY);
            while let Some(answer) = self.recv(Some(until), |m| match m {
                FromAdmin::Hello { version } => Some(version),
                _ => None,
            })? {
                match answer {
                    Some(QREXEC_VERSION) => return Ok(()),
                    Some(v) => bail!(
                        "the admin qube speaks qrexec version {v}, this xtask {QREXEC_VERSION}: \
                         rebuild and restart `cargo xtask run`"
                    ),
                    // Left from an earlier client's calls: not for us.
                    None => {}
                }
            }
        }
        bail!(
            "the admin qube did not answer on its console within {} s (is it up? another \
             `cargo xtask qvm` may be using the console)",
            wait.as_secs()
        )
    }

    /// Waits until `deadline` (`None`: for ever) for the next message, and hands it to `f`;
    /// `None` when the time ran out. Frames that do not decode are skipped.
    pub fn recv<R>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(FromAdmin<'_>) -> R,
    ) -> Result<Option<R>> {
        loop {
            while self.at < self.len {
                let byte = self.buf[self.at];
                self.at += 1;
                if let Some(frame) = self.deframer.push(byte) {
                    match postcard::from_bytes_cobs::<FromAdmin<'_>>(frame) {
                        Ok(msg) => return Ok(Some(f(msg))),
                        Err(_) => self.garbled += 1,
                    }
                }
            }
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            self.stream.set_read_timeout(timeout)?;
            match self.stream.read(&mut self.buf[..]) {
                Ok(0) => bail!("the admin qube's console closed (QEMU stopped?)"),
                Ok(n) => (self.at, self.len) = (0, n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading the admin qube's console"),
            }
        }
    }
}
