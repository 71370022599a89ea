//! The shell behind a terminal window: `/bin/sh` (busybox in the template) on a
//! pseudo-terminal, `TERM=linux`, in its own session with the terminal as its controlling
//! one (job control, Ctrl+C), the window's size set with `TIOCSWINSZ`. The window code sees
//! only [`Shell`] and [`Spawner`], so host tests use a fake.

use crate::sys;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, Command, Stdio};

/// A program on a terminal.
pub trait Shell {
    /// Reads its output: `Ok(None)` when nothing waits, `Ok(Some(0))` when the terminal is
    /// closed (the shell and everything it started have gone).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Writes input; returns how much the terminal took (0 when its buffer is full).
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Tells it the window's size.
    fn resize(&mut self, cols: u16, rows: u16, width: u16, height: u16);
    /// The descriptor to poll for output (none for a fake).
    fn fd(&self) -> Option<RawFd>;
    /// Its process id, for log lines.
    fn pid(&self) -> u32;
    /// Hangs up (the window closed); returns the exit status once it has exited.
    fn hang_up(&mut self);
    /// Its exit status, if it exited (reaped).
    fn exit_status(&mut self) -> Option<i32>;
}

/// Starts shells.
pub trait Spawner {
    /// A new shell on a terminal of `cols × rows` cells (`width × height` pixels).
    fn spawn(
        &mut self,
        cols: u16,
        rows: u16,
        width: u16,
        height: u16,
    ) -> io::Result<Box<dyn Shell>>;
}

/// Starts `shell` on a pseudo-terminal.
#[derive(Debug, Clone)]
pub struct PtySpawner {
    /// The program (`/bin/sh`).
    pub shell: String,
    /// The qube's name, for the prompt.
    pub qube: String,
}

/// A shell on a pseudo-terminal.
#[derive(Debug)]
pub struct PtyShell {
    controller: File,
    child: Child,
    status: Option<i32>,
}

impl Spawner for PtySpawner {
    fn spawn(
        &mut self,
        cols: u16,
        rows: u16,
        width: u16,
        height: u16,
    ) -> io::Result<Box<dyn Shell>> {
        let (controller, terminal) = sys::open_pty()?;
        sys::set_window_size(&controller, cols, rows, width, height)?;
        let home = crate::services::call::home();
        let mut cmd = Command::new(&self.shell);
        cmd.stdin(Stdio::from(terminal.try_clone()?))
            .stdout(Stdio::from(terminal.try_clone()?))
            .stderr(Stdio::from(terminal))
            .current_dir(&home)
            .env_clear()
            .env("TERM", "linux")
            .env("HOME", &home)
            .env("PATH", crate::services::call::PATH)
            .env("PS1", format!("{}:\\w\\$ ", self.qube));
        sys::with_controlling_terminal(&mut cmd);
        let child = cmd.spawn()?;
        // `cmd` (holding our copies of the terminal) is dropped here: the controller reads
        // end-of-file (EIO) once the shell and its children have closed it.
        drop(cmd);
        sys::set_nonblocking(&controller)?;
        Ok(Box::new(PtyShell {
            controller,
            child,
            status: None,
        }))
    }
}

impl Shell for PtyShell {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.controller.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            // The terminal's last user closed it.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(Some(0)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.controller.write(data) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn resize(&mut self, cols: u16, rows: u16, width: u16, height: u16) {
        let _ = sys::set_window_size(&self.controller, cols, rows, width, height);
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.controller.as_raw_fd())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn hang_up(&mut self) {
        if self.status.is_none() {
            let _ = sys::hang_up(self.child.id());
        }
    }

    fn exit_status(&mut self) -> Option<i32> {
        if self.status.is_none()
            && let Ok(Some(s)) = self.child.try_wait()
        {
            self.status = Some(crate::services::disposable::status_number(s));
        }
        self.status
    }
}
