//! The ports: the uplink link to sys-net and one link per client, and the loop that moves
//! their frames through the engine.
//!
//! Each round takes up to [`BATCH`] frames from every link in turn (so no link starves the
//! others), handles the links' events (sys-net's uplink reports, handshakes, resets, broken
//! channels), runs the engine's timers and, when nothing moved, sleeps in `WaitEvent` until
//! a peer sends or the next timer is due.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use bulkhead_abi::proto::{MAX_FRAME, UplinkInfo};
use bulkhead_firewall_engine::{Dotted, Firewall, Port};
use bulkhead_rt::net::{LinkEvent, NetLink};
use bulkhead_rt::{debug, info, now_ns, warn};

use crate::drops::DropLog;

/// Frames taken from one link per round.
const BATCH: usize = 64;
/// Longest sleep (the engine's timers are coarse; this bounds how late they run).
const MAX_SLEEP_MS: u64 = 1_000;

fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// One link and what the loop knows about it.
struct Link {
    link: Option<NetLink>,
    /// Log name: "sys-net" or "client NAME".
    who: String,
    /// `Hello`s received: a second one means the peer restarted.
    hellos: u32,
}

/// The links and the engine.
pub struct Ports {
    fw: Box<Firewall>,
    /// Index 0 is the uplink, `1 + i` client `i`.
    links: Vec<Link>,
    drops: DropLog,
    buf: Vec<u8>,
}

/// The link of `port`.
fn index(port: Port) -> usize {
    match port {
        Port::Uplink => 0,
        Port::Client(i) => i + 1,
    }
}

/// Sends a frame the engine emitted (dropped if the link is missing or its ring stays full,
/// as a full NIC queue would drop it).
fn send(links: &mut [Link], port: Port, frame: &[u8]) {
    if let Some(l) = links.get_mut(index(port)).and_then(|l| l.link.as_mut()) {
        l.send_frame(frame);
    }
}

impl Ports {
    pub fn new(
        fw: Box<Firewall>,
        uplink: Option<NetLink>,
        clients: Vec<Option<NetLink>>,
        names: Vec<String>,
    ) -> Ports {
        let mut links = vec![Link {
            link: uplink,
            who: String::from("sys-net"),
            hellos: 0,
        }];
        for (link, who) in clients.into_iter().zip(names) {
            links.push(Link {
                link,
                who,
                hellos: 0,
            });
        }
        Ports {
            fw,
            links,
            drops: DropLog::new(),
            buf: vec![0; MAX_FRAME],
        }
    }

    fn port(k: usize) -> Port {
        if k == 0 {
            Port::Uplink
        } else {
            Port::Client(k - 1)
        }
    }

    /// Serves forever. The frames a round sends to a sleeping peer reach it with one
    /// notification per link, sent at the end of the round (or with the next hypercall), not
    /// one VM exit per frame.
    pub fn run(mut self) -> ! {
        bulkhead_rt::hypercall::defer_notifies(true);
        loop {
            let now = now_ms();
            let mut moved = 0;
            for k in 0..self.links.len() {
                moved += self.frames_from(k, now);
                self.events_of(k);
            }
            let Ports { fw, links, .. } = &mut self;
            fw.poll(now, &mut |p, f| send(links, p, f));
            self.drops.report(self.fw.stats(), now);
            bulkhead_rt::hypercall::flush_notifies();
            if moved == 0 {
                self.sleep(now);
            }
        }
    }

    /// Moves up to [`BATCH`] frames from link `k` through the engine.
    fn frames_from(&mut self, k: usize, now: u64) -> usize {
        let port = Ports::port(k);
        let mut n = 0;
        while n < BATCH {
            let Ports {
                fw,
                links,
                drops,
                buf,
            } = self;
            let Some(link) = links[k].link.as_mut() else {
                break;
            };
            let got = link.recv_frame(|f| {
                let len = f.len().min(buf.len());
                buf[..len].copy_from_slice(&f[..len]);
                len
            });
            let Some(len) = got else {
                break;
            };
            let verdict = fw.handle(port, &buf[..len], now, &mut |p, f| send(links, p, f));
            drops.note(&links[k].who, verdict);
            n += 1;
        }
        n
    }

    /// Handles link `k`'s events.
    fn events_of(&mut self, k: usize) {
        while let Some(event) = self.links[k].link.as_mut().and_then(NetLink::take_event) {
            let l = &mut self.links[k];
            match event {
                LinkEvent::PeerHello { qube } => {
                    l.hellos += 1;
                    if l.hellos == 1 {
                        info!("firewall: {} connected (qube {qube})", l.who);
                    } else {
                        // The peer started over without a reset of the channel (it said Hello
                        // again): treat it as a restart all the same.
                        info!("firewall: {} restarted and connected again", l.who);
                        if k == 0 {
                            self.fw.set_uplink(None);
                        }
                    }
                }
                LinkEvent::Refused { version } => warn!(
                    "firewall: {} speaks protocol version {version}: its frames are ignored",
                    l.who
                ),
                LinkEvent::Reset => {
                    info!(
                        "firewall: {} restarted: channel reset, waiting for its hello",
                        l.who
                    );
                    if k == 0 {
                        self.fw.set_uplink(None);
                    }
                }
                LinkEvent::Broken(e) => {
                    warn!(
                        "firewall: {}'s channel is broken ({e}): ignored from now on",
                        l.who
                    );
                    if k == 0 {
                        self.fw.set_uplink(None);
                    }
                }
                LinkEvent::Uplink(info) if k == 0 => {
                    log_uplink(&info);
                    self.fw.set_uplink(Some(&info));
                }
                LinkEvent::UplinkDown if k == 0 => {
                    info!("firewall: uplink down (sys-net has no lease): traffic to it is dropped");
                    self.fw.set_uplink(None);
                }
                LinkEvent::Uplink(_) | LinkEvent::UplinkDown => {
                    debug!("firewall: {} sent an uplink report: ignored", l.who);
                }
            }
        }
    }

    /// Sleeps until a peer sends, or the engine's next timer, or [`MAX_SLEEP_MS`].
    fn sleep(&mut self, now: u64) {
        let due = self
            .fw
            .next_deadline()
            .map_or(MAX_SLEEP_MS, |d| d.saturating_sub(now))
            .min(MAX_SLEEP_MS);
        if due == 0 {
            return;
        }
        // Announce on every ring that we are about to sleep, so that every peer's next send
        // raises our event; a message already waiting cancels the sleep.
        let mut waiting = false;
        for l in self.links.iter_mut() {
            if let Some(link) = l.link.as_mut() {
                waiting |= link.pipe().prepare_wait().unwrap_or(false);
            }
        }
        if !waiting {
            bulkhead_rt::wait_event(Some(Duration::from_millis(due)));
        }
        for l in self.links.iter_mut() {
            if let Some(link) = l.link.as_mut() {
                link.pipe().finish_wait();
            }
        }
    }
}

fn log_uplink(u: &UplinkInfo) {
    info!(
        "firewall: uplink up: {}/{}, gateway {}, DNS {}",
        Dotted(u.address),
        u.prefix_len,
        crate::show::Addr(u.gateway),
        crate::show::Addrs(&u.dns)
    );
}
