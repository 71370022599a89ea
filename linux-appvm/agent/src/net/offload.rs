//! Segmentation and receive coalescing for the TAP interface's offloads (`IFF_VNET_HDR`).
//!
//! With `TUN_F_CSUM | TUN_F_TSO4` the kernel hands the agent TCP/IPv4 segments of up to
//! 64 KiB, each behind a [`VnetHdr`] (`struct virtio_net_hdr`), and leaves their checksums
//! for the "card" to finish. The channel to the firewall carries only standard Ethernet
//! frames of at most `MAX_FRAME` bytes, so up the agent cuts each large segment into
//! MSS-sized frames ([`segment`]) with their own IP lengths, ids and checksums, TCP sequence
//! numbers, flags and checksums, as a card's TSO would.
//!
//! Down, the [`Coalescer`] merges consecutive in-order TCP/IPv4 segments of one flow (the
//! same rules as the kernel's GRO: same addresses, ports, TTL, TOS, ack, window and options;
//! only `ACK`, with `PSH` ending a run) into one large segment written with a `TCPV4` header,
//! so the kernel's receive path runs once per run instead of once per frame. Everything it
//! is given comes from the firewall and is hostile input: a frame that is not a well-formed
//! TCP/IPv4 segment with correct IP and TCP checksums passes through untouched (the kernel
//! judges it as it would any frame); only frames the coalescer has checked are merged, and a
//! merged segment is marked `NEEDS_CSUM` (the kernel then trusts its payload's checksum,
//! which the coalescer verified frame by frame).

/// Bytes of `struct virtio_net_hdr` before every frame on a TAP with `IFF_VNET_HDR`.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is to be
/// finished over the bytes from `csum_start`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on the type).
pub const GSO_ECN: u8 = 0x80;

/// Largest IPv4 packet (the total length field).
const MAX_IP: usize = 65535;
const ETH: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const PROTO_TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// `struct virtio_net_hdr` (little-endian fields, as the TAP uses them on x86).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM` and others.
    pub flags: u8,
    /// `GSO_*`.
    pub gso_type: u8,
    /// Length of the headers (Ethernet, IP, TCP).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed bytes start (from the Ethernet header).
    pub csum_start: u16,
    /// Where the checksum lies, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from the first [`VNET_HDR_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let w = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: w(2),
            gso_size: w(4),
            csum_start: w(6),
            csum_offset: w(8),
        })
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd last byte padded
/// with zero), added to `acc`; fold with [`fold`].
///
/// The bytes are added as native (little-endian) 32-bit words into a 64-bit total, which
/// cannot overflow for anything shorter than 16 GiB; a one's-complement sum of
/// byte-swapped words is the byte-swapped sum, so the folded total is swapped once at the
/// end. Sixteen bytes per step.
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let word = |c: &[u8]| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut chunks = data.chunks_exact(16);
    let (mut a, mut b) = (0u64, 0u64);
    for c in &mut chunks {
        a += word(&c[0..4]) + word(&c[4..8]);
        b += word(&c[8..12]) + word(&c[12..16]);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 16];
    tail[..rest.len()].copy_from_slice(rest);
    a += word(&tail[0..4]) + word(&tail[4..8]);
    b += word(&tail[8..12]) + word(&tail[12..16]);
    let be = u64::from(fold(a + b).swap_bytes());
    u64::from(fold(acc)) + be
}

/// Folds a [`sum`] to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The TCP pseudo-header's sum for `tcp_len` bytes of TCP between the IP header's addresses.
fn pseudo_sum(ip: &[u8], tcp_len: usize) -> u64 {
    sum(&ip[12..20], u64::from(PROTO_TCP) + tcp_len as u64)
}

