//! The TAP interface: `/dev/net/tun` made a TAP device with TUNSETIFF (`IFF_TAP |
//! IFF_NO_PI | IFF_VNET_HDR`: each read or write is one Ethernet frame behind a
//! `virtio_net_hdr`), its offloads turned on with TUNSETOFFLOAD (`TUN_F_CSUM |
//! TUN_F_TSO4`: the kernel hands over TCP segments of up to 64 KiB with their checksums
//! unfinished, and takes large received segments; [`super::offload`] does the card's part),
//! non-blocking so the event loop can poll it with the channels. Should the kernel refuse
//! the virtio header, the device is a plain TAP (one bare frame per read or write).

use super::offload::VNET_HDR_LEN;
use crate::sys;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

/// Moves whole Ethernet frames in and out of the local network stack: the TAP interface in
/// the VM, a queue in the tests.
pub trait FrameDevice {
    /// The next frame the stack sent, into `buf` (its length, which may exceed
    /// `MAX_FRAME` when `buf` is larger); `None` when none is waiting.
    fn recv_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Hands one received frame to the stack.
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Whether every read and write carries a `virtio_net_hdr` first (the offloads are on):
    /// [`FrameDevice::recv_frame`] then returns the header and the packet, and packets go
    /// in with [`FrameDevice::send_vnet`].
    fn vnet(&self) -> bool {
        false
    }
    /// Hands one packet behind its virtio header to the stack (a device with
    /// [`FrameDevice::vnet`]).
    fn send_vnet(&mut self, hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<()> {
        let mut v = hdr.to_vec();
        v.extend_from_slice(frame);
        self.send_frame(&v)
    }
}

/// An open TAP interface; it exists as long as this does.
#[derive(Debug)]
pub struct Tap {
    file: File,
    /// The interface's name.
    pub name: String,
    /// Reads and writes carry a virtio header.
    vnet: bool,
    /// Why the offloads are off, if they are.
    pub offload_error: Option<String>,
}

impl Tap {
    /// Creates the TAP interface `name`.
    pub fn create(name: &str) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        let (name, vnet, offload_error) = match sys::tun_set_tap(&file, name, true) {
            Ok(n) => match sys::tun_set_offload(&file) {
                Ok(()) => (n, true, None),
                // The header stays; without offloads the kernel leaves it empty.
                Err(e) => (n, true, Some(format!("TUNSETOFFLOAD: {e}"))),
            },
            Err(e) => {
                let file2 = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/net/tun")?;
                let n = sys::tun_set_tap(&file2, name, false)?;
                sys::set_nonblocking(&file2)?;
                return Ok(Tap {
                    file: file2,
                    name: n,
                    vnet: false,
                    offload_error: Some(format!("IFF_VNET_HDR: {e}")),
                });
            }
        };
        sys::set_nonblocking(&file)?;
        Ok(Tap {
            file,
            name,
            vnet,
            offload_error,
        })
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

    fn vnet(&self) -> bool {
        self.vnet
    }

    fn send_vnet(&mut self, hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<()> {
        // One writev is one packet.
        self.file
            .write_vectored(&[IoSlice::new(hdr), IoSlice::new(frame)])
            .map(|_| ())
    }
}
