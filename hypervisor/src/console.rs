//! The console: the hypervisor's own lines and every qube's lines, each prefixed with a name
//! in its label colour. The format is stable and documented in docs/console.md:
//!
//! ```text
//! <name> | <text>
//! ```
//!
//! where `<name>` is `hv` for the hypervisor, padded to the longest qube name.
//!
//! Lines are formatted at once and wait in one queue (`bulkhead_hvcore::console::queue`),
//! in the order they were written, until the UART has room: writing a line never waits for
//! the UART, so a qube's `console_write` costs it no more than copying its bytes. The
//! scheduler calls [`pump`] between guest runs and [`idle_ns`] before it halts; a qube's lines
//! are held to its backlog and rate limits, and [`report_drops`] logs what was dropped. Until
//! [`start_queueing`] (the scheduler's start) and on a panic, lines go out at once.

use crate::arch::x86::serial::Serial;
use crate::sync::Locked;
use bulkhead_abi::label::{ANSI_RESET, Label};
use bulkhead_hvcore::console::queue::{HvPush, OutputQueue, Policy, STANDARD_HV_ROOM, Standard};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static COLOR: AtomicBool = AtomicBool::new(true);
static NAME_WIDTH: AtomicUsize = AtomicUsize::new(2);
/// Lines wait in the queue (set when the scheduler starts); before, they go out at once.
static QUEUEING: AtomicBool = AtomicBool::new(false);

const QUBES: usize = crate::scheduler::MAX_QUBES;
/// Every qube's allowance plus the hypervisor's room: 224 KiB, all zeros (in .bss).
const RING_BYTES: usize = QUBES * Standard::QUBE_QUEUED_MAX + STANDARD_HV_ROOM;
type Queue = OutputQueue<Standard, RING_BYTES, QUBES>;

static QUEUE: Locked<Queue> = Locked::new(Queue::new());

/// Longest formatted line: the name and its colour codes, 160 bytes of text each of which
/// may become 3 (U+FFFD), `\r\n`. Longer hypervisor lines are cut.
const LINE_BYTES: usize = 640;

/// Bytes one [`pump`] sends at most (the UART's FIFO is 16 bytes; an emulated one may take
/// more at once).
const PUMP_MAX: usize = 4096;

/// Turns label colours on or off (`color=off` on the command line).
pub fn set_color(on: bool) {
    COLOR.store(on, Ordering::Relaxed);
}

/// Pads names to at least `width` characters.
pub fn set_name_width(width: usize) {
    NAME_WIDTH.store(width.clamp(2, 24), Ordering::Relaxed);
}

/// From now on lines wait in the queue for [`pump`] (the scheduler is running).
pub fn start_queueing() {
    QUEUEING.store(true, Ordering::Relaxed);
}

fn prefix(s: &mut Line, name: &str, label: Option<Label>) {
    let width = NAME_WIDTH.load(Ordering::Relaxed);
    let color = COLOR.load(Ordering::Relaxed);
    match label {
        Some(l) if color => {
            let _ = write!(s, "{}{name:<width$}{ANSI_RESET} | ", l.ansi());
        }
        _ => {
            let _ = write!(s, "{name:<width$} | ");
        }
    }
}

/// Writes one hypervisor line. It is never dropped: when the hypervisor's room in the queue
/// is full, this waits for the UART.
pub fn hv_line(args: core::fmt::Arguments<'_>) {
    let mut l = Line::new();
    prefix(&mut l, "hv", None);
    let _ = l.write_fmt(args);
    let bytes = l.finish();
    let queued = QUEUE.with_spin(|q| {
        while q.push_hv(bytes) == HvPush::NoRoom {
            send_waiting(q, 64);
        }
        if !QUEUEING.load(Ordering::Relaxed) {
            send_waiting(q, usize::MAX);
        }
    });
    if queued.is_none() {
        // The queue is in use further up this stack (a fault inside the console): write
        // the line out directly rather than lose it.
        Serial::raw().write_fifo_waiting(bytes);
    }
}

/// Writes one qube line (already split by the qube's line buffer), sanitised, if the qube's
/// backlog and rate limits allow; otherwise it is dropped and counted.
pub fn qube_line(id: usize, name: &str, label: Label, line: &[u8]) {
    let mut l = Line::new();
    prefix(&mut l, name, Some(label));
    let _ = bulkhead_hvcore::console::sanitize(line, &mut l);
    let bytes = l.finish();
    let now = crate::time::now_ns();
    QUEUE.with_spin(|q| {
        q.push_qube(id, now, bytes, line.len());
        if !QUEUEING.load(Ordering::Relaxed) {
            send_waiting(q, usize::MAX);
        }
    });
}

