extern crate std;

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::{vec, vec::Vec};

/// Small numbers, so the tests reach every limit quickly.
struct Small;

impl Policy for Small {
    const QUBE_QUEUED_MAX: usize = 256;
    const RATE: u64 = 1000;
    const BURST: u64 = 512;
    const QUIET_NS: u64 = 100 * MS;
    const REPORT_EVERY_NS: u64 = 1000 * MS;
}

const MS: u64 = 1_000_000;
const QUBES: usize = 3;
const BYTES: usize = QUBES * Small::QUBE_QUEUED_MAX + MIN_HV_ROOM;
type Queue = OutputQueue<Small, BYTES, QUBES>;

fn queue() -> std::boxed::Box<Queue> {
    std::boxed::Box::new(Queue::new())
}

/// Pushes a qube line whose text is the whole line.
fn push(q: &mut Queue, qube: usize, now: u64, line: &[u8]) -> Admission {
    q.push_qube(qube, now, line, line.len())
}

fn drain(q: &mut Queue) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        let n = q.pop(&mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn lines_come_out_in_order_across_sources() {
    let mut q = queue();
    assert_eq!(q.push_hv(b"hv 1\n"), HvPush::Queued);
    assert_eq!(push(&mut q, 0, 0, b"a 1\n"), Admission::Queued);
    assert_eq!(push(&mut q, 1, 0, b"b 1\n"), Admission::Queued);
    assert_eq!(q.push_hv(b"hv 2\n"), HvPush::Queued);
    assert_eq!(push(&mut q, 0, 0, b""), Admission::Queued);
    assert_eq!(drain(&mut q), b"hv 1\na 1\nb 1\nhv 2\n");
    assert!(q.is_empty());
    assert_eq!(q.queued(Source::Hv) + q.queued(Source::Qube(0)), 0);
}

#[test]
fn pop_hands_out_partial_records() {
    let mut q = queue();
    push(&mut q, 2, 0, b"abcdef");
    let mut two = [0u8; 2];
    assert_eq!(q.pop(&mut two), 2);
    assert_eq!(&two, b"ab");
    assert_eq!(q.queued(Source::Qube(2)), 4);
    assert_eq!(drain(&mut q), b"cdef");
    assert_eq!(q.pop(&mut []), 0);
}

#[test]
fn backlog_limit_drops_whole_lines() {
    let mut q = queue();
    let line = [b'x'; 97]; // 100 bytes stored
    assert_eq!(push(&mut q, 0, 0, &line), Admission::Queued);
    assert_eq!(push(&mut q, 0, 0, &line), Admission::Queued);
    assert_eq!(
        push(&mut q, 0, 0, &line),
        Admission::Dropped(Refusal::Backlog)
    );
    // Another qube is not affected.
    assert_eq!(push(&mut q, 1, 0, &line), Admission::Queued);
    assert_eq!(q.queued(Source::Qube(0)), 200);
    let out = drain(&mut q);
    assert_eq!(out.len(), 3 * 97);
}

#[test]
fn too_long_lines_are_dropped() {
    let mut q = queue();
    let long = [b'x'; Small::QUBE_QUEUED_MAX - HEADER + 1];
    assert_eq!(
        push(&mut q, 0, 0, &long),
        Admission::Dropped(Refusal::TooLong)
    );
    assert_eq!(
        push(&mut q, 7, 0, b"x"),
        Admission::Dropped(Refusal::NoSuchQube)
    );
    let huge = vec![b'h'; BYTES];
    assert_eq!(q.push_hv(&huge), HvPush::TooLong);
    assert_eq!(q.hv_dropped().bytes, BYTES as u64);
    assert!(q.is_empty());
}

#[test]
fn token_bucket_allows_burst_then_rate() {
    let mut q = queue();
    let line = [b'r'; 100];
    // A burst of 512 bytes: five lines; the backlog is drained in between.
    for _ in 0..5 {
        assert_eq!(push(&mut q, 0, 0, &line), Admission::Queued);
        drain(&mut q);
    }
    assert_eq!(push(&mut q, 0, 0, &line), Admission::Dropped(Refusal::Rate));
    // 1000 bytes per second: 100 bytes more after 100 ms (12 were left over).
    assert_eq!(
        push(&mut q, 0, 87 * MS, &line),
        Admission::Dropped(Refusal::Rate)
    );
    assert_eq!(push(&mut q, 0, 88 * MS, &line), Admission::Queued);
    assert_eq!(
        push(&mut q, 0, 88 * MS, &line),
        Admission::Dropped(Refusal::Rate)
    );
    // A long pause refills the bucket to its depth, no further.
    drain(&mut q);
    for _ in 0..5 {
        assert_eq!(push(&mut q, 0, 60_000 * MS, &line), Admission::Queued);
        drain(&mut q);
    }
    assert_eq!(
        push(&mut q, 0, 60_000 * MS, &line),
        Admission::Dropped(Refusal::Rate)
    );
}

#[test]
fn time_going_backwards_refills_nothing() {
    let mut q = queue();
    let line = [b'r'; 250];
    push(&mut q, 0, 1000 * MS, &line);
    drain(&mut q);
    push(&mut q, 0, 1000 * MS, &line);
    drain(&mut q);
    assert_eq!(push(&mut q, 0, 0, &line), Admission::Dropped(Refusal::Rate));
}

#[test]
fn drops_are_reported_once_per_burst() {
    let mut q = queue();
    let line = [b'd'; 200];
    push(&mut q, 0, 0, &line);
    drain(&mut q);
    push(&mut q, 0, 0, &line);
    drain(&mut q);
    // The bucket is empty now: drop three lines in 20 ms. The report counts the text the
    // caller names (here 150 of the 200 formatted bytes).
    for t in [0, 10, 20] {
        assert_eq!(
            q.push_qube(0, t * MS, &line, 150),
            Admission::Dropped(Refusal::Rate)
        );
    }
    assert_eq!(
        q.take_due_report(119 * MS),
        None,
        "still within the quiet time"
    );
    assert_eq!(
        q.take_due_report(120 * MS),
        Some((
            0,
            Dropped {
                bytes: 450,
                lines: 3
            }
        ))
    );
    assert_eq!(q.take_due_report(10_000 * MS), None, "reported once");
}

#[test]
fn a_long_burst_is_reported_every_interval() {
    let mut q = queue();
    let line = [b'd'; 250];
    let mut reports = Vec::new();
    // A line every 10 ms for 3 s: far over 1000 bytes per second.
    for t in 0..300u64 {
        push(&mut q, 1, t * 10 * MS, &line);
        drain(&mut q);
        if let Some((i, d)) = q.take_due_report(t * 10 * MS) {
            assert_eq!(i, 1);
            reports.push((t * 10, d));
        }
    }
    assert!(
        (2..=3).contains(&reports.len()),
        "one report per second: {reports:?}"
    );
    let first = reports[0].0;
    assert!(reports.iter().all(|(at, _)| (at - first) % 1000 < 20));
    let rest = q.take_report(1).unwrap_or_default();
    let dropped: u64 = reports.iter().map(|(_, d)| d.bytes).sum::<u64>() + rest.bytes;
    assert_eq!(dropped, q.totals().dropped);
    assert_eq!(q.take_report(1), None);
}

#[test]
fn hypervisor_lines_wait_for_room_but_are_not_dropped() {
    let mut q = queue();
    let line = [b'h'; 1021]; // 1024 stored: the hypervisor's room holds four
    for _ in 0..4 {
        assert_eq!(q.push_hv(&line), HvPush::Queued);
    }
    assert_eq!(q.push_hv(&line), HvPush::NoRoom);
    // Qubes still have all their allowance.
    for i in 0..QUBES {
        let fill = [b'q'; Small::QUBE_QUEUED_MAX - HEADER];
        assert_eq!(push(&mut q, i, 0, &fill), Admission::Queued);
    }
    let mut buf = [0u8; 1024];
    assert_eq!(q.pop(&mut buf), 1024);
    assert_eq!(q.push_hv(&line), HvPush::Queued);
    assert_eq!(q.totals().dropped, 0);
}

#[test]
fn ring_wraps_around() {
    let mut q = queue();
    let mut expected = Vec::new();
    let mut out = Vec::new();
    for round in 0..200u32 {
        let line: Vec<u8> = (0..(round % 200) as u8 + 1)
            .map(|b| b ^ round as u8)
            .collect();
        let mut buf = [0u8; 37];
        while q.push_hv(&line) == HvPush::NoRoom {
            let n = q.pop(&mut buf);
            out.extend_from_slice(&buf[..n]);
        }
        expected.extend_from_slice(&line);
        let n = q.pop(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }
    out.extend(drain(&mut q));
    assert!(expected.len() > 3 * BYTES);
    assert_eq!(out, expected);
}

#[test]
fn an_empty_static_costs_no_image_space() {
    // All zeros, so a `static` of it lands in .bss.
    static Q: OutputQueue<Small, BYTES, QUBES> = OutputQueue::new();
    assert!(Q.is_empty() && Q.totals() == Totals::default());
}

/// One step of a random workload.
#[derive(Clone, Debug)]
enum Op {
    /// A qube writes a line of this length at the current time.
    Qube(usize, usize),
    /// The hypervisor writes a line.
    Hv(usize),
    /// The UART takes this many bytes.
    Pop(usize),
    /// Time passes (ms).
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..QUBES, 0usize..300).prop_map(|(q, l)| Op::Qube(q, l)),
        1 => (0usize..600).prop_map(Op::Hv),
        2 => (0usize..200).prop_map(Op::Pop),
        2 => (0u64..300).prop_map(Op::Wait),
    ]
}

