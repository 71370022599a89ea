//! `bulkhead-agent netbench HOST:PORT MIB`: the guest side of `cargo xtask bench --network`.
//! Two bulk TCP transfers with the benchmark server on the host, one connection each:
//!
//! - `up N`: this side sends N bytes; the server answers `got N` once it has them all;
//! - `down N`: the server sends N bytes; this side answers `got N` once it has them all.
//!
//! Each transfer lies between two [`sys::mark`]s (four in all, in this order), so QEMU's
//! counting plugin can say what the machine executed meanwhile. One line per transfer,
//! `netbench: up 16777216 bytes in 4.210 s` (the guest's clock), or one saying what failed.

use crate::sys;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes per `write` and `read`.
const CHUNK: usize = 64 * 1024;
/// A transfer that stalls this long has failed.
const STALL: Duration = Duration::from_secs(60);

/// The direction of a transfer, as the server's request line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Guest to host.
    Up,
    /// Host to guest.
    Down,
}

impl Direction {
    /// The word on the request line.
    pub fn word(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Runs the subcommand: `args` are `HOST:PORT MIB`. Returns the exit status.
pub fn main(args: &[String]) -> u8 {
    let (Some(addr), Some(mib)) = (
        args.first(),
        args.get(1).and_then(|m| m.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: bulkhead-agent netbench HOST:PORT MIB");
        return 2;
    };
    let bytes = mib * 1024 * 1024;
    for dir in [Direction::Up, Direction::Down] {
        match transfer(addr, dir, bytes) {
            Ok(took) => println!(
                "netbench: {} {bytes} bytes in {:.3} s",
                dir.word(),
                took.as_secs_f64()
            ),
            Err(e) => {
                println!("netbench: {} failed: {e}", dir.word());
                return 1;
            }
        }
    }
    0
}

/// One transfer of `bytes` in direction `dir`, between two marks; its duration.
fn transfer(addr: &str, dir: Direction, bytes: u64) -> io::Result<Duration> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(STALL))?;
    stream.set_write_timeout(Some(STALL))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(CHUNK, stream.try_clone()?);
    let mut writer = stream;
    let before = counters();
    sys::mark();
    let started = Instant::now();
    writeln!(writer, "{} {bytes}", dir.word())?;
    match dir {
        Direction::Up => {
            let buf = vec![0x5a; CHUNK];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                writer.write_all(&buf[..n])?;
                left -= n as u64;
            }
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line.trim_end() != format!("got {bytes}") {
                return Err(io::Error::other(format!(
                    "the server answered {:?}",
                    line.trim_end()
                )));
            }
        }
        Direction::Down => {
            let mut buf = vec![0; CHUNK];
            let mut got = 0u64;
            while got < bytes {
                match reader.read(&mut buf)? {
                    0 => {
                        return Err(io::Error::other(format!(
                            "the server closed after {got} bytes"
                        )));
                    }
                    n => got += n as u64,
                }
            }
            writeln!(writer, "got {got}")?;
        }
    }
    let took = started.elapsed();
    sys::mark();
    let after = counters();
    let moved: Vec<String> = after
        .iter()
        .filter_map(|(k, v)| {
            let b = before.iter().find(|(k2, _)| k2 == k).map_or(0, |(_, v)| *v);
            (*v > b).then(|| format!("{k} {}", v - b))
        })
        .collect();
    println!("netbench: {} counters: {}", dir.word(), moved.join(", "));
    Ok(took)
}

/// The kernel's interrupt counts (`/proc/interrupts`, by name) and TCP segment counts.
fn counters() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/interrupts") {
        for l in text.lines().skip(1) {
            let mut words = l.split_whitespace();
            let Some(name) = words.next() else { continue };
            let n: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let rest: Vec<&str> = words.collect();
            out.push((format!("{name}{}", rest.last().unwrap_or(&"")), n));
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/snmp") {
        let tcp: Vec<&str> = text.lines().filter(|l| l.starts_with("Tcp:")).collect();
        if let [names, values] = tcp[..] {
            for (k, v) in names
                .split_whitespace()
                .zip(values.split_whitespace())
                .skip(1)
            {
                if let Ok(v) = v.parse() {
                    out.push((format!("Tcp.{k}"), v));
                }
            }
        }
    }
    out
}
