//! Input routing: keys and pointer events go to the focused window's qube only; the focus
//! changes only by the user (a click on a window, or the focus hotkey).

use crate::desktop::Desktop;
use crate::keyboard::{Hotkey, Key, hotkey};
use crate::mouse::Motion;
use bulkhead_abi::gui::FromGui;

impl Desktop {
    /// A key from the keyboard with the modifiers now held: a hotkey is returned for the
    /// caller (and reaches no qube); any other key goes to the focused window, if any.
    pub fn key(&mut self, key: Key, mods: u8) -> Option<Hotkey> {
        // A prompt takes every pressed key; releases still reach the focus (so no key
        // stays down there).
        if key.pressed && self.prompts.key(key.usage) {
            self.invalidate(crate::prompt::Prompt::rect(self.screen()));
            return None;
        }
        if let Some(h) = hotkey(key, mods) {
            if h == Hotkey::NextWindow && key.pressed {
                self.cycle_focus();
            }
            return Some(h);
        }
        if let Some(i) = self.focused_index() {
            let w = &self.windows()[i];
            let msg = FromGui::Key {
                window: w.id,
                usage: key.usage,
                pressed: key.pressed,
                modifiers: mods,
            };
            self.out.push((w.client, msg));
        }
        None
    }

    /// A pointer movement: moves the pointer (inside the screen); a button pressed over a
    /// window focuses and raises it; the focused window's qube hears of the pointer while
    /// it is over that window's content.
    pub fn pointer(&mut self, m: Motion, buttons_before: u8) {
        let old = self.pointer_rect();
        let s = self.screen();
        self.pointer = (
            (self.pointer.0 + m.dx).clamp(0, s.w - 1),
            (self.pointer.1 + m.dy).clamp(0, s.h - 1),
        );
        self.invalidate(old);
        self.invalidate(self.pointer_rect());
        let (x, y) = self.pointer;
        if m.buttons & !buttons_before != 0
            && let Some(i) = self.window_at(x, y)
        {
            self.focus_index(i);
        }
        if let Some(i) = self.focused_index() {
            let w = &self.windows()[i];
            if w.area.contains(x, y) {
                let msg = FromGui::Pointer {
                    window: w.id,
                    x: (x - w.area.x) as u16,
                    y: (y - w.area.y) as u16,
                    buttons: m.buttons,
                };
                self.out.push((w.client, msg));
            }
        }
    }

    /// Where the pointer is.
    pub fn pointer_at(&self) -> (i32, i32) {
        self.pointer
    }

    /// The panel's message.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// Sets the panel's message (clipboard news, refusals).
    pub fn set_status(&mut self, args: core::fmt::Arguments<'_>) {
        use core::fmt::Write;
        self.status.clear();
        // Truncated if long: the panel has room for so much.
        let _ = self.status.write_fmt(args);
        let panel = self.panel();
        self.invalidate(panel);
    }
}
