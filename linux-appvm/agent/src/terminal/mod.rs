//! The AppVM's terminal: a shell's output parsed and drawn into pixels in the AppVM (the gui
//! qube only copies them), keys turned into the shell's input.
//!
//! - [`vt`]: the parser (`vte`) and the screen it drives ([`vt::Terminal`]);
//! - [`grid`]: the cells, and the edits a VT makes to them;
//! - [`render`]: the cells as pixels in the gui qube's font, only what changed, with damage;
//! - [`keys`]: USB HID usages and modifiers to bytes, and pastes as typed text;
//! - [`select`]: the selection that Ctrl+Shift+C copies;
//! - [`pty`]: the shell on a pseudo-terminal.

pub mod grid;
pub mod keys;
pub mod pty;
pub mod render;
pub mod select;
pub mod vt;

#[cfg(test)]
mod tests;

pub use vt::Terminal;
