//! Exact bytes for known snippets, derived by hand from the ACPI specification's AML grammar.

extern crate std;

use super::*;
use proptest::prelude::*;

/// Runs `f` on a fresh writer and returns what it wrote.
fn aml(f: impl FnOnce(&mut Aml)) -> std::vec::Vec<u8> {
    let mut buf = [0u8; 512];
    let mut a = Aml::new(&mut buf);
    f(&mut a);
    a.finish().expect("fits").to_vec()
}

/// Reads a `PkgLength`: (total length it encodes, bytes it took).
fn decode_pkg_length(b: &[u8]) -> (usize, usize) {
    let follow = (b[0] >> 6) as usize;
    if follow == 0 {
        return ((b[0] & 0x3F) as usize, 1);
    }
    assert_eq!(b[0] & 0x30, 0, "bits 5-4 reserved");
    let mut v = (b[0] & 0x0F) as usize;
    for i in 0..follow {
        v |= (b[1 + i] as usize) << (4 + 8 * i);
    }
    (v, follow + 1)
}

#[test]
fn pkg_length_boundaries() {
    let enc = |n| {
        let mut o = [0u8; 4];
        let k = pkg_length(n, &mut o).unwrap();
        o[..k].to_vec()
    };
    assert_eq!(enc(0), [0x01]);
    assert_eq!(enc(6), [0x07]);
    assert_eq!(enc(62), [0x3F], "63 in all: the largest one-byte length");
    // 63 content bytes + 2 = 65 = 0x41: lead 0x40 | 0x1, then 0x41 >> 4.
    assert_eq!(enc(63), [0x41, 0x04]);
    assert_eq!(enc(4093), [0x4F, 0xFF], "4095: the largest two-byte length");
    // 4094 + 3 = 0x1001.
    assert_eq!(enc(4094), [0x81, 0x00, 0x01]);
    assert_eq!(pkg_length_size((1 << 28) - 5), Some(4));
    assert_eq!(pkg_length_size((1 << 28) - 4), None);
}

#[test]
fn integers_use_the_shortest_encoding() {
    assert_eq!(
        aml(|a| {
            a.integer(0);
        }),
        [0x00]
    );
    assert_eq!(
        aml(|a| {
            a.integer(1);
        }),
        [0x01]
    );
    assert_eq!(
        aml(|a| {
            a.integer(5);
        }),
        [0x0A, 0x05]
    );
    assert_eq!(
        aml(|a| {
            a.integer(0xFF);
        }),
        [0x0A, 0xFF]
    );
    assert_eq!(
        aml(|a| {
            a.integer(0x100);
        }),
        [0x0B, 0x00, 0x01]
    );
    assert_eq!(
        aml(|a| {
            a.integer(0x0001_FFFF);
        }),
        [0x0C, 0xFF, 0xFF, 0x01, 0x00]
    );
    assert_eq!(
        aml(|a| {
            a.integer(1 << 32);
        }),
        [0x0E, 0, 0, 0, 0, 1, 0, 0, 0]
    );
    assert_eq!(
        aml(|a| {
            a.dword(1);
        }),
        [0x0C, 1, 0, 0, 0]
    );
}

#[test]
fn name_strings() {
    assert_eq!(
        aml(|a| {
            a.name_string("PCI0");
        }),
        *b"PCI0"
    );
    assert_eq!(
        aml(|a| {
            a.name_string("\\_SB");
        }),
        *b"\\_SB_"
    );
    assert_eq!(
        aml(|a| {
            a.name_string("_SB.PCI0");
        }),
        *b"\x2E_SB_PCI0"
    );
    assert_eq!(
        aml(|a| {
            a.name_string("\\_SB.PCI0.S08");
        }),
        *b"\\\x2F\x03_SB_PCI0S08_"
    );
    let mut buf = [0u8; 16];
    let mut a = Aml::new(&mut buf);
    a.name_string("TOOLONG");
    assert!(
        a.finish().is_none(),
        "a segment of more than four characters"
    );
}

#[test]
fn eisa_ids_compress_as_iasl_does() {
    assert_eq!(eisa_id("PNP0A03"), Some(0x030A_D041));
    assert_eq!(eisa_id("PNP0A08"), Some(0x080A_D041));
    assert_eq!(eisa_id("PNP0C0F"), Some(0x0F0C_D041));
    assert_eq!(eisa_id("pnp0a03"), None);
    assert_eq!(eisa_id("PNP0A0"), None);
    assert_eq!(eisa_id("PNP0A0G"), None);
}

