//! The terminal's cells: a `cols × rows` grid of characters with their colours and
//! attributes, and the edits a VT makes to it (erase, scroll a region, insert and delete
//! cells). Every operation clamps its coordinates, so no input can index outside the grid.

/// A colour as the program asked for it (resolved to pixels by the renderer's palette).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colour {
    /// The terminal's default foreground or background.
    #[default]
    Default,
    /// One of the 256 indexed colours (0..=15 the ANSI ones).
    Indexed(u8),
    /// A direct colour, `0x00RRGGBB`.
    Rgb(u32),
}

/// How a cell is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    pub fg: Colour,
    pub bg: Colour,
    pub bold: bool,
    pub underline: bool,
    pub inverse: bool,
}

/// One character cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub ch: char,
    pub style: Style,
}

impl Default for Cell {
    fn default() -> Cell {
        Cell {
            ch: ' ',
            style: Style::default(),
        }
    }
}

impl Cell {
    /// An empty cell erased with `style`'s background (what the Linux console does).
    pub fn blank(style: Style) -> Cell {
        Cell {
            ch: ' ',
            style: Style {
                bg: style.bg,
                ..Style::default()
            },
        }
    }
}

/// The grid: rows of cells, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    cols: usize,
    rows: usize,
    cells: Vec<Cell>,
}

impl Grid {
    /// A blank grid of `cols × rows` (each at least 1).
    pub fn new(cols: usize, rows: usize) -> Grid {
        let (cols, rows) = (cols.max(1), rows.max(1));
        Grid {
            cols,
            rows,
            cells: vec![Cell::default(); cols * rows],
        }
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Cell `(x, y)`; the nearest cell inside when outside.
    pub fn cell(&self, x: usize, y: usize) -> &Cell {
        &self.cells[self.index(x, y)]
    }

    /// Sets cell `(x, y)` (nothing when outside).
    pub fn set(&mut self, x: usize, y: usize, cell: Cell) {
        if x < self.cols && y < self.rows {
            let i = self.index(x, y);
            self.cells[i] = cell;
        }
    }

    /// Row `y` (clamped).
    pub fn row(&self, y: usize) -> &[Cell] {
        let y = y.min(self.rows - 1);
        &self.cells[y * self.cols..(y + 1) * self.cols]
    }

    fn index(&self, x: usize, y: usize) -> usize {
        y.min(self.rows - 1) * self.cols + x.min(self.cols - 1)
    }

    /// Erases cells `x0..x1` of row `y` (clamped).
    pub fn erase(&mut self, y: usize, x0: usize, x1: usize, blank: Cell) {
        if y >= self.rows {
            return;
        }
        let (x0, x1) = (x0.min(self.cols), x1.min(self.cols));
        if x0 < x1 {
            let start = y * self.cols;
            self.cells[start + x0..start + x1].fill(blank);
        }
    }

    /// Erases rows `y0..y1` (clamped).
    pub fn erase_rows(&mut self, y0: usize, y1: usize, blank: Cell) {
        for y in y0..y1.min(self.rows) {
            self.erase(y, 0, self.cols, blank);
        }
    }

    /// Moves rows `top..bottom` up by `n`: the top `n` go, `n` blank rows come in at the
    /// bottom of the region.
    pub fn scroll_up(&mut self, top: usize, bottom: usize, n: usize, blank: Cell) {
        let bottom = bottom.min(self.rows);
        if top >= bottom {
            return;
        }
        let n = n.min(bottom - top);
        let c = self.cols;
        self.cells.copy_within((top + n) * c..bottom * c, top * c);
        self.erase_rows(bottom - n, bottom, blank);
    }

    /// Moves rows `top..bottom` down by `n`: blank rows come in at the top of the region.
    pub fn scroll_down(&mut self, top: usize, bottom: usize, n: usize, blank: Cell) {
        let bottom = bottom.min(self.rows);
        if top >= bottom {
            return;
        }
        let n = n.min(bottom - top);
        let c = self.cols;
        self.cells
            .copy_within(top * c..(bottom - n) * c, (top + n) * c);
        self.erase_rows(top, top + n, blank);
    }

    /// Inserts `n` blank cells at `(x, y)`, shifting the rest of the row right (cells pushed
    /// past the edge are lost).
    pub fn insert_cells(&mut self, x: usize, y: usize, n: usize, blank: Cell) {
        if x >= self.cols || y >= self.rows {
            return;
        }
        let n = n.min(self.cols - x);
        let start = y * self.cols;
        self.cells
            .copy_within(start + x..start + self.cols - n, start + x + n);
        self.erase(y, x, x + n, blank);
    }

    /// Deletes `n` cells at `(x, y)`, shifting the rest of the row left; blanks come in at
    /// the right.
    pub fn delete_cells(&mut self, x: usize, y: usize, n: usize, blank: Cell) {
        if x >= self.cols || y >= self.rows {
            return;
        }
        let n = n.min(self.cols - x);
        let start = y * self.cols;
        self.cells
            .copy_within(start + x + n..start + self.cols, start + x);
        self.erase(y, self.cols - n, self.cols, blank);
    }

    /// A grid of `cols × rows` holding this one's rows `from..` at its top-left.
    pub fn resized(&self, cols: usize, rows: usize, from: usize) -> Grid {
        let mut g = Grid::new(cols, rows);
        for (dy, y) in (from..self.rows).take(g.rows).enumerate() {
            let n = g.cols.min(self.cols);
            g.cells[dy * g.cols..dy * g.cols + n].copy_from_slice(&self.row(y)[..n]);
        }
        g
    }

    /// Row `y` as text, trailing blanks dropped.
    pub fn row_text(&self, y: usize, x0: usize, x1: usize) -> String {
        let row = self.row(y);
        let (x0, x1) = (x0.min(self.cols), x1.min(self.cols));
        let text: String = row[x0..x1.max(x0)].iter().map(|c| c.ch).collect();
        text.trim_end_matches(' ').to_string()
    }
}
