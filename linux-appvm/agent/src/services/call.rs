//! A qrexec call as the service serving it sees it: who calls, the call's three streams as
//! pipes (blocking on the service's side; the daemon pumps the other ends), and what runs
//! it: a process the daemon watches, or a thread that says how it finished.

use std::io::{self, PipeReader, PipeWriter};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver};

/// The folder under the home where files from other qubes land (`<home>/QubesIncoming/<source>`).
pub const INCOMING: &str = "QubesIncoming";
/// `PATH` for the commands services run.
pub const PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin";

/// Who calls what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    /// The admin qube's number for the call (names threads and log lines).
    pub call: u32,
    /// The calling qube (a well-formed name: `qrexec::names::valid_source`).
    pub source: String,
    pub service: String,
    pub argument: String,
    /// The user's home (`/root` in the initramfs): the working directory of commands.
    pub home: PathBuf,
}

impl CallInfo {
    /// Where files from the source land.
    pub fn incoming(&self) -> PathBuf {
        self.home.join(INCOMING).join(&self.source)
    }

    /// A command run for this call: its own process group (so it and what it starts can
    /// be stopped together), the home as working directory, a clean environment with
    /// Qubes' `QREXEC_REMOTE_DOMAIN` and `QREXEC_SERVICE_ARGUMENT`.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.home)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", PATH)
            .env("QREXEC_REMOTE_DOMAIN", &self.source)
            .process_group(0);
        if !self.argument.is_empty() {
            cmd.env("QREXEC_SERVICE_ARGUMENT", &self.argument);
        }
        cmd
    }
}

/// The service's ends of the call's streams.
#[derive(Debug)]
pub struct CallPipes {
    /// What the caller sends (ends when the caller closes its stdin).
    pub stdin: PipeReader,
    pub stdout: PipeWriter,
    pub stderr: PipeWriter,
}

/// How a thread serving a call finished.
#[derive(Debug)]
pub enum Finish {
    /// With this exit code.
    Code(i32),
    /// By starting a process that holds the call's output now (the daemon watches it).
    Process(Child),
}

/// What serves a call.
#[derive(Debug)]
pub enum Worker {
    /// A process whose stdin, stdout and stderr are the call's streams.
    Process(Child),
    /// A thread (blocking reads and writes on the pipes) that sends how it finished.
    Thread(Receiver<Finish>),
}

/// Starts a service on a call.
pub type Start = fn(&CallInfo, CallPipes) -> io::Result<Worker>;

/// Runs `serve` in a thread of its own for `info`'s call. If nobody waits for it any more
/// (the call was aborted), a process it started is stopped.
pub fn spawn_thread(
    info: &CallInfo,
    serve: impl FnOnce() -> Finish + Send + 'static,
) -> io::Result<Worker> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("qrexec-{}", info.call))
        .spawn(move || {
            if let Err(mpsc::SendError(Finish::Process(mut child))) = tx.send(serve()) {
                stop(&mut child);
            }
        })?;
    Ok(Worker::Thread(rx))
}

/// Stops a process started with [`CallInfo::command`] and everything in its group.
pub fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = crate::sys::waitset::kill_group(child.id(), libc::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The exit code a caller sees: the process's, or minus the signal that killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => -signal,
        (None, None) => -1,
    }
}

/// Writes `message` and a newline to the call's stderr (the caller shows it).
pub fn tell(stderr: &mut PipeWriter, message: &str) {
    use std::io::Write;
    let _ = writeln!(stderr, "{message}");
}

/// The home of the user services run for: `/root` when it is a folder (the initramfs
/// has one), else `/`; as the terminal's shell has it.
pub fn home() -> PathBuf {
    let root = PathBuf::from("/root");
    if root.is_dir() {
        root
    } else {
        PathBuf::from("/")
    }
}
