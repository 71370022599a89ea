//! Large buffers through a channel's bulk area (`bulkhead_ring::Bulk`), against a plain
//! `memcpy` of the same size. Every function returns nanoseconds per buffer moved; the
//! paired rounds turn them into GB/s.
//!
//! - [`memcpy`]: `copy_from_slice` of the buffer on one thread, the baseline.
//! - [`checksum_alone`]: the bulk checksum over the buffer on one thread (`lend` computes it
//!   once, `read` once more).
//! - [`one_thread`]: lend on side A, read on side B, reclaim on side A, all on one thread:
//!   the software cost, with no cache line crossing cores.
//! - [`a_to_b`]: side A's thread lends (copy in + checksum) and sends the descriptor in a
//!   ring message; side B's thread reads (copy out + checksum, or no checksum with
//!   `read_unchecked`) and sends the descriptor back; A reclaims. One buffer at a time, or
//!   two in flight (A copies the next one in while B copies the last one out).
//!
//! A stamps a sequence number into the buffer's first 8 bytes before it lends it, and B
//! checks it in what it read, so a buffer that did not arrive is noticed.

use crate::harness::{self, Cores, Measured, Plan};
use crate::transport::ring;
use bulkhead_ring::{BULK_PAGE, Bulk, BulkRef, SharedRegion, Side, checksum};
use serde::{Deserialize, Serialize};
use std::hint::black_box;

/// What side A sends side B over the ring, and B returns.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Hand {
    /// A buffer lent (from A) or given back (from B).
    Buffer(BulkRef),
    /// The last message: B leaves.
    Stop,
}

/// The buffer side A moves: `bytes` bytes of a fixed pattern.
fn source(bytes: usize) -> Vec<u8> {
    (0..bytes)
        .map(|i| (i as u8).wrapping_mul(7) ^ 0x5a)
        .collect()
}

fn stamp(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

fn expect_stamp(buf: &[u8], seq: u64) {
    let got = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    assert_eq!(got, seq, "bulk buffer {seq} did not arrive");
}

/// Both ends of the smallest bulk area whose pools hold one buffer of `bytes`.
fn area(bytes: usize) -> Result<(Bulk, Bulk), String> {
    let pool = bytes.div_ceil(BULK_PAGE).max(1) * BULK_PAGE;
    let size = u32::try_from(2 * pool).map_err(|_| format!("{bytes} bytes: too large"))?;
    let region = SharedRegion::zeroed(size as usize);
    let open = |side| Bulk::open(region.clone(), side, size);
    let a = open(Side::A).map_err(|e| format!("bulk area of {size} bytes, side A: {e}"))?;
    let b = open(Side::B).map_err(|e| format!("bulk area of {size} bytes, side B: {e}"))?;
    Ok((a, b))
}

/// Reads `r` into `dst`, with or without the checksum.
fn read(bulk: &mut Bulk, r: &BulkRef, dst: &mut [u8], checked: bool) {
    let got = if checked {
        bulk.read(r, dst)
    } else {
        bulk.read_unchecked(r, dst)
    };
    if let Err(e) = got {
        panic!("bulk read: {e}");
    }
}

/// `copy_from_slice` of `bytes` on side A's core.
pub fn memcpy(plan: &Plan, cores: Cores, bytes: usize) -> Result<Measured, String> {
    let work = || {
        let src = source(bytes);
        let mut dst = vec![0u8; bytes];
        harness::time_ops(plan, || {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    };
    Ok(harness::on_two_cores(cores, work, || {}))
}

/// The bulk checksum over `bytes` on side A's core.
pub fn checksum_alone(plan: &Plan, cores: Cores, bytes: usize) -> Result<Measured, String> {
    let work = || {
        let src = source(bytes);
        harness::time_ops(plan, || {
            black_box(checksum(black_box(&src)));
        })
    };
    Ok(harness::on_two_cores(cores, work, || {}))
}

/// Lend, read (`checked`: with the checksum) and reclaim, on side A's core.
pub fn one_thread(
    plan: &Plan,
    cores: Cores,
    bytes: usize,
    checked: bool,
) -> Result<Measured, String> {
    let (mut a, mut b) = area(bytes)?;
    let work = move || {
        let mut src = source(bytes);
        let mut dst = vec![0u8; bytes];
        let mut seq = 0u64;
        harness::time_ops(plan, || {
            stamp(&mut src, seq);
            let r = a.lend(&src).unwrap_or_else(|e| panic!("bulk lend: {e}"));
            read(&mut b, &r, &mut dst, checked);
            expect_stamp(&dst, seq);
            a.reclaim(&r)
                .unwrap_or_else(|e| panic!("bulk reclaim: {e}"));
            seq += 1;
        })
    };
    Ok(harness::on_two_cores(cores, work, || {}))
}

/// Side A takes back the next buffer side B returns.
fn take_back(ring_a: &mut ring::RingEnd, a: &mut Bulk) {
    match ring_a.recv_msg::<Hand>() {
        Hand::Buffer(back) => a
            .reclaim(&back)
            .unwrap_or_else(|e| panic!("bulk reclaim: {e}")),
        Hand::Stop => panic!("side B stopped"),
    }
}

/// Buffers from side A's thread to side B's and their descriptors back, `in_flight` at a
/// time (1: A waits for each buffer to come back before it lends the next; 2: A copies the
/// next buffer in while B copies the last one out). Samples are nanoseconds per buffer.
pub fn a_to_b(
    plan: &Plan,
    cores: Cores,
    bytes: usize,
    slots: usize,
    checked: bool,
    in_flight: usize,
) -> Result<Measured, String> {
    let (mut a, mut b) = area(bytes * in_flight.max(1))?;
    let (mut ring_a, mut ring_b) = ring::pair(slots)?;
    let drive = move || {
        let mut src = source(bytes);
        let mut seq = 0u64;
        let mut lent = 0usize;
        let measured = harness::time_ops(plan, || {
            if lent == in_flight.max(1) {
                take_back(&mut ring_a, &mut a);
                lent -= 1;
            }
            stamp(&mut src, seq);
            let r = a.lend(&src).unwrap_or_else(|e| panic!("bulk lend: {e}"));
            ring_a.send_msg(&Hand::Buffer(r));
            lent += 1;
            seq += 1;
        });
        for _ in 0..lent {
            take_back(&mut ring_a, &mut a);
        }
        ring_a.send_msg(&Hand::Stop);
        measured
    };
    let serve = move || {
        let mut dst = vec![0u8; bytes];
        let mut seq = 0u64;
        while let Hand::Buffer(r) = ring_b.recv_msg::<Hand>() {
            read(&mut b, &r, &mut dst, checked);
            expect_stamp(&dst, seq);
            ring_b.send_msg(&Hand::Buffer(r));
            seq += 1;
        }
    };
    Ok(harness::on_two_cores(cores, drive, serve))
}
