//! One terminal window: a shell, the terminal its output drives, the pixels drawn from it,
//! and what of them the gui qube has not been told about yet.

use crate::terminal::Terminal;
use crate::terminal::keys;
use crate::terminal::pty::Shell;
use crate::terminal::render::{CELL_H, CELL_W, Renderer, View};
use crate::terminal::select::{self, Mouse};
use bulkhead_abi::gui::Rect;
use bulkhead_abi::proto::BulkRef;
use std::collections::VecDeque;

/// Most bytes of a shell's output taken per pass (then the window is drawn).
const OUTPUT_BUDGET: usize = 64 * 1024;
/// Most input bytes queued for a shell that does not read (a paste is at most 256 KiB).
const INPUT_MAX: usize = 1024 * 1024;
/// Damage rectangles kept before they are merged into one.
const DAMAGE_MAX: usize = 16;

/// What became of the shell in one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pumped {
    /// Nothing to read.
    Idle,
    /// Output was taken.
    Moved,
    /// The terminal closed: the shell is gone.
    Ended,
}

/// A terminal window.
pub struct TermWindow {
    /// The client's number for it.
    pub id: u16,
    pub term: Terminal,
    pub renderer: Renderer,
    pub shell: Box<dyn Shell>,
    pub mouse: Mouse,
    pub focused: bool,
    /// The pixels lent to the gui qube, once the window was created there.
    pub surface: Option<BulkRef>,
    /// `Destroy` sent: waiting for the surface to come back.
    pub closing: bool,
    /// Drawn into the surface, not yet announced with `Damage`.
    pub damage: Vec<Rect>,
    /// Configure seen (for one log line).
    pub shown: bool,
    /// The shell's terminal closed (it is not read or polled any more).
    pub ended: bool,
    /// Input the shell's terminal has not taken yet.
    input: VecDeque<u8>,
    /// `Screen::scrolls` when the selection was made.
    scrolls: u64,
}

