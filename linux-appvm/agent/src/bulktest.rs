//! `bulkhead-agent bulk-test SPEC`: the AppVM's side of the bulk-area scenario (`cargo xtask
//! test appvm-bulk`, the self-test step `bulk:SPEC`). It speaks the testing qube's bulk
//! protocol (`unikernels/testing/src/bulk.rs`: `Probe::Hello` both ways, then `Chunk`s lent
//! from the sender's pool, each given back with `Returned`, and `Done`), over a channel device
//! it opens itself (the agent's event loop leaves channels no service uses alone):
//!
//! - `tx:CHANNEL:BYTES:CHUNK` lends `BYTES` bytes of [`Probe::fill_bulk`] in `CHUNK`-byte
//!   buffers and takes every one back; `tx:CHANNEL:BYTES:CHUNK:outside` is a hostile lender
//!   whose third descriptor points 1 GiB past its pool: the peer must say why and stop
//!   returning buffers, and the step reports how many came back;
//! - `rx:CHANNEL` copies each lent buffer out ([`bulkhead_ring::Bulk::read`]: inside the
//!   peer's pool, checksum), checks every byte against the pattern and gives it back; a peer
//!   that breaks the bulk area is named with what it did, and the step ends (the AppVM goes
//!   on);
//! - `write-peer:CHANNEL` writes one byte into the peer's pool, which the hypervisor maps
//!   read-only: the AppVM must be stopped for it.
//!
//! Every line starts with `selftest: bulk-...`; the exit status is 0 when the step did what
//! it should.

use crate::channel::uio::{self, UioChannel};
use crate::channel::{ChannelError, Side, Transport};
use crate::log::printable;
use crate::sys::Mapping;
use bulkhead_abi::proto::{Hello, PROTO_VERSION, Probe};
use std::fs::OpenOptions;
use std::time::{Duration, Instant};

/// How long a step waits for the peer's next message before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long a hostile lender waits for buffers that will not come back.
const ATTACK_PATIENCE: Duration = Duration::from_secs(2);
/// How far past its pool the hostile lender's descriptor points (the testing qube's
/// `attack=outside` uses the same).
const OUTSIDE: u32 = 1 << 30;

/// What a `bulk-test` invocation does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// Lend `bytes` in `chunk`-byte buffers; `outside`: the third one's descriptor lies.
    Tx {
        channel: String,
        bytes: u64,
        chunk: usize,
        outside: bool,
    },
    /// Borrow and check.
    Rx { channel: String },
    /// Write the peer's pool.
    WritePeer { channel: String },
}

impl Spec {
    /// Reads `tx:CHANNEL:BYTES:CHUNK[:outside]`, `rx:CHANNEL` or `write-peer:CHANNEL`.
    pub fn parse(text: &str) -> Option<Spec> {
        let parts: Vec<&str> = text.split(':').collect();
        let channel = parts.get(1).filter(|c| !c.is_empty())?.to_string();
        match parts[..] {
            ["tx", _, bytes, chunk] | ["tx", _, bytes, chunk, "outside"] => {
                let chunk: usize = chunk.parse().ok().filter(|c| *c > 0)?;
                Some(Spec::Tx {
                    channel,
                    bytes: bytes.parse().ok()?,
                    chunk,
                    outside: parts.len() == 5,
                })
            }
            ["rx", _] => Some(Spec::Rx { channel }),
            ["write-peer", _] => Some(Spec::WritePeer { channel }),
            _ => None,
        }
    }
}

/// Runs `bulk-test SPEC` as the qube `qube`; the process's exit status.
pub fn main(args: &[String], qube: &str) -> u8 {
    let Some(spec) = args.first().and_then(|a| Spec::parse(a)) else {
        eprintln!(
            "usage: bulkhead-agent bulk-test tx:CHANNEL:BYTES:CHUNK[:outside] | rx:CHANNEL | write-peer:CHANNEL"
        );
        return 2;
    };
    let result = match &spec {
        Spec::Tx {
            channel,
            bytes,
            chunk,
            outside,
        } => open(channel).and_then(|mut ch| tx(&mut ch, qube, *bytes, *chunk, *outside)),
        Spec::Rx { channel } => open(channel).and_then(|mut ch| rx(&mut ch, qube)),
        Spec::WritePeer { channel } => write_peer(channel),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            println!("selftest: bulk-test {}: {e}", printable(&args[0], 80));
            1
        }
    }
}