/// Sends what the UART takes without waiting; returns whether output still waits.
pub fn pump() -> bool {
    QUEUE
        .with(|q| {
            let mut s = Serial::raw();
            let mut budget = PUMP_MAX;
            while !q.is_empty() && budget > 0 {
                let room = s.tx_room().min(budget).min(64);
                if room == 0 {
                    break;
                }
                let mut buf = [0u8; 64];
                let n = q.pop(&mut buf[..room]);
                s.write_fifo(&buf[..n]);
                budget -= n;
            }
            !q.is_empty()
        })
        .unwrap_or(false)
}

/// Pumps, and returns when the CPU should next look at the console: `until` (ns since boot),
/// or sooner, when the UART's FIFO will have room again, if output waits. For guest entries.
pub fn pump_until(now: u64, until: u64) -> u64 {
    if pump() {
        until.min(now.saturating_add(Serial::raw().fifo_drain_ns()))
    } else {
        until
    }
}

/// Pumps, and returns how long the idle CPU may halt: `ns`, or less while output waits (the
/// time the UART needs to empty its FIFO), so output keeps flowing and no deadline is missed.
pub fn idle_ns(ns: u64) -> u64 {
    if pump() {
        ns.min(Serial::raw().fifo_drain_ns())
    } else {
        ns
    }
}

/// Pumps, then logs `qube NAME: console rate limit: N bytes dropped (L lines)` for each qube
/// whose burst of drops is over (or has lasted a second); `name_of` names a qube by its id.
pub fn report_drops() {
    pump();
    let now = crate::time::now_ns();
    while let Some((id, d)) = QUEUE.with(|q| q.take_due_report(now)).flatten() {
        let name = crate::smp::name_of(id);
        log_drops(if name.is_empty() { "?" } else { name.as_str() }, d);
    }
}

/// Logs a stopping qube's drops now.
pub fn report_drops_now(id: usize, name: &str) {
    if let Some(d) = QUEUE.with(|q| q.take_report(id)).flatten() {
        log_drops(name, d);
    }
}

fn log_drops(name: &str, d: bulkhead_hvcore::console::queue::Dropped) {
    crate::hvlog!(
        "qube {name}: console rate limit: {} bytes dropped ({} lines)",
        d.bytes,
        d.lines
    );
}

/// Sends everything queued, waiting for the UART: for a panic, a CPU exception or a boot
/// failure, before the hypervisor stops. Does nothing if the queue is in use further up this
/// stack (the fault happened inside the console).
pub fn flush_waiting() {
    let _ = QUEUE.with(|q| send_waiting(q, usize::MAX));
}

/// Sends up to `limit` bytes, waiting for the UART as needed.
fn send_waiting(q: &mut Queue, limit: usize) {
    let mut s = Serial::raw();
    let mut sent = 0;
    let mut buf = [0u8; 64];
    while sent < limit {
        let n = q.pop(&mut buf[..(limit - sent).min(64)]);
        if n == 0 {
            break;
        }
        s.write_fifo_waiting(&buf[..n]);
        sent += n;
    }
}

/// One formatted line: `\n` becomes `\r\n`, and what does not fit is cut (at a character).
struct Line {
    buf: [u8; LINE_BYTES],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; LINE_BYTES],
            len: 0,
        }
    }

    /// Ends the line with `\r\n` (room for it is always kept).
    fn finish(&mut self) -> &[u8] {
        self.buf[self.len..self.len + 2].copy_from_slice(b"\r\n");
        &self.buf[..self.len + 2]
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        // Keep two bytes for the final `\r\n`.
        if self.len + bytes.len() > LINE_BYTES - 2 {
            return false;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0u8; 4];
            let fits = if c == '\n' {
                self.push(b"\r\n")
            } else {
                self.push(c.encode_utf8(&mut utf8).as_bytes())
            };
            if !fits {
                return Err(core::fmt::Error);
            }
        }
        Ok(())
    }
}

/// Logs a hypervisor line: `hvlog!("qube {} ready", name)`.
#[macro_export]
macro_rules! hvlog {
    ($($arg:tt)*) => { $crate::console::hv_line(format_args!($($arg)*)) };
}
