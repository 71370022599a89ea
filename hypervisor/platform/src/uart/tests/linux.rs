//! The 8250 driver's probe, startup and output paths, replayed.

extern crate std;

use super::*;

/// Linux's `autoconfig()` for a legacy port, with `autoconfig_16550a()`'s variant probes:
/// the port type it decides on.
fn linux_autoconfig(u: &mut Uart) -> &'static str {
    // Existence test: IER reads back what was written in bits 0..3.
    let scratch = u.read(IER);
    u.write(IER, 0);
    let scratch2 = u.read(IER) & 0x0F;
    u.write(IER, 0x0F);
    let scratch3 = u.read(IER) & 0x0F;
    u.write(IER, scratch);
    if scratch2 != 0 || scratch3 != 0x0F {
        return "none";
    }
    let save_mcr = u.read(MCR);
    let save_lcr = u.read(LCR);
    // Loopback test (skipped for COM1..4 by UPF_SKIP_TEST, but a 16550A passes it).
    u.write(MCR, 0x10 | 0x0A);
    let status1 = u.read(MSR) & 0xF0;
    u.write(MCR, save_mcr);
    if status1 != 0x90 {
        return "no loopback";
    }
    u.write(LCR, 0xBF);
    u.write(EFR, 0);
    u.write(LCR, 0);
    u.write(FCR, 0x01);
    let scratch = u.read(IIR);
    let kind = match scratch >> 6 {
        0 => "8250/16450",
        1 => "unknown",
        2 => "16550",
        _ => autoconfig_16550a(u),
    };
    u.write(LCR, save_lcr);
    // Reset.
    u.write(MCR, save_mcr);
    u.write(FCR, 0x01);
    u.write(FCR, 0x07);
    u.write(FCR, 0);
    u.read(RX);
    u.write(IER, 0);
    kind
}

fn autoconfig_16550a(u: &mut Uart) -> &'static str {
    u.write(LCR, 0x80);
    if u.read(EFR) == 0 {
        return "16650 (EFR with DLAB)";
    }
    u.write(LCR, 0xBF);
    if u.read(EFR) == 0 {
        return "EFRv2";
    }
    // National SuperIO: the loop bit visible in EXCR1 behind LCR 0xE0.
    u.write(LCR, 0);
    let status1 = u.read(MCR);
    u.write(LCR, 0xE0);
    let status2 = u.read(0x02);
    if (status2 ^ status1) & 0x10 == 0 {
        u.write(LCR, 0);
        u.write(MCR, status1 ^ 0x10);
        u.write(LCR, 0xE0);
        let status2 = u.read(0x02);
        u.write(LCR, 0);
        u.write(MCR, status1);
        if (status2 ^ status1) & 0x10 != 0 {
            return "NS16550A";
        }
    }
    // TI16750: IIR bit 5 with the 64-byte FIFO enabled.
    u.write(LCR, 0);
    u.write(FCR, 0x01 | 0x20);
    let status1 = u.read(IIR) >> 5;
    u.write(FCR, 0x01);
    u.write(LCR, 0x80);
    u.write(FCR, 0x01 | 0x20);
    let status2 = u.read(IIR) >> 5;
    u.write(FCR, 0x01);
    u.write(LCR, 0);
    if status1 == 6 && status2 == 7 {
        return "16750";
    }
    // XScale: IER bit 6 (UUE) writable.
    let iersave = u.read(IER);
    u.write(IER, iersave & !0x40);
    if u.read(IER) & 0x40 == 0 {
        u.write(IER, iersave | 0x40);
        if u.read(IER) & 0x40 != 0 {
            return "XScale";
        }
    }
    u.write(IER, iersave);
    "16550A"
}

/// `serial8250_do_startup` after autoconfig: the bugs it would record.
fn linux_startup(u: &mut Uart) -> (bool, bool) {
    u.write(FCR, 0x01);
    u.write(FCR, 0x07);
    u.write(FCR, 0);
    u.read(LSR);
    u.read(RX);
    u.read(IIR);
    u.read(MSR);
    assert_ne!(u.read(LSR), 0xFF, "LSR safety check");
    // The THRE test (interrupts off around it).
    assert_ne!(u.read(LSR) & 0x20, 0);
    u.write(IER, 0x02);
    let iir1 = u.read(IIR);
    u.write(IER, 0);
    u.write(IER, 0x02);
    let iir = u.read(IIR);
    u.write(IER, 0);
    let bug_thre = iir1 & 1 == 0 && iir & 1 != 0;
    u.write(LCR, 0x03);
    u.write(MCR, 0x08 | 0x03); // OUT2, DTR, RTS
    // The TX-enable test.
    u.write(IER, 0x02);
    let lsr = u.read(LSR);
    let iir = u.read(IIR);
    u.write(IER, 0);
    let bug_txen = lsr & 0x40 != 0 && iir & 1 != 0;
    // Clear interrupt registers again, enable RX interrupts.
    u.read(LSR);
    u.read(RX);
    u.read(IIR);
    u.read(MSR);
    u.write(IER, 0x05);
    (bug_thre, bug_txen)
}

