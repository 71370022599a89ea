extern crate std;

use super::*;
use bulkhead_hvcore::acpi;
use bulkhead_hvcore::bootinfo::PhysRead;
use proptest::prelude::*;
use std::vec::Vec;

const BASE: u64 = 0xe0000;

/// Guest-physical memory from 0, for the hypervisor's ACPI parser.
struct Mem(Vec<u8>);

impl PhysRead for Mem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Ok(a) = usize::try_from(addr) else {
            return false;
        };
        match a.checked_add(buf.len()).and_then(|e| self.0.get(a..e)) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// Guest memory of 1 MiB with the tables of a one-vCPU guest at 0xe0000.
fn guest() -> (Mem, AcpiTables) {
    guest_with(1)
}

/// Guest memory of 1 MiB with the tables of a guest with `cpus` vCPUs at 0xe0000.
fn guest_with(cpus: u8) -> (Mem, AcpiTables) {
    let mut m = std::vec![0u8; 0x10_0000];
    let t = build(&mut m[BASE as usize..], BASE, cpus).unwrap();
    (Mem(m), t)
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
}

/// The table at `addr`: signature, length and checksum checked.
fn table<'a>(m: &'a Mem, addr: u64, sig: &[u8; 4], len: usize) -> &'a [u8] {
    let a = addr as usize;
    let t = &m.0[a..a + len];
    assert_eq!(&t[..4], sig);
    assert_eq!(
        u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
        len
    );
    assert_eq!(sum(t), 0, "{} checksum", std::str::from_utf8(sig).unwrap());
    assert_eq!(&t[10..16], b"BLKHD ");
    t
}

