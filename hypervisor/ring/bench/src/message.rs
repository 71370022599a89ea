//! The 64-byte message every transport carries, and the flags the driving side puts in its
//! sequence number to steer the other side.

use serde::{Deserialize, Serialize};

/// Bytes of payload after the sequence number.
pub const PAYLOAD: usize = 56;

/// One message: 64 bytes in memory (8 of sequence, 56 of payload). Postcard encodes it in
/// 65 bytes: the sequence as a fixed 8-byte integer, the payload as a byte string (a one-byte
/// length, then the bytes, copied in one piece).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Msg {
    /// Sequence number in the low bits, [`Flag`]s in the top ones.
    #[serde(with = "postcard::fixint::le")]
    pub seq: u64,
    /// Payload.
    #[serde(with = "bytes56")]
    pub payload: [u8; PAYLOAD],
}

/// The flags the driving side (A, or the producer) sets in a message's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// The first message of a timed run: the receiver starts its clock.
    Start,
    /// The last message of a batch: the receiver takes a sample.
    Mark,
    /// The last message of a run: a sample, then the receiver says it has drained.
    End,
    /// The last message of all: the receiver answers (if it answers) and leaves.
    Stop,
}

const FLAG_SHIFT: u32 = 60;
const SEQ_MASK: u64 = (1 << FLAG_SHIFT) - 1;

impl Msg {
    /// Message `seq` with the bench's fixed payload.
    pub fn new(seq: u64) -> Msg {
        Msg {
            seq,
            payload: [0x5a; PAYLOAD],
        }
    }

    /// Message `seq` carrying `flag`.
    pub fn flagged(seq: u64, flag: Flag) -> Msg {
        let bits = match flag {
            Flag::Start => 1,
            Flag::Mark => 2,
            Flag::End => 3,
            Flag::Stop => 4,
        };
        Msg::new(seq | bits << FLAG_SHIFT)
    }

    /// The sequence number without flags.
    pub fn number(&self) -> u64 {
        self.seq & SEQ_MASK
    }

    /// The flag this message carries, if any.
    pub fn flag(&self) -> Option<Flag> {
        match self.seq >> FLAG_SHIFT {
            1 => Some(Flag::Start),
            2 => Some(Flag::Mark),
            3 => Some(Flag::End),
            4 => Some(Flag::Stop),
            _ => None,
        }
    }

    /// The message as 64 raw bytes (for the byte-stream transports).
    pub fn to_bytes(self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..].copy_from_slice(&self.payload);
        b
    }

    /// The message from 64 raw bytes.
    pub fn from_bytes(b: &[u8; 64]) -> Msg {
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[..8]);
        let mut payload = [0u8; PAYLOAD];
        payload.copy_from_slice(&b[8..]);
        Msg {
            seq: u64::from_le_bytes(seq),
            payload,
        }
    }
}

/// Serde for `[u8; 56]` as a byte string (serde's arrays stop at 32 elements, and a byte
/// string is also the fast way: postcard copies it in one piece instead of byte by byte).
mod bytes56 {
    use super::PAYLOAD;
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(bytes: &[u8; PAYLOAD], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; PAYLOAD], D::Error> {
        struct Fixed;
        impl Visitor<'_> for Fixed {
            type Value = [u8; PAYLOAD];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{PAYLOAD} bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcard_size_and_round_trip() {
        let m = Msg::flagged(12345, Flag::Mark);
        let bytes = postcard::to_allocvec(&m).unwrap();
        assert_eq!(bytes.len(), 65);
        assert_eq!(postcard::from_bytes::<Msg>(&bytes).unwrap(), m);
        assert_eq!(m.number(), 12345);
        assert_eq!(m.flag(), Some(Flag::Mark));
        assert_eq!(Msg::new(7).flag(), None);
    }

    #[test]
    fn raw_bytes_round_trip() {
        let m = Msg::flagged(99, Flag::Stop);
        assert_eq!(Msg::from_bytes(&m.to_bytes()), m);
        assert_eq!(std::mem::size_of::<Msg>(), 64);
    }
}
