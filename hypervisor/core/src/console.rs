//! Guest console output: per-qube line buffering and sanitising.
//!
//! The hypervisor prints each qube's output line by line, prefixed with the qube's name in
//! its label colour. A qube must not be able to forge that prefix, move the cursor, or make
//! its text look like someone else's, so before a line is printed these become `·` (U+00B7):
//! control characters (C0, DEL, C1, including ESC) except tab, and the invisible or
//! reordering characters of [`is_hidden`] (line and paragraph separators, bidirectional
//! controls, zero-width and other invisible format characters, the BOM, tag characters, the
//! soft hyphen). Other printable UTF-8 passes through; invalid UTF-8 becomes U+FFFD.

pub mod queue;

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

/// What replaces a character a qube may not print.
pub const REPLACEMENT: char = '\u{00B7}';

/// Characters that print nothing or change how the text around them is shown, though they
/// are not control characters: a qube could use them to hide text, break a line without a
/// newline, or reorder what a reader sees (a right-to-left override makes `hv | ` appear
/// at the end of a line). Ranges are inclusive.
const HIDDEN: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark (bidirectional)
    ('\u{180E}', '\u{180E}'),   // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, non-joiner, joiner; LRM, RLM
    ('\u{2028}', '\u{2029}'),   // line and paragraph separators
    ('\u{202A}', '\u{202E}'),   // bidirectional embeddings and overrides
    ('\u{2060}', '\u{206F}'),   // word joiner, invisible operators, isolates, deprecated
    ('\u{FEFF}', '\u{FEFF}'),   // zero-width no-break space (BOM)
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotation controls
    ('\u{E0000}', '\u{E007F}'), // tag characters
];

/// Whether `c` is one of the invisible or reordering characters a qube may not print.
pub fn is_hidden(c: char) -> bool {
    // Most text is ASCII: one comparison.
    c >= '\u{00AD}' && HIDDEN.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Whether `c` may appear in a sanitised line as it is.
pub fn is_allowed(c: char) -> bool {
    c == '\t' || !(c.is_control() || is_hidden(c))
}

/// Writes `line` to `out` with control characters and hidden characters made harmless.
pub fn sanitize(line: &[u8], out: &mut impl core::fmt::Write) -> core::fmt::Result {
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.write_char(if is_allowed(c) { c } else { REPLACEMENT })?;
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
    use std::{format, string::String, vec, vec::Vec};

    fn clean_bytes(b: &[u8]) -> String {
        let mut out = String::new();
        sanitize(b, &mut out).unwrap();
        out
    }

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

    fn clean(s: &str) -> String {
        let mut out = String::new();
        sanitize(s.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn replaces_hidden_and_reordering_characters() {
        // A right-to-left override would show "hv | ok" reversed at the line's end.
        assert_eq!(clean("a\u{202E}kO | vh"), "a·kO | vh");
        assert_eq!(clean("x\u{2028}hv | forged\u{2029}"), "x·hv | forged·");
        assert_eq!(clean("\u{FEFF}bom"), "·bom");
        for c in [
            '\u{00AD}',
            '\u{061C}',
            '\u{180E}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{FFF9}',
            '\u{FFFB}',
            '\u{E0000}',
            '\u{E0041}',
            '\u{E007F}',
        ] {
            assert_eq!(clean(&format!("a{c}b")), "a·b", "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn keeps_neighbours_of_the_hidden_ranges() {
        let kept = "\u{00AC}\u{00AE}\u{061B}\u{061D}\u{180D}\u{180F}\u{200A}\u{2010}\u{2027}\u{202F}\u{205F}\u{2070}\u{FEFE}\u{FF00}\u{FFF8}\u{FFFC}\u{DFFFF}\u{E0080}";
        assert_eq!(clean(kept), kept);
        assert_eq!(clean("tab\tok é 漢字 🙂"), "tab\tok é 漢字 🙂");
    }

    proptest! {
        #[test]
        fn sanitized_output_has_only_allowed_characters(s in "\\PC*", hidden in proptest::collection::vec(
            prop_oneof![0x00u32..0x20, 0x7Fu32..0xA0, Just(0xAD), Just(0x61C), Just(0x180E),
                0x200Bu32..0x2010, 0x2028u32..0x202A, 0x202Au32..0x202F, 0x2060u32..0x2070,
                Just(0xFEFF), 0xFFF9u32..0xFFFC, 0xE0000u32..0xE0080],
            0..20)) {
            let mut text: String = s;
            for h in hidden {
                let at = (h as usize) % (text.len() + 1);
                let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                text.insert(at, char::from_u32(h).unwrap());
            }
            let out = clean(&text);
            prop_assert!(out.chars().all(is_allowed));
            prop_assert!(!out.chars().any(|c| is_hidden(c) || (c.is_control() && c != '\t')));
            // Nothing else changes: as many characters out as in.
            prop_assert_eq!(out.chars().count(), text.chars().count());
        }

        #[test]
        fn sanitized_bytes_have_only_allowed_characters(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(clean_bytes(&bytes).chars().all(is_allowed));
        }

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