/// Writes the IPv4 header checksum of `ip` (its first `ihl` bytes).
fn set_ip_checksum(ip: &mut [u8], ihl: usize) {
    ip[10] = 0;
    ip[11] = 0;
    let c = !fold(sum(&ip[..ihl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Where a TCP/IPv4 frame's parts lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tcp4 {
    /// IP header length.
    ihl: usize,
    /// TCP header length.
    thl: usize,
    /// Frame bytes that are the packet (Ethernet header + IP total length).
    end: usize,
}

impl Tcp4 {
    fn headers(&self) -> usize {
        ETH + self.ihl + self.thl
    }
}

/// Parses `frame` as an unfragmented TCP/IPv4 packet with consistent lengths (trailing
/// Ethernet padding allowed); checks no checksum.
fn parse_tcp4(frame: &[u8]) -> Option<Tcp4> {
    if frame.len() < ETH + 20 || frame[12..14] != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[ETH..];
    if ip[0] >> 4 != 4 || ip[9] != PROTO_TCP {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    // MF or a fragment offset: a fragment.
    if ihl < 20 || be16(ip, 6) & 0x3fff != 0 || total < ihl + 20 || total > ip.len() {
        return None;
    }
    let thl = usize::from(ip[ihl + 12] >> 4) * 4;
    if thl < 20 || ihl + thl > total {
        return None;
    }
    Some(Tcp4 {
        ihl,
        thl,
        end: ETH + total,
    })
}

/// Why a frame from the interface could not go on the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// The read was shorter than its virtio header.
    Short,
    /// A segmentation type the agent did not enable (or did not understand).
    UnknownGso,
    /// A large segment that is not TCP/IPv4, or whose headers or sizes do not fit.
    BadSegment,
    /// `NEEDS_CSUM` pointing outside the frame.
    BadChecksumOffset,
}

/// Finishes a `NEEDS_CSUM` frame's checksum in place: the one's complement of the sum of
/// the bytes from `start` (whose checksum field holds the pseudo-header's sum, as the
/// kernel leaves it), at `start + offset`.
pub fn finish_checksum(frame: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let at = start
        .checked_add(offset)
        .filter(|&a| a + 2 <= frame.len() && start <= frame.len())
        .ok_or(OffloadError::BadChecksumOffset)?;
    let mut c = !fold(sum(&frame[start..], 0));
    // Zero is "no checksum" to UDP; 0xffff is the same sum to every checker.
    if c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// What [`segment`] makes of one read from the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// One frame: the first `len` bytes of the packet (its checksum finished if it needed
    /// one).
    Frame {
        /// The frame's length.
        len: usize,
    },
    /// A large TCP/IPv4 segment to cut into `count` frames of at most `mss` payload bytes.
    Tso {
        /// Where the packet's parts lie.
        count: usize,
        /// Payload bytes per frame.
        mss: usize,
        /// Length of the headers every frame repeats.
        headers: usize,
        /// End of the packet in the buffer.
        end: usize,
    },
}

/// Looks at one read from the interface: `pkt` is the Ethernet frame after the virtio
/// header `hdr`. A plain frame has its checksum finished in place ([`Outgoing::Frame`]); a
/// large segment is described for [`tso_frame`]. `max_frame` bounds the frames made.
pub fn prepare(hdr: &VnetHdr, pkt: &mut [u8], max_frame: usize) -> Result<Outgoing, OffloadError> {
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                finish_checksum(
                    pkt,
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                )?;
            }
            Ok(Outgoing::Frame { len: pkt.len() })
        }
        GSO_TCPV4 => {
            let t = parse_tcp4(pkt).ok_or(OffloadError::BadSegment)?;
            let mss = usize::from(hdr.gso_size);
            let headers = t.headers();
            if mss == 0 || headers + mss > max_frame {
                return Err(OffloadError::BadSegment);
            }
            let payload = t.end - headers;
            if payload <= mss {
                // Not really large: one frame, whose checksum still needs finishing.
                let tcp = ETH + t.ihl;
                let (ip, rest) = pkt.split_at_mut(tcp);
                set_ip_checksum(&mut ip[ETH..], t.ihl);
                let rest = &mut rest[..t.end - tcp];
                rest[16] = 0;
                rest[17] = 0;
                let c = !fold(sum(rest, pseudo_sum(&ip[ETH..], rest.len())));
                rest[16..18].copy_from_slice(&c.to_be_bytes());
                return Ok(Outgoing::Frame { len: t.end });
            }
            Ok(Outgoing::Tso {
                count: payload.div_ceil(mss),
                mss,
                headers,
                end: t.end,
            })
        }
        _ => Err(OffloadError::UnknownGso),
    }
}

