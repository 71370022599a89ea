//! The ACPI PM1a event and control blocks the FADT describes (ACPI 6.x §4.8.3): just enough
//! fixed hardware for Linux to run in ACPI mode and power off.
//!
//! - PM1a_EVT_BLK at [`PM1A_EVT`], 4 bytes: PM1 status (2 bytes, write 1 to clear) then
//!   PM1 enable (2 bytes, read/write). No fixed event is ever raised (no PM timer, no
//!   buttons, no RTC, no wake), so the status reads 0 and the SCI never fires.
//! - PM1a_CNT_BLK at [`PM1A_CNT`], 2 bytes: `SCI_EN` (bit 0) reads 1 (always in ACPI mode:
//!   the FADT's `SMI_CMD` is 0), `BM_RLD` (bit 1) and `SLP_TYP` (bits 10..12) are stored,
//!   `GBL_RLS` (bit 2) and `SLP_EN` (bit 13) are write-only. Writing `SLP_EN` with
//!   `SLP_TYP` = 5, the DSDT's `\_S5` package {5, 0, 0, 0}, is the poweroff
//!   ([`PmEffect::PowerOff`]); other sleep types are ignored (there is no S1..S4).
//!
//! Accesses may be 1, 2 or 4 bytes wide at any port of the blocks; each byte is handled on
//! its own, and bytes outside the blocks read 0xff.

/// First port of the PM1a event block: status (2 bytes), then enable (2 bytes).
pub const PM1A_EVT: u16 = 0x600;
/// First port of the PM1a control block (2 bytes).
pub const PM1A_CNT: u16 = 0x604;
/// Bytes of the PM1a event block.
pub const PM1A_EVT_LEN: u16 = 4;
/// Bytes of the PM1a control block.
pub const PM1A_CNT_LEN: u16 = 2;

/// `SCI_EN` in PM1 control.
pub const SCI_EN: u16 = 1 << 0;
/// `SLP_EN` in PM1 control.
pub const SLP_EN: u16 = 1 << 13;
/// `SLP_TYP` of S5 (soft off), as the DSDT's `\_S5` gives it.
pub const S5_SLP_TYP: u16 = 5;

/// PM1 control bits that read back what was written: `BM_RLD` and `SLP_TYP`.
const CNT_STORED: u16 = (1 << 1) | (7 << 10);
/// PM1 enable bits (ACPI 6.x table 4.13): `TMR_EN`, `GBL_EN`, `PWRBTN_EN`, `SLPBTN_EN`,
/// `RTC_EN`, `PCIEXP_WAKE_DIS`. Reserved bits read 0.
const EN_BITS: u16 = (1 << 0) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 14);

/// The PM1a registers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pm {
    enable: u16,
    control: u16,
}

/// What a write asks of the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmEffect {
    /// Nothing to do.
    None,
    /// The guest entered S5: stop the qube.
    PowerOff,
}

impl Pm {
    /// The registers at reset: nothing enabled, `SLP_TYP` 0.
    pub fn new() -> Pm {
        Pm::default()
    }

    /// Whether `port` belongs to the PM1a blocks (0x600..=0x605).
    pub fn claims(port: u16) -> bool {
        (PM1A_EVT..PM1A_EVT + PM1A_EVT_LEN).contains(&port)
            || (PM1A_CNT..PM1A_CNT + PM1A_CNT_LEN).contains(&port)
    }

