//! A 16550 UART the admin qube owns (`io_ports` in the system description), driven by
//! polling: no interrupt reaches the admin qube, so the main loop reads it each pass.
//!
//! Reads take what the receive FIFO holds; writes wait for the transmitter, but only so
//! long: a host that does not read must not wedge the admin qube.

use bulkhead_rt::Boot;
use bulkhead_rt::hypercall;
use bulkhead_rt::port::IoPort;

/// Line status: a received byte is waiting.
const LSR_DR: u8 = 0x01;
/// Line status: the transmit holding register (or FIFO) is empty.
const LSR_THRE: u8 = 0x20;
/// Line status reads between two looks at the clock while the transmitter is full.
const SPINS_PER_CLOCK: u32 = 1024;

/// Why there is no UART.
pub enum Absent {
    /// The qube does not own the ports.
    NotOwned,
    /// The ports are the qube's, but no UART answers there.
    NoDevice,
}

/// A 16550 at `base`: 115200 baud, 8N1, FIFOs on, no interrupts.
pub struct Uart {
    /// Receive buffer / transmit holding register (DLAB off), divisor low (DLAB on).
    data: IoPort<u8>,
    /// Interrupt enable (DLAB off), divisor high (DLAB on).
    ier: IoPort<u8>,
    /// FIFO control (write) / interrupt identification (read).
    fifo: IoPort<u8>,
    lcr: IoPort<u8>,
    mcr: IoPort<u8>,
    lsr: IoPort<u8>,
    scratch: IoPort<u8>,
    /// Bytes the transmitter takes at once when it is empty: 16 with a FIFO, else 1.
    tx_depth: usize,
}

impl Uart {
    /// Programs the UART at `base`, after checking it is there (its scratch register keeps
    /// what is written; a missing device reads 0xff).
    pub fn open(boot: &Boot, base: u16) -> Result<Uart, Absent> {
        let port = |offset: u16| IoPort::new(boot, base + offset).map_err(|_| Absent::NotOwned);
        let mut u = Uart {
            data: port(0)?,
            ier: port(1)?,
            fifo: port(2)?,
            lcr: port(3)?,
            mcr: port(4)?,
            lsr: port(5)?,
            scratch: port(7)?,
            tx_depth: 1,
        };
        for probe in [0x5A, 0xA5] {
            u.scratch.write(probe);
            if u.scratch.read() != probe {
                return Err(Absent::NoDevice);
            }
        }
        u.ier.write(0x00); // no interrupts
        u.lcr.write(0x80); // DLAB on
        u.data.write(0x01); // divisor 1: 115200 baud
        u.ier.write(0x00);
        u.lcr.write(0x03); // 8N1, DLAB off
        u.fifo.write(0xC7); // FIFOs on and cleared, 14-byte threshold
        u.mcr.write(0x03); // DTR | RTS; OUT2 off: no interrupt line
        // Interrupt identification bits 7:6 are both set when the FIFOs are on (a 16550A).
        if u.fifo.read() & 0xC0 == 0xC0 {
            u.tx_depth = 16;
        }
        Ok(u)
    }

    /// The next received byte, if one comes within `spins` status reads.
    pub fn read_byte(&mut self, spins: u32) -> Option<u8> {
        for _ in 0..spins {
            if self.lsr.read() & LSR_DR != 0 {
                return Some(self.data.read());
            }
        }
        None
    }

    /// Whether the transmitter has room now.
    pub fn can_send(&mut self) -> bool {
        self.lsr.read() & LSR_THRE != 0
    }

    /// Writes `bytes`, waiting for the transmitter as needed but no more than `timeout_ns`
    /// in all; false when it gave up (the bytes from there on are not sent).
    pub fn write(&mut self, bytes: &[u8], timeout_ns: u64) -> bool {
        let mut rest = bytes;
        let mut spins = 0u32;
        let mut deadline = None;
        while !rest.is_empty() {
            if self.can_send() {
                let (now, later) = rest.split_at(self.tx_depth.min(rest.len()));
                for &b in now {
                    self.data.write(b);
                }
                rest = later;
                spins = 0;
                continue;
            }
            spins += 1;
            if spins.is_multiple_of(SPINS_PER_CLOCK) {
                let now = hypercall::time_ns();
                if now >= *deadline.get_or_insert(now.saturating_add(timeout_ns)) {
                    return false;
                }
            }
        }
        true
    }
}
