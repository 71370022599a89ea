//! Interprocessor interrupts: the ICR decoded, the part reaching the sender, destinations.

use super::*;

const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;
const LDR: u32 = 0xD0;
const DFR: u32 = 0xE0;

/// An enabled APIC with id `id`.
fn with_id(id: u8) -> LocalApic {
    let mut a = LocalApic::new(id, 1_000_000, 100_000);
    a.write(0xF0, 0x1FF, 0);
    a
}

/// Whether `v` is requested (its IRR bit).
fn irr(a: &mut LocalApic, v: u8) -> bool {
    let v = u32::from(v);
    a.read(0x200 + (v >> 5) * 0x10, 0) & (1 << (v & 31)) != 0
}

/// Sends ICR low `low` with destination `dest` in ICR high.
fn send(a: &mut LocalApic, dest: u8, low: u32) -> ApicEffect {
    a.write(ICR_HIGH, u32::from(dest) << 24, 0);
    a.write(ICR_LOW, low, 0)
}

fn ipi(vector: u8, mode: IpiMode, dest: IpiDest, from: u8) -> ApicEffect {
    ApicEffect::Ipi(Ipi {
        vector,
        mode,
        dest,
        from,
    })
}

#[test]
fn id_and_address() {
    let mut a = with_id(5);
    assert_eq!(a.id(), 5);
    assert_eq!(
        a.address(),
        ApicAddress {
            id: 5,
            ldr: 0,
            dfr: 0xFFFF_FFFF
        }
    );
    a.write(LDR, 0x2000_0000, 0);
    a.write(DFR, 0x0FFF_FFFF, 0);
    assert_eq!(a.address().ldr, 0x2000_0000);
    assert_eq!(a.address().dfr, 0x0FFF_FFFF);
}

#[test]
fn every_shorthand_is_decoded() {
    use IpiDest::*;
    use IpiMode::Fixed;
    let mut a = with_id(2);
    assert_eq!(send(&mut a, 7, 0x4_0040), ApicEffect::None, "self");
    assert_eq!(
        send(&mut a, 7, 0x8_0041),
        ipi(0x41, Fixed, AllIncludingSelf, 2)
    );
    assert_eq!(
        send(&mut a, 7, 0xC_0042),
        ipi(0x42, Fixed, AllExcludingSelf, 2)
    );
    assert_eq!(send(&mut a, 7, 0x0_0043), ipi(0x43, Fixed, Physical(7), 2));
    assert_eq!(send(&mut a, 7, 0x0_0844), ipi(0x44, Fixed, Logical(7), 2));
    // the destination field is ignored with a shorthand
    assert_eq!(
        send(&mut a, 7, 0xC_0845),
        ipi(0x45, Fixed, AllExcludingSelf, 2)
    );
}

#[test]
fn every_delivery_mode_is_decoded() {
    use IpiMode::*;
    let modes = [
        Fixed,
        LowestPriority,
        Smi,
        Reserved,
        Nmi,
        Init,
        Startup,
        Reserved,
    ];
    let mut a = with_id(0);
    for (bits, mode) in (0u32..).zip(modes) {
        let low = 0xC_4000 | bits << 8 | 0x9A;
        assert_eq!(
            send(&mut a, 0, low),
            ipi(0x9A, mode, IpiDest::AllExcludingSelf, 0),
            "mode {bits}"
        );
    }
}

#[test]
fn init_assert_and_deassert() {
    use IpiMode::{Init, InitDeassert};
    let mut a = with_id(0);
    let dest = IpiDest::Physical(1);
    // level bit 14, trigger bit 15
    for (low, mode) in [
        (0x0_4500, Init),         // assert, edge: what Linux sends
        (0x0_C500, Init),         // assert, level
        (0x0_8500, InitDeassert), // de-assert, level
        (0x0_0500, Init),         // de-assert, edge: not a de-assert
    ] {
        assert_eq!(send(&mut a, 1, low), ipi(0, mode, dest, 0), "{low:#x}");
    }
    // SIPI with its start page
    assert_eq!(send(&mut a, 1, 0x0_4609), ipi(9, IpiMode::Startup, dest, 0));
}

