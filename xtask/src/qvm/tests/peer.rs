//! The admin qube's side of the host console, played by a test over a socket pair.

use super::*;
use bulkhead_abi::qrexec::host_console::{Deframer, FRAME_MAX};
use bulkhead_abi::qrexec::{DATA_MAX, FromAdmin, Io, Stream, ToAdmin, WINDOW};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// The admin qube's side of the console, played by a test: frames both ways.
pub struct Peer {
    pub stream: UnixStream,
    pub deframer: Deframer,
}

impl Peer {
    pub fn send(&mut self, msg: &FromAdmin<'_>) {
        let mut buf = [0u8; FRAME_MAX + 1];
        let frame = postcard::to_slice_cobs(msg, &mut buf).unwrap();
        self.stream.write_all(frame).unwrap();
    }

    /// The next message from the host, handed to `f`.
    pub fn recv<R>(&mut self, f: impl FnOnce(ToAdmin<'_>) -> R) -> R {
        let mut byte = [0u8];
        loop {
            self.stream.read_exact(&mut byte).unwrap();
            if let Some(frame) = self.deframer.push(byte[0]) {
                return f(postcard::from_bytes_cobs(frame).unwrap());
            }
        }
    }

    /// Answers the host's hello, after ignoring the first one (as an admin qube that was
    /// not up yet would).
    fn hello(&mut self) {
        for answer in [false, true] {
            let version = self.recv(|m| match m {
                ToAdmin::Hello { version } => version,
                other => panic!("expected a hello, got {other:?}"),
            });
            if answer {
                self.send(&FromAdmin::Hello { version });
            }
        }
    }
}

/// A session with a peer running `peer` in a thread.
pub fn session(
    peer: impl FnOnce(&mut Peer) + Send + 'static,
) -> (Conn, std::thread::JoinHandle<()>) {
    let (host, admin) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut p = Peer {
            stream: admin,
            deframer: Deframer::new(),
        };
        p.hello();
        peer(&mut p);
        // Like QEMU, keep the line open until the host leaves (its last acks go nowhere).
        let _ = std::io::copy(&mut p.stream, &mut std::io::sink());
    });
    let mut conn = Conn::new(host);
    conn.hello(Duration::from_secs(10)).unwrap();
    (conn, t)
}

pub const ECHO: Request<'static> = Request {
    service: "test.Echo",
    argument: "",
    target: "server",
};

/// The testing image's `test.Echo`, with flow control both ways: stdin in capitals to
/// stdout, exit code its length; never more than WINDOW bytes unacknowledged either way.
pub fn echo_server(p: &mut Peer) {
    let call = p.recv(|m| match m {
        ToAdmin::Call { call, service, .. } => {
            assert_eq!(service, "test.Echo");
            call
        }
        other => panic!("expected a call, got {other:?}"),
    });
    // Noise first: a frame that does not decode, and one far too long.
    p.stream.write_all(&[0x05, 0xFF, 0xFF, 0xFF, 0]).unwrap();
    p.stream.write_all(&vec![7u8; FRAME_MAX + 10]).unwrap();
    p.stream.write_all(&[0]).unwrap();
    p.send(&FromAdmin::Accepted {
        call,
        target: "server",
    });
    let mut input = Vec::new();
    loop {
        let (eof, n) = p.recv(|m| match m {
            ToAdmin::Io(Io::Data {
                stream: Stream::Stdin,
                bytes,
                ..
            }) => {
                input.extend_from_slice(bytes);
                (false, bytes.len() as u32)
            }
            ToAdmin::Io(Io::Eof { .. }) => (true, 0),
            other => panic!("expected stdin, got {other:?}"),
        });
        if eof {
            break;
        }
        p.send(&FromAdmin::Io(Io::Ack {
            call,
            stream: Stream::Stdin,
            bytes: n,
        }));
    }
    let upper = input.to_ascii_uppercase();
    let mut unacked = 0usize;
    for chunk in upper.chunks(DATA_MAX) {
        while unacked + chunk.len() > WINDOW as usize {
            p.recv(|m| match m {
                ToAdmin::Io(Io::Ack {
                    stream: Stream::Stdout,
                    bytes,
                    ..
                }) => unacked -= bytes as usize,
                other => panic!("expected an ack, got {other:?}"),
            });
        }
        p.send(&FromAdmin::Io(Io::Data {
            call,
            stream: Stream::Stdout,
            bytes: chunk,
        }));
        unacked += chunk.len();
    }
    p.send(&FromAdmin::Io(Io::Data {
        call,
        stream: Stream::Stderr,
        bytes: b"done\n",
    }));
    let code = input.len() as i32;
    p.send(&FromAdmin::Io(Io::Exit { call, code }));
}
