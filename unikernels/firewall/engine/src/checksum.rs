//! Internet checksums: the full sum for the IPv4 header, and the incremental update of
//! RFC 1624 (equation 3) for TCP, UDP and ICMP when a translation rewrites a few words.
//!
//! The incremental update keeps a transport checksum exactly as right or as wrong as it was:
//! the firewall does not verify transport checksums (a router does not), and it never turns
//! a corrupted segment into one that looks intact.

/// Folds a 32-bit ones'-complement accumulator into 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum field value for `data` (the complement of its ones'-complement sum).
pub fn compute(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    !fold(sum)
}

/// The checksum field after the 16-bit word `old` became `new` (RFC 1624, eqn. 3:
/// `HC' = ~(~HC + ~m + m')`).
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// The checksum field after the address `old` became `new`.
pub fn update_addr(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let c = update16(
        check,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    update16(
        c,
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(compute(&data), !0xddf2);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(compute(&[0x12]), compute(&[0x12, 0x00]));
    }

    #[test]
    fn incremental_update_equals_recomputation() {
        let mut data = [
            0x45u8, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 137, 0, 5,
        ];
        let before = compute(&data);
        let old = [data[12], data[13], data[14], data[15]];
        let new = [192, 168, 1, 77];
        data[12..16].copy_from_slice(&new);
        assert_eq!(update_addr(before, old, new), compute(&data));
        let old_word = u16::from_be_bytes([data[4], data[5]]);
        let c = update_addr(before, old, new);
        data[4..6].copy_from_slice(&0xbeefu16.to_be_bytes());
        assert_eq!(update16(c, old_word, 0xbeef), compute(&data));
    }
}
