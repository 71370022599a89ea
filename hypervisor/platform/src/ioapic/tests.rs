extern crate std;

use super::*;
use crate::lapic::IpiDest;
use proptest::prelude::*;

fn reg(io: &mut IoApic, index: u32) -> u32 {
    io.write(0x00, index);
    io.read(0x10)
}

fn program(io: &mut IoApic, pin: u8, low: u32) -> Option<Delivery> {
    io.write(0x00, 0x10 + 2 * u32::from(pin));
    io.write(0x10, low)
}

const EDGE: u32 = 0;
const LEVEL_BIT: u32 = 1 << 15;
const MASK_BIT: u32 = 1 << 16;
const RIRR: u32 = 1 << 14;

/// A fixed, edge-triggered delivery to physical APIC 0.
fn edge(vector: u8) -> Option<Delivery> {
    Some(Delivery {
        vector,
        level: false,
        dest: IpiDest::Physical(0),
        lowest_priority: false,
    })
}

/// A fixed, level-triggered delivery to physical APIC 0.
fn level(vector: u8) -> Option<Delivery> {
    Some(Delivery {
        level: true,
        ..edge(vector)?
    })
}

#[test]
fn identification_registers() {
    let mut io = IoApic::new(0x12);
    assert_eq!(reg(&mut io, 0x00), 0x0200_0000, "4-bit id");
    assert_eq!(reg(&mut io, 0x01), 0x0017_0020);
    assert_eq!(reg(&mut io, 0x02), 0x0200_0000);
    io.write(0x00, 0x00);
    io.write(0x10, 0x0F00_0000 | 0xFFFF);
    assert_eq!(reg(&mut io, 0x00), 0x0F00_0000);
    io.write(0x00, 0x01);
    io.write(0x10, 0);
    assert_eq!(reg(&mut io, 0x01), 0x0017_0020, "read-only");
    assert_eq!(reg(&mut io, 0x03), 0);
    assert_eq!(reg(&mut io, 0x40), 0, "beyond entry 23");
    io.write(0x00, 0x1_23);
    assert_eq!(io.read(0x00), 0x23);
    assert_eq!(io.read(0x20), 0);
    assert_eq!(io.read(0x04), 0);
}

#[test]
fn entries_power_on_masked_and_keep_writable_bits() {
    let mut io = IoApic::new(0);
    for pin in 0..PINS as u32 {
        assert_eq!(reg(&mut io, 0x10 + 2 * pin), MASK_BIT);
        assert_eq!(reg(&mut io, 0x11 + 2 * pin), 0);
    }
    program(&mut io, 23, u32::MAX);
    assert_eq!(
        reg(&mut io, 0x3E),
        0x0001_AFFF,
        "delivery status and remote IRR read-only"
    );
    io.write(0x00, 0x3F);
    io.write(0x10, u32::MAX);
    assert_eq!(reg(&mut io, 0x3F), 0xFF00_0000);
    assert_eq!(
        reg(&mut io, 0x3E),
        0x0001_AFFF,
        "writing the high half keeps the low"
    );
}

#[test]
fn edge_triggered() {
    let mut io = IoApic::new(0);
    assert_eq!(program(&mut io, 4, 0x34 | EDGE), None);
    assert_eq!(io.set_level(4, true), edge(0x34));
    assert_eq!(io.set_level(4, true), None, "no edge");
    assert_eq!(io.set_level(4, false), None);
    assert_eq!(io.set_level(4, true), edge(0x34), "no EOI needed");
    io.set_level(4, false);
    // an edge while masked is lost, and unmasking a high edge line does not deliver
    program(&mut io, 4, 0x34 | MASK_BIT);
    assert_eq!(io.set_level(4, true), None);
    assert_eq!(program(&mut io, 4, 0x34), None);
    // polarity is only stored
    io.set_level(4, false);
    program(&mut io, 4, 0x34 | 1 << 13);
    assert_eq!(reg(&mut io, 0x18), 0x2034);
    assert_eq!(io.set_level(4, true), edge(0x34));
}

