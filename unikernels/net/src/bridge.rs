//! The bridge: frames between the card and the downstream channel, DHCP on a private
//! interface, and the uplink announcements.

use alloc::string::String;
use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;

use bulkhead_abi::proto::{Net, PROTO_VERSION, UplinkInfo};
use bulkhead_rt::channel::Channel;
use bulkhead_rt::net::frame;
use bulkhead_rt::net::smoltcp::iface::SocketHandle;
use bulkhead_rt::net::smoltcp::socket::dhcpv4;
use bulkhead_rt::net::{FrameQueue, LinkEvent, NetLink, Stack};
use bulkhead_rt::{Boot, debug, info, now_ns, warn};

use crate::card::Card;
use crate::idle_check::IdleCheck;

/// Longest sleep between two looks at the card when it raises no interrupts.
pub const CARD_POLL: Duration = Duration::from_millis(1);
/// Frames moved each way per round, so neither direction starves the other.
const BATCH: usize = 64;
/// Without a lease, say so this often.
const NAG_EVERY_NS: u64 = 10_000_000_000;
/// Counters are logged (at debug level) this often.
const STATS_EVERY_NS: u64 = 30_000_000_000;

/// What the downstream qube was last told about the uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Told {
    /// Nothing yet (or it restarted since).
    Nothing,
    /// `Uplink` with the current lease.
    Up,
    /// `UplinkDown`.
    Down,
}

/// Frame counters.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    card_to_down: u64,
    down_to_card: u64,
    /// Frames for the card dropped because its transmit slots were full or it failed.
    card_tx_dropped: u64,
    /// Receive errors from the card.
    card_rx_errors: u64,
}

/// The whole state of sys-net after start-up.
pub struct Bridge {
    card: Card,
    mac: [u8; 6],
    down: Option<NetLink>,
    down_name: String,
    own: Stack<FrameQueue>,
    dhcp: SocketHandle,
    lease: Option<UplinkInfo>,
    told: Told,
    start_ns: u64,
    ready: bool,
    next_nag_ns: u64,
    next_stats_ns: u64,
    counters: Counters,
    /// The card's event bit, when its interrupts are on (then it is not polled).
    irq_bit: Option<u32>,
    /// The last round stopped moving frames to the card because it had no free slot.
    card_full: bool,
    idle: IdleCheck,
}

impl Bridge {
    /// Sets up the private interface with its DHCP client and greets the downstream.
    /// `irq_bit`: the card's event bit if its interrupts are on (`Card::enable_interrupts`);
    /// `None` polls it every [`CARD_POLL`].
    pub fn new(
        boot: &Boot,
        card: Card,
        downstream: Option<Channel>,
        irq_bit: Option<u32>,
    ) -> Bridge {
        let mac = card.mac();
        let down_name = downstream
            .as_ref()
            .map_or_else(String::new, |c| String::from(c.name()));
        let down = downstream.map(|ch| NetLink::new(ch, boot.name()));
        // The frames of a round reach a sleeping downstream with one notification, sent
        // at the end of the round (or with the next hypercall), not one VM exit per frame.
        bulkhead_rt::hypercall::defer_notifies(true);
        let mut own = Stack::new(FrameQueue::new(), mac);
        let dhcp = own.sockets.add(dhcpv4::Socket::new());
        let now = now_ns();
        Bridge {
            card,
            mac,
            down,
            down_name,
            own,
            dhcp,
            lease: None,
            told: Told::Nothing,
            start_ns: now,
            ready: false,
            next_nag_ns: now + NAG_EVERY_NS,
            next_stats_ns: now + STATS_EVERY_NS,
            counters: Counters::default(),
            irq_bit,
            card_full: false,
            idle: IdleCheck::new(now),
        }
    }

    /// Sends one frame on the card (an ARP probe; any frame would do): the `dma-escape`
    /// test needs the device to complete a transmission.
    #[cfg(feature = "test-hooks")]
    pub fn send_probe(&mut self) -> bool {
        let probe = frame::arp_request(self.mac, [0; 4], [10, 0, 2, 2]);
        self.card.send(&probe).is_ok()
    }

    /// Bridges forever.
    pub fn run_forever(&mut self) -> ! {
        loop {
            self.round(None);
        }
    }

    /// Bridges for `d` (the test hooks).
    #[cfg(feature = "test-hooks")]
    pub fn run_for(&mut self, d: Duration) {
        let end = now_ns().saturating_add(d.as_nanos() as u64);
        while now_ns() < end {
            self.round(Some(end));
        }
    }

