use super::civil::{DateTime, days_in_month};
use super::*;
use proptest::prelude::*;

/// Year, month, day, hour, minute, second, Unix time, RTC weekday.
type Known = (u32, u8, u8, u8, u8, u8, u64, u8);

/// Dates from an independent calendar (Python's `calendar.timegm`; weekday 1 = Sunday).
const KNOWN: [Known; 5] = [
    (1970, 1, 1, 0, 0, 0, 0, 5),
    (2000, 1, 1, 0, 0, 0, 946_684_800, 7),
    (2024, 2, 29, 23, 59, 59, 1_709_251_199, 5),
    (2026, 11, 23, 12, 34, 56, 1_795_437_296, 2),
    (2100, 3, 1, 0, 0, 0, 4_107_542_400, 2),
];

#[test]
fn known_dates_convert_both_ways() {
    for (year, month, day, hour, minute, second, unix, weekday) in KNOWN {
        let dt = DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            weekday,
        };
        assert_eq!(DateTime::from_unix(unix), dt);
        assert_eq!(dt.to_unix(), Some(unix));
    }
}

#[test]
fn impossible_dates_are_refused() {
    let base = DateTime::from_unix(0);
    for bad in [
        DateTime {
            year: 2023,
            month: 2,
            day: 29,
            ..base
        },
        DateTime {
            year: 2100,
            month: 2,
            day: 29,
            ..base
        },
        DateTime { month: 13, ..base },
        DateTime { day: 0, ..base },
        DateTime { hour: 24, ..base },
        DateTime { year: 1969, ..base },
    ] {
        assert_eq!(bad.to_unix(), None, "{bad:?}");
    }
    assert_eq!(
        DateTime {
            year: 2000,
            month: 2,
            day: 29,
            ..base
        }
        .to_unix(),
        Some(951_782_400)
    );
}

/// Reads register `index` through the ports.
fn reg(rtc: &mut Rtc, index: u8, now: u64) -> u8 {
    rtc.write(INDEX_PORT, index);
    rtc.read(DATA_PORT, now)
}

#[test]
fn the_clock_reads_bcd_24_hour_at_power_on() {
    let mut rtc = Rtc::new();
    let now = 1_795_437_296; // 2026-11-23 12:34:56, a Monday
    let regs = [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, CENTURY].map(|i| reg(&mut rtc, i, now));
    assert_eq!(regs, [0x56, 0x34, 0x12, 0x02, 0x23, 0x11, 0x26, 0x20]);
    assert_eq!(reg(&mut rtc, 0x0A, now) & 0x80, 0, "UIP never reads 1");
    assert_eq!(reg(&mut rtc, 0x0B, now), 0x02);
    assert_eq!(reg(&mut rtc, 0x0C, now), 0);
    assert_eq!(reg(&mut rtc, 0x0D, now), 0x80, "VRT: the time is valid");
}

#[test]
fn binary_and_12_hour_modes_follow_register_b() {
    let mut rtc = Rtc::new();
    let evening = 1_795_437_296 + 8 * 3600; // 20:34:56
    rtc.write(INDEX_PORT, 0x0B);
    rtc.write(DATA_PORT, 0x04); // binary, 12-hour
    assert_eq!(reg(&mut rtc, 0x04, evening), 8 | 0x80);
    assert_eq!(reg(&mut rtc, 0x02, evening), 34);
    let midnight = 946_684_800;
    assert_eq!(reg(&mut rtc, 0x04, midnight), 12, "00:xx is 12 AM");
    rtc.write(INDEX_PORT, 0x0B);
    rtc.write(DATA_PORT, 0x00); // BCD, 12-hour
    assert_eq!(reg(&mut rtc, 0x04, evening), 0x08 | 0x80);
    assert_eq!(
        reg(&mut rtc, 0x04, midnight + 12 * 3600),
        0x12 | 0x80,
        "12:xx is 12 PM"
    );
}

