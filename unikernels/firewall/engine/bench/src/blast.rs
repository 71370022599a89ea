//! The traffic programs the Linux measurement runs inside the namespaces (as
//! `ip netns exec NS firewall-bench <blast|echo|hello> ...`): a UDP sender that batches with
//! `sendmmsg`, and the two halves of the handshake that establishes the flows.

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 32;

/// `SRCPORT>IP:PORT,...`.
pub fn parse_pairs(s: &str) -> Result<Vec<(u16, SocketAddrV4)>, String> {
    s.split(',')
        .map(|p| {
            let (src, dst) = p.split_once('>').ok_or(format!("bad pair {p}"))?;
            Ok((
                src.parse().map_err(|_| format!("bad port {src}"))?,
                dst.parse().map_err(|_| format!("bad address {dst}"))?,
            ))
        })
        .collect()
}

fn sockets(bind: &str, pairs: &[(u16, SocketAddrV4)]) -> Result<Vec<UdpSocket>, String> {
    pairs
        .iter()
        .map(|(src, dst)| {
            let s =
                UdpSocket::bind(format!("{bind}:{src}")).map_err(|e| format!("bind {src}: {e}"))?;
            s.connect(dst).map_err(|e| format!("connect {dst}: {e}"))?;
            Ok(s)
        })
        .collect()
}

/// Sends `payload`-byte datagrams on every pair, round robin, `BATCH` per call, for
/// `seconds`; prints `sent N in S s`.
pub fn blast(bind: &str, pairs: &str, payload: usize, seconds: f64) -> Result<(), String> {
    let socks = sockets(bind, &parse_pairs(pairs)?)?;
    let mut data = vec![0u8; payload];
    for (i, b) in data.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero mmsghdr is a valid "no name, no control data" header; the iovec
    // pointer is set below and outlives every call.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let time = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut sent = 0u64;
    'outer: loop {
        for s in &socks {
            // SAFETY: `msgs` holds BATCH valid headers whose single iovec points at `data`
            // (alive for the whole loop); the socket is open.
            let n = unsafe {
                libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), BATCH as libc::c_uint, 0)
            };
            if n > 0 {
                sent += n as u64;
            }
            if start.elapsed() >= time {
                break 'outer;
            }
        }
    }
    println!("sent {sent} in {:.6} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The server half of the handshake: one datagram on each of `count` ports from `first`,
/// echoed back; prints `PORT PEER` per port (the peer is the translated client address).
pub fn echo(bind: &str, first: u16, count: u16, timeout_ms: u64) -> Result<(), String> {
    let socks: Vec<UdpSocket> = (0..count)
        .map(|k| {
            let s = UdpSocket::bind(format!("{bind}:{}", first + k))
                .map_err(|e| format!("bind {}: {e}", first + k))?;
            s.set_read_timeout(Some(Duration::from_millis(timeout_ms)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .collect::<Result<_, String>>()?;
    // Ready: the caller waits for this line before the client sends.
    println!("ready");
    for (k, s) in socks.iter().enumerate() {
        let mut buf = [0u8; 64];
        let (n, peer) = s
            .recv_from(&mut buf)
            .map_err(|e| format!("port {}: nothing arrived ({e})", first + k as u16))?;
        s.send_to(&buf[..n], peer).map_err(|e| e.to_string())?;
        println!("{} {peer}", first + k as u16);
    }
    Ok(())
}

/// The client half: one datagram per pair, and its echo back.
pub fn hello(bind: &str, pairs: &str, timeout_ms: u64) -> Result<(), String> {
    let socks = sockets(bind, &parse_pairs(pairs)?)?;
    for s in &socks {
        s.send(b"hello").map_err(|e| e.to_string())?;
    }
    for s in &socks {
        s.set_read_timeout(Some(Duration::from_millis(timeout_ms)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        s.recv(&mut buf).map_err(|e| format!("no echo: {e}"))?;
    }
    println!("ok {}", socks.len());
    Ok(())
}
