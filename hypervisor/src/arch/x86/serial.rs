//! The 16550 UART at COM1: the hypervisor's console. Polled output only.

use super::cpu;

const COM1: u16 = 0x3F8;

/// COM1, programmed for 115200 8N1 with FIFOs on.
pub struct Serial {
    _private: (),
}

impl Serial {
    /// Programs the UART.
    pub fn init() -> Serial {
        for (reg, val) in [
            (1, 0x00u8), // no interrupts
            (3, 0x80),   // DLAB on
            (0, 0x01),   // divisor 1: 115200 baud
            (1, 0x00),
            (3, 0x03), // 8N1, DLAB off
            (2, 0xC7), // FIFO on, cleared, 14-byte threshold
            (4, 0x03), // DTR | RTS
        ] {
            write_reg(reg, val);
        }
        Serial { _private: () }
    }

    /// The already-programmed UART, for the panic and exception paths.
    pub fn raw() -> Serial {
        Serial { _private: () }
    }

    /// Writes one byte, waiting while the transmitter is full.
    pub fn write_byte(&mut self, b: u8) {
        let mut spins = 0u32;
        // Line status bit 5: transmit holding register empty. Bounded wait: a missing UART
        // must not hang the hypervisor.
        while read_reg(5) & 0x20 == 0 && spins < 100_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        write_reg(0, b);
    }

    /// Writes bytes, turning `\n` into `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
    }
}

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

fn write_reg(reg: u16, val: u8) {
    // SAFETY: COM1's registers are owned by the hypervisor (no qube may use I/O ports), and
    // writing them has no effect on memory.
    unsafe { cpu::outb(COM1 + reg, val) }
}

fn read_reg(reg: u16) -> u8 {
    // SAFETY: as in `write_reg`; reading the line status register has no side effect.
    unsafe { cpu::inb(COM1 + reg) }
}
