//! A call this qube serves, on the daemon's side: the call's streams pumped between the
//! core and the service's pipes without blocking, and the service's exit code.
//!
//! Stdin: bytes are taken from the core (which acknowledges them) only as the pipe takes
//! them, so a service that does not read stops only its own caller. Once the service
//! closed its end, the rest is taken and dropped (the caller is not left blocked).
//! Stdout and stderr: read from the pipes only as far as the call's window allows. The
//! call ends with the exit code once both pipes reached their end, or [`EOF_GRACE`] after
//! the service exited while something it started still holds them open and is silent.

use super::core::{Core, Read};
use crate::services::call::{CallInfo, CallPipes, Finish, Start, Worker, stop};
use bulkhead_abi::qrexec::Stream;
use std::io::{self, PipeReader, PipeWriter, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

/// How long a service's output may stay open and silent after it exited.
pub const EOF_GRACE: Duration = Duration::from_millis(500);
/// Bytes moved per stream per pump.
const CHUNK: usize = 16 * 1024;

/// One served call.
#[derive(Debug)]
pub struct Served {
    call: u32,
    /// The service's stdin; `None` once closed.
    stdin: Option<PipeWriter>,
    /// Taken from the core, not yet in the pipe.
    pending: Vec<u8>,
    /// The service stopped reading: the rest of stdin is dropped.
    discard: bool,
    /// Stdout and stderr; `None` once at their end.
    outputs: [Option<PipeReader>; 2],
    worker: Worker,
    code: Option<i32>,
    /// When output last moved (or waited for room) after the exit.
    last_output: Instant,
}

const OUTPUTS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

impl Served {
    /// Starts `start` on new pipes for `info`'s call.
    pub fn start(info: &CallInfo, start: Start) -> io::Result<Served> {
        let (stdin_r, stdin_w) = io::pipe()?;
        let (stdout_r, stdout_w) = io::pipe()?;
        let (stderr_r, stderr_w) = io::pipe()?;
        for fd in [
            stdin_w.as_raw_fd(),
            stdout_r.as_raw_fd(),
            stderr_r.as_raw_fd(),
        ] {
            crate::sys::set_nonblocking(&fd)?;
        }
        let pipes = CallPipes {
            stdin: stdin_r,
            stdout: stdout_w,
            stderr: stderr_w,
        };
        let worker = start(info, pipes)?;
        Ok(Served {
            call: info.call,
            stdin: Some(stdin_w),
            pending: Vec::new(),
            discard: false,
            outputs: [Some(stdout_r), Some(stderr_r)],
            worker,
            code: None,
            last_output: Instant::now(),
        })
    }

    /// The descriptors to wait on, and whether for writing: stdin while bytes wait for
    /// it, an output while the call has room for it.
    pub fn watches(&self, core: &Core) -> Vec<(RawFd, bool)> {
        let stdin = self
            .stdin
            .as_ref()
            .filter(|_| !self.pending.is_empty())
            .map(|w| (w.as_raw_fd(), true));
        let outputs = OUTPUTS
            .iter()
            .zip(&self.outputs)
            .filter_map(|(stream, pipe)| {
                let pipe = pipe.as_ref()?;
                (core.room(self.call, *stream) > 0).then(|| (pipe.as_raw_fd(), false))
            });
        stdin.into_iter().chain(outputs).collect()
    }

    /// Moves what can move; `Some(code)` when the call is done (the caller ends it).
    pub fn pump(&mut self, core: &mut Core, now: Instant) -> (bool, Option<i32>) {
        let mut moved = self.pump_stdin(core);
        for (i, stream) in OUTPUTS.into_iter().enumerate() {
            moved |= self.pump_output(core, i, stream, now);
        }
        if self.code.is_none() {
            self.code = self.poll_worker();
            if self.code.is_some() {
                self.last_output = now;
            }
        }
        let Some(code) = self.code else {
            return (moved, None);
        };
        let drained = self.outputs.iter().all(Option::is_none);
        if drained || now.duration_since(self.last_output) > EOF_GRACE {
            for stream in OUTPUTS {
                core.close(self.call, stream);
            }
            return (true, Some(code));
        }
        (moved, None)
    }

    fn pump_stdin(&mut self, core: &mut Core) -> bool {
        let mut moved = false;
        loop {
            if self.pending.is_empty() {
                let mut buf = vec![0; CHUNK];
                match core.read(self.call, Stream::Stdin, &mut buf) {
                    Read::Data(n) if self.discard => {
                        moved |= n > 0;
                        continue;
                    }
                    Read::Data(n) => {
                        buf.truncate(n);
                        self.pending = buf;
                        moved = true;
                    }
                    Read::Empty => return moved,
                    Read::Eof => {
                        moved |= self.stdin.take().is_some();
                        return moved;
                    }
                }
            }
            let Some(pipe) = &mut self.stdin else {
                self.discard = true;
                self.pending.clear();
                continue;
            };
            match pipe.write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return moved,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The service closed its stdin: drop the rest.
                Err(_) => {
                    self.stdin = None;
                }
            }
        }
    }

    fn pump_output(&mut self, core: &mut Core, i: usize, stream: Stream, now: Instant) -> bool {
        let mut moved = false;
        while let Some(pipe) = &mut self.outputs[i] {
            let room = core.room(self.call, stream).min(CHUNK);
            if room == 0 {
                // Waiting for the caller is not silence.
                self.last_output = now;
                return moved;
            }
            let mut buf = vec![0; room];
            match io::Read::read(pipe, &mut buf) {
                Ok(0) => {
                    self.outputs[i] = None;
                    core.close(self.call, stream);
                    return true;
                }
                Ok(n) => {
                    core.write(self.call, stream, &buf[..n]);
                    self.last_output = now;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return moved,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.outputs[i] = None;
                    core.close(self.call, stream);
                    return true;
                }
            }
        }
        moved
    }

    fn poll_worker(&mut self) -> Option<i32> {
        match &mut self.worker {
            Worker::Process(child) => match child.try_wait() {
                Ok(Some(status)) => Some(crate::services::call::exit_code(status)),
                Ok(None) => None,
                Err(_) => Some(-1),
            },
            Worker::Thread(rx) => match rx.try_recv() {
                Ok(Finish::Code(code)) => Some(code),
                Ok(Finish::Process(child)) => {
                    self.worker = Worker::Process(child);
                    self.poll_worker()
                }
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(-1),
            },
        }
    }

    /// When to look again without an event: a service that exited may leave its output
    /// open (the grace period runs); one whose output ended may not be seen to have
    /// exited yet (a process is reaped a moment after it closed its pipes).
    pub fn next_check(&self) -> Option<Duration> {
        match self.code {
            Some(_) => Some(EOF_GRACE / 4),
            None if self.outputs.iter().all(Option::is_none) => Some(Duration::from_millis(5)),
            None => None,
        }
    }

    /// Stops the service (the call was aborted): its pipes close, its process group is
    /// killed.
    pub fn stop(mut self) {
        self.stdin = None;
        self.outputs = [None, None];
        if let Worker::Process(child) = &mut self.worker {
            stop(child);
        }
    }
}
