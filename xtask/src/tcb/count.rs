//! Line counting for Rust and assembly sources: code, comment and blank lines.
//!
//! A line is code if any part of it is outside a comment and not whitespace (a line that lies
//! inside a multi-line string literal is code too); otherwise it is a comment line if it holds
//! (part of) a comment, else blank. Rust comments are `//` (including `///` and `//!`) and
//! nested `/* */`; the lexer knows string, byte-string, C-string and raw-string literals and
//! tells char literals (`'"'`, `'\''`) from lifetimes, so comment markers inside literals do
//! not count.

use serde::Serialize;

/// Line counts of one file or a sum of files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lines {
    /// Lines with code.
    pub code: u64,
    /// Lines with only comments.
    pub comment: u64,
    /// Empty or whitespace-only lines.
    pub blank: u64,
}

impl std::ops::AddAssign for Lines {
    fn add_assign(&mut self, other: Lines) {
        self.code += other.code;
        self.comment += other.comment;
        self.blank += other.blank;
    }
}

impl Lines {
    /// Adds one line of `kind`.
    pub fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Code => self.code += 1,
            Kind::Comment => self.comment += 1,
            Kind::Blank => self.blank += 1,
        }
    }

    /// The sum of these kinds.
    pub fn of(kinds: &[Kind]) -> Lines {
        let mut lines = Lines::default();
        for &k in kinds {
            lines.add(k);
        }
        lines
    }
}

/// What one line holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Some code.
    Code,
    /// Only comments (and whitespace).
    Comment,
    /// Nothing but whitespace.
    Blank,
}

/// Per-line flags collected while lexing.
#[derive(Default)]
struct Tally {
    kinds: Vec<Kind>,
    code: bool,
    comment: bool,
}

impl Tally {
    fn end_line(&mut self) {
        self.kinds.push(if self.code {
            Kind::Code
        } else if self.comment {
            Kind::Comment
        } else {
            Kind::Blank
        });
        self.code = false;
        self.comment = false;
    }

    fn finish(mut self, text: &str) -> Vec<Kind> {
        if !text.is_empty() && !text.ends_with('\n') {
            self.end_line();
        }
        self.kinds
    }
}

#[derive(Clone, Copy)]
enum State {
    Code,
    /// Inside `/* */`, nesting depth.
    Block(u32),
    /// Inside `"..."` (also `b".."`, `c".."`).
    Str,
    /// Inside a raw string closed by `"` and this many `#`.
    Raw(usize),
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Counts the lines of a Rust source file.
#[cfg(test)]
pub fn rust(text: &str) -> Lines {
    Lines::of(&rust_lines(text))
}

/// What each line of a Rust source file holds (line `i` of the text is entry `i`).
pub fn rust_lines(text: &str) -> Vec<Kind> {
    let s: Vec<char> = text.chars().collect();
    let at = |i: usize| s.get(i).copied().unwrap_or('\0');
    let mut t = Tally::default();
    let mut state = State::Code;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '\n' {
            t.end_line();
            i += 1;
            continue;
        }
        match state {
            State::Code if c.is_whitespace() => i += 1,
            State::Code if c == '/' && at(i + 1) == '/' => {
                t.comment = true;
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
            State::Code if c == '/' && at(i + 1) == '*' => {
                t.comment = true;
                state = State::Block(1);
                i += 2;
            }
            State::Code => {
                t.code = true;
                (state, i) = code_char(&s, i);
            }
            State::Block(depth) => {
                t.comment = true;
                if c == '/' && at(i + 1) == '*' {
                    state = State::Block(depth + 1);
                    i += 2;
                } else if c == '*' && at(i + 1) == '/' {
                    state = if depth == 1 {
                        State::Code
                    } else {
                        State::Block(depth - 1)
                    };
                    i += 2;
                } else {
                    i += 1;
                }
            }
            State::Str => {
                t.code = true;
                match c {
                    // An escaped newline is still a line end for counting.
                    '\\' if at(i + 1) != '\n' => i += 2,
                    '"' => {
                        state = State::Code;
                        i += 1;
                    }
                    _ => i += 1,
                }
            }
            State::Raw(hashes) => {
                t.code = true;
                if c == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    state = State::Code;
                    i += 1 + hashes;
                } else {
                    i += 1;
                }
            }
        }
    }
    t.finish(text)
}

