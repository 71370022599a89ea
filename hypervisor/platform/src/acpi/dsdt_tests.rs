//! The DSDT: exact bytes (derived by hand from the ACPI specification), its table header,
//! and, when `iasl` is installed, ACPICA's own reading of it.

extern crate std;

use super::*;
use std::vec::Vec;

/// The definition block, spelled out: every `PkgLength` computed by hand.
fn expected_aml() -> Vec<u8> {
    let mut e = Vec::new();
    // Name (_S5, Package () { 5, 0, 0, 0 })
    e.extend_from_slice(&[
        0x08, b'_', b'S', b'5', b'_', 0x12, 0x07, 0x04, 0x0A, 0x05, 0, 0, 0,
    ]);
    // Scope (\_SB): 1 + 2 + 5 + 285 bytes; PkgLength 292 = 0x124 → 0x44 0x12.
    e.extend_from_slice(&[0x10, 0x44, 0x12, b'\\', b'_', b'S', b'B', b'_']);
    // Device (PCI0): 2 + 2 + 4 + 277 bytes; PkgLength 283 = 0x11B → 0x4B 0x11.
    e.extend_from_slice(&[0x5B, 0x82, 0x4B, 0x11, b'P', b'C', b'I', b'0']);
    // Name (_HID, EisaId ("PNP0A03")) = 0x030AD041.
    e.extend_from_slice(&[0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, 0x0A, 0x03]);
    e.extend_from_slice(&[0x08, b'_', b'U', b'I', b'D', 0x00]);
    e.extend_from_slice(&[0x08, b'_', b'B', b'B', b'N', 0x00]);
    e.extend_from_slice(&[0x08, b'_', b'A', b'D', b'R', 0x00]);
    // Name (_PRT, Package (8) {...}): PkgLength 2 + 1 + 8 * 12 = 99 = 0x63 → 0x43 0x06.
    e.extend_from_slice(&[0x08, b'_', b'P', b'R', b'T', 0x12, 0x43, 0x06, 0x08]);
    for local in 0..8u8 {
        // Package (4) { 0x000NFFFF, Zero, Zero, 16 + local }: PkgLength 11.
        e.extend_from_slice(&[0x12, 0x0B, 0x04, 0x0C, 0xFF, 0xFF, 1 + local, 0x00]);
        e.extend_from_slice(&[0x00, 0x00, 0x0A, 16 + local]);
    }
    // Name (_CRS, Buffer (134) {...}): PkgLength 2 + 2 + 134 = 138 = 0x8A → 0x4A 0x08.
    e.extend_from_slice(&[0x08, b'_', b'C', b'R', b'S', 0x11, 0x4A, 0x08, 0x0A, 134]);
    // WordBusNumber: bus 0-0, length 1.
    e.extend_from_slice(&[
        0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
    ]);
    // IO (Decode16, 0xCF8, 0xCF8, 1, 8).
    e.extend_from_slice(&[0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08]);
    // WordIO 0xC000-0xC0FF, entire range.
    e.extend_from_slice(&[
        0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0, 0, 0x00, 0xC0, 0xFF, 0xC0,
    ]);
    e.extend_from_slice(&[0, 0, 0x00, 0x01]);
    // QWordMemory 0x40_0000_0000-0x40_00FF_FFFF, non-cacheable, read-write.
    e.extend_from_slice(&[0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x01]);
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&[0, 0, 0, 0, 0x40, 0, 0, 0]);
    e.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0x00, 0x40, 0, 0, 0]);
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&[0, 0, 0, 0x01, 0, 0, 0, 0]);
    // QWordMemory 0x40_4000_0000-0x40_5FFF_FFFF (the bulk windows), the same flags.
    e.extend_from_slice(&[0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x01]);
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&[0, 0, 0, 0x40, 0x40, 0, 0, 0]);
    e.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0x5F, 0x40, 0, 0, 0]);
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&[0, 0, 0, 0x20, 0, 0, 0, 0]);
    // End tag.
    e.extend_from_slice(&[0x79, 0x00]);
    e
}

#[test]
fn dsdt_bytes_are_exactly_the_hand_encoding() {
    let (m, t) = guest();
    let e = expected_aml();
    assert_eq!(e.len(), 306);
    let d = table(&m, t.dsdt, b"DSDT", HEADER_LEN + e.len());
    assert_eq!(d[8], 2, "revision 2: 64-bit integers");
    assert_eq!(&d[36..], &e[..]);
}

