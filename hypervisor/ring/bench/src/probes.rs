//! What the paired rounds measure, in the order of a round: the round trips of the atomic
//! ping-pong, the ring, rtrb and iceoryx2 (when built in); the one-way rates of the line ring
//! and the ring; then the bulk figures, `memcpy` between the two cross-core bulk transfers
//! it is the baseline of.

use crate::bulk;
use crate::harness::Plan;
use crate::paired::{Probe, Unit};
use crate::transport::{Setup, Transport};

/// The transports whose round trips take part, in order.
const ROUND_TRIPS: &[&str] = &["atomic", "ring", "rtrb", "iceoryx2"];
/// The transports whose one-way rates take part, in order.
const ONE_WAY: &[&str] = &["atomic", "ring"];

/// The probes of one round, among `transports` and as `wanted` (by transport name, `bulk` for
/// the bulk figures) allows; bulk buffers of `bulk_bytes` (0: no bulk figures).
pub fn probes(
    transports: &[Transport],
    setup: Setup,
    bulk_bytes: usize,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<Probe> {
    let find = |name: &str| transports.iter().find(|t| t.name == name && wanted(name));
    let mut list = Vec::new();
    for &name in ROUND_TRIPS {
        if let Some(t) = find(name) {
            let measure = t.round_trip;
            list.push(Probe {
                name: rtt_name(name),
                label: format!("{name} round trip"),
                unit: Unit::Ns,
                run: Box::new(move |plan: &Plan| measure(plan, &setup)),
            });
        }
    }
    for &name in ONE_WAY {
        if let Some(t) = find(name) {
            let measure = t.one_way;
            let label = match name {
                "atomic" => "line ring one way (the atomic row's)".to_string(),
                _ => format!("{name} one way"),
            };
            list.push(Probe {
                name: one_way_name(name),
                label,
                unit: Unit::MMsgs,
                run: Box::new(move |plan: &Plan| measure(plan, &setup)),
            });
        }
    }
    if bulk_bytes > 0 && wanted("bulk") {
        list.extend(bulk_probes(setup, bulk_bytes));
    }
    list
}

fn rtt_name(name: &str) -> &'static str {
    match name {
        "atomic" => "rtt:atomic",
        "ring" => "rtt:ring",
        "rtrb" => "rtt:rtrb",
        _ => "rtt:iceoryx2",
    }
}

fn one_way_name(name: &str) -> &'static str {
    match name {
        "atomic" => "one-way:atomic",
        _ => "one-way:ring",
    }
}

fn bulk_probes(setup: Setup, bytes: usize) -> Vec<Probe> {
    let (cores, slots) = (setup.cores, setup.slots);
    let unit = Unit::GBs(bytes);
    let size = size_name(bytes);
    vec![
        Probe {
            name: "bulk:checksum",
            label: format!("checksum of {size}, one thread"),
            unit,
            run: Box::new(move |plan: &Plan| bulk::checksum_alone(plan, cores, bytes)),
        },
        Probe {
            name: "bulk:one-thread",
            label: format!("lend + read + reclaim of {size}, one thread"),
            unit,
            run: Box::new(move |plan: &Plan| bulk::one_thread(plan, cores, bytes, true)),
        },
        Probe {
            name: "bulk:one-thread-unchecked",
            label: format!("lend + read_unchecked + reclaim of {size}, one thread"),
            unit,
            run: Box::new(move |plan: &Plan| bulk::one_thread(plan, cores, bytes, false)),
        },
        Probe {
            name: "bulk:a-to-b",
            label: format!("{size} from A to B through the bulk area (read checked)"),
            unit,
            run: Box::new(move |plan: &Plan| bulk::a_to_b(plan, cores, bytes, slots, true, 1)),
        },
        Probe {
            name: "bulk:a-to-b-pipelined",
            label: format!("{size} buffers from A to B, two in flight (read checked)"),
            unit,
            run: Box::new(move |plan: &Plan| bulk::a_to_b(plan, cores, bytes, slots, true, 2)),
        },
        Probe {
            name: "bulk:memcpy",
            label: format!("memcpy of {size} (copy_from_slice), one thread"),
            unit,
            run: Box::new(move |plan: &Plan| bulk::memcpy(plan, cores, bytes)),
        },
        Probe {
            name: "bulk:a-to-b-unchecked",
            label: format!("{size} from A to B through the bulk area (read_unchecked)"),
            unit,
            run: Box::new(move |plan: &Plan| bulk::a_to_b(plan, cores, bytes, slots, false, 1)),
        },
    ]
}

/// "1 MiB", "64 KiB", "1000 bytes".
pub fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}
