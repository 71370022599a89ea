extern crate std;

use super::*;
use proptest::prelude::*;

mod ipi;
mod timer;

/// 1 GHz TSC, 100 MHz bus: one bus tick is 10 TSC ticks.
fn apic() -> LocalApic {
    let mut a = LocalApic::new(0, 1_000_000, 100_000);
    a.write(0xF0, 0x1FF, 0);
    a
}

const TIMER: u32 = 0x320;
const TMICT: u32 = 0x380;
const TMCCT: u32 = 0x390;
const TDCR: u32 = 0x3E0;
const DIV1: u32 = 0xB;

#[test]
fn power_on_state() {
    let mut a = LocalApic::new(3, 1_000_000, 100_000);
    assert_eq!(a.read(0x20, 0), 3 << 24);
    assert_eq!(a.read(0x30, 0), 0x0005_0014);
    assert_eq!(a.read(0xF0, 0), 0xFF);
    assert_eq!(a.read(0xE0, 0), 0xFFFF_FFFF);
    for off in [0x2F0, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370] {
        assert_eq!(a.read(off, 0), 1 << 16, "{off:#x}");
    }
    assert!(!a.is_enabled());
    a.request(0x30, false);
    assert_eq!(a.pending(), None, "software-disabled");
    a.write(0xF0, 0x1FF, 0);
    assert_eq!(a.pending(), Some(0x30));
    // reserved, unaligned and out-of-page offsets
    for off in [0x00, 0x10, 0x24, 0x90, 0xC0, 0x280, 0x3F0, 0x1000, u32::MAX] {
        assert_eq!(a.read(off, 0), 0, "{off:#x}");
    }
}

#[test]
fn eoi_retires_highest_in_service_first() {
    let mut a = apic();
    a.request(0x40, false);
    assert_eq!(a.pending(), Some(0x40));
    a.acknowledge(0x40);
    assert_eq!(a.read(0xA0, 0), 0x40);
    a.request(0x80, false);
    assert_eq!(a.pending(), Some(0x80));
    a.acknowledge(0x80);
    assert_eq!(a.read(0x100 + 0x40, 0), 1 << 0); // ISR word 4: vector 0x80
    assert_eq!(a.read(0x100 + 0x20, 0), 1 << 0); // ISR word 2: vector 0x40
    assert_eq!(a.write(0xB0, 0, 0), ApicEffect::None);
    assert_eq!(a.read(0x100 + 0x40, 0), 0);
    assert_eq!(a.read(0x100 + 0x20, 0), 1);
    a.write(0xB0, 0, 0);
    assert_eq!(a.read(0x100 + 0x20, 0), 0);
    assert_eq!(
        a.write(0xB0, 0, 0),
        ApicEffect::None,
        "EOI with nothing in service"
    );
}

#[test]
fn priorities() {
    let mut a = apic();
    a.write(0x80, 0x55, 0);
    assert_eq!(a.read(0x80, 0), 0x55);
    assert_eq!(a.read(0xA0, 0), 0x55);
    a.request(0x5F, false);
    assert_eq!(a.pending(), None, "class 5 is not above TPR class 5");
    a.request(0x61, false);
    assert_eq!(a.pending(), Some(0x61));
    a.acknowledge(0x61);
    assert_eq!(a.read(0xA0, 0), 0x60);
    a.request(0x6A, false);
    assert_eq!(a.pending(), None, "same class as the one in service");
    a.write(0xB0, 0, 0);
    assert_eq!(a.pending(), Some(0x6A));
    a.write(0x80, 0xFF, 0);
    assert_eq!(a.pending(), None);
    a.write(0x80, 0x123, 0);
    assert_eq!(a.read(0x80, 0), 0x23);
    // illegal vectors are never requested
    a.request(15, false);
    assert_eq!(a.read(0x200, 0), 0);
}

#[test]
fn level_triggered_eoi() {
    let mut a = apic();
    a.request(0x41, true);
    assert_eq!(a.read(0x180 + 0x20, 0), 1 << 1);
    a.acknowledge(0x41);
    a.request(0x30, false);
    a.acknowledge(0x30); // not pending below 0x41's class, acknowledged anyway
    assert_eq!(a.write(0xB0, 0, 0), ApicEffect::LevelEoi(0x41));
    assert_eq!(a.write(0xB0, 0, 0), ApicEffect::None);
}

