//! Writing the ACPI tables a Linux qube boots with: RSDP (revision 2) → XSDT → MADT and
//! FADT, the FADT → FACS and DSDT. The kernel finds its interrupt controllers only through
//! the MADT; the FADT and the DSDT's `\_S5` give it a poweroff the hypervisor can trap.
//!
//! Choices (see `docs/appvm.md`):
//! - MADT: LAPIC at 0xfee00000, one enabled Processor Local APIC per vCPU (UID k, APIC id k
//!   for k in 0..`cpus`, at most [`MAX_GUEST_CPUS`]), one I/O APIC (id 0 at 0xfec00000, GSI
//!   base 0), and one interrupt source override, ISA IRQ 9 (the SCI) → GSI 9
//!   level/active-low. The UART's IRQ 4 needs none: ISA IRQs are identity-mapped,
//!   edge/active-high, by default. No dual-8259 (`PCAT_COMPAT` clear).
//! - FADT: revision 6, *not* hardware-reduced. Hardware-reduced ACPI makes Linux drop the
//!   legacy PIC before it parses the MADT, and with it the default ISA IRQ mappings the
//!   8250 UART on IRQ 4 relies on. Instead the classic fixed hardware is reduced to a PM1a
//!   event block ([`PM1A_EVT_PORT`], 4 bytes) and a PM1a control block ([`PM1A_CNT_PORT`],
//!   2 bytes) at I/O ports the hypervisor traps; `SMI_CMD` 0 (already in ACPI mode), no PM
//!   timer, no GPE blocks. Poweroff is the write [`crate::pm`] recognises.
//! - DSDT ([`dsdt`]): `Name (\_S5, Package () { 5, 0, 0, 0 })`, so Linux can enter S5, and
//!   the PCI root bridge `\_SB.PCI0` with the `_PRT` that routes the channel devices' INTA
//!   to their GSIs and a `_CRS` whose windows hold the channel devices' BARs.

/// Where the OEM fields say the tables come from.
pub const OEM_ID: [u8; 6] = *b"BLKHD ";
/// OEM table id.
pub const OEM_TABLE_ID: [u8; 8] = *b"BULKHEAD";
/// Local APIC address (the [`crate::lapic`] page).
pub const LAPIC_ADDR: u32 = crate::lapic::LAPIC_BASE as u32;
/// I/O APIC address (the [`crate::ioapic`] page).
pub const IOAPIC_ADDR: u32 = crate::ioapic::IOAPIC_BASE as u32;
/// I/O APIC id.
pub const IOAPIC_ID: u8 = 0;
/// Most vCPUs a guest's MADT lists (APIC ids 0..8).
pub const MAX_GUEST_CPUS: u8 = 8;
/// The SCI's ISA IRQ (and GSI). Never raised: no fixed events are emulated.
pub const SCI_IRQ: u8 = 9;
/// PM1a event block ([`crate::pm`]): status (2 bytes) then enable (2 bytes).
pub const PM1A_EVT_PORT: u16 = crate::pm::PM1A_EVT;
/// PM1a control block ([`crate::pm`], 2 bytes); reads `SCI_EN` set (`SMI_CMD` 0: ACPI mode).
pub const PM1A_CNT_PORT: u16 = crate::pm::PM1A_CNT;
/// `SLP_TYP` of S5 in the DSDT's `\_S5`: what [`crate::pm`] takes as poweroff.
pub const S5_SLP_TYP: u16 = crate::pm::S5_SLP_TYP;
/// The CMOS byte of the RTC that holds the century (the FADT's `CENTURY`).
pub const RTC_CENTURY: u8 = crate::rtc::CENTURY;

/// Why the tables could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The buffer is shorter than [`TABLES_LEN`].
    BufferTooSmall,
    /// The base is not 64-byte aligned (the FACS needs it) or the tables would not lie
    /// below 4 GiB (the RSDP's and FADT's 32-bit pointers).
    BadBase,
    /// The DSDT's AML does not fit in the space reserved for it (a bug).
    DsdtTooLarge,
    /// The number of CPUs is 0 or above [`MAX_GUEST_CPUS`].
    BadCpuCount,
}

/// Offsets of each table from the base, and the total length.
const RSDP_OFF: usize = 0x000;
const FACS_OFF: usize = 0x040;
const XSDT_OFF: usize = 0x080;
const MADT_OFF: usize = 0x0c0;
const FADT_OFF: usize = 0x150;
const DSDT_OFF: usize = 0x280;
/// Bytes the tables take (the DSDT may use everything from [`DSDT_OFF`]).
pub const TABLES_LEN: usize = 0x400;

