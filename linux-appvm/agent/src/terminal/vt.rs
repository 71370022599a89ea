//! What a shell's output does to the screen: `vte` splits the bytes into characters, control
//! codes and escape sequences, and [`Screen`] applies them as the Linux console would (the
//! shell runs with `TERM=linux`): printing with auto-wrap, the C0 controls, the cursor
//! movements and erasures, a scrolling region, insert/delete of lines and characters, SGR
//! (bold, underline, inverse, 16 and 256 colours, direct colour), saving the cursor, the
//! alternate screen, and the status reports a program may ask for (answered in
//! [`Screen::take_replies`]). Whatever the bytes, the cursor stays inside the grid.

use super::grid::{Cell, Colour, Grid, Style};
use vte::{Params, Perform};

/// Tab stops every this many columns.
const TAB: usize = 8;
/// Most bytes of replies kept for the shell (a program asking for reports without reading
/// them cannot make the agent hold more).
const MAX_REPLIES: usize = 4096;

/// The modes a program can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes {
    /// DECAWM: printing past the last column wraps to the next line.
    pub autowrap: bool,
    /// DECTCEM: the cursor is shown.
    pub cursor_visible: bool,
    /// DECCKM: the arrow keys send `ESC O x` instead of `ESC [ x`.
    pub app_cursor: bool,
    /// DECOM: cursor addresses are relative to the scrolling region.
    pub origin: bool,
    /// IRM: printing inserts instead of replacing.
    pub insert: bool,
    /// Bracketed paste (`?2004`): pastes arrive between `ESC[200~` and `ESC[201~`.
    pub bracketed_paste: bool,
}

