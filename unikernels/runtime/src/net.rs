//! Networking over a network channel (feature `net`): Ethernet frames travel as postcard
//! [`Net`] messages, and smoltcp runs on top.
//!
//! - [`NetLink`]: one end of a network channel. Its first message is a [`Net::Hello`]
//!   (sent again after the channel was reset because the peer restarted). Received messages
//!   are sorted: frames go to the caller (or to smoltcp through the [`Device`]
//!   implementation); everything else becomes a [`LinkEvent`] the caller takes with
//!   [`NetLink::take_event`]: the peer's `Hello` (a wrong version refuses the link: its
//!   frames are dropped), `Uplink`, `UplinkDown`, the reset, a broken channel. Frames longer
//!   than [`MAX_FRAME`], frames before the peer's `Hello`, and messages that do not decode
//!   are dropped and counted in [`LinkStats`].
//! - [`FrameQueue`]: a smoltcp device that is two queues, for a qube that decides itself
//!   which frames its own interface sees (sys-net feeds its DHCP client this way).
//! - [`Stack`]: an `Interface` and a `SocketSet` over a device, polled with the runtime's
//!   clock; [`Stack::poll_wait`] sleeps in `WaitEvent` (woken early by the channel's events) for
//!   smoltcp's `poll_delay`, capped by the caller.
//!
//! - [`frame`]: the few frames a qube parses or builds by hand (ARP, a UDP datagram, an
//!   ICMP echo; whether a frame is ARP or a DHCP reply).
//!
//! Sending never blocks for long: a full ring is retried for a bounded number of yields
//! ([`SEND_RETRIES`]), then the frame is dropped as a full NIC queue would drop it.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use bulkhead_abi::proto::{Hello, MAX_FRAME, Net, PROTO_VERSION, UplinkInfo};
pub use smoltcp;
use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use crate::channel::{Channel, ChannelError};
use crate::events::Events;

pub mod frame;

/// Yields a full ring is retried before a frame is dropped.
pub const SEND_RETRIES: u32 = 64;
/// Events [`NetLink`] keeps for the caller; older ones are dropped first.
const MAX_EVENTS: usize = 8;

/// The message transport under a [`NetLink`]: a [`Channel`] in a qube; the tests use a
/// queue.
pub trait Pipe {
    /// Sends `msg` if there is room; `Ok(false)` when full.
    fn try_send_msg(&mut self, msg: &Net<'_>) -> Result<bool, ChannelError>;
    /// Calls `f` on the next message's bytes, if there is one.
    fn try_recv_bytes<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, ChannelError>;
    /// Sleeps until a message or event arrives or `timeout` passes. An error is news about
    /// the channel found while getting ready to sleep (a reset, above all): the link handles
    /// it like one from a send or receive.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<Events, ChannelError>;
    /// Gives the peer a chance to drain a full ring.
    fn yield_now(&mut self) {}
}

impl Pipe for Channel {
    fn try_send_msg(&mut self, msg: &Net<'_>) -> Result<bool, ChannelError> {
        self.try_send(msg)
    }

    fn try_recv_bytes<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, ChannelError> {
        self.try_recv_with(f)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<Events, ChannelError> {
        match self.wait_timeout(timeout) {
            // Reopened: report it now, without sleeping.
            Err(ChannelError::Reset) => Err(ChannelError::Reset),
            // A broken channel has no events to wait for (its breach was reported when it
            // happened): just sleep.
            Err(_) => Ok(crate::events::wait_event(timeout)),
            ok => ok,
        }
    }

    fn yield_now(&mut self) {
        crate::hypercall::yield_now();
    }
}

/// Something the peer said or the channel did, other than a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The peer's `Hello` with our version: the link carries frames.
    PeerHello {
        /// The peer's qube name, as it says.
        qube: heapless::String<{ bulkhead_abi::boot_info::NAME_MAX }>,
    },
    /// The peer's `Hello` had another version: its frames are dropped.
    Refused {
        /// The version it speaks.
        version: u16,
    },
    /// sys-net's uplink addresses.
    Uplink(UplinkInfo),
    /// sys-net lost its lease.
    UplinkDown,
    /// The channel was reset (the peer restarted); our `Hello` has been sent again.
    Reset,
    /// The channel is unusable (the peer broke the protocol); frames are dropped.
    Broken(ChannelError),
}

/// Counters of a [`NetLink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames received and handed on.
    pub rx_frames: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames dropped because the ring stayed full.
    pub tx_dropped: u64,
    /// Received frames dropped: too long, before the peer's `Hello`, or refused link.
    pub rx_dropped: u64,
    /// Received messages that did not decode as [`Net`].
    pub undecodable: u64,
}