/// Lexes one code character at `i` (not whitespace, not a comment start): starts string
/// literals, skips char literals whole. Returns the next state and position.
fn code_char(s: &[char], i: usize) -> (State, usize) {
    let at = |k: usize| s.get(k).copied().unwrap_or('\0');
    let prev = |k: usize| if k == 0 { '\0' } else { at(k - 1) };
    match s[i] {
        '"' => (State::Str, i + 1),
        'r' if !is_ident(prev(i)) || (matches!(prev(i), 'b' | 'c') && !is_ident(prev(i - 1))) => {
            let mut j = i + 1;
            while at(j) == '#' {
                j += 1;
            }
            if at(j) == '"' {
                (State::Raw(j - i - 1), j + 1)
            } else {
                (State::Code, i + 1)
            }
        }
        '\'' if at(i + 1) == '\\' => {
            // Escaped char literal: skip the escaped char, then up to the closing quote
            // (`'\u{..}'`), never past the line.
            let mut j = i + 3;
            while j < s.len() && s[j] != '\'' && s[j] != '\n' {
                j += 1;
            }
            (State::Code, (j + 1).min(s.len()))
        }
        // `'x'` is a char literal; otherwise `'a` is a lifetime or label.
        '\'' if at(i + 2) == '\'' && at(i + 1) != '\n' => (State::Code, i + 3),
        _ => (State::Code, i + 1),
    }
}

/// Preprocessor directives that make a `#` line code in a `.S` file.
const CPP_DIRECTIVES: &[&str] = &[
    "include", "define", "undef", "if", "ifdef", "ifndef", "elif", "else", "endif", "error",
    "warning", "pragma", "line",
];

/// Counts the lines of a GNU-as / LLVM assembly file (`.s`, `.S`, or text that
/// `global_asm!(include_str!(..))` reads). Comments: `/* */`, `//` and `#` to the end of the line,
/// except a line-leading `#` that starts a C preprocessor directive.
pub fn asm(text: &str) -> Lines {
    let mut t = Tally::default();
    let mut in_block = false;
    for line in text.lines() {
        let s: Vec<char> = line.chars().collect();
        let first = s.iter().position(|c| !c.is_whitespace());
        let mut i = 0;
        while i < s.len() {
            let next = s.get(i + 1).copied().unwrap_or('\0');
            if in_block {
                t.comment = true;
                if s[i] == '*' && next == '/' {
                    in_block = false;
                    i += 1;
                }
            } else if s[i] == '/' && next == '*' {
                t.comment = true;
                in_block = true;
                i += 1;
            } else if (s[i] == '/' && next == '/') || s[i] == '#' {
                let rest: String = s[i + 1..].iter().collect();
                let word = rest
                    .trim_start()
                    .split(|c: char| !c.is_alphanumeric())
                    .next();
                if s[i] == '#'
                    && first == Some(i)
                    && word.is_some_and(|w| CPP_DIRECTIVES.contains(&w))
                {
                    t.code = true;
                } else {
                    t.comment = true;
                }
                break;
            } else if s[i] == '"' {
                t.code = true;
                i += 1;
                while i < s.len() && s[i] != '"' {
                    i += if s[i] == '\\' { 2 } else { 1 };
                }
            } else if !s[i].is_whitespace() {
                t.code = true;
            }
            i += 1;
        }
        t.end_line();
    }
    Lines::of(&t.kinds)
}

#[cfg(test)]
#[path = "count_tests.rs"]
mod tests;
