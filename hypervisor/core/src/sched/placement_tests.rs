extern crate std;

use super::*;
use crate::acpi::MAX_CPUS;
use bulkhead_abi::manifest::{MAX_QUBES, QubeKind, QubeSpec};
use proptest::prelude::*;
use std::vec::Vec as StdVec;

fn free(weight: u32) -> PlaceRequest {
    PlaceRequest { cpus: 0, weight }
}

fn pinned(cpus: u32, weight: u32) -> PlaceRequest {
    PlaceRequest { cpus, weight }
}

fn cpus(p: &[Placement]) -> StdVec<u8> {
    p.iter().map(|p| p.cpu).collect()
}

#[test]
fn spreads_unpinned_qubes_heaviest_first() {
    assert_eq!(cpus(&place(&[free(1); 4], 2)), [0, 1, 0, 1]);
    // The two Linux qubes first (one per CPU), then the unikernels, ties to CPU 0.
    let qubes = [free(1), free(4), free(1), free(4), free(1)];
    assert_eq!(cpus(&place(&qubes, 2)), [0, 0, 1, 1, 0]);
    assert_eq!(cpus(&place(&qubes, 4)), [2, 0, 3, 1, 2]);
    assert!(place(&qubes, 2).iter().all(|p| !p.pin_unmet));
}

#[test]
fn pinned_qubes_go_first_where_their_mask_allows() {
    // CPU 1 carries 2 once the pinned qubes are placed: the Linux qube goes to CPU 0,
    // then the unikernel to CPU 1 (2 < 4).
    let qubes = [free(4), pinned(0b10, 1), pinned(0b10, 1), free(1)];
    assert_eq!(cpus(&place(&qubes, 2)), [0, 1, 1, 1]);
    // Least loaded among CPUs 1 and 2, the lower on a tie.
    let qubes = [
        pinned(0b110, 4),
        pinned(0b110, 1),
        pinned(0b110, 1),
        free(1),
    ];
    assert_eq!(cpus(&place(&qubes, 3)), [1, 2, 2, 0]);
}

#[test]
fn a_mask_of_cpus_that_are_not_online_is_ignored_and_said() {
    let qubes = [pinned(0b1, 1), pinned(0b1100, 4), pinned(0b1010, 1)];
    let p = place(&qubes, 2);
    assert_eq!(cpus(&p), [0, 1, 1]);
    let unmet: StdVec<bool> = p.iter().map(|p| p.pin_unmet).collect();
    assert_eq!(unmet, [false, true, false]);
    // Bits past MAX_CPUS name no CPU that can be online.
    assert!(place(&[pinned(1 << 31, 1)], 64)[0].pin_unmet);
}

#[test]
fn online_counts_are_clamped_and_qubes_bounded() {
    assert_eq!(
        cpus(&place(&[free(1), free(4), pinned(0b10, 1)], 0)),
        [0, 0, 0]
    );
    let many = [free(1); MAX_QUBES + 3];
    let p = place(&many, 100);
    assert_eq!(p.len(), MAX_QUBES);
    assert_eq!(
        usize::from(p.iter().map(|p| p.cpu).max().unwrap()),
        MAX_CPUS - 1
    );
    assert!(place(&[], 4).is_empty());
}

#[test]
fn weights_follow_the_kind_of_qube() {
    use bulkhead_abi::bounded::BoundedString;
    use bulkhead_abi::label::Label;
    use bulkhead_abi::manifest::{RestartPolicy, StartPolicy};
    let mut spec = QubeSpec {
        name: BoundedString::try_from("work").unwrap(),
        kind: QubeKind::Linux {
            initrd: 2,
            cmdline: 3,
        },
        image: 1,
        memory_mib: 128,
        label: Label::Blue,
        restart: RestartPolicy::Never,
        args: BoundedString::new(),
        config: None,
        start: StartPolicy::AtBoot,
        framebuffer: false,
        admin: false,
        cpus: 0b101,
        vcpus: 2,
    };
    assert_eq!(PlaceRequest::of(&spec), pinned(0b101, LINUX_WEIGHT));
    spec.kind = QubeKind::Unikernel;
    assert_eq!(PlaceRequest::of(&spec).weight, UNIKERNEL_WEIGHT);
}

fn request() -> impl Strategy<Value = PlaceRequest> {
    let mask = prop_oneof![3 => Just(0u32), 1 => 1u32..1 << MAX_CPUS, 1 => any::<u32>()];
    (mask, 0u32..=8).prop_map(|(cpus, weight)| PlaceRequest { cpus, weight })
}

proptest! {
    #[test]
    fn placements_are_online_and_keep_their_pins(
        qubes in proptest::collection::vec(request(), 0..=MAX_QUBES),
        online in 0usize..=MAX_CPUS + 2,
    ) {
        let p = place(&qubes, online);
        prop_assert_eq!(p.len(), qubes.len());
        let n = online.clamp(1, MAX_CPUS);
        let all = u32::MAX >> (32 - n);
        for (q, p) in qubes.iter().zip(p.iter()) {
            prop_assert!(usize::from(p.cpu) < n);
            prop_assert_eq!(p.pin_unmet, q.cpus != 0 && q.cpus & all == 0);
            if q.cpus != 0 && !p.pin_unmet {
                prop_assert!(q.cpus & 1 << p.cpu != 0);
            }
        }
    }

    #[test]
    fn unpinned_qubes_balance_within_the_heaviest_weight(
        weights in proptest::collection::vec(0u32..=8, 0..=MAX_QUBES),
        online in 1usize..=MAX_CPUS,
    ) {
        let qubes: StdVec<PlaceRequest> = weights.iter().map(|w| free(*w)).collect();
        let mut loads = [0u32; MAX_CPUS];
        for (q, p) in qubes.iter().zip(place(&qubes, online).iter()) {
            loads[usize::from(p.cpu)] += q.weight;
        }
        let loads = &loads[..online];
        let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
        prop_assert!(spread <= weights.iter().copied().max().unwrap_or(0));
    }
}
