//! The selection: a run of cells from where the left button went down to where it is (or
//! was released), in reading order, as in xterm. It is what Ctrl+Shift+C copies; without
//! one, the copy takes the last line of output (the non-empty line nearest above the
//! cursor: when the shell waits at its prompt, the last line a command printed).

use super::grid::Grid;

/// A selection between two cells (inclusive), `(column, row)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    pub anchor: (usize, usize),
    pub head: (usize, usize),
}

impl Selection {
    /// Its first and last cells in reading order.
    fn ordered(&self) -> ((usize, usize), (usize, usize)) {
        let key = |p: (usize, usize)| (p.1, p.0);
        if key(self.anchor) <= key(self.head) {
            (self.anchor, self.head)
        } else {
            (self.head, self.anchor)
        }
    }

    /// Whether cell `(x, y)` is selected.
    pub fn contains(&self, x: usize, y: usize) -> bool {
        let ((x0, y0), (x1, y1)) = self.ordered();
        (y0..=y1).contains(&y) && (y != y0 || x >= x0) && (y != y1 || x <= x1)
    }

    /// The selected text: rows joined by `\n`, each without its trailing blanks.
    pub fn text(&self, grid: &Grid) -> String {
        let ((x0, y0), (x1, y1)) = self.ordered();
        let mut lines = Vec::new();
        for y in y0..=y1.min(grid.rows() - 1) {
            let from = if y == y0 { x0 } else { 0 };
            let to = if y == y1 { x1 + 1 } else { grid.cols() };
            lines.push(grid.row_text(y, from, to));
        }
        lines.join("\n")
    }
}

/// The last line of output: the nearest non-empty row above the cursor's row (`None` if
/// there is none).
pub fn last_output_line(grid: &Grid, cursor_row: usize) -> Option<String> {
    (0..cursor_row.min(grid.rows()))
        .rev()
        .map(|y| grid.row_text(y, 0, grid.cols()))
        .find(|t| !t.is_empty())
}

/// The left button's gesture over a window: press starts a selection, motion extends it,
/// release ends it; a click without motion clears it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mouse {
    pub selection: Option<Selection>,
    dragging: bool,
    held: bool,
}

impl Mouse {
    /// The pointer is over cell `cell` with `left` held or not. Returns whether the
    /// selection changed.
    pub fn pointer(&mut self, cell: (usize, usize), left: bool) -> bool {
        let before = self.selection;
        match (self.held, left) {
            (false, true) => {
                self.selection = None;
                self.dragging = true;
                self.selection = Some(Selection {
                    anchor: cell,
                    head: cell,
                });
            }
            (true, true) if self.dragging => {
                if let Some(s) = &mut self.selection {
                    s.head = cell;
                }
            }
            (true, false) => {
                self.dragging = false;
                // A click (no motion): nothing selected.
                if self.selection.is_some_and(|s| s.anchor == s.head) {
                    self.selection = None;
                }
            }
            _ => {}
        }
        self.held = left;
        before != self.selection
    }

    /// Drops the selection (the text under it moved or changed).
    pub fn clear(&mut self) -> bool {
        self.dragging = false;
        self.selection.take().is_some()
    }
}