#[test]
fn the_guest_cannot_set_the_clock_but_keeps_its_ram() {
    let mut rtc = Rtc::new();
    let now = 946_684_800;
    for i in [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, CENTURY] {
        rtc.write(INDEX_PORT, i);
        rtc.write(DATA_PORT, 0x42);
    }
    assert_eq!(reg(&mut rtc, 0x09, now), 0x00);
    assert_eq!(reg(&mut rtc, CENTURY, now), 0x20);
    rtc.write(INDEX_PORT, 0x0A);
    rtc.write(DATA_PORT, 0xA6);
    assert_eq!(reg(&mut rtc, 0x0A, now), 0x26, "UIP cannot be set");
    rtc.write(INDEX_PORT, 0x80 | 0x40); // NMI-mask bit ignored
    rtc.write(DATA_PORT, 0x5A);
    assert_eq!(reg(&mut rtc, 0x40, now), 0x5A);
    assert_eq!(rtc.read(INDEX_PORT, now), 0xFF);
    assert!(Rtc::claims(0x70) && Rtc::claims(0x71) && !Rtc::claims(0x72));
}

#[test]
fn host_time_decodes_what_the_rtc_encodes() {
    let t = CmosTime {
        seconds: 0x56,
        minutes: 0x34,
        hours: 0x12,
        day: 0x23,
        month: 0x11,
        year: 0x26,
        century: 0x20,
        reg_b: 0x02,
    };
    assert_eq!(host_time(&t), Some(1_795_437_296));
    // No century byte: 20xx.
    assert_eq!(
        host_time(&CmosTime { century: 0, ..t }),
        Some(1_795_437_296)
    );
    // 12-hour BCD: 8 PM.
    let pm = CmosTime {
        hours: 0x88,
        reg_b: 0x00,
        ..t
    };
    assert_eq!(host_time(&pm), Some(1_795_437_296 + 8 * 3600));
    // No RTC at all: every register reads all-ones.
    let absent = CmosTime {
        seconds: 0xFF,
        minutes: 0xFF,
        hours: 0xFF,
        day: 0xFF,
        month: 0xFF,
        year: 0xFF,
        century: 0xFF,
        reg_b: 0xFF,
    };
    assert_eq!(host_time(&absent), None);
    assert_eq!(host_time(&CmosTime { month: 0x13, ..t }), None);
    assert_eq!(host_time(&CmosTime { day: 0x31, ..t }), None, "31 November");
}

proptest! {
    #[test]
    fn unix_time_round_trips(secs in 0u64..8_000_000_000) {
        let dt = DateTime::from_unix(secs);
        prop_assert!(dt.day >= 1 && dt.day <= days_in_month(dt.year, dt.month));
        prop_assert!((1..=7).contains(&dt.weekday));
        prop_assert_eq!(dt.to_unix(), Some(secs));
    }

    #[test]
    fn consecutive_days_are_consecutive_dates(day in 0u64..90_000) {
        let a = DateTime::from_unix(day * 86_400);
        let b = DateTime::from_unix((day + 1) * 86_400);
        let next = if a.day < days_in_month(a.year, a.month) {
            (a.year, a.month, a.day + 1)
        } else if a.month < 12 {
            (a.year, a.month + 1, 1)
        } else {
            (a.year + 1, 1, 1)
        };
        prop_assert_eq!((b.year, b.month, b.day), next);
        prop_assert_eq!(b.weekday, a.weekday % 7 + 1);
    }

    #[test]
    fn host_time_reads_back_the_guest_clock(secs in 0u64..4_000_000_000, b in 0u8..8) {
        // Whatever format a guest chose (binary or BCD, 12- or 24-hour), the registers it
        // reads decode to the time the clock showed.
        let mut rtc = Rtc::new();
        rtc.write(INDEX_PORT, 0x0B);
        rtc.write(DATA_PORT, b);
        let mut r = |i| reg(&mut rtc, i, secs);
        let t = CmosTime {
            seconds: r(0x00),
            minutes: r(0x02),
            hours: r(0x04),
            day: r(0x07),
            month: r(0x08),
            year: r(0x09),
            century: r(CENTURY),
            reg_b: r(0x0B),
        };
        prop_assert_eq!(host_time(&t), Some(secs));
    }

    #[test]
    fn any_port_traffic_is_harmless(ops in proptest::collection::vec((0u16..0x100, any::<u8>(), any::<bool>()), 0..200)) {
        let mut rtc = Rtc::new();
        for (port, value, write) in ops {
            if write {
                rtc.write(port, value);
            } else {
                rtc.read(port, 1_795_437_296);
            }
        }
        prop_assert_eq!(reg(&mut rtc, 0x0A, 0) & 0x80, 0);
        prop_assert_eq!(reg(&mut rtc, 0x0D, 0), 0x80);
    }
}