    /// One round: move frames, run DHCP, announce, sleep if nothing happened. The clock is
    /// read once (a hypercall, so a VM exit).
    ///
    /// With the card's interrupts on, every round acknowledges them before it reads the card,
    /// so a frame that arrives after the read raises a new interrupt, and no wake-up (the
    /// card's event bit, wherever it was collected) can be followed by a sleep without a look
    /// at the card. The sleep then has no 1 ms cap: it ends with an event (the card's, the
    /// channel's) or smoltcp's next deadline (DHCP), or for the idle check's two samples.
    /// `until`: a time (ns) the round's sleep must not pass (the test hooks' end).
    fn round(&mut self, until: Option<u64>) {
        let now = now_ns();
        if self.irq_bit.is_some() {
            self.card.acknowledge();
        }
        let mut work = self.card_to_downstream();
        work += self.downstream_to_card();
        self.link_events();
        work += self.own_interface(now);
        self.announce();
        self.periodic(now);
        self.idle.run(now, self.irq_bit.is_some());
        // One notification per channel for the whole round (see `Bridge::new`).
        bulkhead_rt::hypercall::flush_notifies();
        if work == 0 {
            let card_cap = match self.irq_bit {
                Some(_) => None,
                None => Some(CARD_POLL),
            };
            let cap = earliest(card_cap, self.idle.due_in(now));
            let cap = earliest(
                cap,
                until.map(|u| Duration::from_nanos(u.saturating_sub(now))),
            );
            let timeout = self.own.sleep_for_at(now, cap);
            match self.down.as_mut() {
                // Frames wait in the channel for a full card: waiting on the channel would
                // return at once; the card's interrupt (a slot done) is what to wait for.
                Some(_) if self.card_full && self.irq_bit.is_some() => {
                    bulkhead_rt::wait_event(timeout);
                }
                Some(link) => {
                    link.wait(timeout);
                }
                None => {
                    bulkhead_rt::wait_event(timeout);
                }
            }
        }
    }

    /// Card → downstream; ARP and DHCP replies also to the private interface.
    fn card_to_downstream(&mut self) -> usize {
        let Bridge {
            card,
            down,
            own,
            counters,
            ..
        } = self;
        let mut n = 0;
        for _ in 0..BATCH {
            let got = card.receive(|f| {
                if frame::is_arp(f) || frame::is_dhcp_to_client(f) {
                    own.device.push_rx(f);
                }
                if let Some(link) = down.as_mut()
                    && link.is_up()
                    && link.send_frame(f)
                {
                    counters.card_to_down += 1;
                }
            });
            match got {
                Ok(Some(())) => n += 1,
                Ok(None) => break,
                Err(e) => {
                    counters.card_rx_errors += 1;
                    if counters.card_rx_errors == 1 {
                        warn!("net: receiving from the card: {e}");
                    }
                    break;
                }
            }
        }
        n
    }

    /// Downstream → card, as long as the card has transmit slots (otherwise the frames
    /// wait in the channel).
    fn downstream_to_card(&mut self) -> usize {
        let Bridge {
            card,
            down,
            counters,
            card_full,
            ..
        } = self;
        *card_full = false;
        let Some(link) = down.as_mut() else {
            return 0;
        };
        let mut n = 0;
        for _ in 0..BATCH {
            if !card.can_send() {
                *card_full = true;
                break;
            }
            match link.recv_frame(|f| card.send(f)) {
                None => break,
                Some(Ok(())) => {
                    n += 1;
                    counters.down_to_card += 1;
                }
                Some(Err(e)) => {
                    counters.card_tx_dropped += 1;
                    if counters.card_tx_dropped == 1 {
                        warn!("net: a frame for the card was dropped: {e}");
                    }
                }
            }
        }
        n
    }

    /// What the downstream said or what happened to its channel.
    fn link_events(&mut self) {
        let Some(link) = self.down.as_mut() else {
            return;
        };
        let name = self.down_name.as_str();
        while let Some(e) = link.take_event() {
            match e {
                LinkEvent::PeerHello { qube } => {
                    info!("net: downstream {qube} said hello on {name}");
                    self.told = Told::Nothing;
                }
                LinkEvent::Refused { version } => warn!(
                    "net: the downstream on {name} speaks protocol version {version}, this \
                     qube {PROTO_VERSION}: its frames are dropped"
                ),
                LinkEvent::Reset => {
                    info!(
                        "net: channel {name} was reset (the downstream qube restarted); the \
                         card keeps running, waiting for its hello"
                    );
                    self.told = Told::Nothing;
                }
                LinkEvent::Broken(err) => warn!(
                    "net: channel {name} broken: {err}; the card keeps running, frames for \
                     the downstream are dropped until its qube restarts"
                ),
                LinkEvent::Uplink(_) | LinkEvent::UplinkDown => {
                    debug!("net: the downstream sent uplink news, which only sys-net sends");
                }
            }
        }
    }

