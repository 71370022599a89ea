//! The timer: one-shot, periodic and TSC-deadline modes, the divider, masking.

use super::*;
use std::vec::Vec;

#[test]
fn one_shot() {
    let mut a = apic();
    a.write(TDCR, DIV1, 0);
    a.write(TIMER, 0x30, 0);
    a.write(TMICT, 100, 1000);
    assert_eq!(a.next_timer_tsc(), Some(2000));
    assert_eq!(a.read(TMCCT, 1000), 100);
    assert_eq!(a.read(TMCCT, 1500), 50);
    assert_eq!(a.read(TMCCT, 1999), 1);
    a.update_timer(1999);
    assert_eq!(a.pending(), None);
    a.update_timer(2000);
    assert_eq!(a.pending(), Some(0x30));
    assert_eq!(a.next_timer_tsc(), None);
    assert_eq!(a.read(TMCCT, 2500), 0);
    assert_eq!(a.read(TMICT, 2500), 100);
    // writing 0 stops a running timer
    a.write(TMICT, 100, 3000);
    a.write(TMICT, 0, 3100);
    assert_eq!(a.next_timer_tsc(), None);
    assert_eq!(a.read(TMCCT, 3200), 0);
}

#[test]
fn periodic_without_drift() {
    let mut a = apic();
    a.write(TDCR, DIV1, 0);
    a.write(TIMER, 0x2_0031, 0);
    a.write(TMICT, 100, 0);
    a.update_timer(1000);
    assert_eq!(a.pending(), Some(0x31));
    a.acknowledge(0x31);
    a.write(0xB0, 0, 1000);
    assert_eq!(a.next_timer_tsc(), Some(2000));
    // late by 1.5 periods: one interrupt, the next expiry stays on the grid
    a.update_timer(3500);
    assert_eq!(a.pending(), Some(0x31));
    assert_eq!(a.next_timer_tsc(), Some(4000));
    assert_eq!(a.read(TMCCT, 3500), 50);
    assert_eq!(a.read(TMCCT, 4000), 100);
    // far in the future
    a.update_timer(1_000_000_000_005);
    assert_eq!(a.next_timer_tsc(), Some(1_000_000_001_000));
}

#[test]
fn periodic_rounds_without_drift() {
    // 3 TSC ticks per 1 bus tick... not integral: 1 GHz TSC, 300 MHz bus
    let mut a = LocalApic::new(0, 1_000_000, 300_000);
    a.write(0xF0, 0x1FF, 0);
    a.write(TDCR, DIV1, 0);
    a.write(TIMER, 0x2_0040, 0);
    a.write(TMICT, 1, 0);
    let mut fires = Vec::new();
    for _ in 0..300 {
        let t = a.next_timer_tsc().unwrap();
        fires.push(t);
        a.update_timer(t);
    }
    // one count = 10/3 ticks: after 300 counts exactly 1000 ticks
    assert_eq!(fires[299], 1000);
    assert_eq!(&fires[..3], &[4, 7, 10]);
}

#[test]
fn tsc_deadline() {
    let mut a = apic();
    // ignored outside TSC-deadline mode
    a.set_tsc_deadline(5000, 0);
    assert_eq!(a.tsc_deadline(), 0);
    a.write(TIMER, 0x4_0032, 0);
    a.set_tsc_deadline(5000, 0);
    assert_eq!(a.tsc_deadline(), 5000);
    assert_eq!(a.next_timer_tsc(), Some(5000));
    // initial count is ignored in this mode
    a.write(TMICT, 10, 0);
    assert_eq!(a.read(TMICT, 0), 0);
    a.update_timer(4999);
    assert_eq!(a.pending(), None);
    a.update_timer(5000);
    assert_eq!(a.pending(), Some(0x32));
    assert_eq!(a.tsc_deadline(), 0);
    assert_eq!(a.next_timer_tsc(), None);
    a.acknowledge(0x32);
    a.write(0xB0, 0, 5000);
    // a deadline already passed fires at once; 0 disarms
    a.set_tsc_deadline(10, 6000);
    assert_eq!(a.pending(), Some(0x32));
    a.set_tsc_deadline(9000, 6000);
    a.set_tsc_deadline(0, 6000);
    assert_eq!(a.next_timer_tsc(), None);
    // switching the mode disarms
    a.set_tsc_deadline(9000, 6000);
    a.write(TIMER, 0x32, 6000);
    assert_eq!(a.next_timer_tsc(), None);
    a.write(TIMER, 0x4_0032, 6000);
    assert_eq!(a.tsc_deadline(), 0);
}

