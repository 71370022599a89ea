//! The host's console: qrexec between the host (`cargo xtask qvm`) and the admin qube over a
//! serial line, the machine's COM2 (under QEMU, `-serial unix:target/bulkhead/qvm.sock`).
//!
//! The messages are the channel's ([`ToAdmin`](super::ToAdmin) from the host,
//! [`FromAdmin`](super::FromAdmin) to it), each postcard-encoded then COBS-framed
//! (`postcard::to_slice_cobs` / `postcard::from_bytes_cobs`): no 0x00 inside a frame, one
//! 0x00 after it. A frame longer than [`FRAME_MAX`] is dropped whole: everything up to the
//! next 0x00 is discarded, and an empty frame (0x00 alone) is nothing, so either end may send
//! a 0x00 to end whatever half frame the other is left with.
//!
//! The session: the host sends [`ToAdmin::Hello`](super::ToAdmin::Hello), the admin qube
//! forgets every call an earlier host client left open (their targets are told the call was
//! aborted) and answers [`FromAdmin::Hello`](super::FromAdmin::Hello); the host repeats its
//! hello until it is answered (the admin qube may not be up yet). Then calls as on a
//! channel, from the source's side; the host is `host` in the admin qube's log, and its calls
//! skip the policy (it is dom0's console in Qubes' terms).

use super::QREXEC_SLOT_SIZE;

/// The serial port the host's console is on (COM2's first port; the admin qube owns
/// `0x2f8-0x2ff`).
pub const COM2: u16 = 0x2F8;
/// Bytes of a frame at most, without its 0x00: one slot's message, COBS-encoded (one byte
/// more per 254).
pub const FRAME_MAX: usize = QREXEC_SLOT_SIZE as usize + QREXEC_SLOT_SIZE as usize / 254 + 1;

/// Splits a byte stream into frames (each still COBS-encoded, without its 0x00), in a
/// buffer of [`FRAME_MAX`] bytes: a longer frame is dropped (counted in
/// [`Deframer::dropped`]), never a panic nor a larger buffer.
#[derive(Clone, Debug)]
pub struct Deframer {
    buf: [u8; FRAME_MAX],
    len: usize,
    /// The frame in progress passed the limit: skip to the next 0x00.
    overlong: bool,
    /// Frames dropped as too long.
    pub dropped: u64,
}

impl Default for Deframer {
    fn default() -> Self {
        Self::new()
    }
}

impl Deframer {
    /// Nothing received yet.
    pub const fn new() -> Self {
        Deframer {
            buf: [0; FRAME_MAX],
            len: 0,
            overlong: false,
            dropped: 0,
        }
    }

    /// Takes one byte; a whole frame when `byte` ends one (for `postcard::from_bytes_cobs`,
    /// which decodes it in place). Empty and overlong frames give nothing.
    pub fn push(&mut self, byte: u8) -> Option<&mut [u8]> {
        if byte != 0 {
            if self.len == FRAME_MAX {
                self.overlong = true;
            } else if !self.overlong {
                self.buf[self.len] = byte;
                self.len += 1;
            }
            return None;
        }
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.overlong) {
            self.dropped += 1;
            return None;
        }
        (len > 0).then(|| &mut self.buf[..len])
    }

    /// Whether part of a frame is waiting for the rest.
    pub fn partial(&self) -> bool {
        self.len > 0 || self.overlong
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::{DATA_MAX, FromAdmin, Io, Stream, ToAdmin};
    use super::*;
    use std::vec::Vec;

    /// Every frame `bytes` holds, decoded.
    fn frames(d: &mut Deframer, bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .iter()
            .filter_map(|&b| d.push(b).map(|f| f.to_vec()))
            .collect()
    }

    #[test]
    fn the_largest_message_fits_a_frame_and_comes_back() {
        let data = [0u8; DATA_MAX];
        let msg = FromAdmin::Io(Io::Data {
            call: u32::MAX,
            stream: Stream::Stdout,
            bytes: &data,
        });
        let mut buf = [0u8; FRAME_MAX + 1];
        let framed = postcard::to_slice_cobs(&msg, &mut buf).unwrap().to_vec();
        assert_eq!(framed.iter().filter(|&&b| b == 0).count(), 1);
        let mut d = Deframer::new();
        let mut got = frames(&mut d, &framed);
        assert_eq!(got.len(), 1);
        assert_eq!(
            postcard::from_bytes_cobs::<FromAdmin<'_>>(&mut got[0]).unwrap(),
            msg
        );
    }

    #[test]
    fn an_overlong_frame_is_dropped_up_to_the_next_zero_and_the_next_one_kept() {
        let hello = ToAdmin::Hello { version: 1 };
        let mut buf = [0u8; 16];
        let framed = postcard::to_slice_cobs(&hello, &mut buf).unwrap().to_vec();
        let mut stream = std::vec![7u8; FRAME_MAX * 2];
        stream.push(0);
        stream.extend_from_slice(&framed);
        let mut d = Deframer::new();
        let mut got = frames(&mut d, &stream);
        assert_eq!(d.dropped, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(
            postcard::from_bytes_cobs::<ToAdmin<'_>>(&mut got[0]).unwrap(),
            hello
        );
        // Exactly FRAME_MAX bytes is still a frame; one more is not.
        let at_limit = [9u8; FRAME_MAX];
        assert_eq!(frames(&mut d, &[&at_limit[..], &[0]].concat()).len(), 1);
        assert!(frames(&mut d, &[&at_limit[..], &[9, 0]].concat()).is_empty());
        assert_eq!(d.dropped, 2);
    }

    #[test]
    fn empty_frames_are_nothing_and_a_zero_ends_a_half_frame() {
        let mut d = Deframer::new();
        assert!(frames(&mut d, &[0, 0, 0]).is_empty());
        assert!(frames(&mut d, &[1, 2]).is_empty() && d.partial());
        assert_eq!(frames(&mut d, &[0]), [std::vec![1, 2]]);
        assert!(!d.partial());
    }
}
