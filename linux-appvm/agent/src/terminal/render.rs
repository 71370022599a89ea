//! The screen as pixels, in the gui qube's font (Noto Sans Mono, 16 px, regular, basic
//! Latin: `noto-sans-mono-bitmap`), one 7×16 cell per character, `0x00RRGGBB` per pixel.
//!
//! The renderer remembers how it drew every cell (character, resolved colours, cursor,
//! selection) and redraws only the cells whose look changed, returning the damaged
//! rectangles (one per run of consecutive rows with changes, spanning their changed
//! columns). Characters outside the font are drawn as an ASCII look-alike where there is an
//! obvious one (box drawing, quotes, dashes), else as a hollow box.

use super::grid::{Colour, Style};
use super::select::Selection;
use super::vt::Screen;
use bulkhead_abi::gui::Rect;
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

/// Width of a cell, in pixels.
pub const CELL_W: usize = get_raster_width(FontWeight::Regular, RasterHeight::Size16);
/// Height of a cell, in pixels.
pub const CELL_H: usize = 16;

/// The 16 ANSI colours (the Linux console's VGA palette).
const ANSI: [u32; 16] = [
    0x000000, 0xaa0000, 0x00aa00, 0xaa5500, 0x0000aa, 0xaa00aa, 0x00aaaa, 0xaaaaaa, //
    0x555555, 0xff5555, 0x55ff55, 0xffff55, 0x5555ff, 0xff55ff, 0x55ffff, 0xffffff,
];
/// The default foreground and background.
pub const DEFAULT_FG: u32 = ANSI[7];
pub const DEFAULT_BG: u32 = ANSI[0];

/// Indexed colour `n` of the 256 (16 ANSI, a 6×6×6 cube, 24 greys).
pub fn indexed(n: u8) -> u32 {
    match n {
        0..=15 => ANSI[usize::from(n)],
        16..=231 => {
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * u32::from(v) };
            let i = n - 16;
            level(i / 36) << 16 | level(i / 6 % 6) << 8 | level(i % 6)
        }
        _ => {
            let g = 8 + 10 * u32::from(n - 232);
            g << 16 | g << 8 | g
        }
    }
}

/// A style's colours as pixels: bold brightens the eight dark ANSI colours, inverse swaps.
pub fn colours(style: &Style) -> (u32, u32) {
    let fg = match style.fg {
        Colour::Default if style.bold => ANSI[15],
        Colour::Default => DEFAULT_FG,
        Colour::Indexed(n) if style.bold && n < 8 => ANSI[usize::from(n) + 8],
        Colour::Indexed(n) => indexed(n),
        Colour::Rgb(c) => c,
    };
    let bg = match style.bg {
        Colour::Default => DEFAULT_BG,
        Colour::Indexed(n) => indexed(n),
        Colour::Rgb(c) => c,
    };
    if style.inverse { (bg, fg) } else { (fg, bg) }
}

/// What the window shows besides the screen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub selection: Option<Selection>,
    /// The window has the focus: a block cursor (an outline otherwise).
    pub focused: bool,
}

/// How one cell was drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Look {
    ch: char,
    fg: u32,
    bg: u32,
    bold: bool,
    underline: bool,
    /// The cursor of an unfocused window: an outline.
    outline: bool,
}

/// A window's pixels and what it drew last.
#[derive(Debug)]
pub struct Renderer {
    width: usize,
    height: usize,
    px: Vec<u32>,
    cols: usize,
    rows: usize,
    drawn: Vec<Option<Look>>,
}

impl Renderer {
    /// A renderer into `width × height` pixels (each at least one cell).
    pub fn new(width: usize, height: usize) -> Renderer {
        let (width, height) = (width.max(CELL_W), height.max(CELL_H));
        Renderer {
            width,
            height,
            px: vec![DEFAULT_BG; width * height],
            cols: 0,
            rows: 0,
            drawn: Vec::new(),
        }
    }

    /// The pixels, rows `width` apart.
    pub fn pixels(&self) -> &[u32] {
        &self.px
    }

    /// `(width, height)` in pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The cells that fit: `(columns, rows)`.
    pub fn fits(&self) -> (usize, usize) {
        (self.width / CELL_W, self.height / CELL_H)
    }

    /// Forgets what was drawn: the next [`Renderer::render`] draws everything.
    pub fn invalidate(&mut self) {
        self.cols = 0;
        self.rows = 0;
    }

