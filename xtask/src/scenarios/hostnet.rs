//! The host side of the network tests: the servers a client qube reaches through sys-firewall,
//! sys-net and QEMU's user network (which maps 10.0.2.2 to the host's loopback).
//!
//! - TCP 5555, echo: answers the first line `L` with `ack L`, then echoes every byte.
//! - TCP 5556, a destination the test's rules deny: counts connections (must stay 0).
//! - UDP 5557, where the client sends a packet with a spoofed source: counts datagrams
//!   (must stay 0).
//! - UDP 5353, DNS: answers A queries for [`TEST_NAME`] with 10.0.2.2, NXDOMAIN otherwise,
//!   and counts queries (the upstream the test's system description names).

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The name the DNS server knows.
pub const TEST_NAME: &str = "bulkhead-test.internal";
/// The address it resolves to (QEMU's gateway, that is the host).
pub const TEST_ADDR: [u8; 4] = [10, 0, 2, 2];

/// Counters the servers keep.
#[derive(Default, Debug)]
pub struct Counters {
    /// Echo sessions completed (line acknowledged and the peer closed).
    pub echo_sessions: AtomicU64,
    /// Bytes echoed.
    pub echo_bytes: AtomicU64,
    /// Connections accepted on the denied port.
    pub denied_connections: AtomicU64,
    /// Datagrams received on the spoof port.
    pub spoof_datagrams: AtomicU64,
    /// DNS queries answered.
    pub dns_queries: AtomicU64,
}

/// The running servers; they stop, and free their ports, when this is dropped.
pub struct HostServices {
    /// What they saw.
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for HostServices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl HostServices {
    /// Binds every port on 127.0.0.1 and starts serving; fails naming the port in use.
    pub fn start() -> Result<HostServices> {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let bind = |port: u16| {
            TcpListener::bind(("127.0.0.1", port))
                .with_context(|| format!("binding TCP 127.0.0.1:{port} for the network test"))
        };
        let udp = |port: u16| {
            UdpSocket::bind(("127.0.0.1", port))
                .with_context(|| format!("binding UDP 127.0.0.1:{port} for the network test"))
        };
        let echo = bind(5555)?;
        let denied = bind(5556)?;
        let spoof = udp(5557)?;
        let dns = udp(5353)?;
        for l in [&echo, &denied] {
            l.set_nonblocking(true)?;
        }
        for s in [&spoof, &dns] {
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
        }
        let mut threads = Vec::new();
        let (c, s) = (counters.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            accept_loop(echo, &s, |t| serve_echo(t, &c))
        }));
        let (c, s) = (counters.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            accept_loop(denied, &s, |_| {
                c.denied_connections.fetch_add(1, Ordering::Relaxed);
            })
        }));
        let (c, s) = (counters.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if spoof.recv_from(&mut buf).is_ok() {
                    c.spoof_datagrams.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let (c, s) = (counters.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = dns.recv_from(&mut buf)
                    && let Some(reply) = dns_answer(&buf[..n])
                {
                    c.dns_queries.fetch_add(1, Ordering::Relaxed);
                    let _ = dns.send_to(&reply, from);
                }
            }
        }));
        Ok(HostServices {
            counters,
            stop,
            threads,
        })
    }
}

fn accept_loop(l: TcpListener, stop: &AtomicBool, mut serve: impl FnMut(TcpStream)) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((t, _)) => serve(t),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn serve_echo(t: TcpStream, c: &Arc<Counters>) {
    let c = c.clone();
    std::thread::spawn(move || {
        let _ = t.set_nonblocking(false);
        let _ = t.set_read_timeout(Some(Duration::from_secs(60)));
        let Ok(mut w) = t.try_clone() else { return };
        let mut r = BufReader::new(t);
        let mut line = String::new();
        if r.read_line(&mut line).is_err() || !line.ends_with('\n') {
            return;
        }
        if w.write_all(format!("ack {line}").as_bytes()).is_err() {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if w.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    c.echo_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
        c.echo_sessions.fetch_add(1, Ordering::Relaxed);
    });
}

/// The reply to a DNS query: an A record for [`TEST_NAME`], NXDOMAIN for other names;
/// `None` for what is not a one-question query.
pub fn dns_answer(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    let question_end = at + 4;
    q.get(..question_end)?;
    let known = labels.join(".") == TEST_NAME && qtype == 1;
    let mut r = Vec::with_capacity(question_end + 16);
    r.extend_from_slice(&q[..2]);
    r.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
    r.extend_from_slice(&[0, 1, 0, u8::from(known), 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..question_end]);
    if known {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&TEST_ADDR);
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn answers_the_test_name_and_refuses_others() {
        let r = dns_answer(&query("Bulkhead-Test.internal", 1)).unwrap();
        assert_eq!(&r[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &TEST_ADDR);
        let r = dns_answer(&query("example.org", 1)).unwrap();
        assert_eq!(r[3] & 0xf, 3, "NXDOMAIN");
        assert_eq!(&r[6..8], &[0, 0]);
        assert_eq!(dns_answer(&[0; 5]), None);
        let mut truncated = query("bulkhead-test.internal", 1);
        truncated.truncate(20);
        assert_eq!(dns_answer(&truncated), None);
    }
}
