//! Running the requested command: `/bin/sh -c <command>`, stdin from `/dev/null`, stdout
//! and stderr into one pipe that the agent reads without blocking.

use crate::sys;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};

/// Starts commands (the shell in the VM; a fake in tests).
pub trait Runner {
    /// Starts `command`.
    fn start(&mut self, command: &str) -> io::Result<Box<dyn Job>>;
}

/// A running command.
pub trait Job {
    /// Reads what the command wrote: `Some(0)` at the end of its output, `None` when
    /// nothing is waiting now.
    fn read_output(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Its exit status once it exited (128 + signal number when killed by a signal).
    fn try_status(&mut self) -> io::Result<Option<i32>>;
    /// The descriptor to poll for output.
    fn output_fd(&self) -> RawFd;
    /// Stops it (if it still runs).
    fn kill(&mut self);
}

/// The status number a requester sees.
pub fn status_number(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// Runs commands with `shell` (`/bin/sh` in the VM).
#[derive(Debug)]
pub struct ShellRunner {
    pub shell: String,
}

impl Default for ShellRunner {
    fn default() -> Self {
        ShellRunner {
            shell: "/bin/sh".into(),
        }
    }
}

struct ShellJob {
    child: Child,
    output: io::PipeReader,
}

impl Runner for ShellRunner {
    fn start(&mut self, command: &str) -> io::Result<Box<dyn Job>> {
        let (output, writer) = io::pipe()?;
        let stderr = writer.try_clone()?;
        let child = Command::new(&self.shell)
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(stderr)
            .current_dir("/")
            .env("HOME", "/root")
            .spawn()?;
        // The Command (and with it our copies of the write end) is gone: the pipe ends when
        // the command and everything it started have closed it.
        sys::set_nonblocking(&output)?;
        Ok(Box::new(ShellJob { child, output }))
    }
}

impl Job for ShellJob {
    fn read_output(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.output.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn try_status(&mut self) -> io::Result<Option<i32>> {
        Ok(self.child.try_wait()?.map(status_number))
    }

    fn output_fd(&self) -> RawFd {
        self.output.as_raw_fd()
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
