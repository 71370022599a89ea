//! The PS/2 keyboard: scancode set 1 (what the i8042 gives with translation on, the
//! firmware's default) decoded into USB HID usage IDs, the modifiers held, and the hotkeys
//! the gui qube keeps for itself.

use bulkhead_abi::gui::modifiers;

/// A key going down or up, as HID usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// USB HID usage ID (keyboard page).
    pub usage: u8,
    /// Down or up.
    pub pressed: bool,
}

/// The decoder's state between bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decoder {
    /// An 0xE0 prefix came before this byte.
    extended: bool,
    /// Bytes of an 0xE1 (Pause) sequence still to skip.
    skip: u8,
    /// The modifiers held.
    mods: u8,
}

/// Set-1 make codes 0x00..0x59 to HID usages (0: none).
const BASE: [u8; 0x59] = [
    0, 0x29, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2d, 0x2e, 0x2a,
    0x2b, // 0x00
    0x14, 0x1a, 0x08, 0x15, 0x17, 0x1c, 0x18, 0x0c, 0x12, 0x13, 0x2f, 0x30, 0x28, 0xe0, 0x04,
    0x16, // 0x10
    0x07, 0x09, 0x0a, 0x0b, 0x0d, 0x0e, 0x0f, 0x33, 0x34, 0x35, 0xe1, 0x31, 0x1d, 0x1b, 0x06,
    0x19, // 0x20
    0x05, 0x11, 0x10, 0x36, 0x37, 0x38, 0xe5, 0x55, 0xe2, 0x2c, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
    0x3e, // 0x30
    0x3f, 0x40, 0x41, 0x42, 0x43, 0x53, 0x47, 0x5f, 0x60, 0x61, 0x56, 0x5c, 0x5d, 0x5e, 0x57,
    0x59, // 0x40
    0x5a, 0x5b, 0x62, 0x63, 0, 0, 0x64, 0x44, 0x45, // 0x50
];

/// Set-1 codes after 0xE0 to HID usages.
fn extended(code: u8) -> u8 {
    match code {
        0x1c => 0x58, // keypad Enter
        0x1d => 0xe4, // right Ctrl
        0x35 => 0x54, // keypad /
        0x38 => 0xe6, // right Alt
        0x47 => 0x4a, // Home
        0x48 => 0x52, // Up
        0x49 => 0x4b, // Page Up
        0x4b => 0x50, // Left
        0x4d => 0x4f, // Right
        0x4f => 0x4d, // End
        0x50 => 0x51, // Down
        0x51 => 0x4e, // Page Down
        0x52 => 0x49, // Insert
        0x53 => 0x4c, // Delete
        0x5b => 0xe3, // left logo
        0x5c => 0xe7, // right logo
        0x5d => 0x65, // menu
        _ => 0,
    }
}

/// The modifier bit of a modifier key's usage.
fn modifier_bit(usage: u8) -> u8 {
    match usage {
        0xe0 | 0xe4 => modifiers::CTRL,
        0xe1 | 0xe5 => modifiers::SHIFT,
        0xe2 | 0xe6 => modifiers::ALT,
        0xe3 | 0xe7 => modifiers::SUPER,
        _ => 0,
    }
}

impl Decoder {
    /// Feeds one byte from the controller; a whole key event when it completes one.
    pub fn feed(&mut self, byte: u8) -> Option<Key> {
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        match byte {
            0xe0 => {
                self.extended = true;
                return None;
            }
            0xe1 => {
                // Pause: E1 1D 45 E1 9D C5, no break; ignored.
                self.skip = 5;
                return None;
            }
            // Acknowledge, echo, resend and error bytes, not keys (0xAA, the self-test
            // byte, is also left Shift's release in set 1, and is taken as that).
            0x00 | 0xee | 0xfa | 0xfc | 0xfd | 0xfe | 0xff => {
                self.extended = false;
                return None;
            }
            _ => {}
        }
        let pressed = byte & 0x80 == 0;
        let code = byte & 0x7f;
        let usage = if core::mem::take(&mut self.extended) {
            extended(code)
        } else {
            BASE.get(usize::from(code)).copied().unwrap_or(0)
        };
        if usage == 0 {
            return None;
        }
        let bit = modifier_bit(usage);
        if pressed {
            self.mods |= bit;
        } else {
            self.mods &= !bit;
        }
        Some(Key { usage, pressed })
    }

    /// The modifiers held now.
    pub fn modifiers(&self) -> u8 {
        self.mods
    }
}

/// HID usages of the keys the hotkeys use.
pub mod usage {
    /// C.
    pub const C: u8 = 0x06;
    /// V.
    pub const V: u8 = 0x19;
    /// Tab.
    pub const TAB: u8 = 0x2b;
}

/// What the gui qube does with a key instead of passing it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hotkey {
    /// Ctrl+Shift+C: take the focused qube's clipboard into the global one.
    Copy,
    /// Ctrl+Shift+V: give the global clipboard to the focused qube.
    Paste,
    /// Alt+Tab: focus the next window.
    NextWindow,
}

/// The hotkey `key` completes with modifiers `mods`, if any. Both the press and the release
/// of the hotkey's last key are kept from the qubes.
pub fn hotkey(key: Key, mods: u8) -> Option<Hotkey> {
    let ctrl_shift = modifiers::CTRL | modifiers::SHIFT;
    match key.usage {
        usage::C if mods & ctrl_shift == ctrl_shift => Some(Hotkey::Copy),
        usage::V if mods & ctrl_shift == ctrl_shift => Some(Hotkey::Paste),
        usage::TAB if mods & modifiers::ALT != 0 => Some(Hotkey::NextWindow),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn keys(bytes: &[u8]) -> (Vec<Key>, u8) {
        let mut d = Decoder::default();
        let k = bytes.iter().filter_map(|b| d.feed(*b)).collect();
        (k, d.modifiers())
    }

    #[test]
    fn letters_modifiers_and_extended_keys() {
        // Shift down, a down, a up, Shift up: 'A'.
        let (k, m) = keys(&[0x2a, 0x1e, 0x9e, 0xaa]);
        assert_eq!(k.len(), 4);
        assert_eq!(
            k[1],
            Key {
                usage: 0x04,
                pressed: true
            }
        );
        assert_eq!(m, 0, "Shift was let go");
        let (k, m) = keys(&[0x1d, 0x2a, 0x2e]);
        assert_eq!(
            k.last(),
            Some(&Key {
                usage: usage::C,
                pressed: true
            })
        );
        assert_eq!(hotkey(*k.last().unwrap(), m), Some(Hotkey::Copy));
        let (k, _) = keys(&[0xe0, 0x48, 0xe0, 0xc8]);
        assert_eq!(
            k,
            vec![
                Key {
                    usage: 0x52,
                    pressed: true
                },
                Key {
                    usage: 0x52,
                    pressed: false
                }
            ]
        );
        let (k, m) = keys(&[0xe0, 0x1d, 0x0f]);
        assert_eq!(m, modifiers::CTRL);
        assert_eq!(hotkey(k[1], m), None, "Ctrl+Tab is not a hotkey");
        // Pause's six bytes give nothing, and the next key is whole.
        let (k, _) = keys(&[0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5, 0x1c]);
        assert_eq!(
            k,
            vec![Key {
                usage: 0x28,
                pressed: true
            }]
        );
    }

    proptest! {
        /// Any byte stream decodes without panicking, into known usages only.
        #[test]
        fn any_bytes_decode(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let (k, _) = keys(&bytes);
            prop_assert!(k.iter().all(|k| k.usage != 0));
        }
    }
}