/// Writes frame `i` of a large segment `pkt` (described by [`prepare`]'s
/// [`Outgoing::Tso`]) into `out`; returns its length. The IP id of frame `i` is the
/// segment's plus `i`, its sequence number the segment's plus `i * mss`; `FIN` and `PSH`
/// only on the last frame, `CWR` only on the first; both checksums computed.
pub fn tso_frame(pkt: &[u8], seg: &Outgoing, i: usize, out: &mut [u8]) -> usize {
    let Outgoing::Tso {
        count,
        mss,
        headers,
        end,
    } = *seg
    else {
        return 0;
    };
    let start = headers + i * mss;
    let stop = (start + mss).min(end);
    let len = headers + (stop - start);
    out[..headers].copy_from_slice(&pkt[..headers]);
    out[headers..len].copy_from_slice(&pkt[start..stop]);
    let ihl = usize::from(pkt[ETH] & 0x0f) * 4;
    let (eth_ip, tcp) = out[..len].split_at_mut(ETH + ihl);
    let ip = &mut eth_ip[ETH..];
    let total = (len - ETH) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let id = be16(ip, 4).wrapping_add(i as u16);
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    set_ip_checksum(ip, ihl);
    let seq = be32(tcp, 4).wrapping_add((i * mss) as u32);
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    if i + 1 < count {
        tcp[13] &= !(TCP_FIN | TCP_PSH);
    }
    if i > 0 {
        tcp[13] &= !TCP_CWR;
    }
    tcp[16] = 0;
    tcp[17] = 0;
    let c = !fold(sum(tcp, pseudo_sum(ip, tcp.len())));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    len
}

/// Whether a frame's IP header and TCP checksums are right (`t` from [`parse_tcp4`]).
fn checksums_ok(frame: &[u8], t: &Tcp4) -> bool {
    let ip = &frame[ETH..ETH + t.ihl];
    if fold(sum(ip, 0)) != 0xffff {
        return false;
    }
    let tcp = &frame[ETH + t.ihl..t.end];
    fold(sum(tcp, pseudo_sum(&frame[ETH..], tcp.len()))) == 0xffff
}

/// Counters of a [`Coalescer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoalesceStats {
    /// Frames merged into a larger segment (each counts once, the first of a run too).
    pub merged: u64,
    /// Large segments written.
    pub segments: u64,
    /// Frames written as they came.
    pub plain: u64,
}

/// Merges consecutive in-order TCP/IPv4 segments of one flow into one large segment (see
/// the module's text). Holds at most one run; [`Coalescer::flush`] writes it.
pub struct Coalescer {
    /// The run so far: its first frame's headers, then every payload.
    buf: Vec<u8>,
    /// Bytes of `buf` in use (0: no run).
    len: usize,
    /// The first frame's parts.
    first: Tcp4,
    /// Payload bytes of every frame but perhaps the last.
    mss: usize,
    /// The sequence number the next frame must have.
    next_seq: u32,
    /// Frames in the run.
    frames: u32,
    /// Counters.
    pub stats: CoalesceStats,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

/// Where a frame goes: a virtio header and the frame.
pub type Sink<'a> = dyn FnMut(&VnetHdr, &[u8]) + 'a;

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Coalescer {
        Coalescer {
            buf: vec![0; ETH + MAX_IP],
            len: 0,
            first: Tcp4 {
                ihl: 0,
                thl: 0,
                end: 0,
            },
            mss: 0,
            next_seq: 0,
            frames: 0,
            stats: CoalesceStats::default(),
        }
    }

    /// Whether a run is held.
    pub fn holding(&self) -> bool {
        self.len != 0
    }

