//! The GUI protocol: the messages between a qube that shows windows (a *client*: an AppVM's
//! agent, or a test unikernel) and the gui qube, over the client's GUI channel.
//!
//! The channel has a bulk area. A window's pixels live in a *surface*: a buffer in the
//! client's pool, lent to the gui qube with [`ToGui::Create`] for the window's whole life.
//! The client keeps drawing into it in place and says where with [`ToGui::Damage`]; the gui
//! qube copies the damaged rows out (`bulkhead_ring::Bulk::read_unchecked_at`) into its own
//! back buffer and never parses them: pixels go to the screen whatever they are. After
//! [`ToGui::Destroy`] the gui qube gives the surface back with [`FromGui::Returned`].
//!
//! A surface is `stride × height` pixels of 4 bytes, `0x00RRGGBB` as a little-endian `u32`,
//! rows `stride` pixels apart, where `stride` is the width the client created the window
//! with. The gui qube may show less than that (it clamps every window to the size the system
//! description allows) and says what it shows with [`FromGui::Configure`].
//!
//! Everything a client sends is hostile: the gui qube clamps rectangles to the window,
//! keeps only printable ASCII of a title (truncated to [`TITLE_MAX`]), bounds the windows a
//! client may have ([`MAX_WINDOWS`]) and the messages it handles per pass, and checks every
//! surface lies inside the client's pool. What it draws around a window (the border in the
//! qube's label colour, the title bar with the qube's name) comes from the system
//! description, never from the client.
//!
//! Keys travel as USB HID usage IDs (keyboard page 0x07) with a modifier byte
//! ([`modifiers`]); the client maps them to characters (a keymap is the client's business).
//! The gui qube sends keys and pointer events only to the focused window's qube, and never
//! the hotkeys it keeps for itself.
//!
//! The first message each way is `Hello` with [`GUI_VERSION`]; another version is refused.
//! Adding a variant at the end of an enum is compatible; anything else bumps the version.

use crate::proto::BulkRef;
use serde::{Deserialize, Serialize};

/// Version of the GUI protocol.
pub const GUI_VERSION: u16 = 1;
/// Longest window title the gui qube shows, in bytes (longer titles are truncated).
pub const TITLE_MAX: usize = 64;
/// Most windows one client may have at once.
pub const MAX_WINDOWS: usize = 8;
/// Bytes per slot of a GUI channel.
pub const GUI_SLOT_SIZE: u32 = 256;
/// Bytes per pixel of a surface.
pub const BYTES_PER_PIXEL: usize = 4;
/// Largest clipboard content, in bytes (Qubes' limit is about the same).
pub const CLIPBOARD_MAX: usize = 256 * 1024;

/// A rectangle in a window's coordinates (pixels from its top-left corner).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width.
    pub w: u16,
    /// Height.
    pub h: u16,
}

/// From a client to the gui qube.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToGui<'a> {
    /// Version handshake: the first message.
    Hello {
        /// [`GUI_VERSION`].
        version: u16,
    },
    /// Opens window `window` (a number the client chooses, below [`MAX_WINDOWS`]) of
    /// `width × height` pixels (a suggestion: the gui qube may show less), its pixels in
    /// `surface`, which stays lent until the gui qube returns it after `Destroy`.
    Create {
        /// The client's number for the window.
        window: u16,
        /// Width asked for, and the surface's stride in pixels.
        width: u16,
        /// Height asked for.
        height: u16,
        /// The surface: at least `width × height × 4` bytes.
        surface: BulkRef,
    },
    /// The window's title (bytes; the gui qube shows printable ASCII only).
    Title {
        /// Which window.
        window: u16,
        /// The title.
        #[serde(borrow)]
        title: &'a [u8],
    },
    /// The client drew `rect` of the window's surface: copy it to the screen.
    Damage {
        /// Which window.
        window: u16,
        /// What changed, in window coordinates (clamped to the window by the gui qube).
        rect: Rect,
    },
    /// Closes the window; the gui qube returns its surface.
    Destroy {
        /// Which window.
        window: u16,
    },
    /// The answer to [`FromGui::ClipboardRequest`]: the client's clipboard (selection)
    /// content, lent (at most [`CLIPBOARD_MAX`] bytes), or `None` when it has none.
    Clipboard(Option<BulkRef>),
    /// A buffer the gui qube lent (a paste) given back.
    Returned(BulkRef),
}

