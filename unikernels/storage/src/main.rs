//! The storage qube: owns the disk controller and serves each client qube its own private
//! volume, and Linux qubes their template's read-only root.
//!
//! It finds its virtio-blk disk among the assigned devices and brings it up through the
//! runtime (`bulkhead_rt::virtio::VirtioBlk`, behind the IOMMU), reads and checks the
//! disk's volume table (`bulkhead_abi::disk`), then serves the block protocol
//! (`bulkhead_abi::block`) on each client channel its blob lists, each bound to one volume:
//! the private volume named after that client, or the root volume of its template
//! (read-only) (module `serve`). See README.md for what it owns, the log lines and the exit
//! statuses.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod disk;
mod serve;
#[cfg(feature = "test-hooks")]
mod test_hooks;

use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use bulkhead_freestanding as _;
use bulkhead_qubeconfig::QubeConfig;
use bulkhead_rt::report::Size;
use bulkhead_rt::{Boot, error, info};

use crate::disk::Disk;
use crate::serve::Client;

bulkhead_rt::entry!(main);

/// Exit statuses (the qube only exits when it cannot serve at all).
mod status {
    /// The configuration blob is unreadable or lists no client.
    pub const BAD_CONFIG: i32 = 2;
    /// No virtio-blk disk among the assigned devices, or it could not be brought up or read.
    pub const NO_DISK: i32 = 3;
    /// The disk holds no volume table (blank), or one that is refused.
    pub const BAD_LAYOUT: i32 = 4;
}

/// How long the clients must be quiet before their counters are logged.
const QUIET: Duration = Duration::from_millis(500);
/// How often to retry a response whose client's ring was full.
const RETRY: Duration = Duration::from_millis(5);

/// The volumes of a table as `alice:16 MiB bob:16 MiB` (formatted without allocating: the
/// prebuilt `alloc::format!` needs unwinding support the images do not have).
struct Volumes<'a>(&'a bulkhead_abi::disk::DiskLayout);

impl fmt::Display for Volumes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.volumes.iter().enumerate() {
            let size = v.sectors * u64::from(bulkhead_abi::block::SECTOR_SIZE);
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{}:{}", v.name, Size(size))?;
        }
        Ok(())
    }
}

/// The largest block the heap can give now, to within 4 KiB (found by trying).
fn largest_free_block() -> u64 {
    let (mut lo, mut hi) = (0usize, 64 << 20);
    while hi - lo > 4096 {
        let mid = lo + (hi - lo) / 2;
        let mut v: Vec<u8> = Vec::new();
        if v.try_reserve_exact(mid).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo as u64
}

fn main(boot: &Boot) -> i32 {
    let config = match QubeConfig::decode(boot.config()) {
        Ok(c) => c,
        Err(e) => {
            error!("storage: {e}");
            return status::BAD_CONFIG;
        }
    };
    let Some(server) = config.storage else {
        error!(
            "storage: the configuration blob names no client (no qube has storagevm = this qube)"
        );
        return status::BAD_CONFIG;
    };
    let mut disk = match Disk::open(boot) {
        Ok(d) => d,
        Err(e) => {
            error!("storage: {e}");
            return match e {
                disk::DiskError::Blank | disk::DiskError::Layout(_) => status::BAD_LAYOUT,
                _ => status::NO_DISK,
            };
        }
    };
    info!(
        "storage: disk {} MiB, {} volumes ({})",
        disk.blk.sectors() / 2048,
        disk.layout.volumes.len(),
        Volumes(&disk.layout)
    );
    let mut clients: Vec<Client> = server
        .clients
        .iter()
        .map(|c| Client::open(boot, c, &disk))
        .collect();
    // A test hook's argument given to an image built without the hooks is refused, never
    // ignored (the qube serves unchanged).
    #[cfg(feature = "test-hooks")]
    test_hooks::start(&boot.args());
    #[cfg(not(feature = "test-hooks"))]
    if boot.args().has("corrupt-template") {
        error!(
            "storage: corrupt-template is a test hook, left out of this build; refusing it and \
             serving the disk unchanged"
        );
    }
    let mut bounce = serve::bounce_buffer();
    info!(
        "storage: memory: qube {}, image {}, heap {} ({} free after start-up), bounce buffer {}",
        Size(boot.mem_size()),
        Size(boot.image().end - boot.image().start),
        Size(boot.heap_size()),
        Size(largest_free_block()),
        Size(bounce.len() as u64)
    );
    bulkhead_rt::ready();
    let mut last_busy = bulkhead_rt::now_ns();
    let mut reported = true;
    loop {
        let mut busy = false;
        for c in &mut clients {
            busy |= c.serve(&mut disk, &mut bounce);
        }
        let now = bulkhead_rt::now_ns();
        if busy {
            last_busy = now;
            reported = false;
            continue;
        }
        let quiet = Duration::from_nanos(now.saturating_sub(last_busy));
        if !reported && quiet >= QUIET {
            for c in &mut clients {
                c.report();
            }
            #[cfg(feature = "test-hooks")]
            test_hooks::report();
            reported = true;
        }
        // Sleep until a client sends (its event), or until it is time to log the counters
        // or to retry a response that found a full ring.
        let mut timeout = (!reported).then(|| QUIET.saturating_sub(quiet));
        if clients.iter().any(Client::has_pending) {
            timeout = Some(timeout.map_or(RETRY, |t| t.min(RETRY)));
        }
        let mut waiting = false;
        for c in &mut clients {
            waiting |= c.prepare_wait();
        }
        if !waiting {
            bulkhead_rt::wait_event(timeout);
        }
        for c in &mut clients {
            c.finish_wait();
        }
    }
}
