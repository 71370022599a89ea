//! The message vocabulary between qubes: every postcard type that travels over a channel is
//! defined here, once, so both ends compile against the same definition.
//!
//! A channel's first message in each direction is a [`Hello`] carrying [`PROTO_VERSION`];
//! an end that receives another version refuses the channel. Adding a variant at the end of
//! an enum is compatible; anything else bumps the version.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Version of the message vocabulary.
pub const PROTO_VERSION: u16 = 1;

/// The first message on a channel, in each direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTO_VERSION`] of the sender.
    pub version: u16,
    /// The sender's qube name (for log lines; the hypervisor's manifest is the authority).
    pub qube: String<{ crate::boot_info::NAME_MAX }>,
}

/// Payload bytes of a [`Probe`] message: with the sequence number and postcard's framing it
/// makes a 64-byte message, the size the benchmarks use.
pub const PROBE_PAYLOAD: usize = 54;

/// Messages of the channel test and benchmark qubes (`purpose = "test"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// Version handshake.
    Hello(Hello),
    /// A request to echo.
    Ping {
        /// Sequence number, from 0.
        seq: u64,
        /// Bytes derived from `seq`, checked at both ends.
        #[serde(with = "fixed_bytes")]
        payload: [u8; PROBE_PAYLOAD],
    },
    /// The echo of a `Ping`.
    Pong {
        /// The ping's sequence number.
        seq: u64,
        /// The ping's payload, unchanged.
        #[serde(with = "fixed_bytes")]
        payload: [u8; PROBE_PAYLOAD],
    },
    /// The sender is done after `count` pings; the receiver reports and stops.
    Done {
        /// Pings sent.
        count: u64,
    },
    /// A chunk of a bulk transfer, lent from the sender's bulk pool.
    Chunk {
        /// Chunk number, from 0.
        seq: u64,
        /// Where it is.
        buf: BulkRef,
    },
    /// A lent bulk buffer given back.
    Returned(BulkRef),
}

/// A buffer lent from one end's pool of a channel's bulk area (`bulkhead_abi::channel`), as
/// it travels in ring messages: where it is in the lender's pool, how long it is, and a
/// checksum of its bytes when lent (see `bulkhead_ring::Bulk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkRef {
    /// Byte offset in the lender's pool (a multiple of 4 KiB).
    pub offset: u32,
    /// Bytes of data (the buffer spans `len` rounded up to whole pages; at least one).
    pub len: u32,
    /// The checksum of the data when it was lent (`bulkhead_ring::checksum`).
    pub check: u64,
}

impl Probe {
    /// The payload every end expects for sequence number `seq`: eight bytes at a time from a
    /// word mixed from `seq` (cheap to make and check, so the benchmarks measure the channel).
    pub fn payload_for(seq: u64) -> [u8; PROBE_PAYLOAD] {
        let mut p = [0u8; PROBE_PAYLOAD];
        let mut w = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for chunk in p.chunks_mut(8) {
            chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
            w = w.rotate_left(13) ^ seq;
        }
        p
    }

    /// The bytes at offset `at` of a bulk test transfer (the testing qube's `bulk-tx` and
    /// `bulk-rx`, the agent's), written into `buf`: whole words mixed from each word's index
    /// (`at` a multiple of 8), so either end can make and check them.
    pub fn fill_bulk(buf: &mut [u8], at: u64) {
        for (i, w) in buf.chunks_mut(8).enumerate() {
            let word = (at / 8 + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xB01C;
            w.copy_from_slice(&word.to_le_bytes()[..w.len()]);
        }
    }
}

/// A fixed-size byte array as a byte string: postcard writes its length and copies the bytes
/// in one piece (the same encoding as a `Vec<u8>`, without a push per byte); a string of
/// another length does not decode.
mod fixed_bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(a: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(a)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        struct Exactly<const N: usize>;
        impl<const N: usize> Visitor<'_> for Exactly<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; N], E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Exactly::<N>)
    }
}

/// A byte slice as a byte string (length, then the bytes copied in one piece): the encoding
/// postcard also gives a sequence of `u8`, which `&[u8]` deserialises from either way.
fn byte_string<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(b)
}

/// Largest Ethernet frame carried on a network channel (without FCS; no jumbo frames).
pub const MAX_FRAME: usize = 1514;

