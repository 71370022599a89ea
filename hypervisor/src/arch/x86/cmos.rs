//! The machine's own CMOS real-time clock, read once at boot for the wall-clock time the
//! guest platform's RTC shows (`bulkhead_platform::rtc`). Unsafe module (port I/O).

use super::cpu;
use bulkhead_platform::rtc::{self, CMOS_TIME_REGISTERS, CmosTime};

/// Register A and its update-in-progress flag.
const REG_A: u8 = 0x0A;
const UIP: u8 = 1 << 7;
/// Polls of UIP before giving up (an update lasts under 2 ms; a missing RTC reads all-ones).
const UIP_POLLS: u32 = 100_000;

/// Reads CMOS register `index`, with NMIs left enabled (bit 7 of the index clear).
fn read_register(index: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the CMOS index and data registers of every PC; the
    // hypervisor owns them (no qube reaches host ports), selecting a register and reading
    // it changes nothing but the index, and register C (whose read clears flags) is not
    // among those read here.
    unsafe {
        cpu::outb(rtc::INDEX_PORT, index & 0x7F);
        cpu::inb(rtc::DATA_PORT)
    }
}

/// The time registers, read outside an update.
fn read_time() -> Option<CmosTime> {
    (0..UIP_POLLS).find(|_| read_register(REG_A) & UIP == 0)?;
    let r = CMOS_TIME_REGISTERS.map(read_register);
    Some(CmosTime {
        seconds: r[0],
        minutes: r[1],
        hours: r[2],
        day: r[3],
        month: r[4],
        year: r[5],
        century: r[6],
        reg_b: r[7],
    })
}

/// Seconds since the Unix epoch that the machine's RTC shows, taken as UTC; `None` when there
/// is no RTC or its values are not a date. Read twice until two reads agree, so an update
/// between the UIP check and the reads cannot tear the value.
pub fn wall_clock() -> Option<u64> {
    let mut last = read_time()?;
    for _ in 0..3 {
        let again = read_time()?;
        if again == last {
            return rtc::host_time(&again);
        }
        last = again;
    }
    None
}