#[test]
fn the_part_reaching_the_sender_is_requested_there() {
    let mut a = with_id(3);
    send(&mut a, 0, 0x4_0050); // self
    assert!(irr(&mut a, 0x50));
    send(&mut a, 0, 0x8_0051); // all including self
    assert!(irr(&mut a, 0x51));
    send(&mut a, 0, 0xC_0052); // all excluding self
    assert!(!irr(&mut a, 0x52));
    send(&mut a, 3, 0x53); // physical, own id
    assert!(irr(&mut a, 0x53));
    send(&mut a, 0xFF, 0x54); // physical broadcast
    assert!(irr(&mut a, 0x54));
    a.write(LDR, 0x0400_0000, 0);
    assert_eq!(
        send(&mut a, 0x0C, 0x855),
        ipi(0x55, IpiMode::Fixed, IpiDest::Logical(0x0C), 3),
        "logical, flat: includes this APIC and APIC(s) with bit 3"
    );
    assert!(irr(&mut a, 0x55));
    // illegal vectors are not requested, but still sent
    assert_eq!(
        send(&mut a, 0, 0x8_000F),
        ipi(0x0F, IpiMode::Fixed, IpiDest::AllIncludingSelf, 3)
    );
    assert!(!irr(&mut a, 0x0F));
}

#[test]
fn an_ipi_to_another_apic_is_returned_not_requested() {
    let mut a = with_id(0);
    assert_eq!(
        send(&mut a, 1, 0x60),
        ipi(0x60, IpiMode::Fixed, IpiDest::Physical(1), 0)
    );
    assert!(!irr(&mut a, 0x60));
    a.write(LDR, 0x0100_0000, 0);
    send(&mut a, 0x02, 0x861); // logical, another APIC's bit
    assert!(!irr(&mut a, 0x61));
    // non-fixed modes are never requested here, even when they include this APIC
    for mode in [1u32, 2, 4, 5, 6] {
        let v = 0x70 + mode as u8;
        assert!(matches!(
            send(&mut a, 0, 0x8_0000 | mode << 8 | u32::from(v)),
            ApicEffect::Ipi(_)
        ));
        assert!(!irr(&mut a, v), "mode {mode}");
    }
}

#[test]
fn non_fixed_self_ipis_are_dropped() {
    let mut a = with_id(0);
    for mode in 1u32..8 {
        let v = 0x80 + mode as u8;
        assert_eq!(
            send(&mut a, 0, 0x4_0000 | mode << 8 | u32::from(v)),
            ApicEffect::None
        );
        assert!(!irr(&mut a, v), "mode {mode}");
    }
}

#[test]
fn physical_and_broadcast_destinations() {
    let x = ApicAddress {
        id: 2,
        ldr: 0,
        dfr: !0,
    };
    assert!(x.accepts(IpiDest::Physical(2), 0));
    assert!(!x.accepts(IpiDest::Physical(3), 0));
    assert!(x.accepts(IpiDest::Physical(0xFF), 0));
    assert!(x.accepts(IpiDest::SelfOnly, 2));
    assert!(!x.accepts(IpiDest::SelfOnly, 0));
    assert!(x.accepts(IpiDest::AllIncludingSelf, 2));
    assert!(x.accepts(IpiDest::AllIncludingSelf, 0));
    assert!(!x.accepts(IpiDest::AllExcludingSelf, 2));
    assert!(x.accepts(IpiDest::AllExcludingSelf, 0));
}

#[test]
fn flat_logical_destinations() {
    // Linux's flat model: APIC k has logical id 1 << k
    let x = |id: u8| ApicAddress {
        id,
        ldr: 1 << (24 + id),
        dfr: !0,
    };
    assert!(x(0).accepts(IpiDest::Logical(0x01), 1));
    assert!(!x(1).accepts(IpiDest::Logical(0x01), 0));
    assert!(x(3).accepts(IpiDest::Logical(0x0A), 0));
    assert!(x(7).accepts(IpiDest::Logical(0xFF), 0));
    assert!(!x(2).accepts(IpiDest::Logical(0x00), 0));
    let unset = ApicAddress {
        id: 0,
        ldr: 0,
        dfr: !0,
    };
    assert!(
        !unset.accepts(IpiDest::Logical(0xFF), 0),
        "LDR 0 matches nothing"
    );
}

