extern crate std;

use super::*;
use crate::test_memory::{Mem, put};
use proptest::prelude::*;
use std::vec::Vec as StdVec;

/// Where the tables are put.
const AT: u64 = 0x1000;

/// A Processor Local APIC entry (type 0).
fn lapic(uid: u8, id: u8, flags: u32) -> StdVec<u8> {
    let mut e = std::vec![0, 8, uid, id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

/// A Processor Local x2APIC entry (type 9).
fn x2apic(id: u32, flags: u32, uid: u32) -> StdVec<u8> {
    let mut e = std::vec![9, 16, 0, 0];
    for v in [id, flags, uid] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e
}

/// A Local APIC Address Override entry (type 5).
fn lapic_override(addr: u64) -> StdVec<u8> {
    let mut e = std::vec![5, 12, 0, 0];
    e.extend_from_slice(&addr.to_le_bytes());
    e
}

/// What QEMU adds after its processors: an I/O APIC, two interrupt source overrides and a
/// local APIC NMI for every processor.
fn qemu_rest() -> StdVec<u8> {
    let mut e = std::vec![1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0];
    e.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]);
    e.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    e
}

/// Memory holding, at [`AT`], a table `sig` with the local APIC at `lapic_addr` and
/// `entries`, its length and checksum right.
fn table(sig: &[u8; 4], lapic_addr: u32, entries: &[StdVec<u8>]) -> Mem {
    let mut body = StdVec::new();
    body.extend_from_slice(&lapic_addr.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
    for e in entries {
        body.extend_from_slice(e);
    }
    let mut m = std::vec![0u8; 0x2000];
    let at = AT as usize;
    put(&mut m, at, sig);
    put(&mut m, at + 4, &(36 + body.len() as u32).to_le_bytes());
    m[at + 8] = 5;
    put(&mut m, at + 36, &body);
    reseal(&mut m);
    Mem(m)
}

/// Makes the checksum right again after an edit.
fn reseal(m: &mut [u8]) {
    let at = AT as usize;
    let len = u32::from_le_bytes(m[at + 4..at + 8].try_into().unwrap()) as usize;
    m[at + 9] = 0;
    let s = m[at..at + len].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    m[at + 9] = 0u8.wrapping_sub(s);
}

fn ids(m: &Madt) -> StdVec<(u32, u32)> {
    m.cpus.iter().map(|c| (c.apic_id, c.uid)).collect()
}

#[test]
fn reads_a_qemu_table_with_four_cpus() {
    let mut entries: StdVec<_> = (0..4).map(|i| lapic(i, i, 1)).collect();
    entries.push(qemu_rest());
    let m = madt(&table(b"APIC", 0xfee0_0000, &entries), AT).unwrap();
    assert_eq!(m.local_apic_addr, 0xfee0_0000);
    assert_eq!(ids(&m), [(0, 0), (1, 1), (2, 2), (3, 3)]);
    assert_eq!(m.skipped, 0);
    assert_eq!(m.cpu_order(0).as_slice(), [0, 1, 2, 3]);
    assert_eq!(m.cpu_order(2).as_slice(), [2, 0, 1, 3]);
}

#[test]
fn keeps_enabled_and_online_capable_processors_once() {
    let entries = [
        lapic(0, 0, 1),
        lapic(1, 1, 0),    // disabled
        lapic(2, 2, 2),    // online capable
        lapic(3, 0xff, 1), // the broadcast ID
        lapic(4, 0, 1),    // APIC ID 0 again
        x2apic(300, 1, 40),
        x2apic(2, 1, 41), // APIC ID 2 again
        x2apic(301, 0, 42),
        x2apic(302, 2, 43),
        x2apic(u32::MAX, 1, 44),
    ];
    let m = madt(&table(b"APIC", 0xfee0_0000, &entries), AT).unwrap();
    assert_eq!(ids(&m), [(0, 0), (2, 2), (300, 40), (302, 43)]);
    assert_eq!(m.cpu_order(300).as_slice(), [300, 0, 2, 302]);
}

#[test]
fn an_override_moves_the_local_apic() {
    let entries = [
        lapic(0, 0, 1),
        lapic_override(0x1_fee0_0000),
        lapic(1, 1, 1),
    ];
    let m = madt(&table(b"APIC", 0xfee0_0000, &entries), AT).unwrap();
    assert_eq!(m.local_apic_addr, 0x1_fee0_0000);
    assert_eq!(m.cpus.len(), 2);
}

#[test]
fn counts_the_processors_that_do_not_fit() {
    let entries: StdVec<_> = (0..20).map(|i| lapic(i, i, 1)).collect();
    let m = madt(&table(b"APIC", 0xfee0_0000, &entries), AT).unwrap();
    assert_eq!(m.cpus.len(), MAX_CPUS);
    assert_eq!(m.skipped, 20 - MAX_CPUS as u32);
    // A boot CPU the list has no room for is still CPU 0.
    let order = m.cpu_order(19);
    assert_eq!(order.len(), MAX_CPUS);
    assert_eq!(order[..3], [19, 0, 1]);
    assert_eq!(order[MAX_CPUS - 1], MAX_CPUS as u32 - 2);
}

#[test]
fn no_processors_is_an_empty_list() {
    let m = madt(&table(b"APIC", 0xfee0_0000, &[]), AT).unwrap();
    assert!(m.cpus.is_empty());
    assert_eq!(m.cpu_order(7).as_slice(), [7]);
}

#[test]
fn refuses_broken_tables() {
    let apic = *b"APIC";
    let t = |entries: &[StdVec<u8>]| madt(&table(b"APIC", 0xfee0_0000, entries), AT);
    assert_eq!(t(&[std::vec![0, 0]]), Err(AcpiError::Length(apic)));
    assert_eq!(t(&[std::vec![7, 1]]), Err(AcpiError::Length(apic)));
    // An entry running past the table, a processor entry too short for its fields.
    assert_eq!(t(&[std::vec![1, 12, 0, 0]]), Err(AcpiError::Length(apic)));
    let mut short = lapic(0, 0, 1);
    short[1] = 6;
    assert_eq!(t(&[short[..6].into()]), Err(AcpiError::Length(apic)));
    let mut short = x2apic(1, 1, 1);
    short[1] = 12;
    assert_eq!(t(&[short[..12].into()]), Err(AcpiError::Length(apic)));
    assert_eq!(
        t(&[std::vec![5, 8, 0, 0, 0, 0, 0, 0]]),
        Err(AcpiError::Length(apic))
    );
    // A trailing byte is an entry header cut short.
    assert_eq!(t(&[std::vec![0]]), Err(AcpiError::Length(apic)));
    let mut m = table(b"APIC", 0xfee0_0000, &[lapic(0, 0, 1)]);
    m.0[AT as usize + 36 + 8 + 3] = 1; // inside the entry
    assert_eq!(madt(&m, AT), Err(AcpiError::Checksum(apic)));
    let m = table(b"FACP", 0xfee0_0000, &[lapic(0, 0, 1)]);
    assert_eq!(madt(&m, AT), Err(AcpiError::Signature(*b"FACP")));
    // A header without the local APIC address and flags.
    let mut m = table(b"APIC", 0xfee0_0000, &[]);
    m.0[AT as usize + 4] = 40;
    reseal(&mut m.0);
    assert_eq!(madt(&m, AT), Err(AcpiError::Length(apic)));
    assert_eq!(madt(&m, 0x1ff0), Err(AcpiError::Unreadable(0x1ff0)));
}

/// Every `Ok` keeps the promises of [`Madt`].
fn well_formed(m: &Madt) -> bool {
    let unique = m
        .cpus
        .iter()
        .enumerate()
        .all(|(i, c)| m.cpus[..i].iter().all(|o| o.apic_id != c.apic_id));
    unique && m.cpu_order(0).len() <= MAX_CPUS
}

proptest! {
    #[test]
    fn random_entries_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let m = table(b"APIC", 0xfee0_0000, &[body]);
        if let Ok(madt) = madt(&m, AT) {
            prop_assert!(well_formed(&madt));
        }
    }

    #[test]
    fn edited_tables_never_panic(
        edits in proptest::collection::vec((0usize..0x80, any::<u8>()), 1..8),
        seal in any::<bool>(),
    ) {
        let mut entries: StdVec<_> = (0..4).map(|i| lapic(i, i, 1)).collect();
        entries.push(x2apic(300, 1, 4));
        entries.push(qemu_rest());
        let mut m = table(b"APIC", 0xfee0_0000, &entries);
        for (at, v) in edits {
            m.0[AT as usize + at] = v;
        }
        if seal && (36..=0x1000).contains(&u32::from_le_bytes(m.0[0x1004..0x1008].try_into().unwrap())) {
            reseal(&mut m.0);
        }
        if let Ok(madt) = madt(&m, AT) {
            prop_assert!(well_formed(&madt));
        }
    }
}

#[test]
fn smt_off_keeps_the_first_thread_of_each_core() {
    // Two cores of two threads (APIC IDs 0, 1 | 2, 3), listed threads first as many
    // firmwares do: 0, 2, 1, 3.
    let entries: StdVec<_> = [0u8, 2, 1, 3].iter().map(|&i| lapic(i, i, 1)).collect();
    let m = madt(&table(b"APIC", 0xfee0_0000, &entries), AT).unwrap();
    let (kept, left) = m.without_smt_siblings(1);
    assert_eq!((kept.as_slice(), left), (&[0, 2][..], 2));
    // No SMT (QEMU's default topology): every CPU stays.
    let (kept, left) = m.without_smt_siblings(0);
    assert_eq!((kept.as_slice(), left), (&[0, 2, 1, 3][..], 0));
}