/// Opens the channel device named `name`, with its bulk area.
fn open(name: &str) -> Result<UioChannel, String> {
    let ch = uio::open_named(name)?;
    if ch.found.info.bulk_size == 0 {
        return Err(format!("channel {name} has no bulk area"));
    }
    Ok(ch)
}

/// The next message, waiting at most `patience` for it (`None` then).
fn recv(ch: &mut UioChannel, patience: Duration) -> Result<Option<Probe>, String> {
    let deadline = Instant::now() + patience;
    loop {
        match ch.ring.try_recv_with(|b| postcard::from_bytes::<Probe>(b)) {
            Ok(Some(Ok(p))) => return Ok(Some(p)),
            Ok(Some(Err(_))) => return Err("the peer sent a message that does not decode".into()),
            Ok(None) => {}
            Err(e) => return Err(format!("channel {}: {e}", ch.found.info.name.as_str())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        ch.wait_for_peer(left.min(Duration::from_millis(100)))
            .map_err(|e| format!("waiting: {e}"))?;
    }
}

/// Sends `msg`, waiting while the ring is full.
fn send(ch: &mut UioChannel, msg: &Probe) -> Result<(), String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match ch.ring.try_send(msg) {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(false) => return Err("the peer stopped taking messages".into()),
            Err(e) => return Err(format!("sending: {e}")),
        }
    }
}

/// `Hello` both ways (the testing qube's handshake).
fn handshake(ch: &mut UioChannel, qube: &str) -> Result<(), String> {
    let mut name = heapless::String::new();
    for c in qube.chars() {
        if name.push(c).is_err() {
            break;
        }
    }
    send(
        ch,
        &Probe::Hello(Hello {
            version: PROTO_VERSION,
            qube: name,
        }),
    )?;
    match recv(ch, PATIENCE)? {
        Some(Probe::Hello(h)) if h.version == PROTO_VERSION => {
            println!(
                "selftest: bulk: channel {} open, peer {} (side {}, bulk area {} KiB)",
                ch.found.info.name.as_str(),
                printable(&h.qube, 32),
                if ch.ring.side() == Side::A { 'A' } else { 'B' },
                ch.found.info.bulk_size / 1024
            );
            Ok(())
        }
        Some(other) => Err(format!(
            "expected Hello version {PROTO_VERSION}, got {other:?}"
        )),
        None => Err("no Hello from the peer".into()),
    }
}

/// `tx`: lends `total` bytes in `chunk`-byte buffers and takes each back.
fn tx(
    ch: &mut UioChannel,
    qube: &str,
    total: u64,
    chunk: usize,
    outside: bool,
) -> Result<(), String> {
    handshake(ch, qube)?;
    let chunks = total.div_ceil(chunk as u64);
    let mut data = vec![0u8; chunk];
    let (mut next, mut returned) = (0u64, 0u64);
    let t0 = Instant::now();
    while returned < chunks {
        while next < chunks {
            let at = next * chunk as u64;
            let len = (total - at).min(chunk as u64) as usize;
            Probe::fill_bulk(&mut data[..len], at);
            let bulk = ch.ring.bulk().ok_or("no bulk area")?;
            let mut r = match bulk.lend(&data[..len]) {
                Ok(r) => r,
                Err(ChannelError::BulkExhausted { .. }) => break,
                Err(e) => return Err(format!("lending: {e}")),
            };
            if outside && next == 2 {
                r.offset = r.offset.wrapping_add(OUTSIDE);
            }
            send(ch, &Probe::Chunk { seq: next, buf: r })?;
            next += 1;
        }
        let patience = if outside { ATTACK_PATIENCE } else { PATIENCE };
        match recv(ch, patience)? {
            Some(Probe::Returned(r)) => {
                let bulk = ch.ring.bulk().ok_or("no bulk area")?;
                bulk.reclaim(&r)
                    .map_err(|e| format!("the peer returned a buffer we did not lend: {e}"))?;
                returned += 1;
            }
            Some(other) => return Err(format!("expected a returned buffer, got {other:?}")),
            None if outside => {
                println!(
                    "selftest: bulk-tx: outside: {returned} of {next} buffers came back, then the peer stopped"
                );
                return Ok(());
            }
            None => {
                let held = ch.ring.bulk().map_or(0, |b| b.loans());
                return Err(format!("the peer holds {held} buffers and returns none"));
            }
        }
    }
    if outside {
        return Err("the peer took a descriptor outside our pool".into());
    }
    println!(
        "selftest: bulk-tx: {total} bytes in {chunks} chunks, lent and returned ({} ms)",
        t0.elapsed().as_millis()
    );
    send(ch, &Probe::Done { count: chunks })
}