#[test]
fn level_triggered() {
    let mut io = IoApic::new(0);
    program(&mut io, 9, 0x39 | LEVEL_BIT);
    assert_eq!(io.set_level(9, true), level(0x39));
    assert_eq!(reg(&mut io, 0x22), 0x39 | LEVEL_BIT | RIRR);
    assert_eq!(io.set_level(9, true), None, "remote IRR set");
    assert_eq!(io.eoi(0x38), None, "another vector");
    assert_eq!(io.eoi(0x39), level(0x39), "still asserted: delivered again");
    io.set_level(9, false);
    assert_eq!(io.eoi(0x39), None);
    assert_eq!(reg(&mut io, 0x22), 0x39 | LEVEL_BIT);
    assert_eq!(io.set_level(9, true), level(0x39));
    // the EOI register does the same
    io.set_level(9, false);
    assert_eq!(io.write(0x40, 0x39), None);
    assert_eq!(reg(&mut io, 0x22) & RIRR, 0);
}

#[test]
fn unmasking_an_asserted_level_line_delivers() {
    let mut io = IoApic::new(0);
    program(&mut io, 9, 0x39 | LEVEL_BIT | MASK_BIT);
    assert_eq!(io.set_level(9, true), None);
    assert_eq!(program(&mut io, 9, 0x39 | LEVEL_BIT), level(0x39));
    // masking and unmasking again does not re-deliver while remote IRR is set
    program(&mut io, 9, 0x39 | LEVEL_BIT | MASK_BIT);
    assert_eq!(program(&mut io, 9, 0x39 | LEVEL_BIT), None);
    // a masked entry's EOI clears remote IRR without delivering
    program(&mut io, 9, 0x39 | LEVEL_BIT | MASK_BIT);
    assert_eq!(io.eoi(0x39), None);
    assert_eq!(program(&mut io, 9, 0x39 | LEVEL_BIT), level(0x39));
}

#[test]
fn switching_to_edge_clears_remote_irr() {
    let mut io = IoApic::new(0);
    program(&mut io, 10, 0x3A | LEVEL_BIT);
    assert_eq!(io.set_level(10, true), level(0x3A));
    // Linux's EOI for old I/O APICs: edge (masked), then level again
    assert_eq!(program(&mut io, 10, 0x3A | MASK_BIT), None);
    assert_eq!(reg(&mut io, 0x24) & RIRR, 0);
    assert_eq!(program(&mut io, 10, 0x3A | LEVEL_BIT), level(0x3A));
}

#[test]
fn delivery_modes_and_vectors() {
    let mut io = IoApic::new(0);
    program(&mut io, 1, 0x141); // lowest priority
    let lowest = Delivery {
        lowest_priority: true,
        ..edge(0x41).unwrap()
    };
    assert_eq!(io.set_level(1, true), Some(lowest));
    for (pin, mode) in [(2u8, 2u32), (3, 4), (5, 5), (6, 7)] {
        program(&mut io, pin, mode << 8 | 0x42);
        assert_eq!(io.set_level(pin, true), None, "mode {mode}");
    }
    program(&mut io, 7, 0x0F | LEVEL_BIT);
    assert_eq!(io.set_level(7, true), None, "illegal vector");
    assert_eq!(reg(&mut io, 0x1E) & RIRR, 0);
}

#[test]
fn deliveries_carry_the_destination() {
    let mut io = IoApic::new(0);
    let high = |io: &mut IoApic, pin: u32, dest: u32| {
        io.write(0x00, 0x11 + 2 * pin);
        io.write(0x10, dest << 24);
    };
    high(&mut io, 3, 2);
    program(&mut io, 3, 0x43); // physical
    let d = io.set_level(3, true).unwrap();
    assert_eq!((d.dest, d.lowest_priority), (IpiDest::Physical(2), false));
    high(&mut io, 4, 0xFF);
    program(&mut io, 4, 0x0944 | LEVEL_BIT); // logical, lowest priority
    let d = io.set_level(4, true).unwrap();
    assert_eq!((d.dest, d.lowest_priority), (IpiDest::Logical(0xFF), true));
    // a destination changed while remote IRR is set applies to the next delivery
    high(&mut io, 4, 0x0C);
    let d = io.eoi(0x44).unwrap();
    assert_eq!(d.dest, IpiDest::Logical(0x0C));
    assert!(d.level);
}

#[test]
fn out_of_range_pins_are_ignored() {
    let mut io = IoApic::new(0);
    assert_eq!(io.set_level(24, true), None);
    assert_eq!(io.set_level(255, true), None);
}

