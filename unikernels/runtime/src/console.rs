//! Console output, buffered into whole lines.
//!
//! The hypervisor prefixes each console line with the qube's name, so the runtime hands it
//! whole lines: text is collected in a [`LineBuffer`] and sent with one `ConsoleWrite` per
//! line. A line longer than [`LINE_MAX`] bytes is cut into several lines. [`flush`] sends a
//! pending partial line (with a newline added); [`crate::exit`] and the panic handler call it.

use core::fmt;

use bulkhead_abi::hypercall::MAX_CONSOLE_WRITE;

use crate::sync::Mutex;

/// Longest line sent in one `ConsoleWrite`, newline included.
pub const LINE_MAX: usize = 512;

const _: () = assert!(LINE_MAX as u64 <= MAX_CONSOLE_WRITE);

/// Collects bytes and hands out whole lines, each ending in `\n` and at most `N` bytes long.
#[derive(Debug)]
pub struct LineBuffer<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> LineBuffer<N> {
    const ROOM: () = assert!(N >= 2, "a line needs room for one byte and the newline");

    /// An empty buffer.
    pub const fn new() -> LineBuffer<N> {
        let () = Self::ROOM;
        LineBuffer {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `bytes`; calls `out` with each line completed, either by a `\n` in `bytes` or
    /// by reaching `N - 1` bytes (then a `\n` is added and the rest continues on a new line).
    pub fn write(&mut self, bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        for &b in bytes {
            if b != b'\n' && self.len == N - 1 {
                self.push_and_emit(b'\n', out);
            }
            if b == b'\n' {
                self.push_and_emit(b, out);
            } else {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    /// Hands out a pending partial line, with a `\n` added. Does nothing when empty.
    pub fn flush(&mut self, out: &mut impl FnMut(&[u8])) {
        if self.len > 0 {
            self.push_and_emit(b'\n', out);
        }
    }

    /// The bytes of the line not yet handed out.
    pub fn pending(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push_and_emit(&mut self, b: u8, out: &mut impl FnMut(&[u8])) {
        self.buf[self.len] = b;
        out(&self.buf[..=self.len]);
        self.len = 0;
    }
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        LineBuffer::new()
    }
}

static CONSOLE: Mutex<LineBuffer<LINE_MAX>> = Mutex::new(LineBuffer::new());

/// Sends one line to the hypervisor, retrying partial writes; drops the rest on an error
/// (there is nowhere to report a console failure).
fn emit(line: &[u8]) {
    let mut rest = line;
    while !rest.is_empty() {
        match crate::hypercall::console_write(rest) {
            Ok(n) if n > 0 => rest = &rest[n..],
            _ => return,
        }
    }
}

struct Sink<'a, const N: usize>(&'a mut LineBuffer<N>);

impl<const N: usize> fmt::Write for Sink<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes(), &mut emit);
        Ok(())
    }
}

/// Writes formatted text to the console (whole lines go out as they complete).
///
/// If the console is already in use further up the stack (a panic while formatting a log
/// line), the text goes through a private buffer instead and is flushed at once.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    match CONSOLE.try_lock() {
        Some(mut buffer) => {
            let _ = fmt::write(&mut Sink(&mut *buffer), args);
        }
        None => {
            let mut own = LineBuffer::<256>::new();
            let _ = fmt::write(&mut Sink(&mut own), args);
            own.flush(&mut emit);
        }
    }
}

/// Writes `s` to the console.
pub fn write_str(s: &str) {
    write_fmt(format_args!("{s}"));
}

/// Sends a pending partial line, if any.
pub fn flush() {
    if let Some(mut buffer) = CONSOLE.try_lock() {
        buffer.flush(&mut emit);
    }
}

/// The console as a [`core::fmt::Write`] sink: `write!(Console, "...")`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_str(s);
        Ok(())
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        write_fmt(args);
        Ok(())
    }
}

/// Prints to the console, without a level prefix.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console, without a level prefix.
#[macro_export]
macro_rules! println {
    () => { $crate::console::write_str("\n") };
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<const N: usize>(chunks: &[&str], flush: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let mut out = |l: &[u8]| lines.push(String::from_utf8(l.to_vec()).unwrap());
        let mut b = LineBuffer::<N>::new();
        for c in chunks {
            b.write(c.as_bytes(), &mut out);
        }
        if flush {
            b.flush(&mut out);
        }
        lines
    }

    #[test]
    fn whole_lines_go_out_when_complete() {
        assert_eq!(
            run::<64>(&["hel", "lo\nwor", "ld\n"], false),
            ["hello\n", "world\n"]
        );
    }

    #[test]
    fn partial_line_waits_for_flush() {
        assert!(run::<64>(&["no newline"], false).is_empty());
        assert_eq!(run::<64>(&["no newline"], true), ["no newline\n"]);
    }

    #[test]
    fn flush_of_nothing_sends_nothing() {
        assert!(run::<64>(&[], true).is_empty());
        assert!(run::<64>(&["done\n"], true).len() == 1);
    }

    #[test]
    fn empty_lines_are_kept() {
        assert_eq!(run::<8>(&["\n\na\n"], false), ["\n", "\n", "a\n"]);
    }

    #[test]
    fn long_lines_are_cut_to_the_limit() {
        let lines = run::<4>(&["abcdefg\n"], false);
        assert_eq!(lines, ["abc\n", "def\n", "g\n"]);
        assert!(lines.iter().all(|l| l.len() <= 4 && l.ends_with('\n')));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_not_cut() {
        assert_eq!(run::<4>(&["abc\n", "de"], true), ["abc\n", "de\n"]);
    }

    #[test]
    fn pending_shows_the_unsent_part() {
        let mut b = LineBuffer::<16>::new();
        b.write(b"ab\ncd", &mut |_| {});
        assert_eq!(b.pending(), b"cd");
    }

    #[test]
    fn console_line_fits_one_hypercall() {
        let big = "x".repeat(3 * LINE_MAX);
        let lines = run::<LINE_MAX>(&[&big], true);
        assert!(lines.iter().all(|l| l.len() as u64 <= MAX_CONSOLE_WRITE));
        assert_eq!(lines.iter().map(|l| l.len() - 1).sum::<usize>(), big.len());
    }
}
