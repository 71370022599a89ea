//! Bulk modes of the testing qube: `bulk-tx` lends `bytes=` bytes in `chunk=`-byte buffers from
//! its pool of the channel's bulk area, one `Probe::Chunk` message each, and takes every one
//! back; `bulk-rx` copies each out, checks every byte against the pattern, and returns it.
//! Both report instructions and exits per MiB.
//!
//! `attack=` makes one side hostile, to show that only its channel breaks and that the victim
//! says why: `bulk-tx attack=rewrite` changes a chunk after lending it, `bulk-tx
//! attack=outside` lends a descriptor outside its pool, `bulk-rx attack=hoard` never returns
//! a buffer. (`bulk-probe write-peer=1`, in `misbehave.rs`, writes into the peer's pool, which
//! the hypervisor maps read-only.)

use crate::channels::{EXIT_BAD_MESSAGE, fail, handshake, open, same_bytes};
use bulkhead_abi::proto::Probe;
use bulkhead_rt::channel::{Channel, ChannelError, WaitMode};
use bulkhead_rt::hypercall::exit_count;
use bulkhead_rt::{Args, Boot, error, info, now_ns};
use core::time::Duration;

/// How long the lender waits for a buffer back before it says the peer keeps them.
const HOARD_TIMEOUT: Duration = Duration::from_secs(2);

fn arg(args: &Args<'_>, key: &str, default: u64) -> u64 {
    args.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(who: &str, what: &str, bytes: u64, chunks: u64, t0: u64, e0: u64) {
    let mib = (bytes >> 20).max(1);
    let (ns, exits) = (now_ns() - t0, exit_count() - e0);
    info!(
        "{who}: {bytes} bytes in {chunks} chunks, {what}: {} ns per MiB, {} exits of this qube per MiB",
        ns / mib,
        exits / mib
    );
}

/// Says why the channel broke and keeps the qube running without it.
fn broken(ch: &Channel, e: ChannelError) -> ! {
    error!("testing: bulk channel {} broken: {e}", ch.name());
    loop {
        bulkhead_rt::sleep(Duration::from_millis(50));
    }
}

/// `bulk-tx`.
pub fn tx(boot: &Boot, args: &Args<'_>) -> i32 {
    let (mut ch, mode) = match open(boot, args) {
        Ok(x) => x,
        Err(status) => return status,
    };
    let total = arg(args, "bytes", 4 << 20);
    let chunk = arg(args, "chunk", 64 << 10).max(1) as usize;
    let attack = args.get("attack").unwrap_or("");
    let chunks = total.div_ceil(chunk as u64);
    let mut data = alloc::vec![0u8; chunk];
    match handshake(boot, &mut ch, mode) {
        Ok(true) => {}
        Ok(false) => return EXIT_BAD_MESSAGE,
        Err(status) => return status,
    }
    if ch.bulk().is_none() {
        error!("testing: channel {} has no bulk area", ch.name());
        return EXIT_BAD_MESSAGE;
    }
    let (t0, e0) = (now_ns(), exit_count());
    let (mut next, mut returned) = (0u64, 0u64);
    let mut stuck_since: Option<u64> = None;
    while returned < chunks {
        while next < chunks {
            let at = next * chunk as u64;
            let len = (total - at).min(chunk as u64) as usize;
            Probe::fill_bulk(&mut data[..len], at);
            let Some(bulk) = ch.bulk() else { break };
            let mut r = match bulk.lend(&data[..len]) {
                Ok(r) => r,
                Err(ChannelError::BulkExhausted { .. }) => break,
                Err(e) => broken(&ch, e),
            };
            if next == 2 {
                match attack {
                    "rewrite" => crate::misbehave::rewrite_own_bulk(boot, ch.local(), r.offset),
                    "outside" => r.offset = r.offset.wrapping_add(1 << 30),
                    _ => {}
                }
            }
            if let Err(e) = ch.send(&Probe::Chunk { seq: next, buf: r }) {
                return fail("send chunk", e);
            }
            next += 1;
        }
        match ch.try_recv::<Probe>() {
            Ok(Some(Probe::Returned(r))) => {
                stuck_since = None;
                match ch.bulk().map(|b| b.reclaim(&r)) {
                    Some(Ok(())) => returned += 1,
                    Some(Err(e)) => broken(&ch, e),
                    None => return EXIT_BAD_MESSAGE,
                }
            }
            Ok(Some(other)) => {
                error!("testing: bulk: expected a returned buffer, got {other:?}");
                return EXIT_BAD_MESSAGE;
            }
            Ok(None) => {
                let now = now_ns();
                let since = *stuck_since.get_or_insert(now);
                if now - since > HOARD_TIMEOUT.as_nanos() as u64
                    && let Some(bulk) = ch.bulk()
                {
                    // Say how much the peer holds: a lend that cannot fit now.
                    let e = bulk.lend(&data).err().unwrap_or(ChannelError::Encode);
                    broken(&ch, e);
                }
                match mode {
                    WaitMode::Poll => bulkhead_rt::hypercall::yield_now(),
                    WaitMode::Spin => core::hint::spin_loop(),
                    WaitMode::Event => {
                        let _ = ch.wait_timeout(Some(Duration::from_millis(100)));
                    }
                }
            }
            Err(e) => broken(&ch, e),
        }
    }
    // Reported before `Done`, so the line is out before the receiver's.
    report("bulk-tx", "lent and returned", total, chunks, t0, e0);
    if let Err(e) = ch.send(&Probe::Done { count: chunks }) {
        return fail("send done", e);
    }
    0
}

/// `bulk-rx`.
pub fn rx(boot: &Boot, args: &Args<'_>) -> i32 {
    let (mut ch, mode) = match open(boot, args) {
        Ok(x) => x,
        Err(status) => return status,
    };
    let hoard = args.get("attack") == Some("hoard");
    match handshake(boot, &mut ch, mode) {
        Ok(true) => {}
        Ok(false) => return EXIT_BAD_MESSAGE,
        Err(status) => return status,
    }
    let pool = match ch.bulk() {
        Some(b) => b.pool_size(),
        None => {
            error!("testing: channel {} has no bulk area", ch.name());
            return EXIT_BAD_MESSAGE;
        }
    };
    let mut got = alloc::vec::Vec::new();
    let mut want = alloc::vec::Vec::new();
    let (t0, e0) = (now_ns(), exit_count());
    let (mut expected, mut bytes) = (0u64, 0u64);
    loop {
        match ch.recv::<Probe>(mode) {
            Ok(Probe::Chunk { seq, buf: r }) if seq == expected => {
                got.resize((r.len as usize).min(pool), 0);
                let read = ch.bulk().map(|b| b.read(&r, &mut got));
                match read {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => broken(&ch, e),
                    None => return EXIT_BAD_MESSAGE,
                }
                want.resize(got.len(), 0);
                Probe::fill_bulk(&mut want, bytes);
                if !same_bytes(&got, &want) {
                    error!("testing: bulk chunk {seq}: bytes differ from what was sent");
                    return EXIT_BAD_MESSAGE;
                }
                bytes += got.len() as u64;
                expected += 1;
                if !hoard && let Err(e) = ch.send(&Probe::Returned(r)) {
                    return fail("return a buffer", e);
                }
            }
            Ok(Probe::Done { count }) if count == expected => {
                report("bulk-rx", "every byte checked", bytes, count, t0, e0);
                return 0;
            }
            Ok(other) => {
                error!("testing: bulk: unexpected {other:?} after {expected} chunks");
                return EXIT_BAD_MESSAGE;
            }
            Err(e) => broken(&ch, e),
        }
    }
}