/// From the gui qube to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromGui {
    /// Version handshake, with the largest window the system description allows this
    /// client.
    Hello {
        /// [`GUI_VERSION`].
        version: u16,
        /// Widest window shown, in pixels.
        max_width: u16,
        /// Tallest window shown, in pixels.
        max_height: u16,
    },
    /// The window is shown at this size (at most what was asked for).
    Configure {
        /// Which window.
        window: u16,
        /// Width shown.
        width: u16,
        /// Height shown.
        height: u16,
    },
    /// A key went down or up while the window had the focus.
    Key {
        /// Which window.
        window: u16,
        /// USB HID usage ID (keyboard page 0x07).
        usage: u8,
        /// Down (true) or up.
        pressed: bool,
        /// The [`modifiers`] held.
        modifiers: u8,
    },
    /// The pointer moved or a button changed over the window (window coordinates).
    Pointer {
        /// Which window.
        window: u16,
        /// Pointer position.
        x: u16,
        /// Pointer position.
        y: u16,
        /// Buttons held: bit 0 left, 1 right, 2 middle.
        buttons: u8,
    },
    /// The window got (true) or lost the focus.
    Focus {
        /// Which window.
        window: u16,
        /// Whether it has the focus now.
        focused: bool,
    },
    /// The user asked to close the window.
    Close {
        /// Which window.
        window: u16,
    },
    /// The user pressed the copy hotkey in this client's window: send the clipboard.
    ClipboardRequest,
    /// The user pressed the paste hotkey in this client's window: the global clipboard, lent
    /// from the gui qube's pool; give it back with [`ToGui::Returned`].
    ClipboardPaste(BulkRef),
    /// A surface (after `Destroy`) or clipboard buffer the client lent, given back.
    Returned(BulkRef),
    /// The gui qube refused a message; the client should stop sending it.
    Refused {
        /// Which window, if the message named one.
        window: u16,
        /// Why (one of [`refusal`]).
        reason: u8,
    },
}

/// Why the gui qube refused a message ([`FromGui::Refused`]).
pub mod refusal {
    /// The window number is out of range, already used, or unknown.
    pub const WINDOW: u8 = 1;
    /// The surface is too small for the window, or outside the client's pool.
    pub const SURFACE: u8 = 2;
    /// The window is smaller than one pixel.
    pub const SIZE: u8 = 3;
    /// The client has [`super::MAX_WINDOWS`] windows already.
    pub const TOO_MANY: u8 = 4;
}

/// The modifier bits of [`FromGui::Key`] (the HID report's modifier byte, left and right
/// merged into the left bits).
pub mod modifiers {
    /// Ctrl.
    pub const CTRL: u8 = 1 << 0;
    /// Shift.
    pub const SHIFT: u8 = 1 << 1;
    /// Alt.
    pub const ALT: u8 = 1 << 2;
    /// The logo (Super) key.
    pub const SUPER: u8 = 1 << 3;
}

impl Rect {
    /// The rectangle `(x, y, w, h)`.
    pub const fn new(x: u16, y: u16, w: u16, h: u16) -> Rect {
        Rect { x, y, w, h }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_fit_a_slot() {
        let surface = BulkRef {
            offset: 0x1000,
            len: 640 * 480 * 4,
            check: u64::MAX,
        };
        let title = [b'x'; 300];
        let to = [
            ToGui::Hello {
                version: GUI_VERSION,
            },
            ToGui::Create {
                window: 7,
                width: u16::MAX,
                height: u16::MAX,
                surface,
            },
            ToGui::Title {
                window: 1,
                title: &title[..200],
            },
            ToGui::Damage {
                window: 1,
                rect: Rect::new(u16::MAX, 0, 3, u16::MAX),
            },
            ToGui::Clipboard(Some(surface)),
            ToGui::Returned(surface),
        ];
        for m in &to {
            let mut buf = [0u8; GUI_SLOT_SIZE as usize];
            let bytes = postcard::to_slice(m, &mut buf).unwrap();
            assert!(bytes.len() <= GUI_SLOT_SIZE as usize - 8);
            let back: ToGui<'_> = postcard::from_bytes(bytes).unwrap();
            assert_eq!(&back, m);
        }
        let from = [
            FromGui::Key {
                window: 1,
                usage: 0x04,
                pressed: true,
                modifiers: modifiers::CTRL | modifiers::SHIFT,
            },
            FromGui::ClipboardPaste(surface),
            FromGui::Refused {
                window: 9,
                reason: refusal::WINDOW,
            },
        ];
        for m in &from {
            let mut buf = [0u8; 64];
            let bytes = postcard::to_slice(m, &mut buf).unwrap();
            assert_eq!(&postcard::from_bytes::<FromGui>(bytes).unwrap(), m);
        }
    }
}
