extern crate std;

use super::*;
use crate::test_memory::{Mem, put};
use proptest::prelude::*;
use std::vec::Vec as StdVec;

/// Writes a table with a correct header checksum at `at`.
fn table(m: &mut [u8], at: usize, sig: &[u8; 4], body: &[u8]) {
    let len = 36 + body.len();
    put(m, at, sig);
    put(m, at + 4, &(len as u32).to_le_bytes());
    m[at + 8] = 1;
    put(m, at + 36, body);
    m[at + 9] = 0;
    let s = m[at..at + len].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    m[at + 9] = 0u8.wrapping_sub(s);
}

/// Makes the checksum of the table at `at` right again after an edit.
fn reseal(m: &mut [u8], at: usize) {
    let len = u32::from_le_bytes(m[at + 4..at + 8].try_into().unwrap()) as usize;
    m[at + 9] = 0;
    let s = m[at..at + len].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    m[at + 9] = 0u8.wrapping_sub(s);
}

/// RSDP (revision 2) at 0xe0010 → XSDT at 0x1000 → MCFG at 0x2000, DMAR at 0x3000.
fn firmware() -> Mem {
    let mut m = std::vec![0u8; 0x10_0000];
    let mut rsdp = [0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[15] = 2;
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    rsdp[24..32].copy_from_slice(&0x1000u64.to_le_bytes());
    let s = rsdp[..20].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    rsdp[8] = 0u8.wrapping_sub(s);
    let s = rsdp.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    rsdp[32] = 0u8.wrapping_sub(s);
    put(&mut m, 0xe0010, &rsdp);
    let mut xsdt = StdVec::new();
    xsdt.extend_from_slice(&0x2000u64.to_le_bytes());
    xsdt.extend_from_slice(&0x3000u64.to_le_bytes());
    table(&mut m, 0x1000, b"XSDT", &xsdt);
    let mut mcfg = std::vec![0u8; 8];
    mcfg.extend_from_slice(&0xb000_0000u64.to_le_bytes());
    mcfg.extend_from_slice(&[0, 0, 0, 0xff, 0, 0, 0, 0]);
    table(&mut m, 0x2000, b"MCFG", &mcfg);
    let mut dmar = std::vec![38, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // An RMRR (type 1) to skip, then a DRHD (type 0) with INCLUDE_PCI_ALL.
    dmar.extend_from_slice(&[1, 0, 24, 0]);
    dmar.extend_from_slice(&[0; 20]);
    dmar.extend_from_slice(&[0, 0, 16, 0, 1, 0, 0, 0]);
    dmar.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
    // A second unit listing one endpoint (00:03.0) and one bridge (00:1e.0).
    dmar.extend_from_slice(&[0, 0, 32, 0, 0, 0, 0, 0]);
    dmar.extend_from_slice(&0xfed9_1000u64.to_le_bytes());
    dmar.extend_from_slice(&[1, 8, 0, 0, 0, 0, 3, 0]);
    dmar.extend_from_slice(&[2, 8, 0, 0, 0, 0, 0x1e, 0]);
    table(&mut m, 0x3000, b"DMAR", &dmar);
    Mem(m)
}

#[test]
fn finds_mcfg_and_dmar_through_the_xsdt() {
    let m = firmware();
    let rsdp = scan_rsdp(&m).expect("rsdp found by scanning");
    assert_eq!(rsdp, 0xe0010);
    let t = tables(&m, rsdp).unwrap();
    assert_eq!(t.find(b"MCFG"), Some(0x2000));
    let ecam = mcfg(&m, 0x2000).unwrap();
    assert_eq!(
        ecam.iter()
            .copied()
            .collect::<std::vec::Vec<_>>()
            .as_slice(),
        &[Ecam {
            base: 0xb000_0000,
            segment: 0,
            bus_start: 0,
            bus_end: 0xff
        }]
    );
    let d = dmar(&m, t.find(b"DMAR").unwrap()).unwrap();
    assert_eq!(d.host_address_width, 39);
    assert_eq!(d.units.len(), 2);
    assert_eq!(
        (d.units[0].base, d.units[0].segment, d.units[0].include_all),
        (0xfed9_0000, 0, true)
    );
    assert!(d.units[0].covers(5, 1, 0));
    let scoped = &d.units[1];
    assert!(!scoped.include_all);
    assert!(scoped.covers(0, 3, 0) && scoped.covers(0, 0x1e, 0));
    assert!(!scoped.covers(0, 4, 0));
}

#[test]
fn refuses_bad_checksums_and_lengths() {
    let mut m = firmware();
    m.0[0x2000 + 40] ^= 1; // inside the MCFG
    assert_eq!(mcfg(&m, 0x2000), Err(AcpiError::Checksum(*b"MCFG")));
    let mut m = firmware();
    m.0[0x3000 + 36 + 12 + 2] = 200; // RMRR length runs past the table
    reseal(&mut m.0, 0x3000);
    assert_eq!(dmar(&m, 0x3000), Err(AcpiError::Length(*b"DMAR")));
    let m = firmware();
    assert_eq!(tables(&m, 0xe0000), Err(AcpiError::Checksum(*b"RSDP")));
    assert_eq!(
        tables(&m, 0xfff_0000),
        Err(AcpiError::Unreadable(0xfff_0000))
    );
}

proptest! {
    #[test]
    fn broken_firmware_never_panics(edits in proptest::collection::vec((0usize..0x4000, any::<u8>()), 1..8)) {
        let mut m = firmware();
        for (at, v) in edits {
            m.0[at] = v;
        }
        let rsdp = scan_rsdp(&m).unwrap_or(0xe0010);
        if let Ok(t) = tables(&m, rsdp) {
            for (_, a) in t.tables.iter() {
                let _ = mcfg(&m, *a);
                let _ = dmar(&m, *a);
            }
        }
        let _ = mcfg(&m, 0x2000);
        let _ = dmar(&m, 0x3000);
    }
}
