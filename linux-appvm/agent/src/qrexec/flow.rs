//! Flow control of one stream of one call (`bulkhead_abi::qrexec::WINDOW`): a sender may
//! have at most `WINDOW` bytes sent and not yet acknowledged; a receiver acknowledges what
//! its consumer took. So a receiver never buffers more than `WINDOW` bytes of a stream, and
//! a consumer that does not read only stops its own stream.

use bulkhead_abi::qrexec::WINDOW;
use std::collections::VecDeque;

/// Consumed bytes are acknowledged once this many have gathered (a quarter of the window:
/// one `Ack` per about nine full `Data` messages, and a blocked sender is never stranded,
/// since it waits only when a whole window is unacknowledged).
pub const ACK_EVERY: u32 = WINDOW / 4;

/// The peer broke the flow-control rules of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowError {
    /// More than the window unacknowledged.
    OverWindow,
    /// Data after the stream's end.
    AfterEof,
    /// An acknowledgement of more than was sent.
    OverAck,
}

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlowError::OverWindow => "sent more than the window",
            FlowError::AfterEof => "sent data after the end of the stream",
            FlowError::OverAck => "acknowledged more than was sent",
        })
    }
}

/// A stream we receive: the bytes not yet consumed, and what to acknowledge.
#[derive(Debug, Default)]
pub struct Inbound {
    buf: VecDeque<u8>,
    /// Consumed and not yet acknowledged.
    unacked: u32,
    eof: bool,
}

impl Inbound {
    /// Takes `bytes` from the peer.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FlowError> {
        if self.eof {
            return Err(FlowError::AfterEof);
        }
        // What the peer has in flight: buffered, consumed but unacknowledged, and this.
        let in_flight = self.buf.len() + self.unacked as usize + bytes.len();
        if in_flight > WINDOW as usize {
            return Err(FlowError::OverWindow);
        }
        self.buf.extend(bytes);
        Ok(())
    }

    /// The peer closed the stream (a second end is harmless).
    pub fn end(&mut self) {
        self.eof = true;
    }

    /// Moves up to `buf.len()` buffered bytes into `buf`; how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.buf.len());
        for (dst, src) in buf.iter_mut().zip(self.buf.drain(..n)) {
            *dst = src;
        }
        self.unacked += n as u32;
        n
    }

    /// Bytes waiting to be consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything was consumed and the peer closed the stream.
    pub fn finished(&self) -> bool {
        self.eof && self.buf.is_empty()
    }

    /// Whether the peer closed the stream.
    pub fn closed(&self) -> bool {
        self.eof
    }

    /// The bytes to acknowledge now, if enough were consumed (they count as acknowledged).
    pub fn take_ack(&mut self) -> Option<u32> {
        if self.unacked >= ACK_EVERY && !self.eof {
            return Some(std::mem::take(&mut self.unacked));
        }
        None
    }
}

/// A stream we send: bytes in flight, and whether it ended.
#[derive(Debug, Default)]
pub struct Outbound {
    in_flight: u32,
    eof: bool,
}

impl Outbound {
    /// How many bytes may be sent now.
    pub fn room(&self) -> usize {
        if self.eof {
            return 0;
        }
        (WINDOW - self.in_flight) as usize
    }

    /// `n` bytes were sent (at most [`Outbound::room`]).
    pub fn sent(&mut self, n: usize) {
        debug_assert!(n <= self.room());
        self.in_flight += n as u32;
    }

    /// The peer consumed `n` bytes.
    pub fn acked(&mut self, n: u32) -> Result<(), FlowError> {
        if n > self.in_flight {
            return Err(FlowError::OverAck);
        }
        self.in_flight -= n;
        Ok(())
    }

    /// We closed the stream; `false` if it was closed already.
    pub fn end(&mut self) -> bool {
        !std::mem::replace(&mut self.eof, true)
    }

    /// Whether we closed it.
    pub fn closed(&self) -> bool {
        self.eof
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_holds_at_most_a_window_and_acks_what_was_consumed() {
        let mut s = Inbound::default();
        let chunk = vec![7u8; 1000];
        for _ in 0..65 {
            s.push(&chunk).unwrap();
        }
        assert_eq!(s.push(&[0; 537]), Err(FlowError::OverWindow));
        s.push(&[0; 536]).unwrap();
        assert_eq!(s.take_ack(), None);
        let mut buf = vec![0; ACK_EVERY as usize - 1];
        assert_eq!(s.read(&mut buf), buf.len());
        assert_eq!(s.take_ack(), None);
        // Consumed but not acknowledged still counts against the window.
        assert_eq!(s.push(&[1]), Err(FlowError::OverWindow));
        assert_eq!(s.read(&mut [0; 1]), 1);
        assert_eq!(s.take_ack(), Some(ACK_EVERY));
        assert_eq!(s.take_ack(), None);
        s.push(&vec![2; ACK_EVERY as usize]).unwrap();
        s.end();
        assert_eq!(s.push(&[1]), Err(FlowError::AfterEof));
        assert!(!s.finished());
        let mut all = vec![0; WINDOW as usize];
        assert_eq!(s.read(&mut all), WINDOW as usize);
        assert!(s.finished());
        // No acknowledgement after the end: nothing more will be sent.
        assert_eq!(s.take_ack(), None);
    }

    #[test]
    fn outbound_room_follows_acks() {
        let mut s = Outbound::default();
        assert_eq!(s.room(), WINDOW as usize);
        s.sent(WINDOW as usize);
        assert_eq!(s.room(), 0);
        assert_eq!(s.acked(WINDOW + 1), Err(FlowError::OverAck));
        s.acked(100).unwrap();
        assert_eq!(s.room(), 100);
        assert!(s.end());
        assert!(!s.end());
        assert_eq!(s.room(), 0);
        // Acks after the end are still counted (they are in flight).
        s.acked(50).unwrap();
    }
}
