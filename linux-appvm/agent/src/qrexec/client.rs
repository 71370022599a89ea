//! The commands' side of [`super::wire`]: open a call through the daemon's socket, write
//! its stdin, read its output and end. Blocking: a command is one call.

use super::wire::{DATA_FRAME_MAX, Reply, Request, read_frame, write_frame};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// How opening a call went.
#[derive(Debug)]
pub enum Opened {
    /// It runs in `target`.
    Accepted { target: String, call: Call },
    /// Refused, with the reason in words.
    Refused(String),
}

/// What comes back from a running call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The service's exit code (the end).
    Exit(i32),
    /// The call broke off (the end).
    Failed(String),
}

/// A running call: its stdin ([`Call::stdin`]) and its output ([`Call::next`]).
#[derive(Debug)]
pub struct Call {
    output: BufReader<UnixStream>,
    stdin: Option<Stdin>,
}

/// The call's stdin: what is written goes to the target; [`Stdin::close`] ends it.
#[derive(Debug)]
pub struct Stdin {
    sock: UnixStream,
}

/// Asks the daemon at `socket` for `service+argument` in `target`.
pub fn open(socket: &Path, service: &str, argument: &str, target: &str) -> Result<Opened, String> {
    let mut sock = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the qrexec daemon at {}: {e}",
            socket.display()
        )
    })?;
    let call = Request::Call {
        service,
        argument,
        target,
    };
    write_frame(&mut sock, &call).map_err(|e| format!("asking the qrexec daemon: {e}"))?;
    let stdin = Stdin {
        sock: sock.try_clone().map_err(|e| e.to_string())?,
    };
    let mut call = Call {
        output: BufReader::new(sock),
        stdin: Some(stdin),
    };
    let frame = read_frame(&mut call.output).map_err(|e| format!("the qrexec daemon: {e}"))?;
    let frame = frame.ok_or("the qrexec daemon closed the connection")?;
    match postcard::from_bytes::<Reply<'_>>(&frame) {
        Ok(Reply::Accepted { target }) => Ok(Opened::Accepted {
            target: target.to_string(),
            call,
        }),
        Ok(Reply::Refused { reason }) => Ok(Opened::Refused(reason.to_string())),
        Ok(Reply::Failed(why)) => Err(why.to_string()),
        _ => Err("the qrexec daemon answered out of turn".into()),
    }
}

impl Call {
    /// The call's stdin (once).
    pub fn stdin(&mut self) -> Option<Stdin> {
        self.stdin.take()
    }

    /// The next piece of output, or the end.
    pub fn next_output(&mut self) -> Output {
        let frame = match read_frame(&mut self.output) {
            Ok(Some(f)) => f,
            Ok(None) => return Output::Failed("the qrexec daemon closed the connection".into()),
            Err(e) => return Output::Failed(format!("reading from the qrexec daemon: {e}")),
        };
        match postcard::from_bytes::<Reply<'_>>(&frame) {
            Ok(Reply::Stdout(b)) => Output::Stdout(b.to_vec()),
            Ok(Reply::Stderr(b)) => Output::Stderr(b.to_vec()),
            Ok(Reply::Exit(code)) => Output::Exit(code),
            Ok(Reply::Failed(why)) => Output::Failed(why.to_string()),
            _ => Output::Failed("the qrexec daemon answered out of turn".into()),
        }
    }

    /// Reads output until the end, handing each piece to `each`; the end.
    pub fn finish(&mut self, mut each: impl FnMut(Output)) -> Output {
        loop {
            match self.next_output() {
                end @ (Output::Exit(_) | Output::Failed(_)) => return end,
                piece => each(piece),
            }
        }
    }
}

impl Stdin {
    /// Ends the stdin (the target reads its end).
    pub fn close(mut self) -> io::Result<()> {
        write_frame(&mut self.sock, &Request::StdinEof)
    }

    /// Copies `input` to the call, then ends it, in a thread of its own (the caller reads
    /// the output meanwhile). A call that ended first stops the copy.
    pub fn feed_from(self, mut input: impl Read + Send + 'static) {
        let _ = std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut out = self;
                if io::copy(&mut input, &mut out).is_ok() {
                    let _ = out.close();
                }
            });
    }
}

impl Write for Stdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(DATA_FRAME_MAX);
        if n > 0 {
            write_frame(&mut self.sock, &Request::Stdin(&buf[..n]))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The exit status of a command for a call's exit code: the code when it is one
/// (0..=255), 128 + the signal for a negative one (as a shell shows it), else 255.
pub fn exit_status(code: i32) -> u8 {
    match code {
        0..=255 => code as u8,
        -127..=-1 => (128 - code) as u8,
        _ => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(3), 3);
        assert_eq!(exit_status(-9), 137);
        assert_eq!(exit_status(-15), 143);
        assert_eq!(exit_status(256), 255);
        assert_eq!(exit_status(-200), 255);
    }
}