#[test]
fn mode_switch_disarms_countdown() {
    let mut a = apic();
    a.write(TIMER, 0x33, 0);
    a.write(TMICT, 100, 0);
    a.write(TIMER, 0x2_0033, 10);
    assert_eq!(a.next_timer_tsc(), None);
    assert_eq!(a.read(TMCCT, 20), 0);
    // rewriting the same mode (e.g. the vector) keeps it running
    a.write(TMICT, 100, 0);
    a.write(TIMER, 0x2_0034, 10);
    assert!(a.next_timer_tsc().is_some());
}

#[test]
fn masked_timer() {
    let mut a = apic();
    a.write(TDCR, DIV1, 0);
    a.write(TIMER, 0x1_0035, 0);
    a.write(TMICT, 100, 0);
    assert_eq!(a.next_timer_tsc(), None);
    assert_eq!(a.read(TMCCT, 500), 50, "a masked timer still counts");
    a.update_timer(1000);
    assert_eq!(a.pending(), None);
    assert_eq!(a.read(0x200 + 0x10, 1000), 0);
    // periodic, unmasked after some periods passed while masked
    a.write(TIMER, 0x3_0035, 2000);
    a.write(TMICT, 100, 2000);
    a.write(TIMER, 0x2_0035, 3500);
    assert_eq!(a.pending(), None, "expiries while masked are lost");
    assert_eq!(a.next_timer_tsc(), Some(4000));
}

#[test]
fn divide_configuration() {
    for (dcr, div) in [
        (0x0, 2),
        (0x1, 4),
        (0x2, 8),
        (0x3, 16),
        (0x8, 32),
        (0x9, 64),
        (0xA, 128),
        (0xB, 1),
        (0xFFFF_FFF4, 2),
        (0xFFFF_FFF8, 32),
    ] {
        let mut a = apic();
        a.write(TDCR, dcr, 0);
        assert_eq!(a.read(TDCR, 0), dcr & 0xB);
        a.write(TIMER, 0x30, 0);
        a.write(TMICT, 7, 100);
        assert_eq!(a.next_timer_tsc(), Some(100 + 7 * div * 10), "{dcr:#x}");
    }
    // changing the divider mid-count continues from the current count
    let mut a = apic();
    a.write(TDCR, DIV1, 0);
    a.write(TIMER, 0x30, 0);
    a.write(TMICT, 100, 0);
    a.write(TDCR, 0x0, 500); // 50 left, now at /2
    assert_eq!(a.read(TMCCT, 500), 50);
    assert_eq!(a.next_timer_tsc(), Some(500 + 50 * 20));
}

#[test]
fn huge_values_do_not_overflow() {
    let mut a = LocalApic::new(0, u64::MAX, 1);
    a.write(0xF0, 0x1FF, 0);
    a.write(TDCR, 0xA, 0);
    a.write(TIMER, 0x2_0030, 0);
    a.write(TMICT, u32::MAX, u64::MAX - 5);
    assert_eq!(a.next_timer_tsc(), Some(u64::MAX));
    a.update_timer(u64::MAX);
    assert_eq!(a.read(TMCCT, 0), u32::MAX, "time going backwards");
    let mut b = LocalApic::new(0, 0, 0);
    b.write(TMICT, 1, 0);
    assert!(b.read(TMCCT, 1) <= 1);
}