#[test]
fn s5_package() {
    // Name (_S5, Package () { 5, 0, 0, 0 }).
    assert_eq!(
        aml(|a| {
            a.name("_S5", |a| {
                a.int_package(&[5, 0, 0, 0]);
            });
        }),
        [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x07, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00
        ]
    );
}

#[test]
fn empty_scope_and_small_device() {
    // Scope (\_SB) {}: PkgLength 1 + 5 name bytes.
    assert_eq!(
        aml(|a| {
            a.scope("\\_SB", |_| {});
        }),
        *b"\x10\x06\\_SB_"
    );
    // Device (PCI0) { Name (_HID, EisaId ("PNP0A03")) }: PkgLength 1 + 4 + 10 = 15.
    assert_eq!(
        aml(|a| {
            a.device("PCI0", |a| {
                a.name("_HID", |a| {
                    a.dword(eisa_id("PNP0A03").unwrap());
                });
            });
        }),
        [
            0x5B, 0x82, 0x0F, b'P', b'C', b'I', b'0', 0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41,
            0xD0, 0x0A, 0x03
        ]
    );
}

#[test]
fn prt_entry_and_buffer() {
    // Package () { 0x0001FFFF, 0, 0, 16 }: PkgLength 1 + 1 + 5 + 1 + 1 + 2 = 11.
    assert_eq!(
        aml(|a| {
            a.int_package(&[0x0001_FFFF, 0, 0, 16]);
        }),
        [
            0x12, 0x0B, 0x04, 0x0C, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00, 0x0A, 0x10
        ]
    );
    // Buffer () { 0x79, 0x00 }: PkgLength 1 + 2 (size 2 as BytePrefix) + 2.
    assert_eq!(
        aml(|a| {
            a.buffer(&[0x79, 0x00]);
        }),
        [0x11, 0x05, 0x0A, 0x02, 0x79, 0x00]
    );
}

#[test]
fn two_byte_pkg_length_in_a_nested_object() {
    // A package of 20 DWords: 100 element bytes + the count, so a 2-byte PkgLength.
    let ints = [0x1_0000u64; 20];
    let b = aml(|a| {
        a.int_package(&ints);
    });
    assert_eq!(b[0], 0x12);
    assert_eq!(decode_pkg_length(&b[1..]), (b.len() - 1, 2));
    assert_eq!(b[3], 20);
}

#[test]
fn overflow_is_reported_not_truncated() {
    let mut buf = [0u8; 8];
    let mut a = Aml::new(&mut buf);
    a.int_package(&[0x1_0000, 0x1_0000]);
    assert!(a.finish().is_none());
    // Room for the contents but not for the PkgLength inserted afterwards.
    let mut buf = [0u8; 4];
    let mut a = Aml::new(&mut buf);
    a.scope("AB", |_| {});
    assert!(a.finish().is_none());
}

proptest! {
    /// Every encodable length decodes back to itself and uses the fewest bytes.
    #[test]
    fn pkg_length_round_trips(n in 0usize..(1 << 28) - 4) {
        let mut o = [0u8; 4];
        let k = pkg_length(n, &mut o).unwrap();
        prop_assert_eq!(decode_pkg_length(&o), (n + k, k));
        if k > 1 {
            prop_assert!(pkg_length_size(n).unwrap() == k);
            let smaller = if k == 2 { 63 } else { (1 << (4 + 8 * (k - 2))) - 1 };
            prop_assert!(n + k - 1 > smaller, "a shorter encoding would not do");
        }
    }

    /// Nested scopes of any size keep every PkgLength consistent with the bytes.
    #[test]
    fn nested_lengths_are_consistent(inner in 0usize..300) {
        let pad = std::vec![0x00u8; inner];
        let b = aml(|a| {
            a.scope("\\_SB", |a| {
                a.device("DEV0", |a| {
                    a.raw(&pad);
                });
            });
        });
        let (outer, k) = decode_pkg_length(&b[1..]);
        prop_assert_eq!(outer, b.len() - 1);
        let dev = 1 + k + 5;
        prop_assert_eq!(&b[dev..dev + 2], &[0x5B, 0x82]);
        let (len, _) = decode_pkg_length(&b[dev + 2..]);
        prop_assert_eq!(len, b.len() - dev - 2);
    }
}
