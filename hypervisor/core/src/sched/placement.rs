//! Which CPU each qube runs on: pinned qubes where their `cpus` mask allows, the others
//! spread so the CPUs carry about the same load.
//!
//! Placement is done once, at boot, over the qubes of the manifest: a qube stays on its CPU
//! (and is restarted there). CPUs are numbered as the hypervisor starts them (0 is the boot
//! CPU), the numbering of [`QubeSpec::cpus`].

use crate::acpi::MAX_CPUS;
use crate::collections::ArrayVec;
use bulkhead_abi::manifest::{MAX_QUBES, QubeKind, QubeSpec};

/// The load a Linux qube puts on a CPU, relative to a unikernel's.
pub const LINUX_WEIGHT: u32 = 4;
/// The load a unikernel puts on a CPU.
pub const UNIKERNEL_WEIGHT: u32 = 1;

/// What placement needs to know of one qube.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaceRequest {
    /// The CPUs it may run on (bit `n`: CPU `n`); 0: any.
    pub cpus: u32,
    /// How much load it puts on its CPU.
    pub weight: u32,
}

impl PlaceRequest {
    /// The request for a qube of the manifest: its mask, and [`LINUX_WEIGHT`] or
    /// [`UNIKERNEL_WEIGHT`] by its kind.
    pub fn of(spec: &QubeSpec) -> PlaceRequest {
        let weight = match spec.kind {
            QubeKind::Linux { .. } => LINUX_WEIGHT,
            QubeKind::Unikernel => UNIKERNEL_WEIGHT,
        };
        PlaceRequest {
            cpus: spec.cpus,
            weight,
        }
    }
}

/// Where one qube runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Its CPU, below the number of CPUs online.
    pub cpu: u8,
    /// Its mask names no CPU that is online, so it was placed as if it had none (the
    /// hypervisor says so on the console).
    pub pin_unmet: bool,
}

/// Places `qubes` (in manifest order; at most [`MAX_QUBES`], more are left out) on CPUs
/// `0..online` (`online` is taken as at least 1 and at most [`MAX_CPUS`]); the result is in
/// the same order. The load of a CPU is the sum of its qubes' weights.
///
/// Pinned qubes go first, in manifest order, each to the least-loaded CPU its mask allows;
/// a mask that names no online CPU counts as no mask (`pin_unmet`). Then the other qubes,
/// heaviest first (equal weights in manifest order), each to the least-loaded CPU. Ties go
/// to the lowest CPU number. Without pinned qubes, the most and the least loaded CPUs
/// differ by at most the heaviest weight.
pub fn place(qubes: &[PlaceRequest], online: usize) -> ArrayVec<Placement, MAX_QUBES> {
    let online = online.clamp(1, MAX_CPUS);
    let all = u32::MAX >> (32 - online);
    let qubes = &qubes[..qubes.len().min(MAX_QUBES)];
    let mut loads = [0u64; MAX_CPUS];
    let mut out: ArrayVec<Placement, MAX_QUBES> = ArrayVec::new();
    for _ in qubes {
        let _ = out.push(Placement::default());
    }
    let mut put = |i: usize, mask: u32, pin_unmet: bool| {
        let cpu = (0..online)
            .filter(|c| mask & 1 << c != 0)
            .min_by_key(|c| loads[*c])
            .unwrap_or(0);
        loads[cpu] += u64::from(qubes[i].weight);
        out[i] = Placement {
            cpu: cpu as u8,
            pin_unmet,
        };
    };
    for (i, q) in qubes.iter().enumerate().filter(|(_, q)| q.cpus != 0) {
        match q.cpus & all {
            0 => put(i, all, true),
            allowed => put(i, allowed, false),
        }
    }
    let mut free: ArrayVec<usize, MAX_QUBES> = ArrayVec::new();
    for (i, _) in qubes.iter().enumerate().filter(|(_, q)| q.cpus == 0) {
        let _ = free.push(i);
    }
    free.sort_unstable_by_key(|i| (core::cmp::Reverse(qubes[*i].weight), *i));
    for &i in free.iter() {
        put(i, all, false);
    }
    out
}
