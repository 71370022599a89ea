//! The daemon's own thread on the channel device `bulkhead.qrexec=` names: the socket the
//! commands connect to ([`super::SOCKET_PATH`]), and a loop that steps the daemon and
//! sleeps in `ppoll` on the channel's interrupt, the socket, and every call's pipes and
//! connections (each only when something can move on it).

use super::SOCKET_PATH;
use super::daemon::{Config, Daemon};
use crate::channel::ChannelError;
use crate::channel::uio::UioChannel;
use crate::log::{line, printable};
use crate::sys::{self, waitset};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest sleep: a reset is noticed at least this often.
const TICK: Duration = Duration::from_millis(250);
/// Sleep between looks at a channel without an interrupt line.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// Opens the socket and starts the daemon on `ch` in a thread named `qrexec`.
pub fn spawn(ch: UioChannel, config: Config) -> io::Result<JoinHandle<()>> {
    let name = printable(&ch.found.info.name, 32);
    let listener = listen(Path::new(SOCKET_PATH))?;
    line(&format!(
        "qrexec: channel {name}: saying hello; commands connect to {SOCKET_PATH}"
    ));
    std::thread::Builder::new()
        .name("qrexec".into())
        .spawn(move || run(Daemon::new(ch, config), listener))
}

/// A fresh listening socket at `path` (a stale one from an earlier run is replaced).
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn run(mut daemon: Daemon<UioChannel>, listener: UnixListener) {
    loop {
        let step = daemon.step(Instant::now());
        for n in daemon.take_notes() {
            line(&format!("qrexec: {n}"));
        }
        if step.power_off {
            let e = sys::power_off();
            line(&format!("qrexec: powering off failed: {e}"));
            return;
        }
        let mut accepted = false;
        while let Ok((sock, _)) = listener.accept() {
            daemon.add_client(sock);
            accepted = true;
        }
        if step.busy || accepted {
            continue;
        }
        if let Err(e) = wait(&mut daemon, &listener, step.soon.unwrap_or(TICK).min(TICK)) {
            line(&format!("qrexec: poll failed: {e}; the daemon stops"));
            return;
        }
    }
}

/// Sleeps until the admin qube's event, a connection, a call's descriptor, or `timeout`.
fn wait(
    daemon: &mut Daemon<UioChannel>,
    listener: &UnixListener,
    mut timeout: Duration,
) -> io::Result<()> {
    let mut interests: Vec<waitset::Interest> = daemon
        .watches()
        .into_iter()
        .map(|(fd, read, write)| waitset::Interest { fd, read, write })
        .collect();
    interests.push(waitset::Interest {
        fd: listener.as_raw_fd(),
        read: true,
        write: false,
    });
    let ch = daemon.transport_mut();
    if ch.rearm().is_err() {
        ch.ack_errors += 1;
    }
    let skip = match ch.ring.prepare_wait() {
        Ok(ready) => ready,
        Err(ChannelError::Reset) => true,
        // A breach: nothing to wait for on this ring until a reset, which the tick notices.
        Err(_) => false,
    };
    let irq = ch.irq_fd();
    match irq {
        Some(fd) => interests.push(waitset::Interest {
            fd,
            read: true,
            write: false,
        }),
        None => timeout = timeout.min(POLL_EVERY),
    }
    let ready = if skip {
        Ok(vec![false; interests.len()])
    } else {
        waitset::wait(&interests, Some(timeout))
    };
    ch.ring.finish_wait();
    let fired = irq.is_some() && ready.as_ref().is_ok_and(|r| r.last() == Some(&true));
    if fired && ch.take_interrupt().is_err() {
        ch.ack_errors += 1;
    }
    ready.map(|_| ())
}
