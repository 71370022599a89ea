//! A command's connection on the daemon's side ([`super::wire`]): its request becomes a call
//! of ours; its stdin frames go into the call as the window allows; the call's output and
//! end go back as frames. Nothing here blocks: the socket is non-blocking and at most
//! [`TX_MAX`] bytes wait to be written to it (beyond that the call's output is not taken,
//! so the target waits, not the daemon).

use super::core::{Core, End, Read, StartError};
use super::wire::{DATA_FRAME_MAX, FrameReader, Reply, Request, encode};
use crate::log::printable;
use bulkhead_abi::qrexec::Stream;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// Bytes of frames waiting for the command to read, at most (about).
pub const TX_MAX: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the request.
    Greeting,
    /// The call is asked for; waiting for the admin qube's answer.
    Waiting(u32),
    Running(u32),
    /// The last frame is queued: write it, then close.
    Closing,
    /// Gone (the command left, or everything was written).
    Closed,
}

/// One connection.
#[derive(Debug)]
pub struct ClientEnd {
    sock: UnixStream,
    rx: FrameReader,
    tx: Vec<u8>,
    /// Stdin bytes from a frame not yet taken by the call.
    stdin: Vec<u8>,
    state: State,
}

impl ClientEnd {
    /// Takes a new connection.
    pub fn new(sock: UnixStream) -> io::Result<ClientEnd> {
        sock.set_nonblocking(true)?;
        Ok(ClientEnd {
            sock,
            rx: FrameReader::default(),
            tx: Vec::new(),
            stdin: Vec::new(),
            state: State::Greeting,
        })
    }

    /// A connection turned away at once with `why`.
    pub fn turn_away(sock: UnixStream, why: &str) -> io::Result<ClientEnd> {
        let mut end = ClientEnd::new(sock)?;
        end.finish(Reply::Failed(why));
        Ok(end)
    }

    /// Its call, once asked for (and until it ended).
    pub fn call(&self) -> Option<u32> {
        match self.state {
            State::Waiting(call) | State::Running(call) => Some(call),
            _ => None,
        }
    }

    /// Whether it is finished with (drop it).
    pub fn done(&self) -> bool {
        self.state == State::Closed
    }

    /// The socket, and whether to wait for reading (a request, or stdin the call has
    /// room for) and for writing.
    pub fn watch(&self, core: &Core) -> (RawFd, bool, bool) {
        let read = match self.state {
            State::Greeting => true,
            State::Running(call) => core.room(call, Stream::Stdin) > 0,
            _ => false,
        };
        (self.sock.as_raw_fd(), read, !self.tx.is_empty())
    }

    fn finish(&mut self, reply: Reply<'_>) {
        encode(&reply, &mut self.tx);
        self.state = State::Closing;
    }

    /// The admin qube accepted the call.
    pub fn accepted(&mut self, target: &str) {
        if let State::Waiting(call) = self.state {
            encode(&Reply::Accepted { target }, &mut self.tx);
            self.state = State::Running(call);
        }
    }

    /// The call was refused (it is closed in the core).
    pub fn refused(&mut self, reason: &str) {
        self.finish(Reply::Refused { reason });
    }

    /// Moves what can move; whether anything did. The call is aborted in the core when
    /// the command goes away or sends garbage.
    pub fn pump(&mut self, core: &mut Core) -> bool {
        let mut moved = self.flush();
        match self.state {
            State::Greeting => moved |= self.greet(core),
            State::Running(call) => {
                moved |= self.take_stdin(core, call);
                moved |= self.give_output(core, call);
            }
            // Failed before an answer (a reset): the core says so.
            State::Waiting(call) => match core.take_end(call) {
                Some(End::Failed(why)) => self.finish(Reply::Failed(&printable(&why, 200))),
                Some(End::Exit(_)) | None => {}
            },
            State::Closed => {}
            State::Closing if self.tx.is_empty() => self.state = State::Closed,
            State::Closing => {}
        }
        moved | self.flush()
    }

    /// Writes waiting frames; the command being gone closes the connection.
    fn flush(&mut self) -> bool {
        let mut moved = false;
        while !self.tx.is_empty() && self.state != State::Closed {
            match self.sock.write(&self.tx) {
                Ok(n) => {
                    self.tx.drain(..n);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.gone(),
            }
        }
        moved
    }

    fn gone(&mut self) {
        self.state = State::Closed;
        self.tx.clear();
    }

    /// The next whole frame; `Err(())` when the command left or broke the framing.
    fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ()> {
        match self.rx.fill(&mut self.sock) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(()),
        }
        let frame = self.rx.frame().map(<[u8]>::to_vec);
        if frame.is_some() {
            self.rx.consume();
        }
        Ok(frame)
    }

    fn greet(&mut self, core: &mut Core) -> bool {
        let frame = match self.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return false,
            Err(()) => {
                self.gone();
                return true;
            }
        };
        match postcard::from_bytes::<Request<'_>>(&frame) {
            Ok(Request::Call {
                service,
                argument,
                target,
            }) => match core.start(service, argument, target) {
                Ok(call) => self.state = State::Waiting(call),
                Err(StartError::Busy) => self.refused("this qube has too many open calls"),
                Err(StartError::Malformed(why)) => self.refused(why),
            },
            _ => self.finish(Reply::Failed("the first frame must be the call")),
        }
        true
    }

    fn take_stdin(&mut self, core: &mut Core, call: u32) -> bool {
        let mut moved = false;
        while core.room(call, Stream::Stdin) > 0 {
            if !self.stdin.is_empty() {
                let n = core.write(call, Stream::Stdin, &self.stdin);
                self.stdin.drain(..n);
                moved = true;
                continue;
            }
            let frame = match self.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(()) => {
                    core.abort(call);
                    self.gone();
                    return true;
                }
            };
            moved = true;
            match postcard::from_bytes::<Request<'_>>(&frame) {
                Ok(Request::Stdin(bytes)) if bytes.len() <= DATA_FRAME_MAX => {
                    self.stdin = bytes.to_vec()
                }
                Ok(Request::StdinEof) => core.close(call, Stream::Stdin),
                _ => {
                    core.abort(call);
                    self.finish(Reply::Failed("a frame out of place: the call is aborted"));
                    return true;
                }
            }
        }
        moved
    }

    fn give_output(&mut self, core: &mut Core, call: u32) -> bool {
        let mut moved = false;
        let mut buf = vec![0; DATA_FRAME_MAX];
        for stream in [Stream::Stdout, Stream::Stderr] {
            while self.tx.len() < TX_MAX {
                let Read::Data(n) = core.read(call, stream, &mut buf) else {
                    break;
                };
                let bytes = &buf[..n];
                let reply = match stream {
                    Stream::Stderr => Reply::Stderr(bytes),
                    _ => Reply::Stdout(bytes),
                };
                encode(&reply, &mut self.tx);
                moved = true;
            }
        }
        match core.take_end(call) {
            Some(End::Exit(code)) => self.finish(Reply::Exit(code)),
            Some(End::Failed(why)) => self.finish(Reply::Failed(&printable(&why, 200))),
            None => return moved,
        }
        true
    }
}
