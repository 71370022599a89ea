//! Windows coming and going, and their pixels: opening a terminal (its size from the gui
//! qube's limit and our pool), lending its surface, copying what changed into it, sending
//! the messages and the damage as the ring takes them, closing.

use super::window::{TermWindow, bounding};
use super::{GuiClient, MIN_ROWS, Out, State};
use crate::channel::{ChannelError, Transport};
use crate::terminal::pty::Spawner;
use crate::terminal::render::{CELL_H, CELL_W};
use bulkhead_abi::gui::{BYTES_PER_PIXEL, CLIPBOARD_MAX, MAX_WINDOWS, Rect, ToGui};
use bulkhead_abi::proto::BulkRef;
use bulkhead_ring::BULK_PAGE;

impl<T: Transport, S: Spawner> GuiClient<T, S> {
    pub(super) fn shell_ended(&mut self, id: u16) {
        if let Some(w) = self.window(id) {
            // The pty reads end-of-file as the shell exits, a moment before it can be
            // reaped: give it up to 200 ms (only here, where it has ended).
            let mut status = w.shell.exit_status();
            for _ in 0..20 {
                if status.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
                status = w.shell.exit_status();
            }
            let status = status.map_or("unknown".into(), |s| s.to_string());
            self.notes.push(format!(
                "terminal {id}: the shell exited (status {status}); closing the window"
            ));
            self.close(id);
        }
    }

    /// Hangs up the shell of window `id` and destroys the window (removed once its surface
    /// is back; at once if it has none).
    pub(super) fn close(&mut self, id: u16) {
        let Some(i) = self.windows.iter().position(|w| w.id == id) else {
            return;
        };
        let w = &mut self.windows[i];
        w.shell.hang_up();
        w.damage.clear();
        if w.surface.is_some() && matches!(self.state, State::Up { .. }) {
            w.closing = true;
            self.outbox.push_back(Out::Destroy { window: id });
        } else {
            self.remove_window(i);
        }
        if self.focus == Some(id) {
            self.focus = None;
        }
        if self.windows.is_empty() {
            self.notes.push("no windows left".into());
        }
    }

    /// Opens a terminal window: the largest size allowed, in whole cells, or fewer rows if
    /// our pool does not hold that beside a clipboard.
    pub(super) fn open_window(&mut self) {
        let State::Up {
            max_width,
            max_height,
        } = self.state
        else {
            return;
        };
        let Some(id) = (0..MAX_WINDOWS as u16).find(|id| self.windows.iter().all(|w| w.id != *id))
        else {
            self.notes
                .push("no new window: the most a client may have are open".into());
            return;
        };
        let cols = (usize::from(max_width) / CELL_W).max(1);
        let max_rows = (usize::from(max_height) / CELL_H).max(1);
        let free = self.ch.bulk().map_or(0, |b| {
            (b.pool_size() / BULK_PAGE - b.lent_pages()) * BULK_PAGE
        });
        let room = free.saturating_sub(CLIPBOARD_MAX);
        let bytes = |rows: usize| {
            (cols * CELL_W * rows * CELL_H * BYTES_PER_PIXEL).next_multiple_of(BULK_PAGE)
        };
        let Some(rows) = (1..=max_rows)
            .rev()
            .find(|r| bytes(*r) <= room && (*r >= MIN_ROWS || *r == max_rows))
        else {
            self.notes.push(format!(
                "no new window: {} KiB of the bulk pool free, too little",
                free / 1024
            ));
            return;
        };
        let (w, h) = (cols * CELL_W, rows * CELL_H);
        let shell = match self
            .spawner
            .spawn(cols as u16, rows as u16, w as u16, h as u16)
        {
            Ok(s) => s,
            Err(e) => {
                self.notes.push(format!("cannot start a shell: {e}"));
                return;
            }
        };
        self.notes.push(format!(
            "terminal {id}: {cols}x{rows} cells ({w}x{h}), shell pid {}",
            shell.pid()
        ));
        self.windows.push(TermWindow::new(id, w, h, shell));
        let i = self.windows.len() - 1;
        if let Err(e) = self.show(i) {
            self.channel_error(e);
        }
    }