impl Default for Modes {
    fn default() -> Modes {
        Modes {
            autowrap: true,
            cursor_visible: true,
            app_cursor: false,
            origin: false,
            insert: false,
            bracketed_paste: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Saved {
    x: usize,
    y: usize,
    style: Style,
}

/// The screen a program's output builds.
#[derive(Clone, Debug)]
pub struct Screen {
    grid: Grid,
    /// The main screen's grid while the alternate screen is shown.
    main: Option<Grid>,
    x: usize,
    y: usize,
    /// The last print filled the last column: the next one wraps first.
    wrap_pending: bool,
    style: Style,
    saved: Saved,
    /// The scrolling region, rows `top..bottom`.
    top: usize,
    bottom: usize,
    pub modes: Modes,
    replies: Vec<u8>,
    /// Times the content moved up or down (a selection made before is stale).
    pub scrolls: u64,
}

impl Screen {
    /// A blank screen of `cols × rows` cells.
    pub fn new(cols: usize, rows: usize) -> Screen {
        let grid = Grid::new(cols, rows);
        let bottom = grid.rows();
        Screen {
            grid,
            main: None,
            x: 0,
            y: 0,
            wrap_pending: false,
            style: Style::default(),
            saved: Saved::default(),
            top: 0,
            bottom,
            modes: Modes::default(),
            replies: Vec::new(),
            scrolls: 0,
        }
    }

    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// The cursor, `(column, row)`: always inside the grid.
    pub fn cursor(&self) -> (usize, usize) {
        (self.x, self.y)
    }

    /// The scrolling region, rows `top..bottom`.
    pub fn region(&self) -> (usize, usize) {
        (self.top, self.bottom)
    }

    /// The current drawing style.
    pub fn style(&self) -> Style {
        self.style
    }

    /// Bytes to write back to the program (answers to status requests).
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }

    /// Changes the size; the cursor's line stays in view (lines scroll off the top if the
    /// screen gets shorter), the region becomes the whole screen.
    pub fn resize(&mut self, cols: usize, rows: usize) {
        let rows = rows.max(1);
        let from = (self.y + 1).saturating_sub(rows);
        self.grid = self.grid.resized(cols, rows, from);
        if let Some(m) = &mut self.main {
            *m = m.resized(cols, rows, from);
        }
        self.y -= from;
        self.x = self.x.min(self.grid.cols() - 1);
        self.top = 0;
        self.bottom = self.grid.rows();
        self.wrap_pending = false;
        self.saved.x = self.saved.x.min(self.grid.cols() - 1);
        self.saved.y = self.saved.y.min(self.grid.rows() - 1);
        self.scrolls += 1;
    }

    fn blank(&self) -> Cell {
        Cell::blank(self.style)
    }

    fn cols(&self) -> usize {
        self.grid.cols()
    }

    fn rows(&self) -> usize {
        self.grid.rows()
    }

    fn reply(&mut self, bytes: &[u8]) {
        if self.replies.len() + bytes.len() <= MAX_REPLIES {
            self.replies.extend_from_slice(bytes);
        }
    }

    /// Down one line, scrolling the region when at its bottom.
    fn linefeed(&mut self) {
        self.wrap_pending = false;
        if self.y + 1 == self.bottom {
            let blank = self.blank();
            self.grid.scroll_up(self.top, self.bottom, 1, blank);
            self.scrolls += 1;
        } else if self.y + 1 < self.rows() {
            self.y += 1;
        }
    }

    /// Up one line, scrolling the region down when at its top.
    fn reverse_index(&mut self) {
        self.wrap_pending = false;
        if self.y == self.top {
            let blank = self.blank();
            self.grid.scroll_down(self.top, self.bottom, 1, blank);
            self.scrolls += 1;
        } else if self.y > 0 {
            self.y -= 1;
        }
    }

    /// Moves to `(x, y)` (absolute, or inside the region in origin mode), clamped.
    fn goto(&mut self, x: usize, y: usize) {
        self.wrap_pending = false;
        self.x = x.min(self.cols() - 1);
        self.y = if self.modes.origin {
            (self.top + y).min(self.bottom - 1)
        } else {
            y.min(self.rows() - 1)
        };
    }

    /// Moves vertically by `dy`, stopping at the region's edge if inside it.
    fn move_rows(&mut self, up: bool, n: usize) {
        self.wrap_pending = false;
        if up {
            let limit = if self.y >= self.top { self.top } else { 0 };
            self.y = self.y.saturating_sub(n).max(limit);
        } else {
            let limit = if self.y < self.bottom {
                self.bottom - 1
            } else {
                self.rows() - 1
            };
            self.y = self.y.saturating_add(n).min(limit);
        }
    }

    fn reset(&mut self) {
        let (cols, rows) = (self.cols(), self.rows());
        let scrolls = self.scrolls + 1;
        *self = Screen::new(cols, rows);
        self.scrolls = scrolls;
    }

    fn save_cursor(&mut self) {
        self.saved = Saved {
            x: self.x,
            y: self.y,
            style: self.style,
        };
    }

    fn restore_cursor(&mut self) {
        self.x = self.saved.x.min(self.cols() - 1);
        self.y = self.saved.y.min(self.rows() - 1);
        self.style = self.saved.style;
        self.wrap_pending = false;
    }

    fn erase_display(&mut self, how: u16) {
        let b = self.blank();
        let (x, y, rows) = (self.x, self.y, self.rows());
        match how {
            0 => {
                self.grid.erase(y, x, usize::MAX, b);
                self.grid.erase_rows(y + 1, rows, b);
            }
            1 => {
                self.grid.erase_rows(0, y, b);
                self.grid.erase(y, 0, x + 1, b);
            }
            2 | 3 => self.grid.erase_rows(0, rows, b),
            _ => {}
        }
    }

    fn erase_line(&mut self, how: u16) {
        let b = self.blank();
        let (x, y) = (self.x, self.y);
        match how {
            0 => self.grid.erase(y, x, usize::MAX, b),
            1 => self.grid.erase(y, 0, x + 1, b),
            2 => self.grid.erase(y, 0, usize::MAX, b),
            _ => {}
        }
    }

    fn set_mode(&mut self, private: bool, mode: u16, on: bool) {
        match (private, mode) {
            (false, 4) => self.modes.insert = on,
            (true, 1) => self.modes.app_cursor = on,
            (true, 6) => {
                self.modes.origin = on;
                self.goto(0, 0);
            }
            (true, 7) => self.modes.autowrap = on,
            (true, 25) => self.modes.cursor_visible = on,
            (true, 47 | 1047 | 1049) => self.alternate_screen(on, mode == 1049),
            (true, 2004) => self.modes.bracketed_paste = on,
            _ => {}
        }
    }

    fn alternate_screen(&mut self, on: bool, save: bool) {
        if on && self.main.is_none() {
            if save {
                self.save_cursor();
            }
            let alt = Grid::new(self.cols(), self.rows());
            self.main = Some(std::mem::replace(&mut self.grid, alt));
            self.scrolls += 1;
        } else if !on && let Some(main) = self.main.take() {
            self.grid = main;
            if save {
                self.restore_cursor();
            }
            self.scrolls += 1;
        }
    }

    /// Select Graphic Rendition: `params` as `vte` gives them (each with its `:` sub-params).
    fn sgr(&mut self, params: &[&[u16]]) {
        if params.is_empty() {
            self.style = Style::default();
            return;
        }
        let mut i = 0;
        while i < params.len() {
            let p = params[i];
            i += 1;
            let s = &mut self.style;
            match p[0] {
                0 => *s = Style::default(),
                1 => s.bold = true,
                4 => s.underline = true,
                7 => s.inverse = true,
                21 | 22 => s.bold = false,
                24 => s.underline = false,
                27 => s.inverse = false,
                n @ 30..=37 => s.fg = Colour::Indexed((n - 30) as u8),
                39 => s.fg = Colour::Default,
                n @ 40..=47 => s.bg = Colour::Indexed((n - 40) as u8),
                49 => s.bg = Colour::Default,
                n @ 90..=97 => s.fg = Colour::Indexed((n - 90 + 8) as u8),
                n @ 100..=107 => s.bg = Colour::Indexed((n - 100 + 8) as u8),
                n @ (38 | 48) => {
                    // `38:5:n` (one param with sub-params) or `38;5;n` (the next params).
                    let (colour, used) = if p.len() > 1 {
                        (extended_colour(&p[1..]), 0)
                    } else {
                        let rest: Vec<u16> = params[i..].iter().map(|q| q[0]).collect();
                        let c = extended_colour(&rest);
                        let used = match rest.first() {
                            Some(5) => 2,
                            Some(2) => 4,
                            _ => 0,
                        };
                        (c, used.min(rest.len()))
                    };
                    i += used;
                    if let Some(c) = colour {
                        if n == 38 {
                            s.fg = c;
                        } else {
                            s.bg = c;
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The colour after `38;` or `48;`: `5;n` or `2;r;g;b` (a colour-space id before r is not
/// handled in the `;` form, as most terminals).
fn extended_colour(p: &[u16]) -> Option<Colour> {
    match p {
        [5, n, ..] => Some(Colour::Indexed((*n).min(255) as u8)),
        [2, r, g, b, ..] => {
            let c = |v: u16| u32::from(v.min(255));
            Some(Colour::Rgb(c(*r) << 16 | c(*g) << 8 | c(*b)))
        }
        _ => None,
    }
}

impl Perform for Screen {
    fn print(&mut self, c: char) {
        if self.wrap_pending {
            self.x = 0;
            self.linefeed();
        }
        if self.modes.insert {
            let b = self.blank();
            self.grid.insert_cells(self.x, self.y, 1, b);
        }
        self.grid.set(
            self.x,
            self.y,
            Cell {
                ch: c,
                style: self.style,
            },
        );
        if self.x + 1 < self.cols() {
            self.x += 1;
        } else if self.modes.autowrap {
            self.wrap_pending = true;
        }
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            0x08 => {
                self.x = self.x.saturating_sub(1);
                self.wrap_pending = false;
            }
            0x09 => {
                self.x = ((self.x / TAB + 1) * TAB).min(self.cols() - 1);
                self.wrap_pending = false;
            }
            0x0a..=0x0c => self.linefeed(),
            0x0d => {
                self.x = 0;
                self.wrap_pending = false;
            }
            _ => {}
        }
    }

    fn csi_dispatch(&mut self, params: &Params, intermediates: &[u8], ignore: bool, action: char) {
        if ignore {
            return;
        }
        let list: Vec<&[u16]> = params.iter().collect();
        let private = intermediates.first() == Some(&b'?');
        let other = !intermediates.is_empty() && !private;
        // Parameter `i`, `default` when absent or 0 (a count or a position from 1).
        let arg = |i: usize, default: u16| {
            let v = list.get(i).map_or(0, |p| p[0]);
            usize::from(if v == 0 { default } else { v })
        };
        let raw = |i: usize| list.get(i).map_or(0, |p| p[0]);
        let b = self.blank();
        match (action, private, other) {
            ('A', false, false) => self.move_rows(true, arg(0, 1)),
            ('B' | 'e', false, false) => self.move_rows(false, arg(0, 1)),
            ('C' | 'a', false, false) => {
                self.x = self.x.saturating_add(arg(0, 1)).min(self.cols() - 1);
                self.wrap_pending = false;
            }
            ('D', false, false) => {
                self.x = self.x.saturating_sub(arg(0, 1));
                self.wrap_pending = false;
            }
            ('E', false, false) => {
                self.move_rows(false, arg(0, 1));
                self.x = 0;
            }
            ('F', false, false) => {
                self.move_rows(true, arg(0, 1));
                self.x = 0;
            }
            ('G' | '`', false, false) => {
                self.x = (arg(0, 1) - 1).min(self.cols() - 1);
                self.wrap_pending = false;
            }
            ('H' | 'f', false, false) => self.goto(arg(1, 1) - 1, arg(0, 1) - 1),
            ('d', false, false) => {
                let x = self.x;
                self.goto(x, arg(0, 1) - 1);
            }
            ('J', _, false) => self.erase_display(raw(0)),
            ('K', _, false) => self.erase_line(raw(0)),
            ('L', false, false) if (self.top..self.bottom).contains(&self.y) => {
                self.grid.scroll_down(self.y, self.bottom, arg(0, 1), b);
                self.wrap_pending = false;
            }
            ('M', false, false) if (self.top..self.bottom).contains(&self.y) => {
                self.grid.scroll_up(self.y, self.bottom, arg(0, 1), b);
                self.wrap_pending = false;
            }
            ('@', false, false) => self.grid.insert_cells(self.x, self.y, arg(0, 1), b),
            ('P', false, false) => self.grid.delete_cells(self.x, self.y, arg(0, 1), b),
            ('X', false, false) => {
                let x = self.x;
                self.grid.erase(self.y, x, x.saturating_add(arg(0, 1)), b);
            }
            ('S', false, false) => {
                self.grid.scroll_up(self.top, self.bottom, arg(0, 1), b);
                self.scrolls += 1;
            }
            ('T', false, false) => {
                self.grid.scroll_down(self.top, self.bottom, arg(0, 1), b);
                self.scrolls += 1;
            }
            ('r', false, false) => {
                let top = arg(0, 1) - 1;
                let bottom = arg(1, self.rows().min(u16::MAX as usize) as u16).min(self.rows());
                if top + 1 < bottom {
                    (self.top, self.bottom) = (top, bottom);
                    self.goto(0, 0);
                }
            }
            ('m', false, false) => self.sgr(&list),
            ('s', false, false) => self.save_cursor(),
            ('u', false, false) => self.restore_cursor(),
            ('h' | 'l', _, false) => {
                for p in &list {
                    self.set_mode(private, p[0], action == 'h');
                }
            }
            ('n', false, false) => match raw(0) {
                5 => self.reply(b"\x1b[0n"),
                6 => {
                    let (x, y) = (
                        self.x + 1,
                        self.y + 1 - if self.modes.origin { self.top } else { 0 },
                    );
                    self.reply(format!("\x1b[{y};{x}R").as_bytes());
                }
                _ => {}
            },
            // Device attributes: a VT102, as the Linux console answers.
            ('c', false, false) if raw(0) == 0 => self.reply(b"\x1b[?6c"),
            _ => {}
        }
    }

    fn esc_dispatch(&mut self, intermediates: &[u8], ignore: bool, byte: u8) {
        if ignore || !intermediates.is_empty() {
            // Character set selection (`ESC ( B` ...) and the like: not kept.
            return;
        }
        match byte {
            b'7' => self.save_cursor(),
            b'8' => self.restore_cursor(),
            b'D' => self.linefeed(),
            b'E' => {
                self.x = 0;
                self.linefeed();
            }
            b'M' => self.reverse_index(),
            b'c' => self.reset(),
            _ => {}
        }
    }
}

/// A terminal: the parser's state and the screen it drives.
pub struct Terminal {
    parser: vte::Parser,
    pub screen: Screen,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("screen", &self.screen)
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// A blank terminal of `cols × rows` cells.
    pub fn new(cols: usize, rows: usize) -> Terminal {
        Terminal {
            parser: vte::Parser::new(),
            screen: Screen::new(cols, rows),
        }
    }

    /// Applies a program's output (any bytes; a sequence may span calls).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.parser.advance(&mut self.screen, bytes);
    }
}
