//! The CMOS real-time clock of a PC (Motorola MC146818A, index port 0x70, data port 0x71),
//! as much of one as Linux reads: the time and date, registers A to D and the rest of the
//! 128-byte CMOS RAM.
//!
//! - The clock shows the time the caller passes to [`Rtc::read`] (seconds since the Unix
//!   epoch, UTC): the hypervisor's wall clock. The guest cannot set it: writes to the time
//!   and date registers are ignored, as the host's clock is not the guest's to change.
//! - Register A: UIP (bit 7, update in progress) always reads 0, because the time is computed
//!   at each read and never seen half-updated; the divider and rate bits store what is
//!   written (power-on 0x26: 32.768 kHz, 1024 Hz).
//! - Register B: stores what is written; DM (bit 2) chooses binary or BCD values and 24/12
//!   (bit 1) 24-hour or 12-hour hours (bit 7 of the hour = PM). Power-on 0x02: BCD, 24-hour.
//!   The interrupt enables (bits 4..6) are stored, but the RTC raises no interrupt (IRQ 8 is
//!   not wired), so register C (the flags, cleared by reading) always reads 0.
//! - Register D: VRT (bit 7, valid RAM and time) reads 1.
//! - Bytes 0x0e..0x7f are RAM (power-on 0); byte [`CENTURY`] holds the century in the
//!   current format (the FADT's century field points there).
//! - Bit 7 of the index port masks NMIs on a PC; it is ignored (there are none).
//!
//! Linux's `mc146818_get_time` polls UIP before reading the time; a clock that is absent
//! (ports read all-ones, so UIP never clears) costs it 20 000 port accesses and seconds of
//! boot time before it gives up: this device is what removes them.

#[cfg(test)]
mod tests;

pub mod civil;

/// The index port.
pub const INDEX_PORT: u16 = 0x70;
/// The data port.
pub const DATA_PORT: u16 = 0x71;
/// The CMOS byte that holds the century (the FADT's `CENTURY` field names it).
pub const CENTURY: u8 = 0x32;

// Registers.
const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const REG_A: u8 = 0x0A;
const REG_B: u8 = 0x0B;
const REG_C: u8 = 0x0C;
const REG_D: u8 = 0x0D;

const A_UIP: u8 = 1 << 7;
const B_24H: u8 = 1 << 1;
const B_BINARY: u8 = 1 << 2;
const D_VRT: u8 = 1 << 7;
/// The hour's PM flag in 12-hour mode.
const PM: u8 = 1 << 7;

/// Bytes of CMOS the index reaches (bit 7 of the index is the NMI mask).
const CMOS_SIZE: usize = 128;

/// The clock: the selected index, registers A and B, and the CMOS RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rtc {
    index: u8,
    reg_a: u8,
    reg_b: u8,
    ram: [u8; CMOS_SIZE],
}

impl Default for Rtc {
    fn default() -> Self {
        Self::new()
    }
}

impl Rtc {
    /// The clock at power-on: index 0, register A 0x26, register B 0x02 (BCD, 24-hour).
    pub fn new() -> Rtc {
        Rtc {
            index: 0,
            reg_a: 0x26,
            reg_b: B_24H,
            ram: [0; CMOS_SIZE],
        }
    }

    /// Whether `port` is the RTC's.
    pub fn claims(port: u16) -> bool {
        port == INDEX_PORT || port == DATA_PORT
    }