    /// Draws window `i` whole, lends its pixels as the surface and creates it.
    pub(super) fn show(&mut self, i: usize) -> Result<(), ChannelError> {
        let w = &mut self.windows[i];
        w.renderer.invalidate();
        w.draw();
        w.damage.clear();
        let (width, height) = w.size();
        let bytes: Vec<u8> = w
            .renderer
            .pixels()
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        let Some(bulk) = self.ch.bulk() else {
            self.notes
                .push("the GUI channel has no bulk area: no windows".into());
            return Ok(());
        };
        let surface = match bulk.lend(&bytes) {
            Ok(s) => s,
            Err(e @ ChannelError::Broken(_)) => return Err(e),
            Err(e) => {
                self.notes
                    .push(format!("terminal {}: no room for its surface: {e}", w.id));
                return Ok(());
            }
        };
        w.surface = Some(surface);
        w.shown = false;
        let window = w.id;
        self.outbox.push_back(Out::Create {
            window,
            width: width as u16,
            height: height as u16,
            surface,
        });
        self.outbox.push_back(Out::Title { window });
        self.windows[i]
            .damage
            .push(Rect::new(0, 0, width as u16, height as u16));
        Ok(())
    }

    /// Draws every shown window and copies what changed into its surface.
    pub(super) fn draw(&mut self) -> Result<(), ChannelError> {
        if !matches!(self.state, State::Up { .. }) {
            return Ok(());
        }
        for w in &mut self.windows {
            let Some(surface) = w.surface.filter(|_| !w.closing) else {
                continue;
            };
            let rects = w.draw();
            let Some(bulk) = self.ch.bulk() else {
                continue;
            };
            let (stride, _) = w.size();
            for r in rects {
                for y in usize::from(r.y)..usize::from(r.y + r.h) {
                    w.row_bytes(usize::from(r.x), y, usize::from(r.w), &mut self.scratch);
                    let at = (y * stride + usize::from(r.x)) * BYTES_PER_PIXEL;
                    bulk.write_lent(&surface, at, &self.scratch)?;
                }
            }
        }
        Ok(())
    }

    /// Sends what waits, as far as the ring takes it: the outbox, then the damage.
    pub(super) fn flush(&mut self) -> Result<(), ChannelError> {
        if self.state == State::Stopped {
            self.outbox.clear();
            return Ok(());
        }
        while let Some(m) = self.outbox.front() {
            if !self.ch.try_send_batched(&m.message())? {
                break;
            }
            self.outbox.pop_front();
        }
        if self.outbox.is_empty() && matches!(self.state, State::Up { .. }) {
            'windows: for w in &mut self.windows {
                if w.surface.is_none() || w.closing {
                    continue;
                }
                while let Some(rect) = w.damage.first().copied() {
                    if !self
                        .ch
                        .try_send_batched(&ToGui::Damage { window: w.id, rect })?
                    {
                        // Full: what is left goes as one rectangle next time.
                        let all = bounding(&w.damage);
                        w.damage = vec![all];
                        break 'windows;
                    }
                    w.damage.remove(0);
                }
            }
        }
        self.ch.flush();
        Ok(())
    }

    /// The gui qube is gone (reset) or greeted again: it holds none of our windows.
    /// Removes window `i`, keeping its shell until it is reaped; returns its surface.
    pub(super) fn remove_window(&mut self, i: usize) -> Option<BulkRef> {
        let mut w = self.windows.remove(i);
        if w.shell.exit_status().is_none() {
            self.reaping.push(w.shell);
        }
        w.surface
    }

    pub(super) fn forget_gui(&mut self) {
        while let Some(i) = self.windows.iter().position(|w| w.closing) {
            self.remove_window(i);
        }
        for w in &mut self.windows {
            w.surface = None;
            w.damage.clear();
            w.focused = false;
        }
        self.focus = None;
        self.clip_loans.clear();
        if let Some(b) = self.ch.bulk() {
            b.reset();
        }
    }
}
