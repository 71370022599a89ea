//! A 16550A UART at COM1 (0x3f8, ISA IRQ 4), as much of one as Linux's 8250 driver uses.
//!
//! Modelled from the National Semiconductor PC16550D datasheet:
//!
//! - Transmission is instantaneous: a THR write hands the byte to the caller at once, so LSR
//!   always shows THRE and TEMT, and the THR-empty interrupt becomes pending right after each
//!   THR write (and when IER.ETBEI goes from 0 to 1). It is cleared by reading IIR while it is
//!   the reported source, or by the next THR write. This is what `serial8250_do_startup`'s
//!   "THRE bug" probe and its TX-enable probe expect of a working 16550A, and what keeps
//!   interrupt-driven output going once userspace writes to the console.
//! - Reception: [`Uart::receive`] fills a 16-byte FIFO (one byte in 16450 mode, FIFOs off).
//!   The "received data available" interrupt is pending whenever the FIFO holds data, as if
//!   the trigger level were one byte (the 8250 driver treats it and the character time-out
//!   interrupt alike and drains the FIFO while LSR.DR is set).
//! - IIR reports one source in the datasheet's priority order: line status (overrun), received
//!   data, THR empty, modem status. Bits 6..7 read 11 while the FIFOs are enabled (FCR bit 0),
//!   bits 4..5 read 0: a 16550A, neither a 16750 nor an EFR-equipped 16650.
//! - Loopback (MCR bit 4): THR goes to the receive FIFO; MSR shows DSR = DTR, CTS = RTS,
//!   RI = OUT1, DCD = OUT2 (with the delta bits); the serial input is disconnected
//!   ([`Uart::receive`] refuses bytes) and, as on a PC, where the OUT2 pin gates the IRQ line,
//!   the interrupt output is off.
//! - Outside loopback the modem inputs are CTS, DSR and DCD asserted, RI not.
//! - The divisor latch, LCR and SCR store what is written; the line speed has no effect.

#[cfg(test)]
mod tests;

use bulkhead_abi::bounded::BoundedDeque as Deque;

/// I/O port of COM1's first register.
pub const COM1_BASE: u16 = 0x3F8;
/// ISA IRQ (and GSI, identity-mapped by the MADT) of COM1.
pub const COM1_IRQ: u8 = 4;
/// Bytes the receive FIFO holds while the FIFOs are enabled.
pub const RX_FIFO_SIZE: usize = 16;

// Register offsets.
const DATA: u8 = 0; // RBR (read), THR (write), DLL (DLAB)
const IER: u8 = 1; // DLM with DLAB
const IIR_FCR: u8 = 2; // IIR (read), FCR (write)
const LCR: u8 = 3;
const MCR: u8 = 4;
const LSR: u8 = 5;
const MSR: u8 = 6;
const SCR: u8 = 7;

// IER bits.
const IER_ERBFI: u8 = 1 << 0;
const IER_ETBEI: u8 = 1 << 1;
const IER_ELSI: u8 = 1 << 2;
const IER_EDSSI: u8 = 1 << 3;
const IER_WRITABLE: u8 = 0x0F;

// IIR values.
const IIR_NO_INT: u8 = 0x01;
const IIR_MODEM: u8 = 0x00;
const IIR_THRE: u8 = 0x02;
const IIR_RX: u8 = 0x04;
const IIR_LINE: u8 = 0x06;
const IIR_FIFOS: u8 = 0xC0;

// FCR bits.
const FCR_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RX: u8 = 1 << 1;
const FCR_TRIGGER: u8 = 0xC0;

const LCR_DLAB: u8 = 1 << 7;

// MCR bits.
const MCR_DTR: u8 = 1 << 0;
const MCR_RTS: u8 = 1 << 1;
const MCR_OUT1: u8 = 1 << 2;
const MCR_OUT2: u8 = 1 << 3;
const MCR_LOOP: u8 = 1 << 4;
const MCR_WRITABLE: u8 = 0x1F;

