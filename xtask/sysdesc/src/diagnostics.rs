//! Problems found in a system description, each with where it is, what is wrong and how to
//! fix it. Every problem in a file is collected before anything is reported, so one run of
//! `cargo xtask check` shows them all.
//!
//! Everything in a diagnostic may quote the description (a qube name, a value), which the
//! person running `check` did not necessarily write: control characters, terminal escapes
//! and invisible direction marks are shown as `\u{..}` ([`escaped`]) so that a diagnostic is
//! always one line of plain text plus its hint line.

use std::fmt;
use std::ops::Range;

/// One problem in a system description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line and column (in characters), when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The key path, e.g. `qube[2].memory_mib` or `qube "net".label`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// `text` with every character that could move the cursor, change the terminal or hide
/// text (controls such as ESC, CR and newline, bidirectional and zero-width marks) written as
/// `\u{1b}`, as Rust writes them.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` is not shown as itself on a terminal: a C0 or C1 control, DEL, or a Unicode
/// format character that reorders or hides text (bidirectional overrides and isolates,
/// zero-width marks, the byte-order mark).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(
            f,
            ": {}: {}\n    hint: {}",
            self.key, self.message, self.hint
        )
    }
}

/// Every problem found in one system description, in file order.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    file: String,
    line_starts: Vec<usize>,
    text_len: usize,
    /// Byte offset of each item (for ordering; `usize::MAX` when it has no place).
    items: Vec<(usize, Diagnostic)>,
}

impl Diagnostics {
    /// An empty collection for `file`, whose contents are `text`.
    pub(super) fn new(file: &str, text: &str) -> Diagnostics {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Diagnostics {
            file: escaped(file),
            line_starts,
            text_len: text.len(),
            items: Vec::new(),
        }
    }

    /// Records a problem at `span` (a byte range of the text), under `key`.
    pub(super) fn push(
        &mut self,
        text: &str,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let offset = span.map(|s| s.start.min(self.text_len));
        let item = Diagnostic {
            file: self.file.clone(),
            position: offset.map(|o| self.line_column(text, o)),
            key: escaped(&key.into()),
            message: escaped(&message.into()),
            hint: escaped(&hint.into()),
        };
        self.items.push((offset.unwrap_or(usize::MAX), item));
    }

    /// The one problem of a file that is not UTF-8: where its first bad byte is, in the
    /// line and key the valid text before it reaches.
    pub(super) fn not_utf8(file: &str, bytes: &[u8], e: std::str::Utf8Error) -> Diagnostics {
        let at = e.valid_up_to();
        let text = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
        let mut d = Diagnostics::new(file, text);
        let bad: Vec<String> = bytes[at..]
            .iter()
            .take(e.error_len().unwrap_or(bytes.len() - at).max(1))
            .map(|b| format!("0x{b:02x}"))
            .collect();
        let message = format!(
            "the file is not UTF-8 text: byte{} {} here {} no character",
            if bad.len() == 1 { "" } else { "s" },
            bad.join(" "),
            if bad.len() == 1 { "is" } else { "are" },
        );
        let hint = "save the description as UTF-8 (names are plain ASCII; other text, such \
                    as a purpose, may use any UTF-8 character)";
        d.push(
            text,
            Some(at..at),
            super::syntax::key_at(text, at),
            message,
            hint,
        );
        d
    }

    /// Records a problem like [`Diagnostics::push`] and gives `None`, for checks that yield
    /// a value only when it is right.
    pub(super) fn fail<T>(
        &mut self,
        text: &str,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Option<T> {
        self.push(text, span, key, message, hint);
        None
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The problems, in file order (problems without a place come last).
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().map(|(_, d)| d)
    }

    /// Puts the problems in file order; called once collecting is done.
    pub(super) fn sort(&mut self) {
        self.items.sort_by_key(|(offset, _)| *offset);
    }

    /// 1-based line and character column of byte `offset`.
    fn line_column(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let start = self.line_starts[line - 1];
        let column = match text.get(start..offset) {
            Some(s) => s.chars().count(),
            None => offset - start,
        };
        (line, column + 1)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.iter() {
            writeln!(f, "{d}")?;
        }
        let n = self.items.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        let mut d = Diagnostics::new("x.toml", text);
        d.push(text, Some(0..1), "a", "m", "h");
        d.push(text, Some(10..11), "b", "m", "h");
        d.push(text, None, "c", "m", "h");
        d.push(text, Some(999..1000), "d", "m", "h");
        let pos: Vec<_> = d.iter().map(|d| d.position).collect();
        assert_eq!(pos, [Some((1, 1)), Some((2, 4)), None, Some((3, 1))]);
    }

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert_eq!(escaped("net"), "net");
        assert_eq!(escaped("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escaped("x\nf.toml:1:1: y"), "x\\u{a}f.toml:1:1: y");
        assert_eq!(escaped("\u{202e}txt"), "\\u{202e}txt");
        assert_eq!(escaped("a\\b é"), "a\\b é");
        let text = "name = 1";
        let mut d = Diagnostics::new("f\n.toml", text);
        d.push(text, Some(0..1), "q\r", "m\x1b", "h\u{9b}");
        let shown = d.to_string();
        assert_eq!(shown.split('\n').count(), 3, "{shown}");
        assert!(
            shown.split('\n').all(|l| !l.chars().any(hidden)),
            "{shown:?}"
        );
    }

    #[test]
    fn display_names_file_key_and_hint() {
        let text = "\n\n memory_mib = 3";
        let mut d = Diagnostics::new("systems/x.toml", text);
        d.push(
            text,
            Some(14..15),
            "qube[1].memory_mib",
            "3 MiB is not a multiple",
            "use 4",
        );
        d.sort();
        assert_eq!(
            d.to_string(),
            "systems/x.toml:3:13: qube[1].memory_mib: 3 MiB is not a multiple\n    hint: use 4\n\
             systems/x.toml: 1 problem"
        );
    }
}
