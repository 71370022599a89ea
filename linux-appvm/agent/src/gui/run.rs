//! The GUI client's own thread: the channel device named by `bulkhead.gui=`, the shells on
//! their pseudo-terminals, and a loop that sleeps in `poll` on the channel's interrupt and
//! the terminals (the rest of the agent's loop is not slowed by drawing, nor drawing by it).

use super::GuiClient;
use crate::channel::ChannelError;
use crate::channel::uio::UioChannel;
use crate::log::{line, printable};
use crate::sys::{self, Watch};
use crate::terminal::pty::PtySpawner;
use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest sleep: a reset is noticed at least this often.
const TICK: Duration = Duration::from_millis(250);
/// Sleep while something waits for room (the ring, a shell's input).
const RETRY: Duration = Duration::from_millis(5);
/// Sleep between looks at a channel without an interrupt line.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// Starts the client on `ch` in a thread named `gui`.
pub fn spawn(ch: UioChannel, qube: &str) -> io::Result<JoinHandle<()>> {
    let name = printable(&ch.found.info.name, 32);
    let bulk = ch.found.info.bulk_size / 1024;
    line(&format!(
        "gui: channel {name}, bulk area {bulk} KiB: saying hello"
    ));
    if bulk == 0 {
        line(&format!(
            "gui: channel {name} has no bulk area: no windows can be shown"
        ));
    }
    let spawner = PtySpawner {
        shell: "/bin/sh".into(),
        qube: qube.to_string(),
    };
    std::thread::Builder::new()
        .name("gui".into())
        .spawn(move || run(GuiClient::new(ch, spawner)))
}

fn run(mut client: GuiClient<UioChannel, PtySpawner>) {
    loop {
        let busy = client.step();
        for n in client.take_notes() {
            line(&format!("gui: {n}"));
        }
        if busy {
            continue;
        }
        if let Err(e) = wait(&mut client) {
            line(&format!("gui: poll failed: {e}; the GUI client stops"));
            return;
        }
    }
}

/// Sleeps until the gui qube's event, a shell's output, or a timeout.
fn wait(client: &mut GuiClient<UioChannel, PtySpawner>) -> io::Result<()> {
    let mut timeout = if client.has_pending() { RETRY } else { TICK };
    let none = Watch {
        fd: -1,
        readable: false,
    };
    let mut watches = [none; 1 + bulkhead_abi::gui::MAX_WINDOWS];
    let mut n = 0;
    for fd in client.shell_fds().take(bulkhead_abi::gui::MAX_WINDOWS) {
        watches[n].fd = fd;
        n += 1;
    }
    let ch = client.transport_mut();
    if ch.rearm().is_err() {
        ch.ack_errors += 1;
    }
    let mut skip = false;
    match ch.ring.prepare_wait() {
        Ok(false) => {}
        Ok(true) | Err(ChannelError::Reset) => skip = true,
        // A breach: nothing to wait for on this ring until a reset, which the tick notices.
        Err(_) => {}
    }
    let irq = ch.irq_fd();
    match irq {
        Some(fd) => {
            watches[n].fd = fd;
            n += 1;
        }
        None => timeout = timeout.min(POLL_EVERY),
    }
    let watches = &mut watches[..n];
    let polled = if skip {
        Ok(())
    } else {
        sys::poll(watches, Some(timeout))
    };
    ch.ring.finish_wait();
    let fired = irq.is_some_and(|fd| watches.iter().any(|w| w.fd == fd && w.readable));
    if fired && ch.take_interrupt().is_err() {
        ch.ack_errors += 1;
    }
    polled
}