const HEADER_LEN: usize = 36;
const RSDP_LEN: usize = 36;
const FACS_LEN: usize = 64;
const XSDT_LEN: usize = HEADER_LEN + 2 * 8;
const FADT_LEN: usize = 276;
/// Most bytes the DSDT may take.
const DSDT_MAX: usize = TABLES_LEN - DSDT_OFF;

/// The MADT's length with `cpus` processors: header, local APIC address and flags, one
/// Processor Local APIC entry (8 bytes) per CPU, the I/O APIC (12) and the override (10).
const fn madt_len(cpus: u8) -> usize {
    HEADER_LEN + 8 + 8 * cpus as usize + 12 + 10
}

// The largest MADT fits before the FADT, and the FADT before the DSDT.
const _: () = assert!(MADT_OFF + madt_len(MAX_GUEST_CPUS) <= FADT_OFF);
const _: () = assert!(FADT_OFF + FADT_LEN <= DSDT_OFF);

/// Guest-physical addresses of the tables written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// The RSDP (give it to Linux as `acpi_rsdp_addr`).
    pub rsdp: u64,
    /// The XSDT.
    pub xsdt: u64,
    /// The MADT.
    pub madt: u64,
    /// The FADT.
    pub fadt: u64,
    /// The FACS.
    pub facs: u64,
    /// The DSDT.
    pub dsdt: u64,
    /// Bytes used from the base.
    pub len: usize,
}

