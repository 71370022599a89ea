mod linux;

use super::*;
use proptest::prelude::*;

const RX: u8 = 0;
const DLL: u8 = 0;
const DLM: u8 = 1;
const IIR: u8 = 2;
const FCR: u8 = 2;
const EFR: u8 = 2;

#[test]
fn receive_fifo_is_bounded() {
    let mut u = Uart::new();
    assert!(u.receive(1));
    assert!(!u.receive(2), "one byte in 16450 mode");
    u.write(FCR, 0x01);
    assert_eq!(u.read(LSR) & 1, 0, "enabling the FIFOs empties them");
    for i in 0..RX_FIFO_SIZE as u8 {
        assert!(u.receive(i));
    }
    assert!(!u.receive(99));
    assert_eq!(u.read(RX), 0);
    assert!(u.receive(99));
    u.write(FCR, 0x03);
    assert_eq!(u.read(LSR) & 1, 0, "FCR bit 1 clears the receive FIFO");
    assert_eq!(u.read(RX), 0, "empty RBR reads 0");
}

#[test]
fn thre_interrupt_rules() {
    let mut u = Uart::new();
    u.write(MCR, 0x08);
    assert!(!u.irq_line());
    u.write(IER, 0x02);
    assert!(u.irq_line(), "ETBEI 0 -> 1 with THR empty");
    u.write(IER, 0x02);
    assert!(u.irq_line(), "rewriting the same IER changes nothing");
    assert_eq!(u.read(IIR), 0x02);
    assert!(!u.irq_line());
    u.write(IER, 0x02);
    assert!(!u.irq_line(), "no 0 -> 1 transition, no new THRE");
    assert_eq!(u.read(IIR), 0x01);
    u.write(0, b'x');
    assert!(u.irq_line(), "after a THR write");
    u.write(MCR, 0x00);
    assert!(!u.irq_line(), "OUT2 gates the line");
    u.write(MCR, 0x08);
    assert!(u.irq_line());
    u.write(IER, 0);
    assert!(!u.irq_line());
}

#[test]
fn interrupt_priorities() {
    let mut u = Uart::new();
    u.write(MCR, 0x08);
    u.write(IER, 0x0F);
    u.receive(b'a');
    u.write(MCR, 0x09); // DTR change outside loopback: no modem input change
    assert_eq!(u.read(IIR), 0x04, "RX data over THRE");
    u.read(RX);
    assert_eq!(u.read(IIR), 0x02, "then THRE");
    assert_eq!(u.read(IIR), 0x01, "THRE acknowledged, no modem delta");
    // Loopback overrun: line status has the top priority.
    u.write(MCR, 0x18);
    assert_eq!(
        u.read(MSR),
        0x80 | 0x02 | 0x01,
        "DCD = OUT2; CTS and DSR fell"
    );
    u.write(0, 1);
    u.write(0, 2);
    assert!(!u.irq_line(), "loopback disconnects the interrupt output");
    assert_eq!(u.read(IIR), 0x06);
    assert_eq!(u.read(LSR) & 0x03, 0x03, "DR and OE");
    assert_eq!(u.read(LSR) & 0x02, 0, "reading LSR clears OE");
    assert_eq!(u.read(IIR), 0x04);
    assert_eq!(u.read(RX), 1, "the second byte was lost");
    // Modem status last.
    u.write(IER, 0x08);
    u.write(MCR, 0x1A); // RTS -> CTS
    assert_eq!(u.read(IIR), 0x00);
    assert_eq!(u.read(MSR), 0x10 | 0x80 | 0x01);
    assert_eq!(u.read(IIR), 0x01);
}

#[test]
fn loopback_msr_mirrors_mcr() {
    let mut u = Uart::new();
    assert_eq!(u.read(MSR), 0xB0, "CTS, DSR, DCD outside loopback");
    u.write(MCR, 0x1F);
    assert_eq!(u.read(MSR) & 0xF0, 0xF0);
    u.write(MCR, 0x1B); // OUT1 falls: trailing edge of RI
    assert_eq!(u.read(MSR), 0xB0 | 0x04);
    assert!(!u.receive(b'x'), "serial input disconnected in loopback");
    assert_eq!(u.write(0, b'y'), None);
    assert_eq!(u.read(RX), b'y');
    u.write(MCR, 0x0B);
    assert_eq!(u.read(MSR), 0xB0);
    assert_eq!(u.write(0, b'z'), Some(b'z'));
}

#[test]
fn register_masks() {
    let mut u = Uart::new();
    u.write(IER, 0xFF);
    assert_eq!(u.read(IER), 0x0F);
    u.write(MCR, 0xFF);
    assert_eq!(u.read(MCR), 0x1F);
    u.write(SCR, 0x5A);
    assert_eq!(u.read(SCR), 0x5A);
    u.write(LSR, 0);
    u.write(MSR, 0);
    assert_eq!(u.read(LSR), 0x60);
    assert_eq!(u.read(8), 0xFF);
    assert_eq!(u.write(8, 1), None);
    assert_eq!(u.read(IIR) >> 6, 0, "FIFOs off after reset");
}

proptest! {
    #[test]
    fn never_panics_and_keeps_invariants(
        ops in proptest::collection::vec((0u8..3, any::<u8>(), any::<u8>()), 0..300)
    ) {
        let mut u = Uart::new();
        for (kind, offset, value) in ops {
            match kind {
                0 => {
                    u.read(offset % 10);
                }
                1 => {
                    let sent = u.write(offset % 10, value);
                    if sent.is_some() {
                        prop_assert_eq!(sent, Some(value));
                        prop_assert_eq!(u.read(MCR) & 0x10, 0);
                    }
                }
                _ => {
                    u.receive(value);
                }
            }
            prop_assert_eq!(u.read(LSR) & 0x60, 0x60);
            if u.read(LCR) & 0x80 == 0 {
                prop_assert_eq!(u.read(IER) & 0xF0, 0);
            }
            let mcr = u.read(MCR);
            if u.irq_line() {
                prop_assert!(mcr & 0x08 != 0 && mcr & 0x10 == 0);
            }
        }
    }
}
