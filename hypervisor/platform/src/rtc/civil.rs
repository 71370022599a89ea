//! Unix time to and from the civil (proleptic Gregorian, UTC) calendar, for the RTC. Days are
//! counted in 400-year eras of 146 097 days, which repeat exactly, starting each era on a
//! 1 March so that the leap day is the era year's last day.

/// A date and time of day, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Year (1970 and later).
    pub year: u32,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of the month, 1..=31.
    pub day: u8,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=59.
    pub second: u8,
    /// Day of the week as the RTC counts it: 1 = Sunday .. 7 = Saturday (ignored by
    /// [`DateTime::to_unix`]).
    pub weekday: u8,
}

/// Days in a 400-year era.
const ERA_DAYS: u64 = 146_097;
/// Days from 0000-03-01 to 1970-01-01.
const EPOCH_FROM_ERA0: u64 = 719_468;

/// Whether `year` is a leap year.
pub fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Days in `month` (1..=12) of `year`.
pub fn days_in_month(year: u32, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl DateTime {
    /// The date and time `secs` seconds after 1970-01-01 00:00:00 UTC.
    pub fn from_unix(secs: u64) -> DateTime {
        let days = secs / 86_400;
        let rest = secs % 86_400;
        // 1970-01-01 was a Thursday: weekday 5 when Sunday is 1.
        let weekday = ((days + 4) % 7) as u8 + 1;
        let z = days + EPOCH_FROM_ERA0;
        let era = z / ERA_DAYS;
        let doe = z % ERA_DAYS; // day of era, 0..146096
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
        let mp = (5 * doy + 2) / 153; // month from March = 0
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = era * 400 + yoe + u64::from(month <= 2);
        DateTime {
            year: u32::try_from(year).unwrap_or(u32::MAX),
            month,
            day,
            hour: (rest / 3600) as u8,
            minute: (rest / 60 % 60) as u8,
            second: (rest % 60) as u8,
            weekday,
        }
    }

    /// Seconds since 1970-01-01 00:00:00 UTC; `None` before 1970 or for a field out of range
    /// (a 30 February, hour 24, ...).
    pub fn to_unix(&self) -> Option<u64> {
        let valid = self.year >= 1970
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid {
            return None;
        }
        let y = u64::from(self.year) - u64::from(self.month <= 2);
        let era = y / 400;
        let yoe = y % 400;
        let m = u64::from(self.month);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + u64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * ERA_DAYS + doe - EPOCH_FROM_ERA0;
        Some(
            days * 86_400
                + u64::from(self.hour) * 3600
                + u64::from(self.minute) * 60
                + u64::from(self.second),
        )
    }
}