/// `rx`: copies each lent buffer out, checks it, and gives it back.
fn rx(ch: &mut UioChannel, qube: &str) -> Result<(), String> {
    handshake(ch, qube)?;
    let pool = ch.ring.bulk().ok_or("no bulk area")?.pool_size();
    let (mut got, mut want) = (Vec::new(), Vec::new());
    let (mut expected, mut bytes) = (0u64, 0u64);
    let t0 = Instant::now();
    loop {
        match recv(ch, PATIENCE)? {
            Some(Probe::Chunk { seq, buf: r }) if seq == expected => {
                got.resize((r.len as usize).min(pool), 0);
                let bulk = ch.ring.bulk().ok_or("no bulk area")?;
                if let Err(e) = bulk.read(&r, &mut got) {
                    println!(
                        "selftest: bulk-rx: channel {} broken: {e}",
                        ch.found.info.name.as_str()
                    );
                    return Err(format!(
                        "the peer broke the bulk area after {expected} chunks"
                    ));
                }
                want.resize(got.len(), 0);
                Probe::fill_bulk(&mut want, bytes);
                if got != want {
                    return Err(format!("chunk {seq}: bytes differ from what was sent"));
                }
                bytes += got.len() as u64;
                expected += 1;
                send(ch, &Probe::Returned(r))?;
            }
            Some(Probe::Done { count }) if count == expected => {
                println!(
                    "selftest: bulk-rx: {bytes} bytes in {count} chunks, every byte checked ({} ms)",
                    t0.elapsed().as_millis()
                );
                return Ok(());
            }
            Some(other) => {
                return Err(format!("unexpected {other:?} after {expected} chunks"));
            }
            None => return Err(format!("nothing after {expected} chunks")),
        }
    }
}

/// `write-peer`: one byte into the peer's pool through `resource4`. The hypervisor must stop
/// the AppVM at the write; returning at all is a failure.
fn write_peer(name: &str) -> Result<(), String> {
    let found = uio::find_named(name)?;
    let size = found.info.bulk_size;
    if size == 0 {
        return Err(format!("channel {name} has no bulk area"));
    }
    let bar = OpenOptions::new()
        .read(true)
        .write(true)
        .open(found.dir.join("resource4"))
        .map_err(|e| format!("resource4: {e}"))?;
    let mapping = Mapping::new(&bar, size as usize).map_err(|e| format!("mmap: {e}"))?;
    // Side A's pool is the first half, side B's the second: the peer's is the other one.
    let peer_pool = if found.info.side == 0 { size / 2 } else { 0 };
    println!(
        "selftest: bulk-write-peer: writing the peer's pool of {name} (offset {peer_pool:#x} of the area)"
    );
    let region = mapping.region();
    region.write_bytes(peer_pool as usize, &[0xA5]);
    Err("the write to the peer's pool went through".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            Spec::parse("tx:work.gui:8388608:65536"),
            Some(Spec::Tx {
                channel: "work.gui".into(),
                bytes: 8 << 20,
                chunk: 65536,
                outside: false
            })
        );
        assert!(matches!(
            Spec::parse("tx:c:1:1:outside"),
            Some(Spec::Tx { outside: true, .. })
        ));
        assert_eq!(
            Spec::parse("rx:c"),
            Some(Spec::Rx {
                channel: "c".into()
            })
        );
        assert_eq!(
            Spec::parse("write-peer:c"),
            Some(Spec::WritePeer {
                channel: "c".into()
            })
        );
        for bad in [
            "",
            "tx",
            "rx:",
            "tx:c:1",
            "tx:c:1:0",
            "tx:c:x:1",
            "tx:c:1:1:inside",
            "rx:c:1",
            "up:c",
        ] {
            assert_eq!(Spec::parse(bad), None, "{bad}");
        }
    }
}