#[test]
fn shared_vector_eoi() {
    let mut io = IoApic::new(0);
    program(&mut io, 16, 0x50 | LEVEL_BIT);
    program(&mut io, 17, 0x50 | LEVEL_BIT);
    assert_eq!(io.set_level(16, true), level(0x50));
    assert_eq!(io.set_level(17, true), level(0x50));
    io.set_level(16, false);
    assert_eq!(io.eoi(0x50), level(0x50), "pin 17 still asserted");
    assert_eq!(reg(&mut io, 0x30) & RIRR, 0);
    assert_eq!(reg(&mut io, 0x32) & RIRR, RIRR);
}

#[derive(Debug, Clone)]
enum Op {
    Write(u32, u32),
    Read(u32),
    Level(u8, bool),
    Eoi(u8),
    /// Program pin's low word; the vector is forced to 0x20 + pin so vectors are unique.
    Program(u8, u32),
}

fn op() -> impl Strategy<Value = Op> {
    let pin = prop_oneof![0u8..PINS as u8, any::<u8>()];
    let offset = prop_oneof![prop::sample::select(&[0u32, 0x10, 0x40][..]), any::<u32>()];
    prop_oneof![
        (offset.clone(), any::<u32>()).prop_map(|(o, v)| Op::Write(o, v)),
        offset.prop_map(Op::Read),
        (pin.clone(), any::<bool>()).prop_map(|(p, h)| Op::Level(p, h)),
        prop_oneof![0x20u8..0x38, any::<u8>()].prop_map(Op::Eoi),
        (0u8..PINS as u8, any::<u32>()).prop_map(|(p, v)| Op::Program(p, v)),
    ]
}

/// Operations on four pins, mostly unmasked and deliverable, so that deliveries are common.
fn few_pins_op() -> impl Strategy<Value = Op> {
    let entry = (any::<u32>(), 0..4u8).prop_map(|(v, unmask)| {
        let v = v & !0x600; // fixed or lowest priority
        if unmask != 0 {
            v & !MASK_BIT
        } else {
            v | MASK_BIT
        }
    });
    prop_oneof![
        (0..5u8, any::<bool>()).prop_map(|(p, h)| Op::Level(p, h)),
        (0x1Fu8..0x25).prop_map(Op::Eoi),
        (0..4u8, entry).prop_map(|(p, v)| Op::Program(p, v)),
        prop::sample::select(&[0u32, 0x10][..]).prop_map(Op::Read),
    ]
}

proptest! {
    #[test]
    fn arbitrary_operations_never_panic(ops in proptest::collection::vec(op(), 0..80)) {
        let mut io = IoApic::new(0);
        for op in ops {
            match op {
                Op::Write(o, v) => { io.write(o, v); }
                Op::Read(o) => { io.read(o); }
                Op::Level(p, h) => { io.set_level(p, h); }
                Op::Eoi(v) => { io.eoi(v); }
                Op::Program(p, v) => { program(&mut io, p, v); }
            }
        }
    }

    /// With one vector per pin, a level-triggered delivery of a vector never repeats
    /// until that vector's EOI or the entry's switch to edge.
    #[test]
    fn level_pins_wait_for_eoi(ops in proptest::collection::vec(few_pins_op(), 0..120)) {
        let mut io = IoApic::new(0);
        let mut outstanding = [false; 256];
        for op in ops {
            let delivered = match op {
                Op::Write(..) => None,
                Op::Read(o) => { io.read(o); None }
                Op::Level(p, h) => io.set_level(p, h),
                Op::Eoi(v) => {
                    outstanding[usize::from(v)] = false;
                    io.eoi(v)
                }
                Op::Program(p, v) => {
                    let vector = 0x20 + u32::from(p);
                    let v = (v & !0xFF) | vector;
                    if v & LEVEL_BIT == 0 {
                        outstanding[vector as usize] = false;
                    }
                    program(&mut io, p, v)
                }
            };
            if let Some(d) = delivered
                && d.level
            {
                prop_assert!(!outstanding[usize::from(d.vector)], "{:#x} twice", d.vector);
                outstanding[usize::from(d.vector)] = true;
            }
        }
    }
}