/// What one received message was.
#[derive(Debug, PartialEq, Eq)]
enum Incoming<R> {
    /// A frame, handed to the caller's function.
    Frame(R),
    /// A frame dropped (too long, or the link is not up).
    Dropped,
    /// Not a frame.
    Event(LinkEvent),
    /// Not a [`Net`] message.
    Undecodable,
}

/// Sorts one message's bytes; frames are passed to `f` only when `accept_frames`.
fn classify<R>(
    bytes: &[u8],
    accept_frames: bool,
    f: &mut Option<impl FnOnce(&[u8]) -> R>,
) -> Incoming<R> {
    match postcard::from_bytes::<Net<'_>>(bytes) {
        Ok(Net::Frame(frame)) => {
            if !accept_frames || frame.len() > MAX_FRAME {
                return Incoming::Dropped;
            }
            match f.take() {
                Some(f) => Incoming::Frame(f(frame)),
                None => Incoming::Dropped,
            }
        }
        Ok(Net::Hello(h)) if h.version == PROTO_VERSION => {
            Incoming::Event(LinkEvent::PeerHello { qube: h.qube })
        }
        Ok(Net::Hello(h)) => Incoming::Event(LinkEvent::Refused { version: h.version }),
        Ok(Net::Uplink(u)) => Incoming::Event(LinkEvent::Uplink(u)),
        Ok(Net::UplinkDown) => Incoming::Event(LinkEvent::UplinkDown),
        Err(_) => Incoming::Undecodable,
    }
}

/// Where the peer's `Hello` stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerState {
    /// Not heard yet.
    Waiting,
    /// Same version: frames flow.
    Up,
    /// Another version: frames are dropped.
    Refused,
}

/// One end of a network channel.
pub struct NetLink<P: Pipe = Channel> {
    pipe: P,
    hello: Hello,
    hello_sent: bool,
    peer: PeerState,
    broken: Option<ChannelError>,
    /// An error a transmit token met, handled at the next receive or transmit.
    deferred: Option<ChannelError>,
    events: VecDeque<LinkEvent>,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    /// Counters.
    pub stats: LinkStats,
}

impl<P: Pipe> NetLink<P> {
    /// Starts a link over `pipe` and sends our `Hello` (as `qube`).
    pub fn new(pipe: P, qube: &str) -> NetLink<P> {
        let mut name = heapless::String::new();
        for c in qube.chars() {
            if name.push(c).is_err() {
                break;
            }
        }
        let mut link = NetLink {
            pipe,
            hello: Hello {
                version: PROTO_VERSION,
                qube: name,
            },
            hello_sent: false,
            peer: PeerState::Waiting,
            broken: None,
            deferred: None,
            events: VecDeque::new(),
            rx_buf: Vec::with_capacity(MAX_FRAME),
            tx_buf: Vec::with_capacity(MAX_FRAME),
            stats: LinkStats::default(),
        };
        link.send_hello();
        link
    }

    /// The transport.
    pub fn pipe(&mut self) -> &mut P {
        &mut self.pipe
    }

    /// True once the peer's `Hello` (our version) arrived and the channel is not broken.
    pub fn is_up(&self) -> bool {
        self.peer == PeerState::Up && self.broken.is_none()
    }

    /// Why the channel is unusable, if it is.
    pub fn broken(&self) -> Option<ChannelError> {
        self.broken
    }

    /// The next event, oldest first.
    pub fn take_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: LinkEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn send_hello(&mut self) {
        let hello = Net::Hello(self.hello.clone());
        self.hello_sent = matches!(self.send_msg(&hello), Ok(true));
    }

    /// Handles a channel error: a reset starts the conversation again, anything else
    /// marks the link broken.
    fn channel_error(&mut self, e: ChannelError) {
        if e == ChannelError::Reset {
            self.peer = PeerState::Waiting;
            self.broken = None;
            self.push_event(LinkEvent::Reset);
            self.send_hello();
        } else if self.broken.is_none() {
            self.broken = Some(e);
            self.push_event(LinkEvent::Broken(e));
        }
    }