#[test]
fn prt_routes_every_channel_slot_to_its_gsi() {
    use bulkhead_abi::guest_pci::{FIRST_CHANNEL_GSI, FIRST_CHANNEL_SLOT};
    for local in 0..8u8 {
        let [addr, pin, source, gsi] = dsdt::prt_entry(local);
        assert_eq!(
            addr >> 16,
            u64::from(FIRST_CHANNEL_SLOT + local),
            "device number"
        );
        assert_eq!(addr & 0xFFFF, 0xFFFF, "any function");
        assert_eq!((pin, source), (0, 0), "INTA, a GSI");
        assert_eq!(gsi, u64::from(FIRST_CHANNEL_GSI + u32::from(local)));
        assert!(gsi < 24, "an input of the I/O APIC");
    }
}

#[test]
fn crs_windows_cover_every_channel_bar() {
    use bulkhead_abi::channel::{MAX_BULK_SIZE, MAX_CHANNEL_SIZE, bulk_window, window};
    use bulkhead_abi::guest_pci::{IO_BASE, IO_STRIDE};
    let c = dsdt::crs();
    let io_min = u16::from_le_bytes([c[32], c[33]]);
    let io_max = u16::from_le_bytes([c[34], c[35]]);
    // Field `i` of the QWord descriptor at `at`.
    let q = |at: usize, i: usize| {
        u64::from_le_bytes(c[at + 6 + 8 * i..at + 14 + 8 * i].try_into().unwrap())
    };
    let (mem_min, mem_max, mem_len) = (q(40, 1), q(40, 2), q(40, 4));
    assert_eq!(mem_max - mem_min + 1, mem_len);
    let (bulk_min, bulk_max, bulk_len) = (q(86, 1), q(86, 2), q(86, 4));
    assert_eq!(bulk_max - bulk_min + 1, bulk_len);
    assert!(mem_max < bulk_min, "the windows do not overlap");
    assert_eq!(u32::from(io_max - io_min) + 1, 0x100);
    for i in 0..8usize {
        let io = IO_BASE + IO_STRIDE * i as u16;
        assert!(io >= io_min && io + IO_STRIDE - 1 <= io_max);
        let bar = window(i);
        assert!(bar >= mem_min && bar + MAX_CHANNEL_SIZE - 1 <= mem_max);
        let bar4 = bulk_window(i);
        assert!(bar4 >= bulk_min && bar4 + MAX_BULK_SIZE - 1 <= bulk_max);
    }
}

/// ACPICA's disassembler reads the DSDT back as the ASL in `dsdt.rs`. Skipped (passes) when
/// `iasl` is not installed (`apt-get install acpica-tools`).
#[test]
fn iasl_disassembles_the_dsdt() {
    use std::process::Command;
    if Command::new("iasl").arg("-v").output().is_err() {
        std::eprintln!("iasl not installed: skipping");
        return;
    }
    let (m, t) = guest();
    let d = &m.0[t.dsdt as usize..][..dsdt_len(&m, &t)];
    let dir = std::env::temp_dir().join(std::format!("bulkhead-dsdt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let aml = dir.join("dsdt.aml");
    std::fs::write(&aml, d).unwrap();
    let out = Command::new("iasl")
        .arg("-d")
        .arg(&aml)
        .current_dir(&dir)
        .output()
        .unwrap();
    let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "iasl -d: {}",
        std::string::String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "Name (_S5, Package (0x04)",
        "Scope (\\_SB)",
        "Device (PCI0)",
        "Name (_HID, EisaId (\"PNP0A03\")",
        "Name (_BBN, Zero)",
        "Name (_PRT, Package (0x08)",
        "0x0001FFFF",
        "0x0008FFFF",
        "0x17",
        "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
        "IO (Decode16,",
        "WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,",
        "QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,",
        "0x0000004000FFFFFF",
        "0x000000405FFFFFFF",
    ] {
        assert!(dsl.contains(needle), "{needle:?} missing from:\n{dsl}");
    }
    assert!(!dsl.contains("Unknown"), "{dsl}");
}
