//! Guest console output: per-qube line buffering and sanitising.
//!
//! The hypervisor prints each qube's output line by line, prefixed with the qube's name in
//! its label colour. A qube must not be able to forge that prefix or move the cursor, so
//! control characters (C0, DEL, C1, including ESC) are replaced before a line is printed;
//! printable UTF-8 passes through, invalid UTF-8 becomes U+FFFD.

/// Longest line kept; longer lines are emitted in pieces.
pub const LINE_MAX: usize = 160;

/// Accumulates one qube's console bytes into lines.
#[derive(Clone, Debug)]
pub struct LineBuffer {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer::new()
    }
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> LineBuffer {
        LineBuffer {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Feeds bytes; `emit` is called with each complete (or full) line, without the newline.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        for &b in bytes {
            match b {
                b'\n' => {
                    emit(&self.buf[..self.len]);
                    self.len = 0;
                }
                b'\r' => {}
                _ => {
                    if self.len == LINE_MAX {
                        emit(&self.buf[..self.len]);
                        self.len = 0;
                    }
                    self.buf[self.len] = b;
                    self.len += 1;
                }
            }
        }
    }

    /// Emits what is buffered, if anything (when the qube stops mid-line).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if self.len > 0 {
            emit(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

/// Writes `line` to `out` with control characters made harmless.
pub fn sanitize(line: &[u8], out: &mut impl core::fmt::Write) -> core::fmt::Result {
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            let control = c.is_control() && c != '\t';
            out.write_char(if control { '\u{00B7}' } else { c })?;
        }
        if !chunk.invalid().is_empty() {
            out.write_char('\u{FFFD}')?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::{string::String, vec::Vec};

    fn lines(input: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        for chunk in input {
            lb.push(chunk, |l| out.push(l.to_vec()));
        }
        lb.flush(|l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn splits_lines_across_writes() {
        assert_eq!(
            lines(&[b"ab", b"c\nde\r\n", b"f"]),
            [b"abc".to_vec(), b"de".to_vec(), b"f".to_vec()]
        );
    }

    #[test]
    fn cuts_long_lines() {
        let long = [b'x'; LINE_MAX + 5];
        let out = lines(&[&long]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), LINE_MAX);
    }

    #[test]
    fn strips_escapes() {
        let mut s = String::new();
        sanitize(
            b"\x1b[2Jhv | qube x ready\x07 \xc2\x9b \xff ok \xc3\xa9",
            &mut s,
        )
        .unwrap();
        assert!(!s.contains('\x1b') && !s.contains('\x07') && !s.contains('\u{9b}'));
        assert!(s.ends_with("ok é"));
        assert!(s.contains('\u{FFFD}'));
    }

    proptest! {
        #[test]
        fn sanitized_output_has_no_controls(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut lb = LineBuffer::new();
            let mut all = Vec::new();
            lb.push(&bytes, |l| all.push(l.to_vec()));
            for l in all {
                prop_assert!(l.len() <= LINE_MAX && !l.contains(&b'\n'));
                let mut s = String::new();
                sanitize(&l, &mut s).unwrap();
                prop_assert!(!s.chars().any(|c| c.is_control() && c != '\t'));
            }
        }
    }
}