// LSR bits.
const LSR_DR: u8 = 1 << 0;
const LSR_OE: u8 = 1 << 1;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

// MSR bits.
const MSR_DCTS: u8 = 1 << 0;
const MSR_DDSR: u8 = 1 << 1;
const MSR_TERI: u8 = 1 << 2;
const MSR_DDCD: u8 = 1 << 3;
const MSR_CTS: u8 = 1 << 4;
const MSR_DSR: u8 = 1 << 5;
const MSR_RI: u8 = 1 << 6;
const MSR_DCD: u8 = 1 << 7;

/// The UART's registers and receive FIFO.
#[derive(Clone, Debug)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// FCR bit 0 (FIFOs enabled) and bits 6..7 (trigger level), as last programmed.
    fcr: u8,
    /// LSR error bits (overrun) until LSR is read.
    lsr_errors: u8,
    /// MSR bits 0..3 (changes of the modem inputs) until MSR is read.
    msr_delta: u8,
    /// The THR-empty interrupt condition.
    thre_pending: bool,
    rx: Deque<u8, RX_FIFO_SIZE>,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// A UART in its reset state: interrupts off, FIFOs off, 8 bits at 9600 baud (divisor 12),
    /// MCR 0.
    pub fn new() -> Uart {
        Uart {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 12,
            dlm: 0,
            fcr: 0,
            lsr_errors: 0,
            msr_delta: 0,
            thre_pending: false,
            rx: Deque::new(),
        }
    }

    /// A guest read of the register at `offset` (0..8) from [`COM1_BASE`]. Other offsets
    /// read 0xff.
    pub fn read(&mut self, offset: u8) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            DATA if dlab => self.dll,
            DATA => self.rx.pop_front().unwrap_or(0),
            IER if dlab => self.dlm,
            IER => self.ier,
            IIR_FCR => {
                let source = self.interrupt_source();
                if source == Some(IIR_THRE) {
                    self.thre_pending = false;
                }
                let fifos = if self.fifos_enabled() { IIR_FIFOS } else { 0 };
                fifos | source.unwrap_or(IIR_NO_INT)
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
                let value = dr | self.lsr_errors | LSR_THRE | LSR_TEMT;
                self.lsr_errors = 0;
                value
            }
            MSR => {
                let value = modem_inputs(self.mcr) | self.msr_delta;
                self.msr_delta = 0;
                value
            }
            SCR => self.scr,
            _ => 0xFF,
        }
    }

    /// A guest write of `value` to the register at `offset` (0..8) from [`COM1_BASE`];
    /// `Some(byte)` when it transmits a byte (a THR write outside loopback). Writes to other
    /// offsets are ignored.
    pub fn write(&mut self, offset: u8, value: u8) -> Option<u8> {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            DATA if dlab => self.dll = value,
            DATA => {
                // The byte leaves the THR at once: THR is empty again.
                self.thre_pending = true;
                if self.mcr & MCR_LOOP == 0 {
                    return Some(value);
                }
                if self.rx.len() >= self.rx_capacity() || self.rx.push_back(value).is_err() {
                    self.lsr_errors |= LSR_OE;
                }
            }
            IER if dlab => self.dlm = value,
            IER => {
                let new = value & IER_WRITABLE;
                if new & IER_ETBEI != 0 && self.ier & IER_ETBEI == 0 {
                    // Enabling the THRE interrupt while THR is empty raises it.
                    self.thre_pending = true;
                }
                self.ier = new;
            }
            IIR_FCR => self.write_fcr(value),
            LCR => self.lcr = value,
            MCR => {
                let new = value & MCR_WRITABLE;
                self.msr_delta |= modem_deltas(modem_inputs(self.mcr), modem_inputs(new));
                self.mcr = new;
            }
            SCR => self.scr = value,
            // LSR and MSR are read-only (the datasheet leaves writes to them for factory
            // testing).
            _ => {}
        }
        None
    }

    /// Host input for the guest: queues `byte` in the receive FIFO; `false` when the FIFO is
    /// full (16 bytes with FIFOs on, 1 without) or the UART is in loopback, which
    /// disconnects the serial input. The caller keeps the byte and offers it again later.
    pub fn receive(&mut self, byte: u8) -> bool {
        if self.mcr & MCR_LOOP != 0 || self.rx.len() >= self.rx_capacity() {
            return false;
        }
        self.rx.push_back(byte).is_ok()
    }

    /// The interrupt output (IRQ 4): an enabled interrupt condition is pending and MCR.OUT2
    /// is set, outside loopback (where the OUT2 pin that gates the IRQ on a PC is forced
    /// inactive). The ISA line is edge-triggered: the caller raises the IRQ on each
    /// low-to-high transition.
    pub fn irq_line(&self) -> bool {
        self.mcr & MCR_OUT2 != 0 && self.mcr & MCR_LOOP == 0 && self.interrupt_source().is_some()
    }

    /// Whether LCR.DLAB is set (offsets 0 and 1 reach the divisor latch).
    pub fn divisor_latch(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn fifos_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifos_enabled() {
            RX_FIFO_SIZE
        } else {
            1
        }
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & FCR_ENABLE != 0;
        if enable != self.fifos_enabled() {
            // Switching between FIFO and 16450 mode empties the FIFOs.
            self.rx.clear();
        }
        if enable {
            if value & FCR_CLEAR_RX != 0 {
                self.rx.clear();
            }
            // (Bit 2, clear the transmit FIFO: always empty. Bit 3, DMA mode: no DMA.)
            self.fcr = value & (FCR_ENABLE | FCR_TRIGGER);
        } else {
            // The other bits only take effect with bit 0 set.
            self.fcr = 0;
        }
    }

    /// The highest-priority enabled interrupt condition, as its IIR identification bits.
    fn interrupt_source(&self) -> Option<u8> {
        if self.ier & IER_ELSI != 0 && self.lsr_errors != 0 {
            Some(IIR_LINE)
        } else if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            Some(IIR_RX)
        } else if self.ier & IER_ETBEI != 0 && self.thre_pending {
            Some(IIR_THRE)
        } else if self.ier & IER_EDSSI != 0 && self.msr_delta != 0 {
            Some(IIR_MODEM)
        } else {
            None
        }
    }
}

