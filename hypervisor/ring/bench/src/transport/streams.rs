//! Kernel byte streams: a pipe pair and a Unix socket pair. Each message is one 64-byte
//! `write`; the reader blocks in `read` (that is how they are used: spinning on a
//! non-blocking descriptor would measure system calls, not the transport). The reader is
//! buffered, so when messages queue up, one `read` takes many of them.

use crate::harness::{Duplex, Receiver, Sender};
use crate::message::Msg;
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// The writing end of a byte stream.
pub struct StreamTx<W: Write>(W);

/// The reading end of a byte stream.
pub struct StreamRx<R: Read>(BufReader<R>);

impl<W: Write + Send> Sender for StreamTx<W> {
    fn send(&mut self, msg: &Msg) {
        self.0.write_all(&msg.to_bytes()).expect("stream write");
    }
}

impl<R: Read + Send> Receiver for StreamRx<R> {
    fn recv(&mut self) -> Msg {
        let mut b = [0u8; 64];
        self.0.read_exact(&mut b).expect("stream read");
        Msg::from_bytes(&b)
    }
}

/// A pipe, write end and read end.
pub fn pipe() -> (StreamTx<std::io::PipeWriter>, StreamRx<std::io::PipeReader>) {
    let (r, w) = std::io::pipe().expect("pipe");
    (StreamTx(w), StreamRx(BufReader::new(r)))
}

/// A connected Unix stream socket pair, used one way.
pub fn unix_socket() -> (StreamTx<UnixStream>, StreamRx<UnixStream>) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    (StreamTx(a), StreamRx(BufReader::new(b)))
}

/// One end of a Unix socket pair, used both ways.
pub type SocketEnd = Duplex<StreamTx<UnixStream>, StreamRx<UnixStream>>;

/// The two ends of one Unix socket pair, each used both ways (for round trips).
pub fn unix_socket_both_ways() -> (SocketEnd, SocketEnd) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let end = |s: UnixStream| {
        let reader = s.try_clone().expect("socket clone");
        Duplex {
            tx: StreamTx(s),
            rx: StreamRx(BufReader::new(reader)),
        }
    };
    (end(a), end(b))
}
