//! The AppVM's private volume as a block device: `bulkhead.home=<qube>.blk` names the block
//! channel to the storage qube (`docs/storage.md`), and the agent serves that volume to the
//! kernel's NBD driver as `/dev/nbd0`, which `/init` mounts at `/home`.
//!
//! In a thread of its own ([`spawn`]):
//! 1. [`link::Link`] asks the storage qube `Info` (size, read-only, largest request);
//! 2. a socket pair: one end is given to `/dev/nbd0` with its size in 512-byte blocks and
//!    the flags `SEND_FLUSH` and `SEND_TRIM` (`crate::sys::nbd`), and a thread sits in
//!    `NBD_DO_IT`, the kernel's side, until the device is disconnected;
//! 3. once the kernel shows the device started (`/sys/block/nbd0/pid`), its requests are
//!    capped at one block request (`queue/max_sectors_kb`) and [`READY`] is written, on
//!    which `/init` makes or finds the file system and mounts it;
//! 4. [`serve::serve`] answers the kernel's NBD requests on the other end, each split into
//!    block requests of at most the storage qube's limit and the pool ([`serve::split`]);
//!    a FLUSH is a block `Flush`, so `sync` on the device makes its data durable.
//!
//! Anything that goes wrong before the device is ready is logged and written to
//! [`FAILED`] (so `/init` stops waiting); the rest of the agent goes on without `/home`.

pub mod link;
pub mod nbd;
pub mod serve;

#[cfg(test)]
mod tests;

use crate::channel::uio::UioChannel;
use crate::log::line;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The device the volume becomes.
pub const DEVICE: &str = "/dev/nbd0";
/// Its directory in sysfs.
const SYSFS: &str = "/sys/block/nbd0";
/// Written when the device is ready: its size in 512-byte sectors.
pub const READY: &str = "/run/home.ready";
/// Written when it will not be: why.
pub const FAILED: &str = "/run/home.failed";
/// Written by `/init` once the volume is mounted at `/home` (`xtask/src/appvm/initramfs.rs`,
/// `HOME_MOUNT`); the agent says it is ready only after this or [`FAILED`].
pub const MOUNTED: &str = "/run/home.mounted";
/// How long the kernel may take to start the device.
const START_PATIENCE: Duration = Duration::from_secs(20);

/// Serves the volume behind the block channel `ch` as [`DEVICE`], in threads of its own.
pub fn spawn(ch: UioChannel) -> io::Result<()> {
    std::thread::Builder::new()
        .name("home".into())
        .spawn(move || {
            if let Err(e) = run(ch) {
                line(&format!("home: {e}"));
                let _ = fs::write(FAILED, format!("{e}\n"));
            }
        })?;
    Ok(())
}

fn run(ch: UioChannel) -> Result<(), String> {
    let t0 = Instant::now();
    let name = ch.found.info.name.to_string();
    let mut link = link::Link::open(ch)?;
    let v = link.info().map_err(|e| format!("{name}: {e}"))?;
    let g = serve::Geometry::new(&v, link.pool())
        .ok_or_else(|| format!("{name}: a request cannot carry one sector"))?;
    let (mut ours, kernels) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEVICE)
        .map_err(|e| format!("{DEVICE}: {e} (is the nbd module loaded?)"))?;
    let mut flags = nbd::FLAG_HAS_FLAGS | nbd::FLAG_SEND_FLUSH | nbd::FLAG_SEND_TRIM;
    if g.read_only {
        flags |= nbd::FLAG_READ_ONLY;
    }
    crate::sys::nbd::configure(&dev, kernels.as_raw_fd(), 512, g.sectors, flags)
        .map_err(|e| format!("{DEVICE}: {e}"))?;
    std::thread::Builder::new()
        .name("nbd".into())
        .spawn(move || {
            let r = crate::sys::nbd::do_it(&dev);
            let _ = crate::sys::nbd::clear_sock(&dev);
            drop(kernels);
            if let Err(e) = r {
                line(&format!("home: {DEVICE} stopped: {e}"));
                let _ = fs::write(FAILED, format!("NBD_DO_IT: {e}\n"));
            }
        })
        .map_err(|e| format!("cannot start the NBD thread: {e}"))?;
    let mib = g.sectors / 2048;
    let chunk_kib = g.chunk_sectors / 2;
    std::thread::Builder::new()
        .name("home-ready".into())
        .spawn(move || match wait_started(g.sectors) {
            Ok(()) => {
                // One NBD request, one block request (the driver allows 32 MiB otherwise).
                let cap = Path::new(SYSFS).join("queue/max_sectors_kb");
                let _ = fs::write(cap, format!("{chunk_kib}\n"));
                line(&format!(
                    "home: {DEVICE} serves {name} ({mib} MiB, {} sectors{}, requests of up to {chunk_kib} KiB), ready in {} ms",
                    g.sectors,
                    if g.read_only { ", read-only" } else { "" },
                    t0.elapsed().as_millis()
                ));
                let _ = fs::write(READY, format!("{}\n", g.sectors));
            }
            Err(e) => {
                line(&format!("home: {e}"));
                let _ = fs::write(FAILED, format!("{e}\n"));
            }
        })
        .map_err(|e| format!("cannot start the readiness thread: {e}"))?;
    let mut stats = serve::Stats::default();
    let end = serve::serve(&mut ours, &mut link, &g, &mut stats);
    let s = stats;
    line(&format!(
        "home: {DEVICE} {}: {} requests, {} KiB read, {} KiB written, {} flushes, {} errors; {} block requests, {} resets",
        match &end {
            Ok(e) => format!("{e:?}").to_lowercase(),
            Err(e) => format!("failed ({e})"),
        },
        s.requests,
        s.read_bytes / 1024,
        s.written_bytes / 1024,
        s.flushes,
        s.errors,
        link.requests,
        link.resets
    ));
    Ok(())
}

/// Waits until the kernel has started the device with `sectors` sectors.
fn wait_started(sectors: u64) -> Result<(), String> {
    let start = Instant::now();
    let sys = Path::new(SYSFS);
    loop {
        let size = fs::read_to_string(sys.join("size")).unwrap_or_default();
        if sys.join("pid").exists() && size.trim().parse::<u64>().ok() == Some(sectors) {
            return Ok(());
        }
        if start.elapsed() > START_PATIENCE {
            return Err(format!(
                "{DEVICE} did not start in {} s (size {:?})",
                START_PATIENCE.as_secs(),
                size.trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
