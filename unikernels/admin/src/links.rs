//! The qrexec channels, one per qube that takes part, the host's console, and the [`Host`]
//! the relay acts through: sending on them, the admin hypercalls, the clock and the log.

use crate::console::HostConsole;
use alloc::vec::Vec;
use bulkhead_abi::hypercall::QubeState;
use bulkhead_abi::qrexec::{FromAdmin, QREXEC_SLOT_SIZE};
use bulkhead_qubeconfig::AdminConfig;
use bulkhead_relay::{Full, HOST, Host};
use bulkhead_rt::channel::{Channel, ChannelError};
use bulkhead_rt::{Boot, hypercall, info, warn};

/// One qube's qrexec channel.
pub struct Link {
    /// The qube, by manifest index.
    pub qube: u8,
    /// Its channel (`None` once broken).
    pub channel: Option<Channel>,
    /// A message the relay could not handle yet (a ring it goes to was full): offered again
    /// before anything else is read from this channel.
    pub held: Option<Vec<u8>>,
}

/// Every qube's link, and what the relay needs besides.
pub struct Links {
    /// The links.
    pub links: Vec<Link>,
    /// The host's console, when the admin qube has one.
    pub console: Option<HostConsole>,
}

/// What a pass over one channel read.
pub enum Read {
    /// A message (its bytes).
    Message(Vec<u8>),
    /// Nothing waiting.
    Empty,
    /// The channel was reset: the qube stopped or started over.
    Reset,
}

impl Links {
    /// Opens the qrexec channel of every qube that has one, and the host's console.
    pub fn open(boot: &Boot, config: &AdminConfig) -> Links {
        let mut links = Vec::new();
        for q in &config.qubes {
            let Some(name) = q.qrexec.as_deref() else {
                continue;
            };
            match Channel::open_named(boot, name) {
                Ok(c) if c.max_payload() + 16 >= QREXEC_SLOT_SIZE as usize => links.push(Link {
                    qube: q.index,
                    channel: Some(c),
                    held: None,
                }),
                Ok(_) => warn!(
                    "channel {name}: slots too small for qrexec; {} left out",
                    q.name
                ),
                Err(e) => warn!("channel {name}: {e}; {} left out", q.name),
            }
        }
        Links {
            links,
            console: HostConsole::open(boot),
        }
    }

    fn channel(&mut self, q: u8) -> Option<&mut Channel> {
        let link = self.links.iter_mut().find(|l| l.qube == q)?;
        link.channel.as_mut()
    }

    /// Takes the next message on link `i`.
    pub fn read(&mut self, i: usize) -> Read {
        let Some(ch) = self.links[i].channel.as_mut() else {
            return Read::Empty;
        };
        match ch.try_recv_with(|bytes| bytes.to_vec()) {
            Ok(Some(bytes)) => Read::Message(bytes),
            Ok(None) => Read::Empty,
            Err(ChannelError::Reset) => Read::Reset,
            Err(e) => {
                warn!("channel {}: {e}; closed", ch.name());
                self.links[i].channel = None;
                Read::Reset
            }
        }
    }

    /// Sets every channel's waiting flag: true when a message is already there.
    pub fn prepare_wait(&mut self) -> bool {
        let mut ready = false;
        for l in self.links.iter_mut() {
            if let Some(ch) = l.channel.as_mut() {
                ready |= ch.prepare_wait().unwrap_or(true);
            }
        }
        ready
    }

    /// Clears every channel's waiting flag.
    pub fn finish_wait(&mut self) {
        for l in self.links.iter_mut() {
            if let Some(ch) = l.channel.as_mut() {
                ch.finish_wait();
            }
        }
    }
}

impl Host for Links {
    /// A qube without a working channel cannot be told anything: what is sent to it is
    /// dropped (holding it back would hold up its sender for good). The host's console
    /// always takes a message, and drops it when the host does not read.
    fn send(&mut self, to: u8, msg: &FromAdmin<'_>) -> Result<(), Full> {
        if to == HOST {
            if let Some(console) = self.console.as_mut() {
                console.send(msg);
            }
            return Ok(());
        }
        let Some(ch) = self.channel(to) else {
            return Ok(());
        };
        match ch.try_send(msg) {
            Ok(true) | Err(_) => Ok(()),
            Ok(false) => Err(Full),
        }
    }

    /// The host's console always has room (see [`Links::send`]).
    fn room(&self, to: u8) -> usize {
        if to == HOST {
            return usize::MAX;
        }
        let link = self.links.iter().find(|l| l.qube == to);
        link.and_then(|l| l.channel.as_ref())
            .map_or(usize::MAX, Channel::room)
    }

    fn state(&self, q: u8) -> Option<QubeState> {
        hypercall::admin_qube_state(q).ok()
    }

    fn start(&mut self, q: u8) -> bool {
        hypercall::admin_start(q).is_ok()
    }

    fn kill(&mut self, q: u8) -> bool {
        hypercall::admin_kill(q).is_ok()
    }

    fn now_ms(&self) -> u64 {
        hypercall::time_ns() / 1_000_000
    }

    fn log(&mut self, line: core::fmt::Arguments<'_>) {
        info!("{line}");
    }
}