    /// Sends any [`Net`] message, retrying a full ring [`SEND_RETRIES`] times; `Ok(false)`
    /// when it stayed full (nothing sent).
    pub fn send_msg(&mut self, msg: &Net<'_>) -> Result<bool, ChannelError> {
        for attempt in 0..=SEND_RETRIES {
            match self.pipe.try_send_msg(msg) {
                Ok(true) => return Ok(true),
                Ok(false) if attempt < SEND_RETRIES => self.pipe.yield_now(),
                Ok(false) => {}
                Err(e) => {
                    self.channel_error(e);
                    return Err(e);
                }
            }
        }
        Ok(false)
    }

    /// Sends one Ethernet frame (a raw one, if the caller built it); false when it was
    /// dropped (ring full, channel broken or frame too long).
    pub fn send_frame(&mut self, frame: &[u8]) -> bool {
        if frame.len() > MAX_FRAME {
            self.stats.tx_dropped += 1;
            return false;
        }
        if !self.hello_sent {
            self.send_hello();
        }
        let sent = matches!(self.send_msg(&Net::Frame(frame)), Ok(true));
        if sent {
            self.stats.tx_frames += 1;
        } else {
            self.stats.tx_dropped += 1;
        }
        sent
    }

    /// Processes received messages until a frame arrives, and calls `f` on it; `None` when
    /// the ring holds no frame (other messages became events).
    pub fn recv_frame<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut f = Some(f);
        if let Some(e) = self.deferred.take() {
            self.channel_error(e);
        }
        loop {
            let accept = self.peer == PeerState::Up;
            let got = self
                .pipe
                .try_recv_bytes(|bytes| classify(bytes, accept, &mut f));
            match got {
                Ok(None) => return None,
                Ok(Some(Incoming::Frame(r))) => {
                    self.stats.rx_frames += 1;
                    return Some(r);
                }
                Ok(Some(Incoming::Dropped)) => self.stats.rx_dropped += 1,
                Ok(Some(Incoming::Undecodable)) => self.stats.undecodable += 1,
                Ok(Some(Incoming::Event(e))) => {
                    match &e {
                        LinkEvent::PeerHello { .. } => {
                            // A second Hello without a reset: the peer started over; so
                            // do we (it expects ours first).
                            if self.peer != PeerState::Waiting {
                                self.send_hello();
                            }
                            self.peer = PeerState::Up;
                        }
                        LinkEvent::Refused { .. } => self.peer = PeerState::Refused,
                        _ => {}
                    }
                    self.push_event(e);
                }
                // After a reset the channel is fresh: read on. A broken channel is looked
                // at again next time (only a reset can mend it).
                Err(ChannelError::Reset) => self.channel_error(ChannelError::Reset),
                Err(e) => {
                    self.channel_error(e);
                    return None;
                }
            }
        }
    }

    /// Sleeps until the peer sends or `timeout` passes.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Events {
        match self.pipe.wait(timeout) {
            Ok(events) => events,
            Err(e) => {
                self.channel_error(e);
                Events::NONE
            }
        }
    }
}

/// smoltcp's receive token of a [`NetLink`]: the frame, copied out of the ring.
pub struct LinkRxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for LinkRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// smoltcp's transmit token of a [`NetLink`].
pub struct LinkTxToken<'a, P: Pipe> {
    link: LinkTx<'a, P>,
}

/// The parts of a link a transmit token needs (borrowed apart from the receive buffer).
struct LinkTx<'a, P: Pipe> {
    pipe: &'a mut P,
    tx_buf: &'a mut Vec<u8>,
    stats: &'a mut LinkStats,
    deferred: &'a mut Option<ChannelError>,
}

impl<P: Pipe> phy::TxToken for LinkTxToken<'_, P> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let LinkTx {
            pipe,
            tx_buf,
            stats,
            deferred,
        } = self.link;
        tx_buf.clear();
        tx_buf.resize(len, 0);
        let r = f(tx_buf);
        if len > MAX_FRAME {
            stats.tx_dropped += 1;
            return r;
        }
        let msg = Net::Frame(tx_buf);
        for attempt in 0..=SEND_RETRIES {
            match pipe.try_send_msg(&msg) {
                Ok(true) => {
                    stats.tx_frames += 1;
                    return r;
                }
                Ok(false) if attempt < SEND_RETRIES => pipe.yield_now(),
                Ok(false) => {}
                // Handled (reset or broken) at the next receive or transmit.
                Err(e) => {
                    *deferred = Some(e);
                    break;
                }
            }
        }
        stats.tx_dropped += 1;
        r
    }
}

