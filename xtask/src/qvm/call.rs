//! One call from the host, as its source: ask, then send stdin within the flow-control
//! window, pass stdout and stderr on as they come (acknowledging what was written), until
//! the exit code, a refusal or an abort.

use super::conn::Conn;
use anyhow::{Result, bail};
use bulkhead_abi::qrexec::{DATA_MAX, FromAdmin, Io, Refusal, Stream, ToAdmin, WINDOW};
use std::io::Write;
use std::time::{Duration, Instant};

/// What to call.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The service, e.g. `qubes.VMShell`.
    pub service: &'a str,
    /// Its argument (empty for none).
    pub argument: &'a str,
    /// A qube, `@dispvm:NAME` or `@adminvm`.
    pub target: &'a str,
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The service exited with this code.
    Exited(i32),
    /// The admin qube refused it.
    Refused(Refusal),
    /// An end gave it up.
    Aborted,
}

/// A call's state as its source sees it.
#[derive(Debug)]
pub struct Call<'a> {
    id: u32,
    stdin: &'a [u8],
    /// Stdin bytes sent, and acknowledged by the target.
    sent: usize,
    acked: usize,
    eof_sent: bool,
    /// Output written and not yet acknowledged: stdout, stderr.
    unacked: [u32; 2],
    /// Where it runs, once accepted.
    pub target: Option<String>,
    /// How it ended, once it has.
    pub ending: Option<Ending>,
}

impl<'a> Call<'a> {
    /// Call number `id`, with `stdin` as its whole standard input.
    pub fn new(id: u32, stdin: &'a [u8]) -> Self {
        Call {
            id,
            stdin,
            sent: 0,
            acked: 0,
            eof_sent: false,
            unacked: [0; 2],
            target: None,
            ending: None,
        }
    }

    /// The next message to send: acknowledgements first, then stdin as far as the window
    /// allows, then its end. Nothing before the call is accepted, nor after it ended.
    pub fn next_to_send(&mut self) -> Option<Io<'a>> {
        if self.target.is_none() || self.ending.is_some() {
            return None;
        }
        let call = self.id;
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let bytes = std::mem::take(&mut self.unacked[i]);
            if bytes > 0 {
                return Some(Io::Ack {
                    call,
                    stream,
                    bytes,
                });
            }
        }
        let room = (WINDOW as usize).saturating_sub(self.sent - self.acked);
        let left = self.stdin.len() - self.sent;
        if left > 0 && room > 0 {
            let n = left.min(room).min(DATA_MAX);
            let stdin = self.stdin;
            let bytes = &stdin[self.sent..self.sent + n];
            self.sent += n;
            return Some(Io::Data {
                call,
                stream: Stream::Stdin,
                bytes,
            });
        }
        if left == 0 && !self.eof_sent {
            self.eof_sent = true;
            return Some(Io::Eof {
                call,
                stream: Stream::Stdin,
            });
        }
        None
    }

    /// Takes one message from the admin qube; output goes to `out` and `err`.
    pub fn on_message(
        &mut self,
        msg: &FromAdmin<'_>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<()> {
        match *msg {
            FromAdmin::Accepted { call, target } if call == self.id => {
                self.target = Some(target.to_string());
            }
            FromAdmin::Refused { call, reason } if call == self.id => {
                self.ending = Some(Ending::Refused(reason));
            }
            FromAdmin::Io(ref io) if io.call() == self.id && self.target.is_some() => {
                self.on_io(io, out, err)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn on_io(&mut self, io: &Io<'_>, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
        match *io {
            Io::Data { stream, bytes, .. } => {
                let (to, i): (&mut dyn Write, usize) = match stream {
                    Stream::Stdout => (out, 0),
                    Stream::Stderr => (err, 1),
                    Stream::Stdin => bail!("the target wrote to its own stdin"),
                };
                to.write_all(bytes)?;
                to.flush()?;
                self.unacked[i] = self.unacked[i].saturating_add(bytes.len() as u32);
            }
            Io::Ack {
                stream: Stream::Stdin,
                bytes,
                ..
            } => self.acked = (self.acked + bytes as usize).min(self.sent),
            Io::Exit { code, .. } => self.ending = Some(Ending::Exited(code)),
            Io::Abort { .. } => self.ending = Some(Ending::Aborted),
            Io::Eof { .. } | Io::Ack { .. } => {}
        }
        Ok(())
    }
}

/// Makes call `id` on `conn` (whose session has started) and runs it to its end. The
/// admin qube may have to start the target first: up to `accept_wait` for its answer.
pub fn run(
    conn: &mut Conn,
    id: u32,
    request: &Request<'_>,
    stdin: &[u8],
    out: &mut dyn Write,
    err: &mut dyn Write,
    accept_wait: Duration,
) -> Result<(Option<String>, Ending)> {
    conn.send(&ToAdmin::Call {
        call: id,
        service: request.service,
        argument: request.argument,
        target: request.target,
    })?;
    let mut call = Call::new(id, stdin);
    let accept_by = Instant::now() + accept_wait;
    loop {
        while let Some(io) = call.next_to_send() {
            conn.send(&ToAdmin::Io(io))?;
        }
        if let Some(ending) = call.ending.take() {
            return Ok((call.target, ending));
        }
        let deadline = call.target.is_none().then_some(accept_by);
        match conn.recv(deadline, |m| call.on_message(&m, out, err))? {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                // Our output went away (`| head`): the call is given up at both ends.
                let _ = conn.send(&ToAdmin::Io(Io::Abort { call: id }));
                return Err(e);
            }
            None => bail!(
                "the admin qube did not answer the call within {} s",
                accept_wait.as_secs()
            ),
        }
    }
}
