//! The little-endian, fixed-layout encoding of what the hypervisor reads at boot (the
//! manifest): a [`Writer`] for xtask and a bounds-checked [`Reader`] for the hypervisor.
//! Each record type writes and reads its fields in one order, next to each other, and text
//! fields have a fixed width (a length, then the bytes, zero-padded), so every record of a
//! kind has one size and one layout; a round-trip property test holds the two together.

use crate::bounded::BoundedString;

/// Why bytes could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The bytes end inside a field.
    Truncated,
    /// A text field is longer than its width, not UTF-8, or not zero-padded.
    BadText,
    /// An enumeration's tag or a padding byte has a value the layout does not define.
    BadValue,
    /// Bytes are left after the last record.
    TrailingBytes,
}

/// The little-endian u16 at `at` in `b`, if all of it is inside.
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The little-endian u32 at `at` in `b`, if all of it is inside.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The little-endian u64 at `at` in `b`, if all of it is inside.
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Writes fields into a byte buffer; remembers (instead of panicking) that it ran out.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + b.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(b);
                self.pos += b.len();
            }
            _ => self.overflow = true,
        }
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    /// Appends a little-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    /// Appends a little-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    /// Appends a little-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Appends a text field of width `N`: its length (u16), its bytes, zeros up to `N`.
    pub fn text<const N: usize>(&mut self, s: &BoundedString<N>) {
        self.u16(s.len() as u16);
        self.bytes(s.as_bytes());
        for _ in s.len()..N {
            self.u8(0);
        }
    }

    /// Bytes written, or `None` if the buffer was too small.
    pub fn finish(self) -> Option<usize> {
        (!self.overflow).then_some(self.pos)
    }
}

/// Reads fields from bytes, checking every bound.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let b = self.bytes.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        u16_at(self.bytes(2)?, 0).ok_or(WireError::Truncated)
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        u32_at(self.bytes(4)?, 0).ok_or(WireError::Truncated)
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        u64_at(self.bytes(8)?, 0).ok_or(WireError::Truncated)
    }

    /// A byte that must be zero (padding).
    pub fn zero(&mut self) -> Result<(), WireError> {
        match self.u8()? {
            0 => Ok(()),
            _ => Err(WireError::BadValue),
        }
    }

    /// A text field of width `N` (see [`Writer::text`]).
    pub fn text<const N: usize>(&mut self) -> Result<BoundedString<N>, WireError> {
        let len = usize::from(self.u16()?);
        let field = self.bytes(N)?;
        if len > N || field[len..].iter().any(|&b| b != 0) {
            return Err(WireError::BadText);
        }
        let s = core::str::from_utf8(&field[..len]).map_err(|_| WireError::BadText)?;
        BoundedString::try_from(s).map_err(|_| WireError::BadText)
    }

    /// Checks that nothing is left.
    pub fn finish(self) -> Result<(), WireError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_round_trip() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        w.u8(7);
        w.u16(0x1234);
        w.u32(0xdead_beef);
        w.u64(u64::MAX - 1);
        w.text::<8>(&BoundedString::try_from("né").unwrap());
        let n = w.finish().unwrap();
        assert_eq!(n, 1 + 2 + 4 + 8 + 2 + 8);
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u16(), Ok(0x1234));
        assert_eq!(r.u32(), Ok(0xdead_beef));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.text::<8>().unwrap().as_str(), "né");
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn overflow_and_bad_text_are_reported() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.u32(1);
        assert_eq!(w.finish(), None);
        // Length beyond the width, non-zero padding, invalid UTF-8.
        for bad in [[9u8, 0, b'a', b'b'], [1, 0, b'a', b'b'], [2, 0, 0xff, 0xfe]] {
            assert_eq!(Reader::new(&bad).text::<2>(), Err(WireError::BadText));
        }
        assert_eq!(Reader::new(&[1]).u16(), Err(WireError::Truncated));
    }

    proptest! {
        #[test]
        fn reading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut r = Reader::new(&bytes);
            let _ = (r.u8(), r.text::<5>(), r.u32(), r.zero(), r.bytes(3), r.u16(), r.u64());
            let _ = r.finish();
        }
    }
}
