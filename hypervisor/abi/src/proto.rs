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
        payload: Vec<u8, PROBE_PAYLOAD>,
    },
    /// The echo of a `Ping`.
    Pong {
        /// The ping's sequence number.
        seq: u64,
        /// The ping's payload, unchanged.
        payload: Vec<u8, PROBE_PAYLOAD>,
    },
    /// The sender is done after `count` pings; the receiver reports and stops.
    Done {
        /// Pings sent.
        count: u64,
    },
}

impl Probe {
    /// The payload every end expects for sequence number `seq`.
    pub fn payload_for(seq: u64) -> Vec<u8, PROBE_PAYLOAD> {
        (0..PROBE_PAYLOAD)
            .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect()
    }
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
    /// receiver).
    Frame(&'a [u8]),
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
}