    /// A guest read of `port` when the wall clock shows `now` (seconds since the Unix epoch).
    /// The index port reads 0xff (write-only on a PC); other ports read 0xff.
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        if port != DATA_PORT {
            return 0xFF;
        }
        let t = civil::DateTime::from_unix(now);
        let binary = self.reg_b & B_BINARY != 0;
        let enc = |v: u8| if binary { v } else { to_bcd(v) };
        match self.index {
            SECONDS => enc(t.second),
            MINUTES => enc(t.minute),
            HOURS => self.encode_hour(t.hour),
            WEEKDAY => enc(t.weekday),
            DAY => enc(t.day),
            MONTH => enc(t.month),
            YEAR => enc((t.year % 100) as u8),
            CENTURY => enc((t.year / 100 % 100) as u8),
            REG_A => self.reg_a & !A_UIP,
            REG_B => self.reg_b,
            REG_C => 0,
            REG_D => D_VRT,
            i => self.ram[usize::from(i)],
        }
    }

    /// A guest write of `value` to `port`.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            INDEX_PORT => self.index = value & 0x7F,
            DATA_PORT => match self.index {
                SECONDS | MINUTES | HOURS | WEEKDAY | DAY | MONTH | YEAR | CENTURY => {}
                // The alarm registers (0x01, 0x03, 0x05) are plain RAM here.
                REG_A => self.reg_a = value & !A_UIP,
                REG_B => self.reg_b = value,
                REG_C | REG_D => {}
                i => self.ram[usize::from(i)] = value,
            },
            _ => {}
        }
    }

    /// The hour register for `hour` (0..24) in the format register B selects.
    fn encode_hour(&self, hour: u8) -> u8 {
        let binary = self.reg_b & B_BINARY != 0;
        let enc = |v: u8| if binary { v } else { to_bcd(v) };
        if self.reg_b & B_24H != 0 {
            return enc(hour);
        }
        let (h12, pm) = match hour {
            0 => (12, false),
            1..=11 => (hour, false),
            12 => (12, true),
            _ => (hour - 12, true),
        };
        enc(h12) | if pm { PM } else { 0 }
    }
}

/// `v` (0..100) in packed BCD.
pub fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// Packed BCD `b` as a number; `None` if a digit is not 0..9.
pub fn from_bcd(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0xF);
    (hi < 10 && lo < 10).then_some(hi * 10 + lo)
}

/// The CMOS time registers as a host's clock holds them, for [`host_time`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmosTime {
    /// Register 0x00.
    pub seconds: u8,
    /// Register 0x02.
    pub minutes: u8,
    /// Register 0x04.
    pub hours: u8,
    /// Register 0x07.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09.
    pub year: u8,
    /// Register 0x32 (0 if the machine keeps no century: then 20xx is assumed).
    pub century: u8,
    /// Register B (format bits).
    pub reg_b: u8,
}

/// The register indices to read for a [`CmosTime`], in field order.
pub const CMOS_TIME_REGISTERS: [u8; 8] =
    [SECONDS, MINUTES, HOURS, DAY, MONTH, YEAR, CENTURY, REG_B];

/// Seconds since the Unix epoch that a machine's CMOS clock shows (read by the hypervisor
/// from the real RTC at boot); `None` when the values are not a valid date and time (no RTC:
/// all-ones; a bad BCD digit; a day the month lacks).
pub fn host_time(t: &CmosTime) -> Option<u64> {
    let binary = t.reg_b & B_BINARY != 0;
    let dec = |v: u8| if binary { Some(v) } else { from_bcd(v) };
    let pm = t.reg_b & B_24H == 0 && t.hours & PM != 0;
    let mut hour = dec(if t.reg_b & B_24H == 0 {
        t.hours & !PM
    } else {
        t.hours
    })?;
    if t.reg_b & B_24H == 0 {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    let century = match dec(t.century) {
        Some(c) if (19..=99).contains(&c) => u32::from(c),
        _ if t.century == 0 => 20,
        _ => return None,
    };
    let year = century * 100 + u32::from(dec(t.year).filter(|y| *y < 100)?);
    let dt = civil::DateTime {
        year,
        month: dec(t.month)?,
        day: dec(t.day)?,
        hour,
        minute: dec(t.minutes)?,
        second: dec(t.seconds)?,
        weekday: 0,
    };
    dt.to_unix()
}