/// Messages on a network channel (`purpose = "network"`): between sys-net and sys-firewall,
/// and between sys-firewall and each client qube. Frames are Ethernet II frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Net<'a> {
    /// Version handshake.
    Hello(Hello),
    /// One Ethernet frame (at most [`MAX_FRAME`] bytes; a longer one is dropped by the
    /// receiver). Written as a byte string: postcard copies it in one piece (the same
    /// encoding as a sequence of bytes, which costs a push per byte).
    Frame(#[serde(serialize_with = "byte_string")] &'a [u8]),
    /// From sys-net to its downstream: the uplink's addresses, sent after DHCP and whenever
    /// they change.
    Uplink(UplinkInfo),
    /// From sys-net to its downstream: the uplink is down (no lease); drop traffic.
    UplinkDown,
}

/// What sys-net learned about its uplink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkInfo {
    /// The card's MAC address (the firewall sends its uplink frames from it).
    pub mac: [u8; 6],
    /// The address DHCP gave the uplink.
    pub address: [u8; 4],
    /// Its prefix length.
    pub prefix_len: u8,
    /// The default gateway, if DHCP named one.
    pub gateway: Option<[u8; 4]>,
    /// DNS servers DHCP named, best first.
    pub dns: Vec<[u8; 4], 3>,
}

/// Slot size network channels need: a [`MAX_FRAME`] frame with postcard's tag and length.
pub const NET_SLOT_SIZE: u32 = 2048;

/// Messages on a disposable's request channel (`purpose = "disposable"`), between a qube
/// allowed to start disposables (side A) and the disposable (side B, started by the
/// hypervisor when side A first notifies it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Disposable<'a> {
    /// Version handshake.
    Hello(Hello),
    /// From the requester: run `command` (a shell command line) in a disposable made from
    /// `template`.
    Run {
        /// The template the requester expects (the disposable refuses another).
        template: &'a str,
        /// The command line.
        command: &'a str,
    },
    /// From the disposable: output of the command (stdout and stderr, in order).
    Output(&'a [u8]),
    /// From the disposable: the command ended with this status; the disposable powers off.
    Exited {
        /// Exit status (128 + signal number when killed by a signal).
        status: i32,
    },
    /// From the disposable: the request was refused, with why.
    Refused(&'a str),
}

/// Slot size disposable channels need (a command line or an output chunk).
pub const DISPOSABLE_SLOT_SIZE: u32 = 2048;

/// Largest output chunk in one [`Disposable::Output`].
pub const MAX_OUTPUT_CHUNK: usize = 1900;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_about_64_bytes() {
        let p = Probe::Ping {
            seq: 1 << 40,
            payload: Probe::payload_for(7),
        };
        let mut buf = [0u8; 128];
        let n = postcard::to_slice(&p, &mut buf).unwrap().len();
        assert!((60..=64).contains(&n), "{n} bytes");
        assert_eq!(postcard::from_bytes::<Probe>(&buf[..n]).unwrap(), p);
        // The payload is written as a byte string: the same bytes as a `Vec<u8>` of it.
        let as_vec: Vec<u8, PROBE_PAYLOAD> = Vec::from_slice(&Probe::payload_for(7)).unwrap();
        let mut vec_buf = [0u8; 128];
        let v = postcard::to_slice(&(1u64 << 40, as_vec), &mut vec_buf).unwrap();
        assert_eq!(&buf[1..n], &v[..]);
        // One byte short does not decode.
        let mut short = buf;
        short[1 + v.len() - PROBE_PAYLOAD - 1] -= 1;
        assert!(postcard::from_bytes::<Probe>(&short[..n - 1]).is_err());
    }

    #[test]
    fn a_full_frame_fits_a_network_slot() {
        let frame = [0xa5u8; MAX_FRAME];
        let mut buf = [0u8; NET_SLOT_SIZE as usize];
        let n = postcard::to_slice(&Net::Frame(&frame), &mut buf)
            .unwrap()
            .len();
        assert!(
            n <= NET_SLOT_SIZE as usize - 64,
            "{n} bytes leave room for the slot header"
        );
        match postcard::from_bytes::<Net<'_>>(&buf[..n]).unwrap() {
            Net::Frame(f) => assert_eq!(f, &frame[..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_frame_is_encoded_as_the_sequence_of_its_bytes_was() {
        // The byte-string encoding is the one the frames had as a sequence of `u8`: peers
        // built before and after the change understand each other.
        #[derive(Serialize)]
        enum SeqNet<'a> {
            _Hello(Hello),
            Frame(&'a [u8]),
        }
        let frame: [u8; 300] = core::array::from_fn(|i| (i * 7) as u8);
        let (mut a, mut b) = ([0u8; 400], [0u8; 400]);
        let a = postcard::to_slice(&Net::Frame(&frame), &mut a).unwrap();
        let b = postcard::to_slice(&SeqNet::Frame(&frame), &mut b).unwrap();
        assert_eq!(a, b);
    }
}
