//! The bridge between the TAP interface and the network channel to the firewall. The
//! firewall treats this AppVM exactly like a unikernel client (`bulkhead_rt::net::NetLink`):
//! each side's first message is `Net::Hello`, then Ethernet frames travel as `Net::Frame`.
//! The firewall answers ARP for the gateway, so the interface's own MAC works as it is.
//!
//! Frames longer than [`MAX_FRAME`] are dropped both ways; frames before the peer's `Hello`
//! (or after it spoke another version) are dropped; messages that do not decode are dropped.
//! All are counted, none is logged. A reset (the firewall restarted) sends our `Hello` again;
//! a broken channel drops everything until a reset mends it.

use crate::channel::{ChannelError, Transport};
use crate::log::printable;
use crate::net::FrameDevice;
use crate::net::offload::{self, Coalescer, Outgoing, VNET_HDR_LEN, VnetHdr};
use bulkhead_abi::proto::{Hello, MAX_FRAME, Net, PROTO_VERSION};

/// Messages (or frames) moved each way per [`NetBridge::pump`], so one side cannot starve
/// the other.
pub const BATCH: usize = 64;

/// Counters of a bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Frames from the interface sent to the firewall.
    pub to_peer: u64,
    /// Frames from the firewall given to the interface.
    pub from_peer: u64,
    /// Interface frames dropped: too long.
    pub tx_oversized: u64,
    /// Interface frames dropped: the peer is not up (no `Hello` yet, refused, broken).
    pub tx_not_up: u64,
    /// Channel frames dropped: too long.
    pub rx_oversized: u64,
    /// Channel frames dropped: before the peer's `Hello`.
    pub rx_not_up: u64,
    /// Channel messages that did not decode as `Net`.
    pub undecodable: u64,
    /// Other `Net` messages (sys-net's `Uplink`, which no client expects).
    pub ignored: u64,
    /// Frames the interface refused.
    pub device_errors: u64,
    /// Packets from the interface whose virtio header could not be followed (dropped).
    pub offload_errors: u64,
    /// Large segments from the interface cut into frames.
    pub tso_segments: u64,
}

/// Where the peer's `Hello` stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Peer {
    Waiting,
    Up,
    Refused,
}

/// What one received message was.
enum Incoming {
    Frame,
    Hello { version: u16, qube: String },
    Dropped,
    Ignored,
    Undecodable,
}

/// What waits in the bridge's buffer.
#[derive(Clone, Copy, Debug)]
enum Pending {
    /// One frame at `start..start + len`.
    One { start: usize, len: usize },
    /// A large segment at `start..` (`seg` from [`offload::prepare`]); frame `next` is due.
    Tso {
        start: usize,
        seg: Outgoing,
        next: usize,
    },
}

/// One network channel bridged to a frame device.
pub struct NetBridge<T: Transport> {
    ch: T,
    name: String,
    hello: Hello,
    hello_sent: bool,
    peer: Peer,
    broken: Option<ChannelError>,
    /// What was read from the interface and the full ring has not taken yet (in `buf`): the
    /// interface is not read again until it is all sent.
    pending: Option<Pending>,
    buf: Vec<u8>,
    /// One frame of a large segment.
    frame: Vec<u8>,
    /// Merges the firewall's frames for a device with offloads.
    coalescer: Coalescer,
    notes: Vec<String>,
    /// Counters.
    pub stats: BridgeStats,
}

impl<T: Transport> NetBridge<T> {
    /// Starts bridging over `ch` (the channel called `name`) and sends our `Hello` as `qube`.
    pub fn new(ch: T, name: &str, qube: &str) -> NetBridge<T> {
        let mut q = heapless::String::new();
        for c in qube.chars() {
            if q.push(c).is_err() {
                break;
            }
        }
        let mut b = NetBridge {
            ch,
            name: name.to_string(),
            hello: Hello {
                version: PROTO_VERSION,
                qube: q,
            },
            hello_sent: false,
            peer: Peer::Waiting,
            broken: None,
            pending: None,
            // Room for any frame the interface might hand over, so a long one is seen whole.
            buf: vec![0; VNET_HDR_LEN + 65536 + 256],
            frame: vec![0; MAX_FRAME],
            coalescer: Coalescer::new(),
            notes: Vec::new(),
            stats: BridgeStats::default(),
        };
        b.send_hello();
        b
    }