    /// Draws the cells of `screen` whose look changed and returns where.
    pub fn render(&mut self, screen: &Screen, view: &View) -> Vec<Rect> {
        let grid = screen.grid();
        let cols = grid.cols().min(self.width / CELL_W);
        let rows = grid.rows().min(self.height / CELL_H);
        let mut damage = Vec::new();
        if (cols, rows) != (self.cols, self.rows) {
            // A new size or a forced redraw: clear everything, margins included.
            self.px.fill(DEFAULT_BG);
            self.drawn = vec![None; cols * rows];
            (self.cols, self.rows) = (cols, rows);
            damage.push(Rect::new(0, 0, self.width as u16, self.height as u16));
        }
        let (cx, cy) = screen.cursor();
        let show_cursor = screen.modes.cursor_visible;
        // A run of consecutive changed rows: (first row, columns from, columns to).
        let mut run: Option<(usize, usize, usize)> = None;
        let full = !damage.is_empty();
        for y in 0..rows {
            let mut span: Option<(usize, usize)> = None;
            for x in 0..cols {
                let cell = grid.cell(x, y);
                let (mut fg, mut bg) = colours(&cell.style);
                let selected = view.selection.is_some_and(|s| s.contains(x, y));
                let cursor = show_cursor && (x, y) == (cx, cy);
                if selected != (cursor && view.focused) {
                    (fg, bg) = (bg, fg);
                }
                let look = Look {
                    ch: cell.ch,
                    fg,
                    bg,
                    bold: cell.style.bold,
                    underline: cell.style.underline,
                    outline: cursor && !view.focused,
                };
                let i = y * cols + x;
                if self.drawn[i] != Some(look) {
                    self.drawn[i] = Some(look);
                    self.draw(x, y, &look);
                    span = Some(span.map_or((x, x + 1), |(a, _)| (a, x + 1)));
                }
            }
            match (span, run) {
                (Some((a, b)), Some((y0, ra, rb))) => run = Some((y0, ra.min(a), rb.max(b))),
                (Some((a, b)), None) => run = Some((y, a, b)),
                (None, Some(r)) => {
                    damage.push(cell_rect(r, y));
                    run = None;
                }
                (None, None) => {}
            }
        }
        if let Some(r) = run {
            damage.push(cell_rect(r, rows));
        }
        if full {
            damage.truncate(1);
        }
        damage
    }

    fn draw(&mut self, cx: usize, cy: usize, look: &Look) {
        let (x0, y0) = (cx * CELL_W, cy * CELL_H);
        for y in y0..y0 + CELL_H {
            self.px[y * self.width + x0..y * self.width + x0 + CELL_W].fill(look.bg);
        }
        match glyph_char(look.ch)
            .and_then(|c| get_raster(c, FontWeight::Regular, RasterHeight::Size16))
        {
            Some(raster) => {
                for (gy, row) in raster.rows().enumerate().take(CELL_H) {
                    for (gx, &a) in row.iter().enumerate().take(CELL_W) {
                        // Bold: each pixel also as strong as its left neighbour's.
                        let a = if look.bold && gx > 0 {
                            a.max(row[gx - 1])
                        } else {
                            a
                        };
                        if a > 0 {
                            self.px[(y0 + gy) * self.width + x0 + gx] = blend(look.fg, look.bg, a);
                        }
                    }
                }
            }
            None => self.outline(x0 + 1, y0 + 3, CELL_W - 2, CELL_H - 6, look.fg),
        }
        if look.underline {
            let y = y0 + CELL_H - 2;
            self.px[y * self.width + x0..y * self.width + x0 + CELL_W].fill(look.fg);
        }
        if look.outline {
            self.outline(x0, y0, CELL_W, CELL_H, look.fg);
        }
    }

    /// A one-pixel rectangle outline.
    fn outline(&mut self, x: usize, y: usize, w: usize, h: usize, colour: u32) {
        let stride = self.width;
        self.px[y * stride + x..y * stride + x + w].fill(colour);
        self.px[(y + h - 1) * stride + x..(y + h - 1) * stride + x + w].fill(colour);
        for row in y..y + h {
            self.px[row * stride + x] = colour;
            self.px[row * stride + x + w - 1] = colour;
        }
    }
}

/// The damage rectangle of a run of rows `r.0..y_end`, columns `r.1..r.2`.
fn cell_rect(r: (usize, usize, usize), y_end: usize) -> Rect {
    let (y0, x0, x1) = r;
    Rect::new(
        (x0 * CELL_W) as u16,
        (y0 * CELL_H) as u16,
        ((x1 - x0) * CELL_W) as u16,
        ((y_end - y0) * CELL_H) as u16,
    )
}

/// The character of the font that draws `c`: itself, an ASCII look-alike, or `None` (a
/// hollow box).
pub fn glyph_char(c: char) -> Option<char> {
    match c {
        ' '..='~' => Some(c),
        '\u{a0}' => Some(' '),
        '\u{2010}'..='\u{2015}' | '\u{2212}' => Some('-'),
        '\u{2018}' | '\u{2019}' => Some('\''),
        '\u{201c}' | '\u{201d}' => Some('"'),
        // Box drawing: horizontal lines, vertical lines, everything else (corners, tees).
        '\u{2500}' | '\u{2501}' | '\u{2504}' | '\u{2505}' | '\u{2508}' | '\u{2509}'
        | '\u{254c}' | '\u{254d}' | '\u{2550}' => Some('-'),
        '\u{2502}' | '\u{2503}' | '\u{2506}' | '\u{2507}' | '\u{250a}' | '\u{250b}'
        | '\u{254e}' | '\u{254f}' | '\u{2551}' => Some('|'),
        '\u{250c}'..='\u{257f}' => Some('+'),
        _ => None,
    }
}

/// `fg` over `bg` with coverage `a` (0..=255), per channel.
pub fn blend(fg: u32, bg: u32, a: u8) -> u32 {
    let a = u32::from(a);
    let mix = |shift: u32| {
        let (f, b) = ((fg >> shift) & 0xff, (bg >> shift) & 0xff);
        ((f * a + b * (255 - a) + 127) / 255) << shift
    };
    mix(16) | mix(8) | mix(0)
}
