//! `qubes.VMShell`, the target side of `qvm-run`: the first line of the call's stdin is a
//! command line (`qvm-run` sends `COMMAND; exit` and a newline, as Qubes' does), run by
//! `/bin/sh -c`; the rest of stdin is the command's stdin, its stdout and stderr are the
//! call's, and its exit code ends the call (minus the signal when one killed it).
//!
//! The line is read here, a byte at a time, rather than by a shell reading stdin as in
//! Qubes: busybox's shell (like dash) reads ahead from a pipe and would swallow the
//! beginning of the command's own input.

use super::call::{CallInfo, CallPipes, Finish, Worker, spawn_thread, tell};
use std::io::{self, Read};

/// The shell.
pub const SHELL: &str = "/bin/sh";
/// Longest command line, in bytes.
pub const LINE_MAX: usize = 64 * 1024;

/// Reads the command line: up to the first newline (not included), or the end of the
/// stream; nothing past it.
pub fn read_line(input: &mut impl Read) -> Result<String, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() == LINE_MAX => {
                return Err(format!("a command line longer than {LINE_MAX} bytes"));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the command line: {e}")),
        }
    }
    let line = String::from_utf8(line).map_err(|_| "a command line that is not UTF-8")?;
    if line.contains('\0') {
        return Err("a command line with a NUL".into());
    }
    Ok(line)
}

/// Reads the command line, then runs it on the call's streams.
pub fn start(info: &CallInfo, pipes: CallPipes) -> io::Result<Worker> {
    let call = info.clone();
    spawn_thread(info, move || {
        let CallPipes {
            mut stdin,
            stdout,
            mut stderr,
        } = pipes;
        let line = match read_line(&mut stdin) {
            Ok(line) => line,
            Err(why) => {
                tell(&mut stderr, &format!("qubes.VMShell: {why}"));
                return Finish::Code(1);
            }
        };
        let started = call
            .command(SHELL)
            .arg("-c")
            .arg(line)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn();
        match started {
            Ok(child) => Finish::Process(child),
            Err(_) => Finish::Code(127),
        }
    })
}

/// `bulkhead.Ping`: sends back what it is sent (a liveness check of the whole path).
pub fn ping(info: &CallInfo, pipes: CallPipes) -> io::Result<Worker> {
    spawn_thread(info, move || {
        let CallPipes {
            mut stdin,
            mut stdout,
            ..
        } = pipes;
        let code = match io::copy(&mut stdin, &mut stdout) {
            Ok(_) => 0,
            Err(_) => 1,
        };
        Finish::Code(code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_and_nothing_past_it() {
        let mut input: &[u8] = b"echo hi; exit\nrest";
        assert_eq!(read_line(&mut input).unwrap(), "echo hi; exit");
        assert_eq!(input, b"rest");
        assert_eq!(read_line(&mut &b"no newline"[..]).unwrap(), "no newline");
        assert!(read_line(&mut &b"a\0b\n"[..]).is_err());
        assert!(read_line(&mut &b"\xff\n"[..]).is_err());
        let long = vec![b'x'; LINE_MAX + 1];
        assert!(read_line(&mut &long[..]).is_err());
    }
}
