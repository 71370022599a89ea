//! The framing between the commands (`qvm-run`, `qvm-copy`, ...) and the daemon, over the
//! Unix socket [`super::SOCKET_PATH`]: one connection is one call.
//!
//! ```text
//! frame = len:u32 (little-endian, at most FRAME_MAX) postcard(message)
//! ```
//!
//! The command sends [`Request::Call`] first, then its stdin as [`Request::Stdin`] frames
//! (at most [`DATA_FRAME_MAX`] bytes each) and [`Request::StdinEof`]. The daemon answers
//! [`Reply::Accepted`] or [`Reply::Refused`], then the call's output as [`Reply::Stdout`]
//! and [`Reply::Stderr`] frames, and last [`Reply::Exit`] or [`Reply::Failed`]; then it
//! closes the connection. A command that closes the connection early aborts the call.
//! Flow control is the socket's: the daemon reads a command's stdin only as fast as the
//! call may send it, and stops taking the call's output while the command does not read.

use bulkhead_abi::qrexec::Refusal;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Most data bytes in one frame.
pub const DATA_FRAME_MAX: usize = 16 * 1024;
/// Longest frame (a data frame and its header, or a call's names).
pub const FRAME_MAX: usize = DATA_FRAME_MAX + 256;

/// From a command to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// The call: first, once.
    Call {
        service: &'a str,
        argument: &'a str,
        target: &'a str,
    },
    /// Bytes of the call's stdin.
    Stdin(&'a [u8]),
    /// The stdin ends.
    StdinEof,
}

/// From the daemon to a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply<'a> {
    /// The call runs in `target`.
    Accepted {
        target: &'a str,
    },
    /// The call was refused (why, in words); the connection closes.
    Refused {
        reason: &'a str,
    },
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
    /// The service's exit code; the connection closes.
    Exit(i32),
    /// The call broke off (why); the connection closes.
    Failed(&'a str),
}

/// Why a refusal happened, in words for `Request refused: ...`.
pub fn refusal_text(reason: Refusal) -> &'static str {
    match reason {
        Refusal::Denied => "denied by the policy",
        Refusal::UserRefused => "refused by the user",
        Refusal::Malformed => "the admin qube found the call malformed",
        Refusal::Unavailable => "the target cannot run it now",
        Refusal::Busy => "too many open calls",
    }
}

/// Appends `msg` as one frame to `out`.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    // Serializing into a Vec cannot fail for these messages.
    let bytes = postcard::to_allocvec(msg).unwrap_or_default();
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
}

/// Writes `msg` as one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let mut buf = Vec::new();
    encode(msg, &mut buf);
    w.write_all(&buf)
}

/// Reads one frame's bytes; `None` at the end of the connection between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_len(len)?;
    let mut frame = vec![0; len];
    r.read_exact(&mut frame)?;
    Ok(Some(frame))
}

fn frame_len(header: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(header) as usize;
    if len > FRAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (at most {FRAME_MAX})"),
        ));
    }
    Ok(len)
}

/// Gathers frames from a non-blocking stream; holds at most one frame.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Whether a whole frame is waiting (then [`FrameReader::fill`] reads nothing more).
    pub fn has_frame(&self) -> bool {
        self.buf.len() >= 4 && self.buf.len() >= 4 + self.header_len()
    }

    fn header_len(&self) -> usize {
        u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize
    }

    /// Reads what is there, never past the end of the next frame. `Ok(false)` at the end of
    /// the stream, `Ok(true)` otherwise (also when nothing was there); a frame over
    /// [`FRAME_MAX`] is an error.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<bool> {
        while !self.has_frame() {
            let want = if self.buf.len() < 4 {
                4 - self.buf.len()
            } else {
                let len = frame_len([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])?;
                4 + len - self.buf.len()
            };
            let at = self.buf.len();
            self.buf.resize(at + want, 0);
            let got = r.read(&mut self.buf[at..]);
            self.buf.truncate(at + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The waiting frame's message bytes, if a whole frame is there.
    pub fn frame(&self) -> Option<&[u8]> {
        self.has_frame()
            .then(|| &self.buf[4..4 + self.header_len()])
    }

    /// Drops the waiting frame.
    pub fn consume(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, then `WouldBlock`, then the end.
    struct Trickle(Vec<u8>, usize, bool);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.2 = !self.2;
            if self.2 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(3).min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn frames_cross_in_any_pieces() {
        let mut bytes = Vec::new();
        let call = Request::Call {
            service: "qubes.VMShell",
            argument: "",
            target: "work",
        };
        encode(&call, &mut bytes);
        encode(&Request::Stdin(&[9; 5000]), &mut bytes);
        encode(&Request::StdinEof, &mut bytes);
        let mut src = Trickle(bytes.clone(), 0, false);
        let mut r = FrameReader::default();
        let mut got = Vec::new();
        loop {
            let open = r.fill(&mut src).unwrap();
            if let Some(f) = r.frame() {
                got.push(f.to_vec());
                r.consume();
            } else if !open {
                break;
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(postcard::from_bytes::<Request<'_>>(&got[0]).unwrap(), call);
        assert_eq!(
            postcard::from_bytes::<Request<'_>>(&got[1]).unwrap(),
            Request::Stdin(&[9; 5000])
        );
        let mut whole = &bytes[..];
        assert_eq!(read_frame(&mut whole).unwrap().unwrap(), got[0]);
        read_frame(&mut whole).unwrap();
        read_frame(&mut whole).unwrap();
        assert_eq!(read_frame(&mut whole).unwrap(), None);
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_read() {
        let huge = ((FRAME_MAX + 1) as u32).to_le_bytes();
        assert!(FrameReader::default().fill(&mut &huge[..]).is_err());
        assert!(read_frame(&mut &huge[..]).is_err());
        // Cut inside a frame: an error for the blocking reader, the end for the other.
        let cut = [5u8, 0, 0, 0, 1];
        assert!(read_frame(&mut &cut[..]).is_err());
        assert!(!FrameReader::default().fill(&mut &cut[..]).unwrap());
    }
}