impl std::fmt::Debug for TermWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TermWindow")
            .field("id", &self.id)
            .field("surface", &self.surface)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl TermWindow {
    /// A window of `width × height` pixels (whole cells) around `shell`.
    pub fn new(id: u16, width: usize, height: usize, shell: Box<dyn Shell>) -> TermWindow {
        let renderer = Renderer::new(width, height);
        let (cols, rows) = renderer.fits();
        TermWindow {
            id,
            term: Terminal::new(cols, rows),
            renderer,
            shell,
            mouse: Mouse::default(),
            focused: false,
            surface: None,
            closing: false,
            damage: Vec::new(),
            shown: false,
            ended: false,
            input: VecDeque::new(),
            scrolls: 0,
        }
    }

    /// The surface's size in pixels: `(width, height)`; the width is its stride.
    pub fn size(&self) -> (usize, usize) {
        self.renderer.size()
    }

    /// Reads what the shell wrote (up to a budget) into the terminal.
    pub fn pump_output(&mut self) -> Pumped {
        if self.ended {
            return Pumped::Idle;
        }
        let mut buf = [0u8; 4096];
        let mut taken = 0;
        while taken < OUTPUT_BUDGET {
            match self.shell.read(&mut buf) {
                Ok(Some(0)) | Err(_) => {
                    self.ended = true;
                    return Pumped::Ended;
                }
                Ok(Some(n)) => {
                    self.term.feed(&buf[..n]);
                    taken += n;
                }
                Ok(None) => break,
            }
        }
        let replies = self.term.screen.take_replies();
        self.queue_input(&replies);
        if self.term.screen.scrolls != self.scrolls {
            self.scrolls = self.term.screen.scrolls;
            self.mouse.clear();
        }
        if taken > 0 {
            Pumped::Moved
        } else {
            Pumped::Idle
        }
    }

    /// Queues bytes for the shell (dropped past [`INPUT_MAX`]: a shell that never reads).
    pub fn queue_input(&mut self, bytes: &[u8]) {
        let room = INPUT_MAX.saturating_sub(self.input.len());
        self.input.extend(&bytes[..bytes.len().min(room)]);
    }

    /// Writes queued input as far as the terminal takes it; true if some went.
    pub fn pump_input(&mut self) -> bool {
        let mut moved = false;
        while !self.input.is_empty() {
            let (front, _) = self.input.as_slices();
            match self.shell.write(front) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.input.drain(..n);
                    moved = true;
                }
            }
        }
        moved
    }

    /// Input still waiting for the shell.
    pub fn input_pending(&self) -> bool {
        !self.input.is_empty()
    }

    /// A key typed into the window.
    pub fn typed(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.mouse.clear();
            self.queue_input(bytes);
        }
    }

    /// Text pasted into the window, as typed.
    pub fn pasted(&mut self, text: &[u8]) {
        let bytes = keys::paste(text, self.term.screen.modes.bracketed_paste);
        self.queue_input(&bytes);
    }

    /// The pointer at `(x, y)` pixels with `buttons` held.
    pub fn pointer(&mut self, x: u16, y: u16, buttons: u8) {
        let grid = self.term.screen.grid();
        let cell = (
            (usize::from(x) / CELL_W).min(grid.cols() - 1),
            (usize::from(y) / CELL_H).min(grid.rows() - 1),
        );
        if self.mouse.pointer(cell, buttons & 1 != 0) {
            self.scrolls = self.term.screen.scrolls;
        }
    }

    /// What Ctrl+Shift+C copies: the selection, else the last line of output; with which
    /// of the two it was.
    pub fn clipboard(&self) -> Option<(String, &'static str)> {
        let grid = self.term.screen.grid();
        match self.mouse.selection {
            Some(s) => Some((s.text(grid), "the selection")),
            None => select::last_output_line(grid, self.term.screen.cursor().1)
                .map(|t| (t, "the last line of output")),
        }
    }

    /// The gui qube shows `width × height`: the terminal takes the whole cells of that
    /// (never more than the surface holds) and tells the shell. Returns the cells.
    pub fn configure(&mut self, width: u16, height: u16) -> (usize, usize) {
        let (fit_cols, fit_rows) = self.renderer.fits();
        let cols = (usize::from(width) / CELL_W).clamp(1, fit_cols);
        let rows = (usize::from(height) / CELL_H).clamp(1, fit_rows);
        let grid = self.term.screen.grid();
        if (cols, rows) != (grid.cols(), grid.rows()) {
            self.term.screen.resize(cols, rows);
            self.mouse.clear();
            let (w, h) = ((cols * CELL_W) as u16, (rows * CELL_H) as u16);
            self.shell.resize(cols as u16, rows as u16, w, h);
        }
        (cols, rows)
    }

    /// Draws what changed; adds the damage. Returns the new rectangles (for the caller to
    /// copy into the surface).
    pub fn draw(&mut self) -> Vec<Rect> {
        let view = View {
            selection: self.mouse.selection,
            focused: self.focused,
        };
        let rects = self.renderer.render(&self.term.screen, &view);
        for r in &rects {
            self.damage.push(*r);
        }
        if self.damage.len() > DAMAGE_MAX {
            let all = bounding(&self.damage);
            self.damage = vec![all];
        }
        rects
    }

    /// The surface's bytes of row `y`, pixels `x .. x + w`, little-endian.
    pub fn row_bytes(&self, x: usize, y: usize, w: usize, out: &mut Vec<u8>) {
        let (stride, _) = self.renderer.size();
        out.clear();
        let px = &self.renderer.pixels()[y * stride + x..y * stride + x + w];
        for p in px {
            out.extend_from_slice(&p.to_le_bytes());
        }
    }
}

/// The smallest rectangle holding all of `rects`.
pub fn bounding(rects: &[Rect]) -> Rect {
    let x0 = rects.iter().map(|r| r.x).min().unwrap_or(0);
    let y0 = rects.iter().map(|r| r.y).min().unwrap_or(0);
    let x1 = rects.iter().map(|r| r.x + r.w).max().unwrap_or(0);
    let y1 = rects.iter().map(|r| r.y + r.h).max().unwrap_or(0);
    Rect::new(x0, y0, x1 - x0, y1 - y0)
}