/// MSR bits 4..7 (CTS, DSR, RI, DCD) for modem control `mcr`.
fn modem_inputs(mcr: u8) -> u8 {
    if mcr & MCR_LOOP == 0 {
        return MSR_CTS | MSR_DSR | MSR_DCD;
    }
    let mut inputs = 0;
    if mcr & MCR_RTS != 0 {
        inputs |= MSR_CTS;
    }
    if mcr & MCR_DTR != 0 {
        inputs |= MSR_DSR;
    }
    if mcr & MCR_OUT1 != 0 {
        inputs |= MSR_RI;
    }
    if mcr & MCR_OUT2 != 0 {
        inputs |= MSR_DCD;
    }
    inputs
}

/// MSR bits 0..3 for a change of the modem inputs from `old` to `new`: DCTS, DDSR and DDCD
/// on any change, TERI when RI goes from 1 to 0.
fn modem_deltas(old: u8, new: u8) -> u8 {
    let changed = old ^ new;
    let mut delta = 0;
    if changed & MSR_CTS != 0 {
        delta |= MSR_DCTS;
    }
    if changed & MSR_DSR != 0 {
        delta |= MSR_DDSR;
    }
    if old & MSR_RI != 0 && new & MSR_RI == 0 {
        delta |= MSR_TERI;
    }
    if changed & MSR_DCD != 0 {
        delta |= MSR_DDCD;
    }
    delta
}
