//! Text to keystrokes: each printable ASCII character, newline and tab as the QEMU key
//! (a `QKeyCode` name, as QMP's `send-key` takes it) that types it on a US keyboard, with
//! shift where needed.

use anyhow::{Result, bail};

/// One key to press, with shift held or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Keystroke {
    /// QEMU's name of the key (`QKeyCode`): `"a"`, `"1"`, `"spc"`, `"ret"`, `"slash"`, ...
    pub key: &'static str,
    /// Whether shift is held while it is pressed.
    pub shift: bool,
}

impl Keystroke {
    /// The keys held together, as `send-key` takes them: `["shift", "a"]` or `["a"]`.
    pub fn chord(self) -> Vec<&'static str> {
        if self.shift {
            vec!["shift", self.key]
        } else {
            vec![self.key]
        }
    }
}

/// Letters and digits are named after themselves; these are the other keys, with the
/// character typed without and with shift (US layout).
const SYMBOL_KEYS: [(&str, char, char); 11] = [
    ("minus", '-', '_'),
    ("equal", '=', '+'),
    ("bracket_left", '[', '{'),
    ("bracket_right", ']', '}'),
    ("backslash", '\\', '|'),
    ("semicolon", ';', ':'),
    ("apostrophe", '\'', '"'),
    ("grave_accent", '`', '~'),
    ("comma", ',', '<'),
    ("dot", '.', '>'),
    ("slash", '/', '?'),
];

/// What shift makes of the digit keys 0 to 9.
const SHIFTED_DIGITS: [char; 10] = [')', '!', '@', '#', '$', '%', '^', '&', '*', '('];

/// Names of the digit keys, so a digit's name can be `'static`.
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Names of the letter keys.
const LETTERS: [&str; 26] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z",
];

/// The keystroke that types `c`, if a US keyboard has one.
pub fn keystroke(c: char) -> Option<Keystroke> {
    let plain = |key| Some(Keystroke { key, shift: false });
    let shifted = |key| Some(Keystroke { key, shift: true });
    match c {
        'a'..='z' => plain(LETTERS[c as usize - 'a' as usize]),
        'A'..='Z' => shifted(LETTERS[c as usize - 'A' as usize]),
        '0'..='9' => plain(DIGITS[c as usize - '0' as usize]),
        ' ' => plain("spc"),
        '\n' => plain("ret"),
        '\t' => plain("tab"),
        _ => {
            if let Some(digit) = SHIFTED_DIGITS.iter().position(|&s| s == c) {
                return shifted(DIGITS[digit]);
            }
            let (key, unshifted, _) = SYMBOL_KEYS
                .iter()
                .find(|(_, lower, upper)| *lower == c || *upper == c)?;
            if *unshifted == c {
                plain(key)
            } else {
                shifted(key)
            }
        }
    }
}

/// The keystrokes that type `text`; an error names the first character no key types.
pub fn keystrokes(text: &str) -> Result<Vec<Keystroke>> {
    text.chars()
        .enumerate()
        .map(|(i, c)| match keystroke(c) {
            Some(k) => Ok(k),
            None => bail!("no key types {c:?} (character {i} of {text:?})"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chords(text: &str) -> Vec<Vec<&'static str>> {
        keystrokes(text)
            .unwrap()
            .into_iter()
            .map(Keystroke::chord)
            .collect()
    }

    #[test]
    fn types_a_shell_line() {
        assert_eq!(chords("ls\n"), [vec!["l"], vec!["s"], vec!["ret"]]);
        assert_eq!(
            chords("Cd ~/x_1!"),
            [
                vec!["shift", "c"],
                vec!["d"],
                vec!["spc"],
                vec!["shift", "grave_accent"],
                vec!["slash"],
                vec!["x"],
                vec!["shift", "minus"],
                vec!["1"],
                vec!["shift", "1"],
            ]
        );
    }

    #[test]
    fn every_printable_ascii_character_has_one_distinct_keystroke() {
        let mut seen = std::collections::HashSet::new();
        for c in (0x20u8..0x7f).map(char::from).chain(['\n', '\t']) {
            let k = keystroke(c).unwrap_or_else(|| panic!("no keystroke for {c:?}"));
            assert!(
                seen.insert(k),
                "{c:?} types the same as another character: {k:?}"
            );
        }
        assert_eq!(seen.len(), 95 + 2);
    }

    #[test]
    fn refuses_what_no_key_types() {
        for c in ['é', '\r', '\x1b', '\0', '€'] {
            assert_eq!(keystroke(c), None, "{c:?}");
        }
        let message = keystrokes("ok\u{7f}").unwrap_err().to_string();
        assert_eq!(
            message,
            "no key types '\\u{7f}' (character 2 of \"ok\\u{7f}\")"
        );
    }
}
