//! The engine's forwarding rate: frames handed to `Firewall::handle` in a loop on one core,
//! the translated frames taken by a callback that only adds up their lengths. No channel, no
//! copy into a ring, no I/O: the cost of deciding, translating and addressing a frame.

use crate::setup::{self, FLOWS};
use bulkhead_firewall_engine::{Firewall, Port, Verdict};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A firewall with the bench's client and uplink, every MAC known and `FLOWS` UDP flows
/// established (each answered once); returns it with the client's frames and the server's
/// replies of size `frame_len`.
fn prepared(frame_len: usize) -> (Firewall, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (downstream, router) = setup::config();
    let mut fw = Firewall::new(&downstream, &router).expect("the bench configuration is valid");
    fw.set_uplink(Some(&setup::uplink()));
    let mut sink = |_: Port, _: &[u8]| {};
    assert_eq!(
        fw.handle(Port::Client(0), &setup::client_arp(), 0, &mut sink),
        Verdict::Answered
    );
    assert_eq!(
        fw.handle(Port::Uplink, &setup::server_arp(), 0, &mut sink),
        Verdict::Answered
    );
    let out: Vec<Vec<u8>> = (0..FLOWS)
        .map(|k| setup::client_frame(k, frame_len))
        .collect();
    let mut replies = Vec::new();
    for f in &out {
        let mut sent = Vec::new();
        let v = fw.handle(Port::Client(0), f, 0, &mut |_, b: &[u8]| {
            sent.push(b.to_vec())
        });
        assert_eq!(v, Verdict::Forwarded, "the bench flow is accepted");
        replies.push(setup::mirror(&sent[0]));
    }
    for r in &replies {
        assert_eq!(fw.handle(Port::Uplink, r, 0, &mut sink), Verdict::Forwarded);
    }
    (fw, out, replies)
}

/// Frames per second through `handle` from `from` for about `time`; the engine's clock is
/// milliseconds since `epoch`.
fn run(fw: &mut Firewall, from: Port, frames: &[Vec<u8>], epoch: Instant, time: Duration) -> f64 {
    let mut bytes = 0u64;
    let mut sink = |_: Port, b: &[u8]| bytes += b.len() as u64;
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        let now_ms = epoch.elapsed().as_millis() as u64;
        for _ in 0..64 {
            for f in frames {
                let v = fw.handle(from, black_box(f), now_ms, &mut sink);
                debug_assert_eq!(v, Verdict::Forwarded);
            }
        }
        n += 64 * frames.len() as u64;
        if start.elapsed() >= time {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(bytes);
    let forwarded = fw.stats().forwarded;
    black_box(forwarded);
    n as f64 / secs
}

/// Median frames per second client -> uplink and uplink -> client for `frame_len` bytes.
pub fn measure(frame_len: usize, runs: usize, time: Duration) -> (Vec<f64>, Vec<f64>) {
    let (mut fw, out, replies) = prepared(frame_len);
    let epoch = Instant::now();
    let mut up = Vec::new();
    let mut down = Vec::new();
    for _ in 0..runs {
        up.push(run(&mut fw, Port::Client(0), &out, epoch, time));
        down.push(run(&mut fw, Port::Uplink, &replies, epoch, time));
    }
    let s = fw.stats();
    assert_eq!(
        s.dropped_total(),
        0,
        "every bench frame is forwarded: {:?}",
        s.dropped
    );
    (up, down)
}
