//! The frame transport between this AppVM and its firewall qube. It will be backed by the
//! hypervisor's channel device (a shared ring); for now only the trait and an in-memory
//! loopback for tests exist.

use std::collections::VecDeque;
use std::io;

/// Moves whole Ethernet frames to and from the firewall.
pub trait FrameChannel {
    /// Queues one frame; fails when the peer cannot take it now.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// The next frame into `buf` (its length), or `None` when none is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
}

/// Every frame sent comes back on receive, in order, with a bounded queue.
#[derive(Debug)]
pub struct Loopback {
    queue: VecDeque<Vec<u8>>,
    capacity: usize,
}

impl Loopback {
    pub fn new(capacity: usize) -> Loopback {
        Loopback {
            queue: VecDeque::new(),
            capacity,
        }
    }
}

impl FrameChannel for Loopback {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.queue.len() >= self.capacity {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "loopback full"));
        }
        self.queue.push_back(frame.to_vec());
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(frame) = self.queue.front() else {
            return Ok(None);
        };
        if frame.len() > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {} byte frame does not fit {} bytes",
                    frame.len(),
                    buf.len()
                ),
            ));
        }
        let frame = self.queue.pop_front().unwrap_or_default();
        buf[..frame.len()].copy_from_slice(&frame);
        Ok(Some(frame.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_in_order() {
        let mut ch = Loopback::new(2);
        ch.send(b"one").unwrap();
        ch.send(b"second").unwrap();
        assert_eq!(ch.send(b"x").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let mut buf = [0u8; 4];
        assert_eq!(ch.recv(&mut buf).unwrap(), Some(3));
        assert_eq!(&buf[..3], b"one");
        // Too small: the frame stays queued.
        assert!(ch.recv(&mut buf).is_err());
        let mut big = [0u8; 1514];
        assert_eq!(ch.recv(&mut big).unwrap(), Some(6));
        assert_eq!(&big[..6], b"second");
        assert_eq!(ch.recv(&mut big).unwrap(), None);
    }
}
