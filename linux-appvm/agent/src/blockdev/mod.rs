//! Volumes of the storage qube as block devices, each served by the agent to the kernel's
//! NBD driver over a socket pair (`docs/storage.md`), on an NBD index of its own ([`Role`]):
//! - `bulkhead.home=<qube>.blk`, the private volume: `/dev/nbd0`, which `/init` mounts at
//!   `/home`;
//! - `bulkhead.root=<qube>.root`, the template's root: `/dev/nbd1`, always read-only, under
//!   a dm-verity device ([`verity`]) that `/init` mounts as the root the agent moves into
//!   (`crate::root`).
//!
//! For each, in a thread of its own ([`spawn`]):
//! 1. [`link::Link`] asks the storage qube `Info` (size, read-only, largest request);
//! 2. a socket pair: one end is given to the NBD device with its size in 512-byte blocks and
//!    the flags `SEND_FLUSH` and `SEND_TRIM` (and `READ_ONLY` for a read-only volume, always
//!    for the root) (`crate::sys::nbd`), and a thread sits in `NBD_DO_IT`, the kernel's
//!    side, until the device is disconnected;
//! 3. once the kernel shows the device started (`/sys/block/nbdN/pid`), its requests are
//!    capped at one block request (`queue/max_sectors_kb`); for home [`READY`] is written,
//!    on which `/init` makes or finds the file system and mounts it; for the root the
//!    dm-verity device is made first and its path written to `/run/root.ready`;
//! 4. [`serve::serve`] answers the kernel's NBD requests on the other end, each split into
//!    block requests of at most the storage qube's limit and the pool ([`serve::split`]);
//!    a FLUSH is a block `Flush`, so `sync` on the device makes its data durable.
//!
//! Anything that goes wrong before the device is ready is logged and written to the
//! volume's `failed` file ([`FAILED`] for home) so `/init` stops waiting; the rest of the
//! agent goes on without the volume.
//!
//! [`hostile`] is the `block-hostile` self-test, a hostile client of the storage qube on
//! these channels (the agent serves neither volume then).

pub mod hostile;
pub mod link;
pub mod nbd;
pub mod serve;
pub mod verity;

#[cfg(test)]
mod tests;

use crate::channel::uio::UioChannel;
use crate::config::Verity;
use crate::log::line;
use bulkhead_abi::block::VolumeGeometry;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where a volume goes: its NBD device and the files that tell `/init` about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// `home` or `root`: the start of its log lines, its threads' names.
    pub label: &'static str,
    /// The NBD index: `/dev/nbd<index>`.
    pub index: u32,
    /// Written when the device is ready (for home its size in 512-byte sectors, for the
    /// root the dm-verity device's path).
    pub ready: &'static str,
    /// Written when it will not be: why.
    pub failed: &'static str,
    /// Written by `/init` once it has mounted the volume.
    pub mounted: &'static str,
    /// Read-only whatever the storage qube says.
    pub read_only: bool,
}

impl Place {
    /// `/dev/nbd<index>`.
    pub fn device(&self) -> String {
        format!("/dev/nbd{}", self.index)
    }

    /// `/sys/block/nbd<index>`.
    pub fn sysfs(&self) -> PathBuf {
        PathBuf::from(format!("/sys/block/nbd{}", self.index))
    }
}

/// The private volume: `/dev/nbd0`, mounted by `/init` at `/home`
/// (`xtask/src/appvm/initramfs.rs`, `HOME_MOUNT`).
pub const HOME: Place = Place {
    label: "home",
    index: 0,
    ready: "/run/home.ready",
    failed: "/run/home.failed",
    mounted: "/run/home.mounted",
    read_only: false,
};

/// The template's root: `/dev/nbd1`, read-only, under dm-verity; `/init` mounts the
/// verity device at `/sysroot` and writes `mounted` (`crate::root`).
pub const ROOT: Place = Place {
    label: "root",
    index: 1,
    ready: "/run/root.ready",
    failed: "/run/root.failed",
    mounted: "/run/root.mounted",
    read_only: true,
};

/// The device the private volume becomes.
pub const DEVICE: &str = "/dev/nbd0";
/// Written when the private volume is ready: its size in 512-byte sectors.
pub const READY: &str = HOME.ready;
/// Written when it will not be: why.
pub const FAILED: &str = HOME.failed;
/// Written by `/init` once the volume is mounted at `/home`; the agent says it is ready
/// only after this or [`FAILED`].
pub const MOUNTED: &str = HOME.mounted;
/// How long the kernel may take to start the device.
const START_PATIENCE: Duration = Duration::from_secs(20);

/// What a block channel carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The private volume ([`HOME`]).
    Home,
    /// The template's root ([`ROOT`]), checked by dm-verity with these parameters.
    Root(Verity),
}

impl Role {
    /// Where it goes.
    pub fn place(&self) -> Place {
        match self {
            Role::Home => HOME,
            Role::Root(_) => ROOT,
        }
    }
}

