//! The 16550 UART at COM1: the hypervisor's console. Polled output only: the console queue
//! (`crate::console`) hands it bytes only when the transmitter has room ([`Serial::tx_room`]);
//! the waiting writes are for the panic and exception paths.

use super::cpu;
use core::sync::atomic::{AtomicUsize, Ordering};

const COM1: u16 = 0x3F8;
/// Bytes the transmitter takes when it says it is empty: 16 with the FIFO on, else 1.
static TX_FIFO: AtomicUsize = AtomicUsize::new(1);
/// Line status: transmit holding register (or FIFO) empty.
const LSR_THRE: u8 = 0x20;
/// How long the UART takes to send one byte at 115200 baud (10 bits), in nanoseconds.
pub const BYTE_NS: u64 = 86_806;

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
        // Interrupt identification bits 7:6 are both set when the FIFOs are on (a 16550A);
        // an 8250 or 16450 has none.
        let fifo = if read_reg(2) & 0xC0 == 0xC0 { 16 } else { 1 };
        TX_FIFO.store(fifo, Ordering::Relaxed);
        Serial { _private: () }
    }

    /// Bytes the transmitter takes now without waiting: its FIFO depth when it is empty,
    /// else 0.
    pub fn tx_room(&self) -> usize {
        if read_reg(5) & LSR_THRE != 0 {
            TX_FIFO.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// The time the transmitter needs to empty a full FIFO, in nanoseconds.
    pub fn fifo_drain_ns(&self) -> u64 {
        TX_FIFO.load(Ordering::Relaxed) as u64 * BYTE_NS
    }

    /// Writes bytes as they are, without waiting: at most [`Serial::tx_room`] of them.
    pub fn write_fifo(&mut self, bytes: &[u8]) {
        for &b in bytes {
            write_reg(0, b);
        }
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
        while read_reg(5) & LSR_THRE == 0 && spins < 100_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        write_reg(0, b);
    }

    /// Writes bytes as they are, waiting for the transmitter before each.
    pub fn write_fifo_waiting(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
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