    /// Takes one frame from the firewall: merges it into the run, or writes the run and
    /// starts another, or writes it as it came; `out` gets what is written.
    pub fn push(&mut self, frame: &[u8], out: &mut Sink<'_>) {
        let Some(t) = parse_tcp4(frame).filter(|t| {
            let flags = frame[ETH + t.ihl + 13];
            t.end > t.headers()
                && flags & TCP_ACK != 0
                && flags & !(TCP_ACK | TCP_PSH) == 0
                && frame[ETH + 6] & 0x80 == 0
                && checksums_ok(frame, t)
        }) else {
            self.flush(out);
            self.stats.plain += 1;
            out(&VnetHdr::default(), frame);
            return;
        };
        let payload = t.end - t.headers();
        let psh = frame[ETH + t.ihl + 13] & TCP_PSH != 0;
        if self.len != 0 && self.continues(frame, &t, payload) {
            self.buf[self.len..self.len + payload].copy_from_slice(&frame[t.headers()..t.end]);
            self.len += payload;
            self.frames += 1;
            self.next_seq = self.next_seq.wrapping_add(payload as u32);
            if psh {
                self.buf[ETH + self.first.ihl + 13] |= TCP_PSH;
            }
            // A short frame or PSH ends the run, as in GRO.
            if payload < self.mss || psh {
                self.flush(out);
            }
            return;
        }
        self.flush(out);
        if psh {
            self.stats.plain += 1;
            out(&VnetHdr::default(), frame);
            return;
        }
        self.buf[..t.end].copy_from_slice(&frame[..t.end]);
        self.len = t.end;
        self.first = t;
        self.mss = payload;
        self.frames = 1;
        self.next_seq = be32(frame, ETH + t.ihl + 4).wrapping_add(payload as u32);
    }

    /// Whether `frame` (a checked TCP/IPv4 segment, `t`) continues the run.
    fn continues(&self, frame: &[u8], t: &Tcp4, payload: usize) -> bool {
        let f = &self.first;
        let run = &self.buf;
        let (ip, rip) = (ETH, ETH);
        let (tcp, rtcp) = (ETH + t.ihl, ETH + f.ihl);
        t.ihl == f.ihl
            && t.thl == f.thl
            && payload <= self.mss
            && self.len + payload <= ETH + MAX_IP
            && be32(frame, tcp + 4) == self.next_seq
            // MACs and ethertype.
            && frame[..ETH] == run[..ETH]
            // Version/IHL, TOS; TTL, protocol; addresses; DF and the options.
            && frame[ip..ip + 2] == run[rip..rip + 2]
            && frame[ip + 6..ip + 10] == run[rip + 6..rip + 10]
            && frame[ip + 12..ip + t.ihl] == run[rip + 12..rip + f.ihl]
            // Ports; ack and data offset; flags but PSH; window; urgent pointer; options.
            && frame[tcp..tcp + 4] == run[rtcp..rtcp + 4]
            && frame[tcp + 8..tcp + 13] == run[rtcp + 8..rtcp + 13]
            && frame[tcp + 13] & !TCP_PSH == run[rtcp + 13] & !TCP_PSH
            && frame[tcp + 14..tcp + 16] == run[rtcp + 14..rtcp + 16]
            && frame[tcp + 18..tcp + t.thl] == run[rtcp + 18..rtcp + f.thl]
    }

    /// Writes the run, if any: one frame as it came, several as one `TCPV4` segment.
    pub fn flush(&mut self, out: &mut Sink<'_>) {
        if self.len == 0 {
            return;
        }
        let len = std::mem::take(&mut self.len);
        let f = self.first;
        if self.frames == 1 {
            self.stats.plain += 1;
            out(&VnetHdr::default(), &self.buf[..len]);
            return;
        }
        self.stats.merged += u64::from(self.frames);
        self.stats.segments += 1;
        let pkt = &mut self.buf[..len];
        let (eth_ip, tcp) = pkt.split_at_mut(ETH + f.ihl);
        let ip = &mut eth_ip[ETH..];
        ip[2..4].copy_from_slice(&((len - ETH) as u16).to_be_bytes());
        set_ip_checksum(ip, f.ihl);
        // The pseudo-header's sum, as a card's offload expects it (the kernel does not
        // check a NEEDS_CSUM packet: every frame of the run was checked here).
        let partial = fold(pseudo_sum(ip, tcp.len()));
        tcp[16..18].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: f.headers() as u16,
            gso_size: self.mss as u16,
            csum_start: (ETH + f.ihl) as u16,
            csum_offset: 16,
        };
        out(&hdr, pkt);
    }
}

#[cfg(test)]
#[path = "offload_tests.rs"]
pub(crate) mod tests;