#[test]
fn cluster_logical_destinations() {
    let x = ApicAddress {
        id: 5,
        ldr: 0x2400_0000, // cluster 2, member bit 2
        dfr: 0x0FFF_FFFF,
    };
    assert!(x.accepts(IpiDest::Logical(0x24), 0));
    assert!(x.accepts(IpiDest::Logical(0x2F), 0));
    assert!(
        !x.accepts(IpiDest::Logical(0x23), 0),
        "same cluster, other members"
    );
    assert!(!x.accepts(IpiDest::Logical(0x14), 0), "another cluster");
    assert!(x.accepts(IpiDest::Logical(0xFF), 0), "broadcast");
}

/// Eight vCPUs exchange a fixed IPI the way the hypervisor delivers it: the sender has its
/// own part, every other APIC whose address accepts it requests the vector.
#[test]
fn delivery_among_eight_apics() {
    let mut apics: std::vec::Vec<LocalApic> = (0..8).map(with_id).collect();
    for a in &mut apics {
        let id = u32::from(a.id());
        a.write(LDR, 1 << (24 + id), 0);
    }
    let mut deliver = |from: usize, dest: u8, low: u32| {
        let effect = send(&mut apics[from], dest, low);
        if let ApicEffect::Ipi(i) = effect {
            for a in apics.iter_mut().filter(|a| a.id() != i.from) {
                if a.address().accepts(i.dest, i.from) {
                    a.request(i.vector, false);
                }
            }
        }
        apics
            .iter_mut()
            .map(|a| irr(a, low as u8))
            .collect::<std::vec::Vec<_>>()
    };
    let only = |ids: &[usize]| {
        (0..8)
            .map(|k| ids.contains(&k))
            .collect::<std::vec::Vec<_>>()
    };
    assert_eq!(deliver(0, 5, 0x90), only(&[5]));
    assert_eq!(deliver(2, 0, 0x8_0091), only(&[0, 1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(deliver(2, 0, 0xC_0092), only(&[0, 1, 3, 4, 5, 6, 7]));
    assert_eq!(deliver(4, 0, 0x4_0093), only(&[4]));
    assert_eq!(deliver(4, 0b1001_0010, 0x894), only(&[1, 4, 7]));
    assert_eq!(deliver(6, 0xFF, 0x95), only(&[0, 1, 2, 3, 4, 5, 6, 7]));
}

proptest! {
    /// Against a model: an ICR write returns an IPI unless it uses the self shorthand, and
    /// requests the vector here exactly for a legal fixed vector this APIC accepts.
    #[test]
    fn icr_writes_against_a_model(
        id in 0u8..8, ldr in any::<u32>(), dfr in any::<u32>(), high in any::<u32>(),
        low in any::<u32>(),
    ) {
        let mut a = with_id(id);
        a.write(LDR, ldr, 0);
        a.write(DFR, dfr, 0);
        a.write(ICR_HIGH, high, 0);
        let effect = a.write(ICR_LOW, low, 0);
        let vector = low as u8;
        let shorthand = (low >> 18) & 3;
        let fixed = (low >> 8) & 7 == 0;
        match effect {
            ApicEffect::Ipi(i) => {
                prop_assert_ne!(shorthand, 1);
                prop_assert_eq!(i.from, id);
                prop_assert_eq!(i.vector, vector);
                prop_assert_eq!(i.mode == IpiMode::Fixed, fixed);
                let reaches_self = a.address().accepts(i.dest, id);
                prop_assert_eq!(irr(&mut a, vector), fixed && vector >= 16 && reaches_self);
            }
            ApicEffect::None => {
                prop_assert_eq!(shorthand, 1);
                prop_assert_eq!(irr(&mut a, vector), fixed && vector >= 16);
            }
            ApicEffect::LevelEoi(_) => prop_assert!(false, "an ICR write is no EOI"),
        }
    }
}