/// `serial8250_do_set_termios` for 115200 8N1 with the 16550A's FIFO setup.
fn linux_set_termios(u: &mut Uart) {
    u.write(LCR, 0x83);
    u.write(DLL, 1);
    u.write(DLM, 0);
    u.write(LCR, 0x03);
    u.write(FCR, 0x81);
}

#[test]
fn linux_probes_a_16550a_without_bugs() {
    let mut u = Uart::new();
    assert_eq!(linux_autoconfig(&mut u), "16550A");
    assert_eq!(linux_startup(&mut u), (false, false));
    linux_set_termios(&mut u);
    assert_eq!(u.read(IIR), 0xC1, "FIFOs on, nothing pending");
    assert!(!u.irq_line());
    assert_eq!((u.read(LCR), u.read(MCR)), (0x03, 0x0B));
    u.write(LCR, 0x83);
    assert_eq!((u.read(DLL), u.read(DLM)), (1, 0));
    u.write(LCR, 0x03);
}

#[test]
fn interrupt_driven_output() {
    let mut u = Uart::new();
    linux_autoconfig(&mut u);
    linux_startup(&mut u);
    linux_set_termios(&mut u);
    // start_tx: enable THRI; the UART interrupts at once.
    u.write(IER, 0x07);
    assert!(u.irq_line());
    let mut out = std::vec::Vec::<u8>::new();
    let text = b"hello from userspace, more than one FIFO of it";
    let mut pos = 0;
    let mut interrupts = 0;
    while u.irq_line() {
        interrupts += 1;
        let iir = u.read(IIR);
        assert_eq!(iir, 0xC2, "THRE is the source");
        assert!(!u.irq_line(), "reading IIR acknowledged THRE");
        let lsr = u.read(LSR);
        assert_ne!(lsr & 0x20, 0);
        if pos == text.len() {
            u.write(IER, 0x05); // stop_tx
            break;
        }
        for _ in 0..16 {
            if pos == text.len() {
                break;
            }
            out.push(u.write(0, text[pos]).unwrap());
            pos += 1;
        }
        assert!(u.irq_line(), "THR emptied again");
    }
    assert_eq!(&out[..], &text[..]);
    assert_eq!(interrupts, 4);
    assert!(!u.irq_line());
}

#[test]
fn console_write_polls_and_restores_ier() {
    let mut u = Uart::new();
    linux_autoconfig(&mut u);
    linux_startup(&mut u);
    linux_set_termios(&mut u);
    u.write(IER, 0x07);
    u.read(IIR);
    assert!(!u.irq_line());
    // serial8250_console_write: save IER, clear it, poll LSR, write, restore IER.
    let ier = u.read(IER);
    u.write(IER, 0);
    for &b in b"printk\n" {
        assert_ne!(u.read(LSR) & 0x20, 0);
        assert_eq!(u.write(0, b), Some(b));
    }
    assert_eq!(u.read(LSR) & 0x60, 0x60);
    assert!(!u.irq_line(), "IER 0: no interrupt");
    u.write(IER, ier);
    assert!(u.irq_line(), "THRE raised again when THRI comes back");
}

#[test]
fn receive_interrupt_and_drain() {
    let mut u = Uart::new();
    linux_autoconfig(&mut u);
    linux_startup(&mut u);
    linux_set_termios(&mut u);
    assert!(!u.irq_line());
    for &b in b"ls\n" {
        assert!(u.receive(b));
    }
    assert!(u.irq_line());
    assert_eq!(u.read(IIR), 0xC4);
    let mut got = std::vec::Vec::<u8>::new();
    while u.read(LSR) & 1 != 0 {
        got.push(u.read(RX));
    }
    assert_eq!(&got[..], b"ls\n");
    assert!(!u.irq_line());
    assert_eq!(u.read(IIR), 0xC1);
}
