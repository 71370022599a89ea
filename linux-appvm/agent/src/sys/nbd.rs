//! The ioctls of the kernel's NBD driver (`linux/nbd.h`), which the standard library does
//! not wrap: the agent hands `/dev/nbd0` one end of a socket pair and serves the other
//! (`crate::blockdev`). Every request number is `_IO(0xab, n)`; every argument is an
//! integer passed by value, so no memory crosses these calls.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// `_IO(0xab, n)`.
const fn nbd_io(n: u64) -> u64 {
    (0xab << 8) | n
}
const NBD_SET_SOCK: u64 = nbd_io(0);
const NBD_SET_BLKSIZE: u64 = nbd_io(1);
const NBD_DO_IT: u64 = nbd_io(3);
const NBD_CLEAR_SOCK: u64 = nbd_io(4);
const NBD_SET_SIZE_BLOCKS: u64 = nbd_io(7);
const NBD_SET_FLAGS: u64 = nbd_io(10);

/// One NBD ioctl with an integer argument on the open device `dev`.
fn nbd_ioctl(dev: &File, request: u64, arg: u64) -> io::Result<()> {
    // SAFETY: (1) the descriptor is open for as long as `dev` lives; (2) every NBD request
    // used here takes its argument by value (a size, flags or a descriptor number), so the
    // kernel reads and writes no memory of ours; (3) the result is checked.
    let rc = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            request as libc::c_ulong,
            arg as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Configures the device before [`do_it`]: blocks of `block_size` bytes (a power of two
/// from 512 to the page size), `blocks` of them, the transmission `flags` (`NBD_FLAG_*`),
/// and the socket `sock` the kernel sends its requests on (it takes its own reference: the
/// caller may close its descriptor afterwards).
pub fn configure(
    dev: &File,
    sock: RawFd,
    block_size: u64,
    blocks: u64,
    flags: u64,
) -> io::Result<()> {
    let step = |what: &str, request: u64, arg: u64| {
        nbd_ioctl(dev, request, arg).map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
    };
    let sock = u64::try_from(sock).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    step("NBD_SET_BLKSIZE", NBD_SET_BLKSIZE, block_size)?;
    step("NBD_SET_SIZE_BLOCKS", NBD_SET_SIZE_BLOCKS, blocks)?;
    step("NBD_SET_FLAGS", NBD_SET_FLAGS, flags)?;
    step("NBD_SET_SOCK", NBD_SET_SOCK, sock)
}

/// Starts the device and serves it from the kernel's side: returns only when it is
/// disconnected (or could not start).
pub fn do_it(dev: &File) -> io::Result<()> {
    nbd_ioctl(dev, NBD_DO_IT, 0)
}

/// After [`do_it`] returned: lets go of the socket.
pub fn clear_sock(dev: &File) -> io::Result<()> {
    nbd_ioctl(dev, NBD_CLEAR_SOCK, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_linux_nbd_h() {
        assert_eq!(NBD_SET_SOCK, 0xab00);
        assert_eq!(NBD_DO_IT, 0xab03);
        assert_eq!(NBD_SET_SIZE_BLOCKS, 0xab07);
        assert_eq!(NBD_SET_FLAGS, 0xab0a);
    }
}
