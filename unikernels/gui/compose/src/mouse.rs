//! The PS/2 mouse: three-byte packets (buttons and signs, X, Y) into movements.

/// One decoded packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Motion {
    /// Rightwards, in mouse counts.
    pub dx: i32,
    /// Downwards (the mouse reports upwards; this is screen direction).
    pub dy: i32,
    /// Bit 0 left, 1 right, 2 middle.
    pub buttons: u8,
}

/// Collects packet bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Packets {
    bytes: [u8; 3],
    have: usize,
}

impl Packets {
    /// Feeds one byte from the mouse; a motion when a packet completes. A first byte
    /// without its always-one bit 3 is dropped, so a stream that lost a byte finds its
    /// packets again.
    pub fn feed(&mut self, byte: u8) -> Option<Motion> {
        if self.have == 0 && byte & 0x08 == 0 {
            return None;
        }
        self.bytes[self.have] = byte;
        self.have += 1;
        if self.have < 3 {
            return None;
        }
        self.have = 0;
        let [head, x, y] = self.bytes;
        // 9-bit two's complement: the sign bits are in the first byte; an overflowing
        // packet is dropped.
        if head & 0xc0 != 0 {
            return None;
        }
        let signed = |v: u8, neg: bool| i32::from(v) - if neg { 256 } else { 0 };
        Some(Motion {
            dx: signed(x, head & 0x10 != 0),
            dy: -signed(y, head & 0x20 != 0),
            buttons: head & 0x07,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn packets_and_resync() {
        let mut p = Packets::default();
        assert_eq!(p.feed(0x09), None);
        assert_eq!(p.feed(5), None);
        assert_eq!(
            p.feed(0x02),
            Some(Motion {
                dx: 5,
                dy: -2,
                buttons: 1
            })
        );
        let mut p = Packets::default();
        let got: Vec<_> = [0x00, 0x39, 0xfb, 0xfe]
            .iter()
            .filter_map(|b| p.feed(*b))
            .collect();
        assert_eq!(
            got,
            vec![Motion {
                dx: -5,
                dy: 2,
                buttons: 1
            }]
        );
    }

    proptest! {
        #[test]
        fn any_bytes_give_bounded_motions(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut p = Packets::default();
            for b in bytes {
                if let Some(m) = p.feed(b) {
                    prop_assert!((-256..=255).contains(&m.dx) && (-255..=256).contains(&m.dy));
                    prop_assert!(m.buttons < 8);
                }
            }
        }
    }
}
