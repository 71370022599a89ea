//! The host side of the network benchmark: a TCP server on 127.0.0.1 (a free port), which the
//! guest reaches as 10.0.2.2 through QEMU's user network. One connection per transfer, which
//! starts with a request line (`bulkhead-agent netbench`, linux-appvm/agent/src/netbench.rs):
//!
//! - `up N`: the server reads N bytes, then answers `got N`;
//! - `down N`: the server writes N bytes, then reads the guest's `got N`.
//!
//! Each transfer is timed on the host's clock, from the request line to the last byte read
//! (up) or to the guest's `got` line (down).

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes per `read` and `write`.
const CHUNK: usize = 64 * 1024;
/// A transfer that stalls this long has failed.
const STALL: Duration = Duration::from_secs(60);
/// The largest transfer the server accepts.
const MAX_BYTES: u64 = 1 << 30;

/// One transfer the server took part in.
#[derive(Clone, Debug)]
pub struct Transfer {
    /// `up` or `down`.
    pub direction: String,
    /// Bytes requested.
    pub bytes: u64,
    /// How long it took on the host's clock, or what went wrong.
    pub took: Result<Duration, String>,
}

/// The running server; it stops, and frees its port, when dropped.
pub struct Server {
    /// The port it listens on.
    pub port: u16,
    transfers: Arc<Mutex<Vec<Transfer>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Server {
    /// Listens on a free port of 127.0.0.1 and serves one connection at a time.
    pub fn start() -> Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .context("binding a TCP port on 127.0.0.1 for the network benchmark")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let transfers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (transfers.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(done) = serve(stream) {
                            t.lock().unwrap_or_else(|e| e.into_inner()).push(done);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Server {
            port,
            transfers,
            stop,
            thread: Some(thread),
        })
    }

    /// The transfers so far, and forgets them.
    pub fn take(&self) -> Vec<Transfer> {
        std::mem::take(&mut *self.transfers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// [`Server::take`] once `n` transfers are done or `patience` has passed (the server
    /// records a transfer just after it closes the connection, which may be after the guest
    /// said it was done).
    pub fn wait_for(&self, n: usize, patience: Duration) -> Vec<Transfer> {
        let until = Instant::now() + patience;
        let mut got = Vec::new();
        loop {
            got.extend(self.take());
            if got.len() >= n || Instant::now() >= until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Serves one connection; `None` when it did not even send a request line.
fn serve(stream: TcpStream) -> Option<Transfer> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(STALL));
    let _ = stream.set_write_timeout(Some(STALL));
    let mut writer = stream.try_clone().ok()?;
    let mut reader = BufReader::with_capacity(CHUNK, stream);
    let mut request = String::new();
    reader.read_line(&mut request).ok()?;
    let started = Instant::now();
    let (direction, bytes) = match parse_request(&request) {
        Ok(r) => r,
        Err(e) => {
            return Some(Transfer {
                direction: "?".into(),
                bytes: 0,
                took: Err(format!("{e:#}")),
            });
        }
    };
    let outcome = match direction {
        "up" => receive(&mut reader, bytes).and_then(|()| {
            let took = started.elapsed();
            writeln!(writer, "got {bytes}")?;
            Ok(took)
        }),
        _ => send(&mut writer, bytes).and_then(|()| {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line.trim_end() != format!("got {bytes}") {
                bail!("the guest answered {:?}", line.trim_end());
            }
            Ok(started.elapsed())
        }),
    };
    Some(Transfer {
        direction: direction.to_string(),
        bytes,
        took: outcome.map_err(|e| format!("{e:#}")),
    })
}

/// `up N` or `down N`.
pub fn parse_request(line: &str) -> Result<(&'static str, u64)> {
    let (word, n) = line
        .trim_end()
        .split_once(' ')
        .with_context(|| format!("not a request line: {line:?}"))?;
    let direction = match word {
        "up" => "up",
        "down" => "down",
        _ => bail!("unknown direction {word:?}"),
    };
    let bytes: u64 = n
        .parse()
        .with_context(|| format!("not a byte count: {n:?}"))?;
    if bytes > MAX_BYTES {
        bail!("{bytes} bytes is more than the server's limit of {MAX_BYTES}");
    }
    Ok((direction, bytes))
}

fn receive(reader: &mut impl Read, bytes: u64) -> Result<()> {
    let mut buf = vec![0; CHUNK];
    let mut got = 0;
    while got < bytes {
        match reader.read(&mut buf)? {
            0 => bail!("the guest closed after {got} of {bytes} bytes"),
            n => got += n as u64,
        }
    }
    Ok(())
}

fn send(writer: &mut impl Write, bytes: u64) -> Result<()> {
    let buf = vec![0xa5; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        writer.write_all(&buf[..n])?;
        left -= n as u64;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_request_lines() {
        assert_eq!(parse_request("up 16777216\n").unwrap(), ("up", 16777216));
        assert_eq!(parse_request("down 5").unwrap(), ("down", 5));
        assert!(parse_request("sideways 5\n").is_err());
        assert!(parse_request("up\n").is_err());
        assert!(parse_request("up x\n").is_err());
        assert!(parse_request(&format!("up {}\n", MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn serves_both_directions_over_loopback() {
        let server = Server::start().unwrap();
        let addr = ("127.0.0.1", server.port);
        let mut up = TcpStream::connect(addr).unwrap();
        writeln!(up, "up 200000").unwrap();
        up.write_all(&vec![1; 200_000]).unwrap();
        let mut answer = String::new();
        BufReader::new(&up).read_line(&mut answer).unwrap();
        assert_eq!(answer, "got 200000\n");
        let mut down = TcpStream::connect(addr).unwrap();
        writeln!(down, "down 300000").unwrap();
        let mut got = vec![0; 300_000];
        down.read_exact(&mut got).unwrap();
        writeln!(down, "got 300000").unwrap();
        let mut rest = Vec::new();
        down.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        let t = server.wait_for(2, Duration::from_secs(2));
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((t[0].direction.as_str(), t[0].bytes), ("up", 200_000));
        assert_eq!((t[1].direction.as_str(), t[1].bytes), ("down", 300_000));
        assert!(t.iter().all(|t| t.took.is_ok()), "{t:?}");
    }
}