/// Lines with their source and a serial number in their bytes, so order can be checked.
fn line(source: u8, serial: u32, len: usize) -> Vec<u8> {
    let mut l = vec![b'.'; len];
    let tag = [
        source,
        (serial >> 16) as u8,
        (serial >> 8) as u8,
        serial as u8,
    ];
    for (d, s) in l.iter_mut().zip(tag) {
        *d = s;
    }
    l
}

proptest! {
    #[test]
    fn bounds_conservation_and_order(ops in proptest::collection::vec(op(), 1..400)) {
        let mut q = queue();
        let mut now = 0u64;
        let mut admitted: VecDeque<u8> = VecDeque::new();
        let mut per_qube_admitted = [0u64; QUBES];
        let mut serial = 0u32;
        for op in ops {
            match op {
                Op::Qube(i, len) => {
                    serial += 1;
                    let l = line(i as u8, serial, len);
                    if push(&mut q, i, now, &l) == Admission::Queued {
                        admitted.extend(&l);
                        per_qube_admitted[i] += len as u64;
                    }
                }
                Op::Hv(len) => {
                    serial += 1;
                    let l = line(HV, serial, len);
                    while q.push_hv(&l) == HvPush::NoRoom {
                        // The caller drains synchronously; what comes out is in order.
                        let mut buf = [0u8; 64];
                        let n = q.pop(&mut buf);
                        prop_assert!(n > 0);
                        for b in &buf[..n] {
                            prop_assert_eq!(Some(*b), admitted.pop_front());
                        }
                    }
                    admitted.extend(&l);
                }
                Op::Pop(n) => {
                    let mut buf = vec![0u8; n];
                    let got = q.pop(&mut buf);
                    prop_assert!(got <= n);
                    for b in &buf[..got] {
                        prop_assert_eq!(Some(*b), admitted.pop_front());
                    }
                    prop_assert!(got == n || admitted.is_empty());
                }
                Op::Wait(ms) => now += ms * MS,
            }
            // Bounds.
            prop_assert!(q.len <= BYTES);
            for (i, admitted) in per_qube_admitted.iter().enumerate() {
                prop_assert!(q.queued(Source::Qube(i)) <= Small::QUBE_QUEUED_MAX);
                // The token bucket: never more than the burst plus the rate over the time.
                prop_assert!(*admitted <= Small::BURST + Small::RATE * now / 1_000_000_000);
            }
            prop_assert!(q.queued(Source::Hv) <= BYTES - QUBES * Small::QUBE_QUEUED_MAX);
            // Conservation: in = out + dropped + waiting.
            let t = q.totals();
            prop_assert_eq!(t.offered, t.sent + t.dropped + t.queued);
            prop_assert_eq!(t.queued as usize, admitted.len());
        }
        let rest = drain(&mut q);
        prop_assert_eq!(rest, admitted.iter().copied().collect::<Vec<u8>>());
        let t = q.totals();
        prop_assert_eq!(t.offered, t.sent + t.dropped);
        prop_assert!(q.is_empty());
    }

    #[test]
    fn reports_add_up_to_the_drops(ops in proptest::collection::vec(op(), 1..400)) {
        let mut q = queue();
        let mut now = 0u64;
        let mut reported = 0u64;
        for op in ops {
            match op {
                Op::Qube(i, len) => { push(&mut q, i, now, &vec![b'x'; len]); }
                Op::Hv(_) => {}
                Op::Pop(n) => { q.pop(&mut vec![0u8; n]); }
                Op::Wait(ms) => now += ms * MS,
            }
            while let Some((_, d)) = q.take_due_report(now) {
                prop_assert!(d.lines > 0 && d.bytes <= d.lines * 300);
                reported += d.bytes;
            }
        }
        for i in 0..QUBES {
            reported += q.take_report(i).map_or(0, |d| d.bytes);
        }
        prop_assert_eq!(reported, q.totals().dropped);
    }

    /// A qube that stays within its own limits never loses a line, however hard another
    /// floods, as long as the UART keeps up with what the queue admits (here: twice the
    /// rate, as a 115200-baud port does for one flooding qube).
    #[test]
    fn a_flood_cannot_drop_a_quiet_qubes_lines(
        flood in proptest::collection::vec((0usize..20, 1usize..250), 1..300),
        quiet in proptest::collection::vec(proptest::option::of(0usize..8), 1..300),
        drain_per_tick in 20usize..200,
    ) {
        let mut q = queue();
        let tick = 10 * MS;
        for (t, ((count, len), quiet)) in flood.iter().zip(quiet.iter().cycle()).enumerate() {
            let now = t as u64 * tick;
            for _ in 0..*count {
                push(&mut q, 0, now, &vec![b'f'; *len]);
            }
            // Under 1000 bytes per second: at most 8 bytes every 10 ms.
            if let Some(len) = quiet {
                prop_assert_eq!(push(&mut q, 1, now, &vec![b'q'; *len]), Admission::Queued);
            }
            q.pop(&mut vec![0u8; drain_per_tick]);
        }
        prop_assert_eq!(q.take_report(1), None);
    }
}
