//! Channel modes of the testing qube: `ping` and `pong` exchange [`Probe`] messages and check
//! every one arrives in order and intact, in polling or event mode, and report what a round
//! trip cost in VM exits and time; `pong` also shows that a peer breaking the protocol only
//! breaks the channel, not the qube.

use bulkhead_abi::proto::{Hello, PROTO_VERSION, Probe};
use bulkhead_rt::channel::{Channel, WaitMode};
use bulkhead_rt::hypercall::exit_count;
use bulkhead_rt::{Args, Boot, error, info, now_ns};
use core::time::Duration;

/// Exit status when a message arrived out of order, damaged, or the handshake failed.
pub const EXIT_BAD_MESSAGE: i32 = 3;
/// Exit status when the channel could not be opened.
pub const EXIT_NO_CHANNEL: i32 = 4;

pub(crate) fn open(boot: &Boot, args: &Args<'_>) -> Result<(Channel, WaitMode), i32> {
    let ch = match args.get("channel") {
        Some(name) => Channel::open_named(boot, name),
        None => Channel::open(boot, 0),
    };
    let ch = ch.map_err(|e| {
        error!("testing: cannot open the channel: {e}");
        EXIT_NO_CHANNEL
    })?;
    let mode = match args.get("wait") {
        Some("poll") => WaitMode::Poll,
        Some("spin") => WaitMode::Spin,
        _ => WaitMode::Event,
    };
    Ok((ch, mode))
}

fn hello(boot: &Boot) -> Probe {
    let mut qube = heapless::String::new();
    let _ = qube.push_str(boot.name());
    Probe::Hello(Hello {
        version: PROTO_VERSION,
        qube,
    })
}

/// Exchanges `Hello`s; false when the peer speaks another version.
pub(crate) fn handshake(boot: &Boot, ch: &mut Channel, mode: WaitMode) -> Result<bool, i32> {
    ch.send(&hello(boot)).map_err(|e| fail("send hello", e))?;
    match ch
        .recv::<Probe>(mode)
        .map_err(|e| fail("receive hello", e))?
    {
        Probe::Hello(h) if h.version == PROTO_VERSION => {
            info!(
                "testing: channel {} open, peer {} speaks version {}",
                ch.name(),
                h.qube,
                h.version
            );
            Ok(true)
        }
        other => {
            error!("testing: expected Hello version {PROTO_VERSION}, got {other:?}");
            Ok(false)
        }
    }
}

pub(crate) fn fail(what: &str, e: bulkhead_rt::channel::ChannelError) -> i32 {
    error!("testing: {what}: {e:?}");
    EXIT_BAD_MESSAGE
}

