//! The console: the hypervisor's own lines and every qube's lines, each prefixed with a name
//! in its label colour. The format is stable and documented in docs/console.md:
//!
//! ```text
//! <name> | <text>
//! ```
//!
//! where `<name>` is `hv` for the hypervisor, padded to the longest qube name.

use crate::arch::x86::serial::Serial;
use bulkhead_abi::label::{ANSI_RESET, Label};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static COLOR: AtomicBool = AtomicBool::new(true);
static NAME_WIDTH: AtomicUsize = AtomicUsize::new(2);

/// Turns label colours on or off (`color=off` on the command line).
pub fn set_color(on: bool) {
    COLOR.store(on, Ordering::Relaxed);
}

/// Pads names to at least `width` characters.
pub fn set_name_width(width: usize) {
    NAME_WIDTH.store(width.clamp(2, 24), Ordering::Relaxed);
}

fn prefix(s: &mut Serial, name: &str, label: Option<Label>) {
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

/// Writes one hypervisor line.
pub fn hv_line(args: core::fmt::Arguments<'_>) {
    let mut s = Serial::raw();
    prefix(&mut s, "hv", None);
    let _ = s.write_fmt(args);
    s.write_bytes(b"\n");
}

/// Writes one qube line (already split by the qube's line buffer), sanitised.
pub fn qube_line(name: &str, label: Label, line: &[u8]) {
    let mut s = Serial::raw();
    prefix(&mut s, name, Some(label));
    let _ = bulkhead_hvcore::console::sanitize(line, &mut s);
    s.write_bytes(b"\n");
}

/// Logs a hypervisor line: `hvlog!("qube {} ready", name)`.
#[macro_export]
macro_rules! hvlog {
    ($($arg:tt)*) => { $crate::console::hv_line(format_args!($($arg)*)) };
}