/// Writes the tables for a guest with `cpus` vCPUs (APIC ids 0..`cpus`) into `buf`, which
/// the guest sees at `base`. `buf` must hold at least [`TABLES_LEN`] bytes, whatever `cpus`.
pub fn build(buf: &mut [u8], base: u64, cpus: u8) -> Result<AcpiTables, BuildError> {
    if cpus == 0 || cpus > MAX_GUEST_CPUS {
        return Err(BuildError::BadCpuCount);
    }
    let buf = buf
        .get_mut(..TABLES_LEN)
        .ok_or(BuildError::BufferTooSmall)?;
    if !base.is_multiple_of(64)
        || base
            .checked_add(TABLES_LEN as u64)
            .is_none_or(|end| end > 1 << 32)
    {
        return Err(BuildError::BadBase);
    }
    buf.fill(0);
    let t = AcpiTables {
        rsdp: base + RSDP_OFF as u64,
        xsdt: base + XSDT_OFF as u64,
        madt: base + MADT_OFF as u64,
        fadt: base + FADT_OFF as u64,
        facs: base + FACS_OFF as u64,
        dsdt: base + DSDT_OFF as u64,
        len: TABLES_LEN,
    };

    // RSDP: revision 2, RSDT 0, XSDT, both checksums.
    let r = &mut buf[RSDP_OFF..RSDP_OFF + RSDP_LEN];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(&OEM_ID);
    r[15] = 2;
    r[20..24].copy_from_slice(&(RSDP_LEN as u32).to_le_bytes());
    r[24..32].copy_from_slice(&t.xsdt.to_le_bytes());
    r[8] = checksum(&r[..20]);
    r[32] = checksum(r);

    // FACS: no checksum; version 2, no waking vector.
    let f = &mut buf[FACS_OFF..FACS_OFF + FACS_LEN];
    f[..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&(FACS_LEN as u32).to_le_bytes());
    f[32] = 2;

    // XSDT.
    let x = &mut buf[XSDT_OFF..XSDT_OFF + XSDT_LEN];
    header(x, b"XSDT", 1);
    x[36..44].copy_from_slice(&t.fadt.to_le_bytes());
    x[44..52].copy_from_slice(&t.madt.to_le_bytes());
    seal(x);

    // MADT.
    let m = &mut buf[MADT_OFF..MADT_OFF + madt_len(cpus)];
    header(m, b"APIC", 5);
    m[36..40].copy_from_slice(&LAPIC_ADDR.to_le_bytes());
    // Flags 0: no PC-AT dual 8259.
    // Processor Local APIC k: UID k, APIC id k, enabled.
    let (cpu_entries, rest) = m[44..].split_at_mut(8 * usize::from(cpus));
    for (k, e) in (0..cpus).zip(cpu_entries.chunks_exact_mut(8)) {
        e.copy_from_slice(&[0, 8, k, k, 1, 0, 0, 0]);
    }
    // I/O APIC.
    rest[0] = 1;
    rest[1] = 12;
    rest[2] = IOAPIC_ID;
    rest[4..8].copy_from_slice(&IOAPIC_ADDR.to_le_bytes());
    // GSI base 0 (8..12 already zero).
    // Interrupt source override: ISA IRQ 9 → GSI 9, active low (3), level (3 << 2).
    rest[12] = 2;
    rest[13] = 10;
    rest[15] = SCI_IRQ;
    rest[16..20].copy_from_slice(&u32::from(SCI_IRQ).to_le_bytes());
    rest[20..22].copy_from_slice(&0x000fu16.to_le_bytes());
    seal(m);

    // FADT (ACPI 6.3 layout, 276 bytes).
    let d = &mut buf[FADT_OFF..FADT_OFF + FADT_LEN];
    header(d, b"FACP", 6);
    d[36..40].copy_from_slice(&(t.facs as u32).to_le_bytes());
    d[40..44].copy_from_slice(&(t.dsdt as u32).to_le_bytes());
    d[46..48].copy_from_slice(&u16::from(SCI_IRQ).to_le_bytes());
    // SMI_CMD (48..52) 0: the platform is always in ACPI mode.
    d[56..60].copy_from_slice(&u32::from(PM1A_EVT_PORT).to_le_bytes());
    d[64..68].copy_from_slice(&u32::from(PM1A_CNT_PORT).to_le_bytes());
    d[88] = crate::pm::PM1A_EVT_LEN as u8; // PM1_EVT_LEN
    d[89] = crate::pm::PM1A_CNT_LEN as u8; // PM1_CNT_LEN
    d[96..98].copy_from_slice(&101u16.to_le_bytes()); // no C2
    d[98..100].copy_from_slice(&1001u16.to_le_bytes()); // no C3
    // CENTURY: the CMOS byte holding the century.
    d[108] = RTC_CENTURY;
    // IAPC_BOOT_ARCH: no legacy devices, no 8042, VGA not present (bit 2); the CMOS RTC is
    // there (bit 5 clear).
    d[109..111].copy_from_slice(&(1u16 << 2).to_le_bytes());
    // Flags: WBINVD (0), PWR_BUTTON (4) and SLP_BUTTON (5): no fixed-feature buttons.
    d[112..116].copy_from_slice(&((1u32 << 0) | (1 << 4) | (1 << 5)).to_le_bytes());
    d[131] = 3; // FADT minor version: ACPI 6.3
    d[132..140].copy_from_slice(&t.facs.to_le_bytes()); // X_FIRMWARE_CTRL
    d[140..148].copy_from_slice(&t.dsdt.to_le_bytes()); // X_DSDT
    gas_io(&mut d[148..160], PM1A_EVT_PORT, 32); // X_PM1a_EVT_BLK
    gas_io(&mut d[172..184], PM1A_CNT_PORT, 16); // X_PM1a_CNT_BLK
    seal(d);

    // DSDT.
    let aml_len = dsdt::write(&mut buf[DSDT_OFF + HEADER_LEN..DSDT_OFF + DSDT_MAX])
        .ok_or(BuildError::DsdtTooLarge)?;
    let s = &mut buf[DSDT_OFF..DSDT_OFF + HEADER_LEN + aml_len];
    header(s, b"DSDT", 2);
    seal(s);

    Ok(t)
}

/// The standard table header, but for the checksum; the length is the slice's.
fn header(t: &mut [u8], sig: &[u8; 4], revision: u8) {
    t[..4].copy_from_slice(sig);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t[8] = revision;
    t[10..16].copy_from_slice(&OEM_ID);
    t[16..24].copy_from_slice(&OEM_TABLE_ID);
    t[24..28].copy_from_slice(&1u32.to_le_bytes());
    t[28..32].copy_from_slice(b"BLKH");
    t[32..36].copy_from_slice(&1u32.to_le_bytes());
}

/// Sets the checksum byte (offset 9) so the table sums to zero.
fn seal(t: &mut [u8]) {
    t[9] = 0;
    t[9] = checksum(t);
}

/// The byte that makes `b` sum to zero, given its checksum byte is zero now.
fn checksum(b: &[u8]) -> u8 {
    0u8.wrapping_sub(b.iter().fold(0u8, |a, x| a.wrapping_add(*x)))
}

/// A Generic Address Structure for an I/O port register of `bits` bits, word access.
fn gas_io(g: &mut [u8], port: u16, bits: u8) {
    g[0] = 1; // System I/O
    g[1] = bits;
    g[2] = 0;
    g[3] = 2; // word access
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
}

pub mod aml;
pub mod dsdt;

#[cfg(test)]
mod tests;