/// `ping`: sends `count=` pings and checks each pong.
pub fn ping(boot: &Boot, args: &Args<'_>) -> i32 {
    let (mut ch, mode) = match open(boot, args) {
        Ok(x) => x,
        Err(status) => return status,
    };
    let count: u64 = args
        .get("count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000);
    match handshake(boot, &mut ch, mode) {
        Ok(true) => {}
        Ok(false) => return EXIT_BAD_MESSAGE,
        Err(status) => return status,
    }
    let (t0, e0, n0) = (now_ns(), exit_count(), ch.notifies);
    for seq in 0..count {
        let payload = Probe::payload_for(seq);
        if let Err(e) = ch.send(&Probe::Ping { seq, payload }) {
            return fail("send", e);
        }
        match ch.recv::<Probe>(mode) {
            Ok(Probe::Pong { seq: s, payload: p }) if s == seq && same_bytes(&p, &payload) => {}
            Ok(other) => {
                error!("testing: round trip {seq}: expected its pong, got {other:?}");
                return EXIT_BAD_MESSAGE;
            }
            Err(e) => return fail("receive", e),
        }
    }
    // Read the clock last: `now_ns` is itself a hypercall (one exit).
    let (exits, ns) = (exit_count() - e0, now_ns() - t0);
    let mode_name = match mode {
        WaitMode::Poll => "poll",
        WaitMode::Spin => "spin",
        WaitMode::Event => "event",
    };
    info!(
        "ping: {count} round trips in order and intact ({mode_name} mode): {} ns per round trip, \
         {}.{:02} exits of this qube per round trip, {} notifies",
        ns / count.max(1),
        exits / count.max(1),
        exits * 100 / count.max(1) % 100,
        ch.notifies - n0
    );
    if let Err(e) = ch.send(&Probe::Done { count }) {
        return fail("send done", e);
    }
    0
}

/// `pong`: echoes pings until `Done`; if the peer breaks the channel, says so and keeps
/// running (heartbeats).
pub fn pong(boot: &Boot, args: &Args<'_>) -> i32 {
    let (mut ch, mode) = match open(boot, args) {
        Ok(x) => x,
        Err(status) => return status,
    };
    let e0 = exit_count();
    let mut echoed: u64 = 0;
    let mut greeted = false;
    loop {
        let msg = match ch.recv::<Probe>(mode) {
            Ok(m) => m,
            Err(e) => carry_on_after(&ch, e),
        };
        let reply = match msg {
            Probe::Hello(h) if !greeted && h.version == PROTO_VERSION => {
                greeted = true;
                hello(boot)
            }
            Probe::Ping { seq, payload } if greeted && seq == echoed => {
                echoed += 1;
                Probe::Pong { seq, payload }
            }
            Probe::Done { count } if count == echoed => {
                let exits = exit_count() - e0;
                info!(
                    "pong: echoed {echoed} pings in order: {}.{:02} exits of this qube per round trip, {} sleeps, {} notifies",
                    exits / echoed.max(1),
                    exits * 100 / echoed.max(1) % 100,
                    ch.sleeps,
                    ch.notifies
                );
                return 0;
            }
            other => {
                error!("testing: unexpected {other:?} after {echoed} pings");
                return EXIT_BAD_MESSAGE;
            }
        };
        if let Err(e) = ch.send(&reply) {
            carry_on_after(&ch, e);
        }
    }
}

fn carry_on_after(ch: &Channel, e: bulkhead_rt::channel::ChannelError) -> ! {
    info!(
        "testing: channel {} broken: {e:?}; carrying on without it",
        ch.name()
    );
    let mut n: u64 = 0;
    loop {
        bulkhead_rt::sleep(Duration::from_millis(20));
        n += 1;
        info!("testing: still running {n}");
    }
}

/// Bytes the stream modes exchange: long enough to span several messages and partial reads.
fn stream_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add((i >> 8) as u8)
}

/// Length of the stream test.
const STREAM_LEN: usize = 3000;

/// `stream-tx`: writes [`STREAM_LEN`] bytes through `embedded_io::Write` in odd-sized chunks.
pub fn stream_tx(boot: &Boot, args: &Args<'_>) -> i32 {
    use embedded_io::Write;
    let (ch, mode) = match open(boot, args) {
        Ok(x) => x,
        Err(status) => return status,
    };
    let mut s = bulkhead_rt::channel::ByteStream::new(ch, mode);
    let data: alloc::vec::Vec<u8> = (0..STREAM_LEN).map(stream_byte).collect();
    for chunk in data.chunks(77) {
        if let Err(e) = s.write_all(chunk) {
            error!("testing: stream write: {e}");
            return EXIT_BAD_MESSAGE;
        }
    }
    info!("stream-tx: wrote {STREAM_LEN} bytes");
    0
}

/// `stream-rx`: reads [`STREAM_LEN`] bytes through `embedded_io::Read` in 50-byte reads and
/// checks them.
pub fn stream_rx(boot: &Boot, args: &Args<'_>) -> i32 {
    use embedded_io::Read;
    let (ch, mode) = match open(boot, args) {
        Ok(x) => x,
        Err(status) => return status,
    };
    let mut s = bulkhead_rt::channel::ByteStream::new(ch, mode);
    let mut got = 0;
    let mut buf = [0u8; 50];
    while got < STREAM_LEN {
        let want = buf.len().min(STREAM_LEN - got);
        if let Err(e) = s.read_exact(&mut buf[..want]) {
            error!("testing: stream read: {e:?}");
            return EXIT_BAD_MESSAGE;
        }
        if let Some(i) = (0..want).find(|&i| buf[i] != stream_byte(got + i)) {
            error!(
                "testing: stream byte {} is {:#x}, expected {:#x}",
                got + i,
                buf[i],
                stream_byte(got + i)
            );
            return EXIT_BAD_MESSAGE;
        }
        got += want;
    }
    info!("stream-rx: read {STREAM_LEN} bytes intact through embedded-io");
    0
}

/// Whether `a` and `b` hold the same bytes, compared eight at a time (the toolchain's
/// `memcmp` compares one byte at a time, which would be a fifth of a round trip's
/// instructions in the benchmark).
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    let (x, y) = (a.chunks_exact(8), b.chunks_exact(8));
    a.len() == b.len()
        && x.remainder() == y.remainder()
        && x.zip(y).all(|(x, y)| word(x) == word(y))
}