/// The DSDT's length, from its header.
fn dsdt_len(m: &Mem, t: &AcpiTables) -> usize {
    u32_at(&m.0, t.dsdt as usize + 4) as usize
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn the_hypervisors_parser_reads_them_back() {
    let (m, t) = guest();
    assert_eq!(acpi::scan_rsdp(&m), Some(BASE), "found where Linux scans");
    assert_eq!(t.rsdp, BASE);
    let found = acpi::tables(&m, t.rsdp).unwrap();
    assert_eq!(found.tables.len(), 2);
    assert_eq!(found.find(b"FACP"), Some(t.fadt));
    assert_eq!(found.find(b"APIC"), Some(t.madt));
}

#[test]
fn rsdp_is_revision_2_with_both_checksums() {
    let (m, t) = guest();
    let r = &m.0[t.rsdp as usize..t.rsdp as usize + 36];
    assert_eq!(&r[..8], b"RSD PTR ");
    assert_eq!(r[15], 2);
    assert_eq!(sum(&r[..20]), 0);
    assert_eq!(sum(r), 0);
    assert_eq!(u32_at(r, 16), 0, "no RSDT");
    assert_eq!(u32_at(r, 20), 36);
    assert_eq!(u64_at(r, 24), t.xsdt);
    let x = table(&m, t.xsdt, b"XSDT", 52);
    assert_eq!(u64_at(x, 36), t.fadt);
    assert_eq!(u64_at(x, 44), t.madt);
}

#[test]
fn madt_entries_byte_by_byte() {
    let (m, t) = guest();
    let a = table(&m, t.madt, b"APIC", 74);
    assert_eq!(a[8], 5, "revision");
    assert_eq!(u32_at(a, 36), 0xfee0_0000);
    assert_eq!(u32_at(a, 40), 0, "no PCAT_COMPAT");
    // Processor Local APIC: type 0, length 8, UID 0, APIC id 0, flags Enabled.
    assert_eq!(a[44..52], [0, 8, 0, 0, 1, 0, 0, 0]);
    // I/O APIC: type 1, length 12, id 0, reserved, 0xfec00000, GSI base 0.
    assert_eq!(a[52..64], [1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]);
    // Interrupt source override: type 2, length 10, bus ISA, IRQ 9 → GSI 9, level low.
    assert_eq!(a[64..74], [2, 10, 0, 9, 9, 0, 0, 0, 0x0f, 0]);
}

#[test]
fn madt_lists_one_enabled_local_apic_per_cpu() {
    for cpus in 1..=MAX_GUEST_CPUS {
        let (m, t) = guest_with(cpus);
        let len = 74 + 8 * (usize::from(cpus) - 1);
        let a = table(&m, t.madt, b"APIC", len);
        for k in 0..cpus {
            let at = 44 + 8 * usize::from(k);
            assert_eq!(
                a[at..at + 8],
                [0, 8, k, k, 1, 0, 0, 0],
                "{cpus} CPUs, entry {k}"
            );
        }
        let rest = 44 + 8 * usize::from(cpus);
        assert_eq!(a[rest], 1, "the I/O APIC follows");
        assert_eq!(a[rest + 12..], [2, 10, 0, 9, 9, 0, 0, 0, 0x0f, 0]);
        // the hypervisor's own MADT parser reads them back
        let parsed = acpi::madt(&m, t.madt).unwrap();
        assert_eq!(parsed.local_apic_addr, 0xfee0_0000);
        let ids: Vec<(u32, u32)> = parsed.cpus.iter().map(|c| (c.apic_id, c.uid)).collect();
        let want: Vec<(u32, u32)> = (0..u32::from(cpus)).map(|k| (k, k)).collect();
        assert_eq!(ids, want);
        assert_eq!(parsed.skipped, 0);
        let found = acpi::tables(&m, t.rsdp).unwrap();
        assert_eq!(found.find(b"APIC"), Some(t.madt));
    }
}

#[test]
fn fadt_describes_pm1a_and_points_to_dsdt_and_facs() {
    let (m, t) = guest();
    let f = table(&m, t.fadt, b"FACP", 276);
    assert_eq!(f[8], 6, "revision");
    assert_eq!(f[131], 3, "minor version");
    assert_eq!(u32_at(f, 36) as u64, t.facs);
    assert_eq!(u32_at(f, 40) as u64, t.dsdt);
    assert_eq!(u64_at(f, 132), t.facs);
    assert_eq!(u64_at(f, 140), t.dsdt);
    assert_eq!(u16_at(f, 46), 9, "SCI");
    assert_eq!(u32_at(f, 48), 0, "no SMI_CMD: always in ACPI mode");
    assert_eq!(u32_at(f, 56), 0x600);
    assert_eq!(u32_at(f, 64), 0x604);
    assert_eq!(u32_at(f, 76), 0, "no PM timer");
    assert_eq!(u32_at(f, 80), 0, "no GPE0");
    assert_eq!((f[88], f[89]), (4, 2));
    assert_eq!(f[148..160], [1, 32, 0, 2, 0, 6, 0, 0, 0, 0, 0, 0]);
    assert_eq!(f[172..184], [1, 16, 0, 2, 4, 6, 0, 0, 0, 0, 0, 0]);
    assert_eq!(u32_at(f, 112) & (1 << 20), 0, "not hardware-reduced");
    assert_eq!(u16_at(f, 109), 0b100, "no VGA, no 8042; a CMOS RTC");
    assert_eq!(f[108], RTC_CENTURY, "the RTC's century byte");
    assert_eq!(f[244..268], [0; 24], "no sleep registers");
    let facs = &m.0[t.facs as usize..t.facs as usize + 64];
    assert_eq!(t.facs % 64, 0);
    assert_eq!(&facs[..4], b"FACS");
    assert_eq!(u32_at(facs, 4), 64);
}

#[test]
fn tables_do_not_overlap_and_fit() {
    for cpus in 1..=MAX_GUEST_CPUS {
        let (m, t) = guest_with(cpus);
        let mut r = [
            (t.rsdp, RSDP_LEN),
            (t.facs, FACS_LEN),
            (t.xsdt, XSDT_LEN),
            (t.madt, madt_len(cpus)),
            (t.fadt, FADT_LEN),
            (t.dsdt, dsdt_len(&m, &t)),
        ];
        r.sort();
        for w in r.windows(2) {
            assert!(w[0].0 + w[0].1 as u64 <= w[1].0, "{cpus} CPUs: {w:x?}");
        }
        assert!(r[5].0 + r[5].1 as u64 <= BASE + TABLES_LEN as u64);
        assert_eq!(t.len, TABLES_LEN);
    }
}

#[test]
fn the_described_poweroff_is_what_the_pm_block_recognises() {
    use crate::pm::{Pm, PmEffect, SLP_EN};
    let write = |v: u16| Pm::new().write(PM1A_CNT_PORT, 2, u32::from(v));
    assert_eq!(write((S5_SLP_TYP << 10) | SLP_EN), PmEffect::PowerOff);
    assert_eq!(write((S5_SLP_TYP << 10) | SLP_EN | 1), PmEffect::PowerOff);
    assert_eq!(write(S5_SLP_TYP << 10), PmEffect::None, "SLP_EN missing");
    assert_eq!(write((3 << 10) | SLP_EN), PmEffect::None, "S3");
    assert_eq!(write(0), PmEffect::None);
}

#[test]
fn rejects_bad_buffers_and_bases() {
    let mut small = [0u8; TABLES_LEN - 1];
    assert_eq!(build(&mut small, BASE, 1), Err(BuildError::BufferTooSmall));
    assert_eq!(
        build(&mut small, BASE, MAX_GUEST_CPUS),
        Err(BuildError::BufferTooSmall)
    );
    let mut buf = [0u8; TABLES_LEN];
    assert_eq!(build(&mut buf, BASE + 16, 1), Err(BuildError::BadBase));
    assert_eq!(build(&mut buf, (1 << 32) - 64, 1), Err(BuildError::BadBase));
    assert_eq!(build(&mut buf, !63, 1), Err(BuildError::BadBase));
    assert!(build(&mut buf, (1 << 32) - TABLES_LEN as u64, 1).is_ok());
    assert!(build(&mut buf, BASE, MAX_GUEST_CPUS).is_ok());
    assert_eq!(build(&mut buf, BASE, 0), Err(BuildError::BadCpuCount));
    assert_eq!(
        build(&mut buf, BASE, MAX_GUEST_CPUS + 1),
        Err(BuildError::BadCpuCount)
    );
    assert_eq!(build(&mut buf, BASE, u8::MAX), Err(BuildError::BadCpuCount));
}

#[path = "dsdt_tests.rs"]
mod dsdt_tests;

proptest! {
    /// Wherever they go, and whatever the buffer held, the tables parse and sum to zero.
    #[test]
    fn any_base_gives_valid_tables(
        slot in 0u64..0x3000, junk in any::<u8>(), cpus in 1..=MAX_GUEST_CPUS,
    ) {
        let base = slot * 64;
        let mut m = std::vec![junk; (base as usize) + TABLES_LEN + 64];
        let t = build(&mut m[base as usize..], base, cpus).unwrap();
        let mem = Mem(m);
        let found = acpi::tables(&mem, t.rsdp).unwrap();
        prop_assert_eq!(found.find(b"APIC"), Some(t.madt));
        prop_assert_eq!(found.find(b"FACP"), Some(t.fadt));
        let lens = [
            (t.xsdt, XSDT_LEN),
            (t.madt, madt_len(cpus)),
            (t.fadt, FADT_LEN),
            (t.dsdt, dsdt_len(&mem, &t)),
        ];
        for (addr, len) in lens {
            let a = addr as usize;
            prop_assert_eq!(sum(&mem.0[a..a + len]), 0);
        }
        prop_assert_eq!(mem.0[base as usize + TABLES_LEN], junk, "nothing written past the tables");
        prop_assert_eq!(acpi::madt(&mem, t.madt).unwrap().cpus.len(), usize::from(cpus));
    }
}
