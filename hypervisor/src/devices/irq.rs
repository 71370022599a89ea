//! Device interrupts to their qube. Each assigned device behind an IOMMU that remaps
//! interrupts gets a slot at boot: host vector `FIRST_VECTOR + slot`, interrupt remapping
//! entry `slot` (accepting the device's requester ID only, sent to the CPU its qube is
//! placed on). The vector's stub (`isr_device`) marks the slot in `HV_DEVICE_IRQS` (`arch::x86::apic`); that
//! CPU's scheduler takes the marks of its slots ([`take_fired`]) and raises the device's event
//! bit at the qube. Shared between CPUs: the route table (written at boot, before the other
//! CPUs run qubes) and the fired bits (atomic).

use core::sync::atomic::{AtomicU32, Ordering};

/// The first device vector (the stubs of `build.rs` cover `FIRST_VECTOR..FIRST_VECTOR +
/// SLOTS`).
pub const FIRST_VECTOR: u8 = 0x30;
/// Device interrupt slots (one per assigned device).
pub const SLOTS: usize = 64;

use crate::arch::x86::apic::HV_DEVICE_IRQS;

/// Each slot's route: `(qube + 1) << 16 | cpu << 8 | device index`, 0 when free.
static ROUTES: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

/// Where a slot's interrupt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Manifest index of the qube.
    pub qube: usize,
    /// The CPU it runs on (the interrupt's destination).
    pub cpu: usize,
    /// The device's index among the qube's devices (its event bit follows from it).
    pub device: usize,
}

/// Takes a free slot for `route` (at boot, on the boot CPU); `None` when all are taken.
pub fn allocate(route: Route) -> Option<usize> {
    let packed = ((route.qube as u32 + 1) << 16)
        | ((route.cpu as u32 & 0xff) << 8)
        | route.device as u32 & 0xff;
    ROUTES.iter().position(|r| {
        r.compare_exchange(0, packed, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Slot `slot`'s route, if taken.
pub fn route(slot: usize) -> Option<Route> {
    let r = ROUTES.get(slot)?.load(Ordering::Acquire);
    (r != 0).then(|| Route {
        qube: (r >> 16) as usize - 1,
        cpu: ((r >> 8) & 0xff) as usize,
        device: (r & 0xff) as usize,
    })
}

/// The slots routed to `cpu` (a mask for [`take_fired`]).
pub fn slots_of(cpu: usize) -> u64 {
    (0..SLOTS)
        .filter(|&s| route(s).is_some_and(|r| r.cpu == cpu))
        .fold(0, |m, s| m | 1 << s)
}

/// Whether one of the slots in `mask` fired (one load).
pub fn any_fired(mask: u64) -> bool {
    HV_DEVICE_IRQS.load(Ordering::Acquire) & mask != 0
}

/// Takes the fired slots among `mask` (clearing them): the caller delivers each.
pub fn take_fired(mask: u64) -> u64 {
    if !any_fired(mask) {
        return 0;
    }
    HV_DEVICE_IRQS.fetch_and(!mask, Ordering::AcqRel) & mask
}

/// The slots given to a device (all CPUs'): the complement holds the strays, whose bits
/// [`take_fired`] takes too.
pub fn routed() -> u64 {
    (0..SLOTS)
        .filter(|&s| route(s).is_some())
        .fold(0u64, |m, s| m | 1 << s)
}
