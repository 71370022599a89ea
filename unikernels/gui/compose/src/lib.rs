//! The gui qube's logic, apart from the hardware: everything that can be tested on the host.
//!
//! - [`desktop`]: the clients and their windows; placement, stacking, focus; painting the
//!   screen: background, each window's content inside a frame in its qube's label colour
//!   with `[qube] title`, the panel no window covers, the pointer.
//! - [`client`]: a client's message checked and applied ([`bulkhead_abi::gui`]).
//! - [`input`]: keys and pointer events to the focused window only; hotkeys kept.
//! - [`keyboard`], [`mouse`]: PS/2 scancodes (set 1) and mouse packets decoded.
//! - [`clipboard`]: the global clipboard and its policy.
//! - [`prompt`]: the qrexec policy's `ask` prompt, over everything, keys to it alone.
//! - [`canvas`], [`geom`], [`title`]: pixels, text in the gui qube's own font, rectangles,
//!   safe titles.
//!
//! Nothing here reads a client's pixels: [`desktop::Pixels`] gives them, and the qube
//! implements it over the bulk areas.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod canvas;
pub mod client;
pub mod clipboard;
pub mod desktop;
pub mod geom;
pub mod input;
pub mod keyboard;
pub mod mouse;
pub mod prompt;
pub mod title;

#[cfg(test)]
mod prompt_tests;
#[cfg(test)]
mod tests;
