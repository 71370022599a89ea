//! The agent's unsafe system calls: the Linux system calls the standard library does not wrap
//! (mmap of a PCI BAR, `poll`, the TUN ioctl, `fcntl`, `mknod`, `sync`, `reboot`, the
//! pseudo-terminal's: open, window size, controlling terminal, hang-up), and the
//! benchmark's [`mark`]; in [`at`], the `*at` calls relative to a directory descriptor;
//! in [`waitset`], `ppoll` on any number of descriptors and signals to a process group; in
//! [`cpus`], CPU affinity, `sched_getcpu` and the online count; in [`nbd`], the NBD
//! driver's ioctls; in [`dm`], the device mapper's ioctls (the buffer they take is built by
//! safe, host-tested code there; only the call is `unsafe`). [`enter_root`] (`chroot`) needs
//! no `unsafe`: the standard library wraps it.
//! Every system call here checks its arguments and returns `io::Result`; nothing else in
//! the crate uses `unsafe` but the CPU instructions of `xstate::cpu`.
#![allow(unsafe_code)]

pub mod at;
pub mod cpus;
pub mod dm;
pub mod nbd;
pub mod waitset;

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use bulkhead_ring::SharedRegion;

/// A shared, read/write mapping of the first `len` bytes of a file (a PCI BAR's `resource0`
/// or `resource4`), unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is an address range owned by this value; it is not tied to the thread
// that made it, and all access to it goes through `SharedRegion` (atomic or volatile).
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` from offset 0, `PROT_READ | PROT_WRITE`, `MAP_SHARED`.
    pub fn new(file: &File, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (address NULL) cannot overlap any Rust
        // object; `file` is an open descriptor for the duration of the call; failure is
        // checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            base: p.cast::<u8>(),
            len,
        })
    }

    /// The mapping as a ring region (or a bulk area). The `Mapping` must outlive every
    /// endpoint and bulk area made from it (the channel owns both and drops them first).
    pub fn region(&self) -> SharedRegion {
        // SAFETY: (1) `base .. base + len` is mapped read/write by `new` and stays mapped until
        // `self` is dropped; the owner (`channel::uio::UioChannel`) declares its endpoint and
        // bulk area (`ring`) before the mappings, so they and their region handles are
        // dropped first;
        // (2) this program makes no Rust reference to the bytes: they are reached only
        // through `SharedRegion`.
        unsafe { SharedRegion::new(self.base, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing uses the range after
        // this (see `region`).
        unsafe { libc::munmap(self.base.cast::<libc::c_void>(), self.len) };
    }
}

/// One descriptor to watch in [`poll`], and what it was found ready for.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    pub fd: RawFd,
    /// Readable (or hung up / in error: a read will say which).
    pub readable: bool,
}

/// Waits until one of `watches` is readable or `timeout` passes (`None`: no limit); sets
/// their `readable`. An interrupted wait counts as a timeout.
pub fn poll(watches: &mut [Watch], timeout: Option<Duration>) -> io::Result<()> {
    // No allocation on the event loop's path: it runs once per wake-up.
    const MAX: usize = 16;
    if watches.len() > MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many watches",
        ));
    }
    let mut all = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX];
    for (p, w) in all.iter_mut().zip(watches.iter()) {
        p.fd = w.fd;
        p.events = libc::POLLIN;
    }
    let fds = &mut all[..watches.len()];
    let rc = waitset::ppoll(fds, timeout)?;
    for (w, p) in watches.iter_mut().zip(fds.iter()) {
        w.readable = rc > 0 && p.revents != 0;
    }
    Ok(())
}

// From <linux/if_tun.h>: _IOW('T', 202, int), and the flags.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
// _IOW('T', 208, unsigned int), and the offloads: checksums, TSO over IPv4.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (the union is 24 bytes).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Makes the open `/dev/net/tun` descriptor the TAP interface `name` (no packet-information
/// header; a `virtio_net_hdr` before every frame if `vnet`); returns the name the kernel
/// gave it.
pub fn tun_set_tap(tun: &File, name: &str, vnet: bool) -> io::Result<String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | if vnet { IFF_VNET_HDR } else { 0 },
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the descriptor is open for as long as `tun` lives, and `req` is a valid,
    // 40-byte `struct ifreq` that TUNSETIFF reads and writes back in place.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    Ok(String::from_utf8_lossy(&req.name[..len]).into_owned())
}

/// Turns on a TAP's checksum and TCP/IPv4 segmentation offloads (`TUN_F_CSUM |
/// TUN_F_TSO4`): the kernel then hands over large segments with unfinished checksums.
pub fn tun_set_offload(tun: &File) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; the descriptor is open.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `O_NONBLOCK` on a descriptor.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor the caller holds open; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL with an integer argument on the same open descriptor.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a new pseudo-terminal: its controller (the terminal emulator's end) and the
/// terminal itself (the shell's stdin, stdout and stderr), both close-on-exec.
pub fn open_pty() -> io::Result<(File, File)> {
    // SAFETY: posix_openpt takes flags only and returns a new descriptor or -1.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let controller = unsafe { File::from_raw_fd(fd) };
    // SAFETY: unlockpt on the controller we hold open; no memory is passed.
    if unsafe { libc::unlockpt(fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER (Linux 4.13) takes the open flags as an integer and returns a new
    // descriptor for the terminal or -1; no memory is passed.
    let peer = unsafe { libc::ioctl(fd, libc::TIOCGPTPEER, flags) };
    if peer < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `peer` was just opened and is owned by nothing else.
    Ok((controller, unsafe { File::from_raw_fd(peer) }))
}

/// Tells the terminal of `controller` its size (the kernel sends SIGWINCH to its
/// foreground process group).
pub fn set_window_size(
    controller: &File,
    cols: u16,
    rows: u16,
    width: u16,
    height: u16,
) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: width,
        ws_ypixel: height,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize`, which `size` is and outlives the call.
    if unsafe { libc::ioctl(controller.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the child of `command` a session leader whose controlling terminal is its stdin
/// (which must be a terminal): what a shell needs for job control and Ctrl+C.
pub fn with_controlling_terminal(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls only setsid and
    // ioctl, which are async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends SIGHUP to the process group `pgid` (a session leader's: the shell and its jobs),
/// as a terminal does when it goes away.
pub fn hang_up(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "no such process group"))?;
    // SAFETY: kill with a negative pid (a process group) and a valid signal number.
    if pgid <= 0 || unsafe { libc::kill(-pgid, libc::SIGHUP) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the character device node `path` (mode 0600).
pub fn mknod_char(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; makedev is pure.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(major, minor),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `new_root` the root directory of the process and its `/` the working directory
/// (`chroot`, then `chdir("/")`). Both belong to the process, so every thread moves with it;
/// descriptors and mappings already open stay valid. A failed `chdir` after a `chroot` that
/// worked is reported as an error with the root already moved.
pub fn enter_root(new_root: &Path) -> io::Result<()> {
    std::os::unix::fs::chroot(new_root)?;
    std::env::set_current_dir("/")
}

/// The mark of `cargo xtask bench --network`: `nop dword ptr [rax + rax*1 + 0x4b4d4842]`, a
/// NOP whose displacement no compiler emits, so QEMU's counting plugin
/// (`xtask/qemu-counter`, its `MARK`) recognises it and writes down its counters each time it
/// runs. On a CPU it does nothing.
pub fn mark() {
    // SAFETY: a NOP: it reads no memory (the operand is never accessed), writes no register
    // and leaves the flags alone.
    unsafe {
        std::arch::asm!(
            ".byte 0x0f, 0x1f, 0x84, 0x00, 0x42, 0x48, 0x4d, 0x4b",
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// Flushes the file systems, then powers the machine off (ACPI S5). Returns only on failure.
pub fn power_off() -> io::Error {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    // SAFETY: reboot with a valid command; it returns only on failure (e.g. no CAP_SYS_BOOT).
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        let f = File::open("/dev/null").unwrap();
        assert!(tun_set_tap(&f, "", false).is_err());
        assert!(tun_set_tap(&f, "a-name-much-too-long", false).is_err());
    }

    #[test]
    fn poll_times_out_and_sees_data() {
        let (r, mut w) = std::io::pipe().unwrap();
        let mut watch = [Watch {
            fd: r.as_raw_fd(),
            readable: true,
        }];
        poll(&mut watch, Some(Duration::from_millis(1))).unwrap();
        assert!(!watch[0].readable);
        std::io::Write::write_all(&mut w, b"x").unwrap();
        poll(&mut watch, Some(Duration::ZERO)).unwrap();
        assert!(watch[0].readable);
    }

    #[test]
    fn a_file_maps_shared() {
        let path = std::env::temp_dir().join(format!("agent-map-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(16384).unwrap();
        let m = Mapping::new(&f, 16384).unwrap();
        assert!(m.region().write_bytes(100, b"hello"));
        drop(m);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[100..105], b"hello");
        let _ = std::fs::remove_file(&path);
        assert!(Mapping::new(&f, 0).is_err());
    }
}