    /// A guest read of `size` bytes (1, 2 or 4; any other size reads all-ones) at `port`.
    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        if !matches!(size, 1 | 2 | 4) {
            return u32::MAX;
        }
        (0..size).fold(0, |value, i| {
            value | u32::from(self.read_byte(port.wrapping_add(u16::from(i)))) << (8 * i)
        })
    }

    /// A guest write of the low `size` bytes (1, 2 or 4; other sizes are ignored) of `value`
    /// at `port`.
    pub fn write(&mut self, port: u16, size: u8, value: u32) -> PmEffect {
        if !matches!(size, 1 | 2 | 4) {
            return PmEffect::None;
        }
        let mut control = None;
        for i in 0..size {
            let byte = (value >> (8 * i)) as u8;
            let p = port.wrapping_add(u16::from(i));
            if p == PM1A_EVT + 2 || p == PM1A_EVT + 3 {
                let shift = 8 * (p - (PM1A_EVT + 2));
                let mask = 0xFF << shift;
                self.enable = (self.enable & !mask) | ((u16::from(byte) << shift) & EN_BITS);
            } else if p == PM1A_CNT || p == PM1A_CNT + 1 {
                let shift = 8 * (p - PM1A_CNT);
                let old = control.unwrap_or(self.control);
                control = Some((old & !(0xFF << shift)) | (u16::from(byte) << shift));
            }
            // Status bytes: write 1 to clear, and no status bit is ever set.
        }
        let Some(written) = control else {
            return PmEffect::None;
        };
        self.control = written & CNT_STORED;
        if written & SLP_EN != 0 && (written >> 10) & 7 == S5_SLP_TYP {
            PmEffect::PowerOff
        } else {
            PmEffect::None
        }
    }

    fn read_byte(&self, port: u16) -> u8 {
        let control = self.control | SCI_EN;
        match port {
            p if p == PM1A_EVT || p == PM1A_EVT + 1 => 0,
            p if p == PM1A_EVT + 2 => self.enable as u8,
            p if p == PM1A_EVT + 3 => (self.enable >> 8) as u8,
            p if p == PM1A_CNT => control as u8,
            p if p == PM1A_CNT + 1 => (control >> 8) as u8,
            _ => 0xFF,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S5: u32 = (5 << 10) | (1 << 13);

    #[test]
    fn claims_exactly_the_two_blocks() {
        assert!((0x600..=0x605).all(Pm::claims));
        assert!(!Pm::claims(0x5FF));
        assert!(!Pm::claims(0x606));
    }

    #[test]
    fn acpi_mode_and_enable_register() {
        let mut pm = Pm::new();
        assert_eq!(pm.read(PM1A_CNT, 2), 1, "SCI_EN always set");
        assert_eq!(pm.read(PM1A_EVT, 2), 0);
        pm.write(PM1A_EVT + 2, 2, 0xFFFF);
        assert_eq!(pm.read(PM1A_EVT + 2, 2), u32::from(EN_BITS));
        assert_eq!(pm.read(PM1A_EVT, 4), u32::from(EN_BITS) << 16);
        pm.write(PM1A_EVT, 2, 0xFFFF); // clear every status bit
        assert_eq!(pm.read(PM1A_EVT, 2), 0);
        pm.write(PM1A_EVT + 3, 1, 0);
        assert_eq!(pm.read(PM1A_EVT + 2, 2), u32::from(EN_BITS & 0xFF));
        assert_eq!(
            pm.read(PM1A_CNT, 4),
            0xFFFF_0001,
            "bytes past the block read 0xff"
        );
    }

    #[test]
    fn linux_poweroff_sequence() {
        // acpi_hw_legacy_sleep: clear WAK_STS and all status, read PM1 control, write
        // SLP_TYP, then SLP_TYP | SLP_EN.
        let mut pm = Pm::new();
        assert_eq!(pm.write(PM1A_EVT, 2, 0x8000), PmEffect::None);
        assert_eq!(pm.write(PM1A_EVT, 2, 0x8731), PmEffect::None);
        let ctl = pm.read(PM1A_CNT, 2) & !(0x1C00 | 0x2000);
        assert_eq!(pm.write(PM1A_CNT, 2, ctl | (5 << 10)), PmEffect::None);
        assert_eq!(pm.read(PM1A_CNT, 2), 1 | (5 << 10), "SLP_TYP stored");
        assert_eq!(pm.write(PM1A_CNT, 2, ctl | S5), PmEffect::PowerOff);
        assert_eq!(
            pm.read(PM1A_CNT, 2) & u32::from(SLP_EN),
            0,
            "SLP_EN is write-only"
        );
    }

    #[test]
    fn poweroff_needs_slp_en_and_s5() {
        let mut pm = Pm::new();
        assert_eq!(pm.write(PM1A_CNT, 2, 5 << 10), PmEffect::None);
        assert_eq!(pm.write(PM1A_CNT, 2, (3 << 10) | (1 << 13)), PmEffect::None);
        assert_eq!(pm.write(PM1A_CNT, 4, S5 | 0xFFFF_0000), PmEffect::PowerOff);
        assert_eq!(pm.write(PM1A_CNT - 1, 4, S5 << 8), PmEffect::PowerOff);
        // Byte-wise: SLP_TYP first, then the high byte with SLP_EN.
        let mut pm = Pm::new();
        assert_eq!(pm.write(PM1A_CNT, 1, 0), PmEffect::None);
        assert_eq!(pm.write(PM1A_CNT + 1, 1, S5 >> 8), PmEffect::PowerOff);
        assert_eq!(pm.write(PM1A_EVT, 4, 0xFFFF_FFFF), PmEffect::None);
        assert_eq!(
            pm.write(PM1A_CNT, 3, S5),
            PmEffect::None,
            "odd size ignored"
        );
        assert_eq!(pm.read(PM1A_CNT, 3), u32::MAX);
    }

    proptest! {
        #[test]
        fn never_panics(ops in proptest::collection::vec(
            (any::<bool>(), 0x5F0u16..0x610, 0u8..9, any::<u32>()), 0..100)
        ) {
            let mut pm = Pm::new();
            for (write, port, size, value) in ops {
                if write {
                    let effect = pm.write(port, size, value);
                    if effect == PmEffect::PowerOff {
                        prop_assert!(Pm::claims(port) || Pm::claims(port.wrapping_add(3)));
                    }
                } else {
                    pm.read(port, size);
                }
                prop_assert_eq!(pm.read(PM1A_CNT, 1) & 1, 1);
            }
            pm.read(u16::MAX, 4);
            pm.write(u16::MAX, 4, u32::MAX);
        }
    }
}
