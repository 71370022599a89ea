//! The 8254 PIT, used once at boot as a known clock (1.193182 MHz) to calibrate the TSC and
//! the APIC timer. Channel 2 is used because its output can be polled (port 0x61 bit 5).

use super::cpu::{inb, outb};

const PIT_HZ: u64 = 1_193_182;

/// Busy-waits `ms` milliseconds (at most 50) by the PIT and calls `before`/`after` around it.
/// Returns whether the PIT counted down (false: no PIT, the caller must fall back).
pub fn measure(ms: u64, before: impl FnOnce(), after: impl FnOnce()) -> bool {
    let count = (PIT_HZ * ms.min(50) / 1000) as u16;
    // SAFETY: the PIT and port 0x61 belong to the hypervisor (qubes have no I/O ports);
    // channel 2 drives only the PC speaker, which we keep disconnected (bit 1 clear).
    unsafe {
        let g = inb(0x61);
        outb(0x61, (g & !0b11) | 0b01); // gate on, speaker off
        outb(0x43, 0b1011_0000); // channel 2, lo/hi byte, mode 0, binary
        outb(0x42, count as u8);
        outb(0x42, (count >> 8) as u8);
        let g = inb(0x61);
        outb(0x61, g & !1); // restart the count: gate low, then high
        outb(0x61, g | 1);
    }
    before();
    let mut spins: u64 = 0;
    // SAFETY: as above; reading port 0x61 has no side effect.
    while unsafe { inb(0x61) } & 0x20 == 0 {
        spins += 1;
        if spins > 1_000_000_000 {
            return false;
        }
        core::hint::spin_loop();
    }
    after();
    true
}
