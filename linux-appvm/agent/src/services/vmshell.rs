//! `qubes.VMShell`, the target side of `qvm-run`: `/bin/sh` reading the call's stdin, which
//! starts with the command line (`qvm-run` sends `COMMAND; exit` and a newline, as Qubes'
//! does, then its own stdin when it passes I/O). The shell's stdout and stderr are the
//! call's; its exit code ends the call (minus the signal when one killed it).

use super::call::{CallInfo, CallPipes, Worker};
use std::io;

/// The shell.
pub const SHELL: &str = "/bin/sh";

/// Starts the shell on the call's streams.
pub fn start(info: &CallInfo, pipes: CallPipes) -> io::Result<Worker> {
    let child = info
        .command(SHELL)
        .stdin(pipes.stdin)
        .stdout(pipes.stdout)
        .stderr(pipes.stderr)
        .spawn()?;
    Ok(Worker::Process(child))
}

/// `bulkhead.Ping`: sends back what it is sent (a liveness check of the whole path).
pub fn ping(info: &CallInfo, pipes: CallPipes) -> io::Result<Worker> {
    super::call::spawn_thread(info, move || {
        let CallPipes {
            mut stdin,
            mut stdout,
            ..
        } = pipes;
        let code = match io::copy(&mut stdin, &mut stdout) {
            Ok(_) => 0,
            Err(_) => 1,
        };
        super::call::Finish::Code(code)
    })
}