#[test]
fn self_ipi() {
    let mut a = LocalApic::new(2, 1_000_000, 100_000);
    a.write(0xF0, 0x1FF, 0);
    let irr = |a: &mut LocalApic, v: u32| a.read(0x200 + (v >> 5) * 0x10, 0) & (1 << (v & 31));
    a.write(0x300, 0x4_0090, 0); // self
    assert_ne!(irr(&mut a, 0x90), 0);
    assert_eq!(a.read(0x300, 0), 0x4_0090, "delivery status idle");
    a.write(0x300, 0x8_0091, 0); // all including self
    assert_ne!(irr(&mut a, 0x91), 0);
    a.write(0x300, 0xC_0092, 0); // all excluding self
    assert_eq!(irr(&mut a, 0x92), 0);
    a.write(0x310, 2 << 24, 0);
    a.write(0x300, 0x93, 0); // physical, own id
    assert_ne!(irr(&mut a, 0x93), 0);
    a.write(0x310, 1 << 24, 0);
    a.write(0x300, 0x94, 0); // physical, another id
    assert_eq!(irr(&mut a, 0x94), 0);
    a.write(0x300, 0x4_0495, 0); // NMI to self
    a.write(0x300, 0x4_0500, 0); // INIT
    a.write(0x300, 0x4_0601, 0); // SIPI
    assert_eq!(irr(&mut a, 0x95), 0);
    // logical, flat model
    a.write(0xD0, 0x0100_0000, 0);
    a.write(0x310, 0x0300_0000, 0);
    a.write(0x300, 0x896, 0);
    assert_ne!(irr(&mut a, 0x96), 0);
    a.write(0x310, 0x0200_0000, 0);
    a.write(0x300, 0x897, 0);
    assert_eq!(irr(&mut a, 0x97), 0);
    assert_eq!(a.read(0x310, 0), 0x0200_0000);
}

#[test]
fn software_disable_masks_lvts() {
    let mut a = apic();
    a.write(TIMER, 0x2_0030, 0);
    a.write(0x350, 0x700, 0);
    a.write(0xF0, 0xFF, 0);
    assert!(!a.is_enabled());
    assert_eq!(a.read(TIMER, 0), 0x3_0030);
    assert_eq!(a.read(0x350, 0), 0x1_0700);
    a.write(TIMER, 0x2_0030, 0);
    assert_eq!(a.read(TIMER, 0), 0x3_0030, "mask stays set while disabled");
    a.write(0xF0, 0x1FF, 0);
    a.write(TIMER, 0x2_0030, 0);
    assert_eq!(a.read(TIMER, 0), 0x2_0030);
}

#[test]
fn writable_bits() {
    let mut a = apic();
    for (off, bits) in [
        (0x2F0, 0x0001_07FF),
        (0x320, 0x0007_00FF),
        (0x330, 0x0001_07FF),
        (0x340, 0x0001_07FF),
        (0x350, 0x0001_A7FF),
        (0x360, 0x0001_A7FF),
        (0x370, 0x0001_00FF),
        (0xD0, 0xFF00_0000),
        (0xE0, 0xFFFF_FFFF),
        (0xF0, 0x3FF),
        (0x20, 0),
        (0x30, 0x0005_0014),
        (0x280, 0),
        (0x390, 0),
    ] {
        a.write(off, u32::MAX, 0);
        assert_eq!(a.read(off, 0), bits, "{off:#x}");
    }
    a.write(0xE0, 0, 0);
    assert_eq!(a.read(0xE0, 0), 0x0FFF_FFFF);
}

#[derive(Debug, Clone)]
enum Op {
    Read(u32, u64),
    Write(u32, u32, u64),
    Request(u8, bool),
    Update(u64),
    Acknowledge(u8),
    Deadline(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let offset = prop_oneof![(0u32..0x40).prop_map(|i| i * 0x10), any::<u32>()];
    let time = prop_oneof![0u64..100_000, any::<u64>()];
    prop_oneof![
        (offset.clone(), time.clone()).prop_map(|(o, t)| Op::Read(o, t)),
        (offset, any::<u32>(), time.clone()).prop_map(|(o, v, t)| Op::Write(o, v, t)),
        (any::<u8>(), any::<bool>()).prop_map(|(v, l)| Op::Request(v, l)),
        time.clone().prop_map(Op::Update),
        any::<u8>().prop_map(Op::Acknowledge),
        (time.clone(), time).prop_map(|(d, t)| Op::Deadline(d, t)),
    ]
}

proptest! {
    #[test]
    fn arbitrary_operations(
        tsc in any::<u64>(), bus in any::<u64>(), ops in proptest::collection::vec(op(), 0..60),
    ) {
        let mut a = LocalApic::new(0, tsc, bus);
        a.write(0xF0, 0x1FF, 0);
        for op in ops {
            match op {
                Op::Read(o, t) => { a.read(o, t); }
                Op::Write(o, v, t) => { a.write(o, v, t); }
                Op::Request(v, l) => a.request(v, l),
                Op::Update(t) => a.update_timer(t),
                Op::Acknowledge(v) => a.acknowledge(v),
                Op::Deadline(d, t) => a.set_tsc_deadline(d, t),
            }
            let _ = a.next_timer_tsc();
            if let Some(v) = a.pending() {
                let ppr = a.read(0xA0, 0);
                prop_assert!(u32::from(v >> 4) > ppr >> 4, "{v:#x} ppr {ppr:#x}");
                prop_assert!(v >= 16);
                a.acknowledge(v);
            }
        }
    }
}