/// The capabilities of an Ethernet link carrying [`MAX_FRAME`]-byte frames.
fn ethernet_caps() -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ethernet;
    caps.max_transmission_unit = MAX_FRAME;
    caps.max_burst_size = Some(1);
    caps
}

impl<P: Pipe> Device for NetLink<P> {
    type RxToken<'a>
        = LinkRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = LinkTxToken<'a, P>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let mut frame = core::mem::take(&mut self.rx_buf);
        let got = self.recv_frame(|f| {
            frame.clear();
            frame.extend_from_slice(f);
        });
        self.rx_buf = frame;
        got?;
        let tx = LinkTx {
            pipe: &mut self.pipe,
            tx_buf: &mut self.tx_buf,
            stats: &mut self.stats,
            deferred: &mut self.deferred,
        };
        Some((
            LinkRxToken {
                frame: &self.rx_buf,
            },
            LinkTxToken { link: tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if let Some(e) = self.deferred.take() {
            self.channel_error(e);
        }
        if self.broken.is_some() {
            return None;
        }
        if !self.hello_sent {
            self.send_hello();
        }
        Some(LinkTxToken {
            link: LinkTx {
                pipe: &mut self.pipe,
                tx_buf: &mut self.tx_buf,
                stats: &mut self.stats,
                deferred: &mut self.deferred,
            },
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ethernet_caps()
    }
}

/// A smoltcp Ethernet device that is two queues: the owner pushes the frames the interface
/// should see ([`FrameQueue::push_rx`]) and takes what it sent ([`FrameQueue::pop_tx`]).
#[derive(Debug, Default)]
pub struct FrameQueue {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    /// Frames dropped because a queue was full.
    pub dropped: u64,
}

/// Frames a [`FrameQueue`] holds each way.
pub const FRAME_QUEUE_LEN: usize = 32;

impl FrameQueue {
    /// Empty queues.
    pub fn new() -> FrameQueue {
        FrameQueue::default()
    }

    /// Gives the interface a received frame (dropped when [`FRAME_QUEUE_LEN`] are waiting).
    pub fn push_rx(&mut self, frame: &[u8]) {
        if self.rx.len() >= FRAME_QUEUE_LEN || frame.len() > MAX_FRAME {
            self.dropped += 1;
        } else {
            self.rx.push_back(frame.to_vec());
        }
    }

    /// The next frame the interface sent.
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }
}

/// Receive token of a [`FrameQueue`].
pub struct QueueRxToken(Vec<u8>);

impl phy::RxToken for QueueRxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

/// Transmit token of a [`FrameQueue`].
pub struct QueueTxToken<'a> {
    tx: &'a mut VecDeque<Vec<u8>>,
    dropped: &'a mut u64,
}

impl phy::TxToken for QueueTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = alloc::vec![0; len];
        let r = f(&mut frame);
        if self.tx.len() >= FRAME_QUEUE_LEN {
            *self.dropped += 1;
        } else {
            self.tx.push_back(frame);
        }
        r
    }
}