    /// True once the firewall's `Hello` (our version) arrived and the channel works.
    pub fn is_up(&self) -> bool {
        self.peer == Peer::Up && self.broken.is_none()
    }

    /// The transport (the event loop waits on it).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.ch
    }

    /// Whether a frame waits for ring space (the loop should come back soon).
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Notable events since the last call, one console line each.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn send_hello(&mut self) {
        let hello = Net::Hello(self.hello.clone());
        match self.ch.try_send(&hello) {
            Ok(sent) => self.hello_sent = sent,
            Err(e) => self.channel_error(e),
        }
    }

    /// Handles news about the channel (also from the event loop's wait): a reset starts the
    /// conversation again; anything else breaks the bridge until a reset.
    pub fn channel_error(&mut self, e: ChannelError) {
        if e == ChannelError::Reset {
            self.peer = Peer::Waiting;
            self.broken = None;
            self.pending = None;
            self.notes.push(format!(
                "{}: channel reset (the firewall restarted): sending Hello again",
                self.name
            ));
            self.send_hello();
        } else if self.broken.is_none() {
            self.broken = Some(e);
            self.notes
                .push(format!("{}: {e}; frames are dropped", self.name));
        }
    }

    /// One round both ways: channel → device, then device → channel. True when anything
    /// moved (the caller comes back before sleeping).
    pub fn pump(&mut self, dev: &mut impl FrameDevice) -> bool {
        if !self.hello_sent && self.broken.is_none() {
            self.send_hello();
        }
        let a = self.channel_to_device(dev);
        let b = self.device_to_channel(dev);
        a || b
    }

    fn channel_to_device(&mut self, dev: &mut impl FrameDevice) -> bool {
        let mut moved = false;
        let vnet = dev.vnet();
        for _ in 0..BATCH {
            let up = self.peer == Peer::Up;
            let stats = &mut self.stats;
            let coalescer = &mut self.coalescer;
            let got = self
                .ch
                .try_recv_with(|bytes| match postcard::from_bytes::<Net>(bytes) {
                    Ok(Net::Frame(f)) if f.len() > MAX_FRAME => {
                        stats.rx_oversized += 1;
                        Incoming::Dropped
                    }
                    Ok(Net::Frame(_)) if !up => {
                        stats.rx_not_up += 1;
                        Incoming::Dropped
                    }
                    Ok(Net::Frame(f)) if vnet => {
                        stats.from_peer += 1;
                        coalescer.push(f, &mut |h: &VnetHdr, p: &[u8]| {
                            if dev.send_vnet(&h.to_bytes(), p).is_err() {
                                stats.device_errors += 1;
                            }
                        });
                        Incoming::Frame
                    }
                    Ok(Net::Frame(f)) => {
                        match dev.send_frame(f) {
                            Ok(()) => stats.from_peer += 1,
                            Err(_) => stats.device_errors += 1,
                        }
                        Incoming::Frame
                    }
                    Ok(Net::Hello(h)) => Incoming::Hello {
                        version: h.version,
                        qube: h.qube.as_str().to_string(),
                    },
                    Ok(Net::Uplink(_) | Net::UplinkDown) => Incoming::Ignored,
                    Err(_) => Incoming::Undecodable,
                });
            match got {
                Ok(None) => break,
                Ok(Some(incoming)) => {
                    moved = true;
                    match incoming {
                        Incoming::Hello { version, qube } => self.peer_hello(version, &qube),
                        Incoming::Undecodable => self.stats.undecodable += 1,
                        Incoming::Ignored => self.stats.ignored += 1,
                        Incoming::Frame | Incoming::Dropped => {}
                    }
                }
                Err(e) => {
                    self.channel_error(e);
                    if self.broken.is_some() {
                        break;
                    }
                }
            }
        }
        // A run of segments is written once the batch is over, never held across rounds.
        let stats = &mut self.stats;
        self.coalescer.flush(&mut |h: &VnetHdr, p: &[u8]| {
            if dev.send_vnet(&h.to_bytes(), p).is_err() {
                stats.device_errors += 1;
            }
        });
        moved
    }

    fn peer_hello(&mut self, version: u16, qube: &str) {
        let qube = printable(qube, 32);
        if version != PROTO_VERSION {
            self.peer = Peer::Refused;
            self.notes.push(format!(
                "{}: {qube} speaks protocol version {version}, this agent {PROTO_VERSION}: \
                 frames are dropped",
                self.name
            ));
            return;
        }
        if self.peer != Peer::Waiting {
            // A second Hello without a reset: the peer started over and expects ours first.
            self.send_hello();
        }
        self.peer = Peer::Up;
        self.notes
            .push(format!("{}: link to {qube} is up", self.name));
    }

    fn device_to_channel(&mut self, dev: &mut impl FrameDevice) -> bool {
        let mut moved = false;
        let vnet = dev.vnet();
        'reads: for _ in 0..BATCH {
            let pending = match self.pending.take() {
                Some(p) => p,
                None => match dev.recv_frame(&mut self.buf) {
                    Ok(Some(len)) => {
                        moved = true;
                        let len = len.min(self.buf.len());
                        match self.read_to_pending(vnet, len) {
                            Some(p) => p,
                            None => continue,
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        self.stats.device_errors += 1;
                        break;
                    }
                },
            };
            match pending {
                Pending::One { start, len } => {
                    if len > MAX_FRAME {
                        self.stats.tx_oversized += 1;
                        moved = true;
                        continue;
                    }
                    if !self.is_up() {
                        self.stats.tx_not_up += 1;
                        moved = true;
                        continue;
                    }
                    let frame = Net::Frame(&self.buf[start..start + len]);
                    match self.ch.try_send_batched(&frame) {
                        Ok(true) => {
                            self.stats.to_peer += 1;
                            moved = true;
                        }
                        Ok(false) => {
                            // Full: the loop retries soon (`has_pending`), without spinning.
                            self.pending = Some(pending);
                            break;
                        }
                        Err(e) => {
                            self.stats.tx_not_up += 1;
                            self.channel_error(e);
                        }
                    }
                }
                Pending::Tso { start, seg, next } => {
                    let Outgoing::Tso { count, .. } = seg else {
                        continue;
                    };
                    for i in next..count {
                        if !self.is_up() {
                            self.stats.tx_not_up += (count - i) as u64;
                            moved = true;
                            continue 'reads;
                        }
                        let n = offload::tso_frame(&self.buf[start..], &seg, i, &mut self.frame);
                        match self.ch.try_send_batched(&Net::Frame(&self.frame[..n])) {
                            Ok(true) => {
                                self.stats.to_peer += 1;
                                moved = true;
                            }
                            Ok(false) => {
                                self.pending = Some(Pending::Tso {
                                    start,
                                    seg,
                                    next: i,
                                });
                                break 'reads;
                            }
                            Err(e) => {
                                self.stats.tx_not_up += 1;
                                self.channel_error(e);
                            }
                        }
                    }
                }
            }
        }
        // One doorbell for the batch, if the firewall sleeps.
        self.ch.flush();
        moved
    }

    /// What a read of `len` bytes into `buf` is to send (`None`: nothing, counted).
    fn read_to_pending(&mut self, vnet: bool, len: usize) -> Option<Pending> {
        if !vnet {
            return Some(Pending::One { start: 0, len });
        }
        let Some(hdr) = VnetHdr::parse(&self.buf[..len]) else {
            self.stats.offload_errors += 1;
            return None;
        };
        let start = VNET_HDR_LEN;
        match offload::prepare(&hdr, &mut self.buf[start..len], MAX_FRAME) {
            Ok(Outgoing::Frame { len }) => Some(Pending::One { start, len }),
            Ok(seg @ Outgoing::Tso { .. }) => {
                self.stats.tso_segments += 1;
                Some(Pending::Tso {
                    start,
                    seg,
                    next: 0,
                })
            }
            Err(_) => {
                self.stats.offload_errors += 1;
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "bridge_tests.rs"]
mod tests;
