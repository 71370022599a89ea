//! A disposable's output made safe for the requester's terminal. Every byte comes from the
//! disposable and is hostile: an escape sequence written raw would let it drive the terminal
//! (move the cursor, rewrite what is on the screen, change colours and titles, answer
//! status queries as if the user typed). So the text is decoded as UTF-8 across chunk
//! boundaries and only printable characters, newline and tab pass; everything else is shown
//! escaped, as visible text:
//!
//! - C0 controls (ESC, CR, BS, BEL, ...) and DEL: `\xNN` (ESC `[31m` becomes `\x1b[31m`);
//! - C1 controls (U+0080..U+009F, CSI among them): `\u{9b}`;
//! - the bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069, the marks
//!   U+200E, U+200F, U+061C), which reorder what the user reads: `\u{202e}`;
//! - bytes that are not UTF-8: `\xNN` each.
//!
//! A backslash in the output stays a backslash: the escapes are for reading, not parsing.

/// Streaming sanitizer: holds at most the 3 bytes of an unfinished UTF-8 sequence.
#[derive(Debug, Default)]
pub struct Sanitizer {
    pending: Vec<u8>,
    /// Characters or bytes escaped so far.
    pub escaped: u64,
}

impl Sanitizer {
    /// Appends the safe form of `bytes` (the next piece of the stream) to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            let mut j = std::mem::take(&mut self.pending);
            j.extend_from_slice(bytes);
            joined = j;
            &joined
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.text(s, out);
                    return;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // The first `valid_up_to` bytes are UTF-8 (from_utf8 says so).
                    self.text(std::str::from_utf8(good).unwrap_or_default(), out);
                    match e.error_len() {
                        Some(n) => {
                            for b in &bad[..n] {
                                self.byte(*b, out);
                            }
                            rest = &bad[n..];
                        }
                        // An unfinished sequence at the end: wait for the next piece.
                        None => {
                            self.pending = bad.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The stream ended: an unfinished sequence is shown escaped.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        for b in std::mem::take(&mut self.pending) {
            self.byte(b, out);
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        self.escaped += 1;
        out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
    }

    fn text(&mut self, s: &str, out: &mut Vec<u8>) {
        // The common case, printable ASCII and line ends, goes through in one copy.
        if s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) || b == b'\n' || b == b'\t')
        {
            out.extend_from_slice(s.as_bytes());
            return;
        }
        let mut buf = [0u8; 4];
        for c in s.chars() {
            if c == '\n' || c == '\t' || !needs_escape(c) {
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            } else if (c as u32) < 0x80 {
                self.byte(c as u8, out);
            } else {
                self.escaped += 1;
                out.extend_from_slice(format!("\\u{{{:x}}}", c as u32).as_bytes());
            }
        }
    }
}

/// Whether `c` could steer a terminal or reorder what the user reads.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `bytes` made safe in one piece (tests, short texts).
pub fn sanitize(bytes: &[u8]) -> String {
    let (mut s, mut out) = (Sanitizer::default(), Vec::new());
    s.push(bytes, &mut out);
    s.finish(&mut out);
    String::from_utf8(out).unwrap_or_default()
}