    /// Runs the private interface: frames in, DHCP, frames out to the card.
    fn own_interface(&mut self, now: u64) -> usize {
        self.own.poll_at(now);
        let event = match self.own.sockets.get_mut::<dhcpv4::Socket>(self.dhcp).poll() {
            None => None,
            Some(dhcpv4::Event::Deconfigured) => Some(None),
            Some(dhcpv4::Event::Configured(c)) => {
                Some(Some((c.address, c.router, c.dns_servers.clone())))
            }
        };
        match event {
            None => {}
            Some(None) => self.deconfigured(),
            Some(Some((address, router, dns))) => self.configured(address, router, &dns),
        }
        let mut n = 0;
        while let Some(f) = self.own.device.pop_tx() {
            n += 1;
            if self.card.send(&f).is_err() {
                self.counters.card_tx_dropped += 1;
            }
        }
        n
    }

    fn configured(
        &mut self,
        address: bulkhead_rt::net::smoltcp::wire::Ipv4Cidr,
        router: Option<Ipv4Addr>,
        dns_servers: &[Ipv4Addr],
    ) {
        self.own.set_ipv4(address, router);
        let mut dns = heapless::Vec::new();
        for d in dns_servers {
            let _ = dns.push(d.octets());
        }
        let lease = UplinkInfo {
            mac: self.mac,
            address: address.address().octets(),
            prefix_len: address.prefix_len(),
            gateway: router.map(|r| r.octets()),
            dns,
        };
        let ms = (now_ns() - self.start_ns) / 1_000_000;
        info!(
            "net: DHCP lease {address}, gateway {}, dns {} ({ms} ms after the card came up)",
            OrNone(router),
            AddrList(dns_servers)
        );
        self.lease = Some(lease);
        self.told = Told::Nothing;
        if !self.ready {
            self.ready = true;
            info!("net: ready");
            bulkhead_rt::ready();
        }
    }

    fn deconfigured(&mut self) {
        if self.lease.take().is_some() {
            warn!("net: DHCP lease lost; telling the downstream the uplink is down");
        }
        self.own.clear_ipv4();
    }

    /// Tells the downstream what it has not been told yet about the uplink.
    fn announce(&mut self) {
        let Some(link) = self.down.as_mut() else {
            return;
        };
        if !link.is_up() {
            return;
        }
        let (msg, now_told) = match (&self.lease, self.told) {
            (Some(lease), Told::Nothing | Told::Down) => (Net::Uplink(lease.clone()), Told::Up),
            (None, Told::Up) => (Net::UplinkDown, Told::Down),
            _ => return,
        };
        if let Ok(true) = link.send_msg(&msg) {
            self.told = now_told;
            match now_told {
                Told::Up => info!("net: uplink sent to the downstream on {}", self.down_name),
                _ => info!(
                    "net: uplink-down sent to the downstream on {}",
                    self.down_name
                ),
            }
        }
    }

    /// Reminders and counters.
    fn periodic(&mut self, now: u64) {
        if !self.ready && now >= self.next_nag_ns {
            self.next_nag_ns = now + NAG_EVERY_NS;
            warn!(
                "net: no DHCP lease yet, {} s after the card came up",
                (now - self.start_ns) / 1_000_000_000
            );
        }
        if now >= self.next_stats_ns {
            self.next_stats_ns = now + STATS_EVERY_NS;
            let c = self.counters;
            let card = self.card.stats();
            debug!(
                "net: card rx {} tx {} (busy {}); card->down {}, down->card {}, dropped for the card {}, rx errors {}",
                card.rx_frames,
                card.tx_frames,
                card.tx_busy,
                c.card_to_down,
                c.down_to_card,
                c.card_tx_dropped,
                c.card_rx_errors
            );
        }
    }
}

/// The earlier of two optional limits (`None`: no limit).
fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An optional address, or `none` (log lines format without allocating: the prebuilt
/// `alloc::format!` needs unwinding support the images do not have).
struct OrNone(Option<Ipv4Addr>);

impl fmt::Display for OrNone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("none"),
        }
    }
}

/// Addresses separated by commas, or `none`.
struct AddrList<'a>(&'a [Ipv4Addr]);

impl fmt::Display for AddrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}
