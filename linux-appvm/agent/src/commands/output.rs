//! Output from another qube on this qube's terminal. It is hostile: on a terminal it is
//! made safe (`crate::dispvm::text`: escape sequences and other controls shown as text,
//! UTF-8 decoded across pieces), and `qvm-run` marks it red, as Qubes' does, so that it
//! cannot pass for this qube's own. A stream whose reader went away (`| head`) is dropped;
//! the rest of the call goes on.

use crate::dispvm::text::Sanitizer;
use std::io::Write;

const RED: &[u8] = b"\x1b[31m";
const PLAIN: &[u8] = b"\x1b[0m";

/// Stdout and stderr of a call, printed.
#[derive(Debug, Default)]
pub struct Printer {
    /// Per stream (stdout, stderr): made safe.
    filter: [bool; 2],
    /// Per stream: marked red.
    colour: [bool; 2],
    sanitizers: [Sanitizer; 2],
    closed: [bool; 2],
}

impl Printer {
    /// Output made safe where `filter`, marked red where `colour` (each for stdout, stderr:
    /// what goes to a terminal).
    pub fn new(filter: [bool; 2], colour: [bool; 2]) -> Printer {
        Printer {
            filter,
            colour,
            ..Printer::default()
        }
    }

    /// Prints a piece of stdout (`i` = 0) or stderr (`i` = 1) to `w`.
    pub fn print(&mut self, i: usize, w: &mut dyn Write, bytes: &[u8]) {
        let mut safe = Vec::new();
        let text = if self.filter[i] {
            self.sanitizers[i].push(bytes, &mut safe);
            &safe[..]
        } else {
            bytes
        };
        self.emit(i, w, text);
    }

    /// The output ended: what an unfinished character held is shown.
    pub fn finish(&mut self, out: &mut dyn Write, err: &mut dyn Write) {
        let mut rest = Vec::new();
        self.sanitizers[0].finish(&mut rest);
        self.emit(0, out, &rest);
        rest.clear();
        self.sanitizers[1].finish(&mut rest);
        self.emit(1, err, &rest);
    }

    fn emit(&mut self, i: usize, w: &mut dyn Write, text: &[u8]) {
        if text.is_empty() || self.closed[i] {
            return;
        }
        let written = if self.colour[i] {
            w.write_all(RED)
                .and_then(|()| w.write_all(text))
                .and_then(|()| w.write_all(PLAIN))
        } else {
            w.write_all(text)
        };
        self.closed[i] = written.and_then(|()| w.flush()).is_err();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_marks() {
        let mut out = Vec::new();
        let mut p = Printer::new([true; 2], [false; 2]);
        p.print(0, &mut out, b"ok \x1b[2J\xe2\x82");
        p.print(0, &mut out, b"\xac\n");
        assert_eq!(out, b"ok \\x1b[2J\xe2\x82\xac\n");
        let mut out = Vec::new();
        let mut p = Printer::new([false; 2], [true; 2]);
        p.print(1, &mut out, b"\x1b]0;t\x07");
        assert_eq!(out, b"\x1b[31m\x1b]0;t\x07\x1b[0m");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut p = Printer::new([true; 2], [false; 2]);
        p.print(1, &mut err, b"\xe2");
        p.finish(&mut out, &mut err);
        assert_eq!((out, err), (vec![], b"\\xe2".to_vec()));
    }
}
