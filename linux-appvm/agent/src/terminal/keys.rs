//! Keys from the gui qube (USB HID usages of the keyboard page, with the modifier byte) to
//! the bytes a terminal sends the shell, for a US layout, as the Linux console does
//! (`TERM=linux`): Enter `\r`, Backspace DEL, Ctrl+letter its control code, Alt prefixes
//! ESC, the editing keys `ESC [ n ~`, the arrows `ESC [ x` (`ESC O x` when the program asked
//! for application cursor keys), F1..F5 `ESC [ [ A..E`, the keypad as digits (Num Lock on).

use bulkhead_abi::gui::modifiers::{ALT, CTRL, SHIFT};

/// Caps Lock: toggled by its key, applies to letters only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    pub caps_lock: bool,
}

/// Usage of Caps Lock.
const CAPS_LOCK: u8 = 0x39;

/// The US layout's characters of the usages 0x1e..=0x38: without and with Shift.
const US: [(u8, u8); 27] = [
    (b'1', b'!'),
    (b'2', b'@'),
    (b'3', b'#'),
    (b'4', b'$'),
    (b'5', b'%'),
    (b'6', b'^'),
    (b'7', b'&'),
    (b'8', b'*'),
    (b'9', b'('),
    (b'0', b')'),
    (b'\r', b'\r'),
    (0x1b, 0x1b),
    (0x7f, 0x7f),
    (b'\t', b'\t'),
    (b' ', b' '),
    (b'-', b'_'),
    (b'=', b'+'),
    (b'[', b'{'),
    (b']', b'}'),
    (b'\\', b'|'),
    (b'\\', b'|'),
    (b';', b':'),
    (b'\'', b'"'),
    (b'`', b'~'),
    (b',', b'<'),
    (b'.', b'>'),
    (b'/', b'?'),
];

/// The keypad's characters, usages 0x54..=0x63 (Enter as `\r`).
const KEYPAD: &[u8; 16] = b"/*-+\r1234567890.";

/// A control code for Ctrl with the US character `c`, if it has one.
fn control(c: u8) -> Option<u8> {
    match c {
        b'a'..=b'z' => Some(c - b'a' + 1),
        b'A'..=b'Z' => Some(c - b'A' + 1),
        b'@' | b'2' | b' ' => Some(0),
        b'[' | b'3' => Some(0x1b),
        b'\\' | b'4' => Some(0x1c),
        b']' | b'5' => Some(0x1d),
        b'^' | b'6' => Some(0x1e),
        b'_' | b'-' | b'/' | b'7' => Some(0x1f),
        b'?' | b'8' => Some(0x7f),
        _ => None,
    }
}

impl KeyState {
    /// The bytes for `usage` pressed with `mods` (nothing for a key that sends nothing,
    /// a release, or a modifier alone). `app_cursor`: the program asked for application
    /// cursor keys.
    pub fn press(&mut self, usage: u8, mods: u8, app_cursor: bool) -> Vec<u8> {
        if usage == CAPS_LOCK {
            self.caps_lock = !self.caps_lock;
            return Vec::new();
        }
        let shift = mods & SHIFT != 0;
        let csi = |s: &str| format!("\x1b[{s}").into_bytes();
        let arrow = |c: char| {
            let lead = if app_cursor { 'O' } else { '[' };
            format!("\x1b{lead}{c}").into_bytes()
        };
        let base: Option<u8> = match usage {
            0x04..=0x1d => {
                let c = b'a' + (usage - 0x04);
                Some(if shift != self.caps_lock {
                    c.to_ascii_uppercase()
                } else {
                    c
                })
            }
            0x1e..=0x38 => {
                let (plain, shifted) = US[usize::from(usage - 0x1e)];
                if usage == 0x2b && shift {
                    return csi("Z");
                }
                Some(if shift { shifted } else { plain })
            }
            0x54..=0x63 => Some(KEYPAD[usize::from(usage - 0x54)]),
            0x64 => Some(if shift { b'|' } else { b'\\' }),
            0x3a..=0x3e => return csi(&format!("[{}", char::from(b'A' + usage - 0x3a))),
            0x3f..=0x45 => {
                let n = [17, 18, 19, 20, 21, 23, 24][usize::from(usage - 0x3f)];
                return csi(&format!("{n}~"));
            }
            0x49 => return csi("2~"),
            0x4a => return csi("1~"),
            0x4b => return csi("5~"),
            0x4c => return csi("3~"),
            0x4d => return csi("4~"),
            0x4e => return csi("6~"),
            0x4f => return arrow('C'),
            0x50 => return arrow('D'),
            0x51 => return arrow('B'),
            0x52 => return arrow('A'),
            _ => None,
        };
        let Some(mut c) = base else {
            return Vec::new();
        };
        if mods & CTRL != 0 {
            c = match (usage, c) {
                (0x2a, _) => 0x08,
                (_, b'\r' | b'\t' | 0x1b) => c,
                _ => match control(c) {
                    Some(code) => code,
                    None => c,
                },
            };
        }
        if mods & ALT != 0 {
            vec![0x1b, c]
        } else {
            vec![c]
        }
    }
}

/// Text pasted into a terminal, as if typed: line ends become `\r`, other control
/// characters (ESC among them: a paste cannot send escape sequences) are dropped, and if
/// the program asked for bracketed paste the whole is framed by `ESC[200~` / `ESC[201~`.
pub fn paste(text: &[u8], bracketed: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 12);
    if bracketed {
        out.extend_from_slice(b"\x1b[200~");
    }
    let mut prev_cr = false;
    for &b in text {
        match b {
            b'\n' if prev_cr => {}
            b'\r' | b'\n' => out.push(b'\r'),
            b'\t' => out.push(b),
            0..=0x1f | 0x7f => {}
            _ => out.push(b),
        }
        prev_cr = b == b'\r';
    }
    if bracketed {
        out.extend_from_slice(b"\x1b[201~");
    }
    out
}
