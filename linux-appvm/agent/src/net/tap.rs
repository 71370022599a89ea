//! The TAP interface: `/dev/net/tun` made a TAP device with TUNSETIFF (`IFF_TAP |
//! IFF_NO_PI`, so each read or write is one plain Ethernet frame), non-blocking so the
//! event loop can poll it with the channels.

use crate::sys;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

/// Moves whole Ethernet frames in and out of the local network stack: the TAP interface in
/// the VM, a queue in the tests.
pub trait FrameDevice {
    /// The next frame the stack sent, into `buf` (its length, which may exceed
    /// `MAX_FRAME` when `buf` is larger); `None` when none is waiting.
    fn recv_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Hands one received frame to the stack.
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()>;
}

/// An open TAP interface; it exists as long as this does.
#[derive(Debug)]
pub struct Tap {
    file: File,
    /// The interface's name.
    pub name: String,
}

impl Tap {
    /// Creates the TAP interface `name`.
    pub fn create(name: &str) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        let name = sys::tun_set_tap(&file, name)?;
        sys::set_nonblocking(&file)?;
        Ok(Tap { file, name })
    }

    /// The descriptor to poll for frames.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl FrameDevice for Tap {
    fn recv_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        // One write is one frame; a full queue (EAGAIN) drops it, as a NIC would.
        self.file.write(frame).map(|_| ())
    }
}