impl Device for FrameQueue {
    type RxToken<'a> = QueueRxToken;
    type TxToken<'a> = QueueTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((
            QueueRxToken(frame),
            QueueTxToken {
                tx: &mut self.tx,
                dropped: &mut self.dropped,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(QueueTxToken {
            tx: &mut self.tx,
            dropped: &mut self.dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ethernet_caps()
    }
}

/// smoltcp's time for the runtime clock `ns` (nanoseconds since the hypervisor started).
pub fn instant_at(ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
}

/// The runtime clock as smoltcp's time.
pub fn now() -> Instant {
    instant_at(crate::now_ns())
}

/// How long to sleep: smoltcp's `poll_delay` (`None`: nothing scheduled), capped at `max`
/// (`None`: no cap); `None` means sleep until an event.
pub fn sleep_for(
    poll_delay: Option<smoltcp::time::Duration>,
    max: Option<Duration>,
) -> Option<Duration> {
    let delay = poll_delay.map(|d| Duration::from_micros(d.total_micros()));
    match (delay, max) {
        (Some(d), Some(m)) => Some(d.min(m)),
        (d, m) => d.or(m),
    }
}

/// A seed for smoltcp (TCP sequence numbers, DHCP transaction ids, DNS ids, ports): the
/// clock mixed with the MAC address. Not secret; just different per qube and per boot.
pub fn seed(mac: [u8; 6]) -> u64 {
    let mut x = crate::now_ns()
        ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0x5a, 0xa5]);
    // splitmix64's finaliser spreads the bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// An interface and its sockets over a device, driven by the runtime's clock.
pub struct Stack<D: Device> {
    /// The interface.
    pub iface: Interface,
    /// Its sockets.
    pub sockets: SocketSet<'static>,
    /// The device (a [`NetLink`] or a [`FrameQueue`]).
    pub device: D,
}

impl<D: Device> Stack<D> {
    /// An Ethernet interface with address `mac` over `device`, no IP address yet.
    pub fn new(mut device: D, mac: [u8; 6]) -> Stack<D> {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed(mac);
        let iface = Interface::new(config, &mut device, now());
        Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
        }
    }

    /// Sets the interface's only address and its default route (`gateway`; `None` removes
    /// it).
    pub fn set_ipv4(&mut self, address: Ipv4Cidr, gateway: Option<Ipv4Address>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            let _ = addrs.push(IpCidr::Ipv4(address));
        });
        match gateway {
            Some(gw) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
            }
            None => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
    }

    /// Removes every address and the default route.
    pub fn clear_ipv4(&mut self) {
        self.iface.update_ip_addrs(|addrs| addrs.clear());
        self.iface.routes_mut().remove_default_ipv4_route();
    }

    /// One round of smoltcp at the current time: frames in, timers, frames out.
    pub fn poll(&mut self) -> PollResult {
        self.poll_at(crate::now_ns())
    }

    /// [`Stack::poll`] at `now_ns` (the runtime clock, read by the caller: each read is a
    /// hypercall, so a loop reads it once per round).
    pub fn poll_at(&mut self, now_ns: u64) -> PollResult {
        self.iface
            .poll(instant_at(now_ns), &mut self.device, &mut self.sockets)
    }

    /// How long smoltcp can wait before its next poll, capped at `max` (`None` from both:
    /// only a frame can change anything).
    pub fn sleep_for(&mut self, max: Option<Duration>) -> Option<Duration> {
        self.sleep_for_at(crate::now_ns(), max)
    }

    /// [`Stack::sleep_for`] as seen at `now_ns`.
    pub fn sleep_for_at(&mut self, now_ns: u64, max: Option<Duration>) -> Option<Duration> {
        sleep_for(
            self.iface.poll_delay(instant_at(now_ns), &self.sockets),
            max,
        )
    }
}

impl<P: Pipe> Stack<NetLink<P>> {
    /// Polls, then sleeps on the channel for smoltcp's poll delay (at most `max`), woken
    /// early by the peer; then polls again. Returns the poll results combined.
    pub fn poll_wait(&mut self, max: Option<Duration>) -> PollResult {
        let first = self.poll();
        let timeout = self.sleep_for(max);
        if timeout != Some(Duration::ZERO) {
            self.device.wait(timeout);
        }
        let second = self.poll();
        if first == PollResult::SocketStateChanged || second == PollResult::SocketStateChanged {
            PollResult::SocketStateChanged
        } else {
            PollResult::None
        }
    }

    /// Polls and waits ([`Stack::poll_wait`], at most `step` per sleep) until `f` returns
    /// `Some` or `timeout` passes.
    pub fn run_until<T>(
        &mut self,
        timeout: Duration,
        step: Duration,
        mut f: impl FnMut(&mut Stack<NetLink<P>>) -> Option<T>,
    ) -> Option<T> {
        let deadline = crate::now_ns().saturating_add(timeout.as_nanos() as u64);
        loop {
            if let Some(t) = f(self) {
                return Some(t);
            }
            let left = deadline.saturating_sub(crate::now_ns());
            if left == 0 {
                return None;
            }
            self.poll_wait(Some(step.min(Duration::from_nanos(left))));
        }
    }
}

#[cfg(test)]
mod tests;