/// The NBD transmission flags for a volume.
pub fn flags(read_only: bool) -> u64 {
    let flags = nbd::FLAG_HAS_FLAGS | nbd::FLAG_SEND_FLUSH | nbd::FLAG_SEND_TRIM;
    if read_only {
        flags | nbd::FLAG_READ_ONLY
    } else {
        flags
    }
}

/// How the server splits requests for the volume the storage qube describes in `v`, over a
/// pool of `pool` bytes: read-only also when `place` says so (the root, whatever the storage
/// qube says: the kernel gets a read-only device, and the server refuses writes should any
/// come). `None` if not one sector fits.
pub fn geometry(place: &Place, v: &VolumeGeometry, pool: u32) -> Option<serve::Geometry> {
    let mut g = serve::Geometry::new(v, pool)?;
    g.read_only |= place.read_only;
    Some(g)
}

/// Logs `<label>: <why>` and writes it to the volume's `failed` file.
pub fn fail(place: &Place, why: &str) {
    line(&format!("{}: {why}", place.label));
    let _ = fs::write(place.failed, format!("{why}\n"));
}

/// Serves the volume behind the block channel `ch` as the NBD device of `role`, in threads
/// of its own.
pub fn spawn(ch: UioChannel, role: Role) -> io::Result<()> {
    let place = role.place();
    std::thread::Builder::new()
        .name(place.label.into())
        .spawn(move || {
            if let Err(e) = run(ch, role) {
                fail(&place, &e);
            }
        })?;
    Ok(())
}

fn run(ch: UioChannel, role: Role) -> Result<(), String> {
    let t0 = Instant::now();
    let place = role.place();
    let (label, device) = (place.label, place.device());
    let name = ch.found.info.name.to_string();
    let mut link = link::Link::open(ch)?;
    let v = link.info().map_err(|e| format!("{name}: {e}"))?;
    let g = geometry(&place, &v, link.pool())
        .ok_or_else(|| format!("{name}: a request cannot carry one sector"))?;
    let (mut ours, kernels) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&device)
        .map_err(|e| match place.index {
            0 => format!("{device}: {e} (is the nbd module loaded?)"),
            n => format!(
                "{device}: {e} (is the nbd module loaded, with nbds_max={} or more?)",
                n + 1
            ),
        })?;
    crate::sys::nbd::configure(
        &dev,
        kernels.as_raw_fd(),
        512,
        g.sectors,
        flags(g.read_only),
    )
    .map_err(|e| format!("{device}: {e}"))?;
    let nbd_device = device.clone();
    std::thread::Builder::new()
        .name(format!("{label}-nbd"))
        .spawn(move || {
            let r = crate::sys::nbd::do_it(&dev);
            let _ = crate::sys::nbd::clear_sock(&dev);
            drop(kernels);
            if let Err(e) = r {
                line(&format!("{label}: {nbd_device} stopped: {e}"));
                let _ = fs::write(place.failed, format!("NBD_DO_IT: {e}\n"));
            }
        })
        .map_err(|e| format!("cannot start the NBD thread: {e}"))?;
    let mib = g.sectors / 2048;
    let chunk_kib = g.chunk_sectors / 2;
    let ready_device = device.clone();
    std::thread::Builder::new()
        .name(format!("{label}-ready"))
        .spawn(move || {
            let device = ready_device;
            if let Err(e) = wait_started(&place, g.sectors) {
                fail(&place, &e);
                return;
            }
            // One NBD request, one block request (the driver allows 32 MiB otherwise).
            let _ = fs::write(
                place.sysfs().join("queue/max_sectors_kb"),
                format!("{chunk_kib}\n"),
            );
            line(&format!(
                "{label}: {device} serves {name} ({mib} MiB, {} sectors{}, requests of up to {chunk_kib} KiB), ready in {} ms",
                g.sectors,
                if g.read_only { ", read-only" } else { "" },
                t0.elapsed().as_millis()
            ));
            let ready = match &role {
                Role::Home => Ok(format!("{}\n", g.sectors)),
                Role::Root(v) => verity::setup(v, &place, g.sectors, t0),
            };
            match ready {
                Ok(contents) => {
                    let _ = fs::write(place.ready, contents);
                }
                Err(e) => fail(&place, &e),
            }
        })
        .map_err(|e| format!("cannot start the readiness thread: {e}"))?;
    let mut stats = serve::Stats::default();
    let end = serve::serve(&mut ours, &mut link, &g, &mut stats);
    let s = stats;
    line(&format!(
        "{label}: {device} {}: {} requests, {} KiB read, {} KiB written, {} flushes, {} errors; {} block requests, {} resets",
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

/// Waits until the kernel has started the device of `place` with `sectors` sectors.
fn wait_started(place: &Place, sectors: u64) -> Result<(), String> {
    let start = Instant::now();
    let sys = place.sysfs();
    loop {
        let size = fs::read_to_string(sys.join("size")).unwrap_or_default();
        if sys.join("pid").exists() && size.trim().parse::<u64>().ok() == Some(sectors) {
            return Ok(());
        }
        if start.elapsed() > START_PATIENCE {
            return Err(format!(
                "{} did not start in {} s (size {:?})",
                place.device(),
                START_PATIENCE.as_secs(),
                size.trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
