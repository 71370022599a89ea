//! The desktop: the clients (qubes with a GUI channel, from the system description), their
//! windows in stacking order, the focus and the pointer. It places every window itself,
//! clamps what clients ask for, and paints any part of the screen: the background, each
//! window's surface with the trusted frame around it, the panel and the pointer on top.

use crate::canvas::{CHAR_WIDTH, Canvas, TEXT_HEIGHT, text_colour_on};
use crate::geom::Rect;
use crate::prompt::{Prompt, Prompts};
use crate::title::Title;
use alloc::vec::Vec;
use bulkhead_abi::gui::{BYTES_PER_PIXEL, FromGui, MAX_WINDOWS, refusal};
use bulkhead_abi::label::Label;
use bulkhead_abi::proto::BulkRef;
use heapless::String;

/// Height of the panel along the top edge, which no window covers.
pub const PANEL_HEIGHT: i32 = 24;
/// Height of a window's title bar.
pub const TITLE_HEIGHT: i32 = 20;
/// Width of a window's border.
pub const BORDER: i32 = 2;
/// The desktop's background.
pub const BACKGROUND: u32 = 0x0030_3436;
/// The panel's background.
pub const PANEL_BACKGROUND: u32 = 0x0010_1010;
/// The panel's text.
pub const PANEL_TEXT: u32 = 0x00E0_E0E0;
/// Most qube names a client name may hold (the manifest's limit).
pub const NAME_MAX: usize = bulkhead_abi::boot_info::NAME_MAX;

/// A qube with a GUI channel, as the system description gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The qube's name.
    pub name: String<NAME_MAX>,
    /// The qube's label: the colour of its windows' frames.
    pub label: Label,
    /// The largest window it may have, in pixels.
    pub max_width: u16,
    /// The largest window it may have, in pixels.
    pub max_height: u16,
}

/// A window on the screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Which client (index into the clients) it belongs to.
    pub client: usize,
    /// The client's number for it.
    pub id: u16,
    /// Where its content is on the screen, and the size shown.
    pub area: Rect,
    /// Pixels per surface row.
    pub stride: u16,
    /// Its surface in the client's pool.
    pub surface: BulkRef,
    /// Its title, as the gui qube shows it.
    pub title: Title,
}

impl Window {
    /// The window with its frame: border and title bar.
    pub fn frame(&self) -> Rect {
        self.area
            .grow(BORDER, BORDER + TITLE_HEIGHT, BORDER, BORDER)
    }
}

/// Where the surface pixels come from: the clients' bulk areas in the qube, a model in tests.
pub trait Pixels {
    /// Fills `dst` with the pixels at byte `offset` of `client`'s surface `surface` (a whole
    /// number of pixels inside it, as [`Desktop`] asks). A surface that cannot be read gives
    /// whatever the implementation chooses (a flat colour), never pixels of another client.
    fn row(&mut self, client: usize, surface: &BulkRef, offset: usize, dst: &mut [u32]);
}

/// A message for a client.
pub type Outgoing = (usize, FromGui);

/// The whole desktop's state.
pub struct Desktop {
    screen: Rect,
    clients: Vec<Client>,
    /// Bottom first.
    windows: Vec<Window>,
    /// The focused window: (client, id).
    focus: Option<(usize, u16)>,
    /// Pointer position on the screen.
    pub(crate) pointer: (i32, i32),
    /// What must be painted again.
    dirty: Rect,
    /// The panel's right-hand message (clipboard news, refusals).
    pub(crate) status: String<96>,
    /// Messages for the clients, drained by the caller.
    pub out: Vec<Outgoing>,
    /// The last damage applied: (client, whether it covered the whole window).
    damaged: Option<(usize, bool)>,
    /// The policy's questions to the user, drawn over everything.
    pub(crate) prompts: Prompts,
}

/// The pointer's shape: rows of (start, length) of lit pixels, an arrow.
const POINTER: [(i32, i32); 12] = [
    (0, 1),
    (0, 2),
    (0, 3),
    (0, 4),
    (0, 5),
    (0, 6),
    (0, 7),
    (0, 8),
    (0, 5),
    (0, 2),
    (3, 2),
    (4, 2),
];

impl Desktop {
    /// A desktop of `width × height` pixels for these clients, nothing open.
    pub fn new(width: u32, height: u32, clients: Vec<Client>) -> Desktop {
        let screen = Rect::new(0, 0, width.min(16384) as i32, height.min(16384) as i32);
        Desktop {
            screen,
            clients,
            windows: Vec::new(),
            focus: None,
            pointer: (screen.w / 2, screen.h / 2),
            dirty: screen,
            status: String::new(),
            out: Vec::new(),
            damaged: None,
            prompts: Prompts::default(),
        }
    }

    /// Shows `p` (after the prompts already up) over everything; keys go to it.
    pub fn ask(&mut self, p: Prompt) {
        self.prompts.push(p);
        self.invalidate(Prompt::rect(self.screen));
    }

    /// The user's answers to prompts since the last call: (ask, choice).
    pub fn take_answers(&mut self) -> Vec<(u32, Option<u8>)> {
        core::mem::take(&mut self.prompts.answers)
    }

    /// Drops every prompt (nobody waits for the answers any more).
    pub fn clear_prompts(&mut self) {
        self.prompts.clear();
        self.invalidate(Prompt::rect(self.screen));
    }

    /// The clients, in the system description's order.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// The windows, bottom first.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The focused window's (client, id), if any.
    pub fn focus(&self) -> Option<(usize, u16)> {
        self.focus
    }

    /// The screen.
    pub fn screen(&self) -> Rect {
        self.screen
    }

    /// Takes what must be painted again (empty if nothing).
    pub fn take_dirty(&mut self) -> Rect {
        core::mem::take(&mut self.dirty)
    }

    /// Marks `r` (screen coordinates) to be painted again.
    pub fn invalidate(&mut self, r: Rect) {
        self.dirty = self.dirty.union(&r.intersect(&self.screen));
    }

    pub(crate) fn window_index(&self, client: usize, id: u16) -> Option<usize> {
        self.windows
            .iter()
            .position(|w| w.client == client && w.id == id)
    }

    /// Opens a window for `client`: checks the number and the surface, clamps the size to
    /// what the client may have and the screen holds, places it, focuses nothing (the user
    /// chooses the focus). Answers `Configure`, or `Refused` (and keeps nothing).
    pub fn create(&mut self, client: usize, id: u16, width: u16, height: u16, surface: BulkRef) {
        let Some(c) = self.clients.get(client) else {
            return;
        };
        let refuse = |reason| FromGui::Refused { window: id, reason };
        let mine = self.windows.iter().filter(|w| w.client == client).count();
        let needed = usize::from(width) * usize::from(height) * BYTES_PER_PIXEL;
        let reply = if usize::from(id) >= MAX_WINDOWS || self.window_index(client, id).is_some() {
            refuse(refusal::WINDOW)
        } else if mine >= MAX_WINDOWS {
            refuse(refusal::TOO_MANY)
        } else if width == 0 || height == 0 {
            refuse(refusal::SIZE)
        } else if (surface.len as usize) < needed {
            refuse(refusal::SURFACE)
        } else {
            let w = i32::from(width.min(c.max_width)).min(self.screen.w - 2 * BORDER);
            let h = i32::from(height.min(c.max_height))
                .min(self.screen.h - PANEL_HEIGHT - TITLE_HEIGHT - 2 * BORDER);
            if w < 1 || h < 1 {
                refuse(refusal::SIZE)
            } else {
                let area = self.place(w, h);
                self.windows.push(Window {
                    client,
                    id,
                    area,
                    stride: width,
                    surface,
                    title: Title::default(),
                });
                self.invalidate(area.grow(BORDER, BORDER + TITLE_HEIGHT, BORDER, BORDER));
                // The panel lists the qubes with windows.
                self.invalidate(self.panel());
                FromGui::Configure {
                    window: id,
                    width: w as u16,
                    height: h as u16,
                }
            }
        };
        self.out.push((client, reply));
    }

    /// Where a new `w × h` window goes: side by side in rows from the top-left (the first
    /// free place right of the last window, else the start of a new row), and cascading over
    /// the others once the screen is full; always inside the screen and below the panel.
    fn place(&mut self, w: i32, h: i32) -> Rect {
        const GAP: i32 = 12;
        let top = PANEL_HEIGHT + TITLE_HEIGHT + BORDER + GAP / 2;
        let fits = |r: &Rect| {
            r.right() + BORDER <= self.screen.w
                && r.bottom() + BORDER <= self.screen.h
                && !self.windows.iter().any(|o| {
                    let (g, side) = (GAP / 2, BORDER + GAP / 2);
                    let spaced = r.grow(side, BORDER + TITLE_HEIGHT + g, side, side);
                    !o.frame().intersect(&spaced).is_empty()
                })
        };
        let (mut x, mut y) = (BORDER + GAP, top);
        while y + h + BORDER <= self.screen.h {
            let row = self
                .windows
                .iter()
                .map(Window::frame)
                .filter(|f| f.y <= y && f.bottom() > y - TITLE_HEIGHT - BORDER)
                .map(|f| f.bottom())
                .min()
                .unwrap_or(self.screen.h);
            while x + w + BORDER <= self.screen.w {
                let r = Rect::new(x, y, w, h);
                if fits(&r) {
                    return r;
                }
                x += 16;
            }
            x = BORDER + GAP;
            y = (row + TITLE_HEIGHT + BORDER + GAP).max(y + 16);
        }
        // Cascading: each window a title bar lower and further right than the last.
        let step = (TITLE_HEIGHT + BORDER + GAP) * (self.windows.len() % 8) as i32;
        let x = (BORDER + GAP + step)
            .min(self.screen.w - BORDER - w)
            .max(BORDER);
        let y = (top + step).min(self.screen.h - BORDER - h).max(top);
        Rect::new(x, y, w, h)
    }

    /// Closes `client`'s window `id`: answers `Returned` with its surface, or `Refused`.
    pub fn destroy(&mut self, client: usize, id: u16) {
        let Some(i) = self.window_index(client, id) else {
            self.out.push((
                client,
                FromGui::Refused {
                    window: id,
                    reason: refusal::WINDOW,
                },
            ));
            return;
        };
        let w = self.windows.remove(i);
        self.invalidate(w.frame());
        self.invalidate(self.panel());
        if self.focus == Some((client, id)) {
            self.focus = None;
        }
        self.out.push((client, FromGui::Returned(w.surface)));
    }

    /// Forgets every window of `client` (its channel broke or was reset): their surfaces are
    /// gone with the channel, nothing is returned.
    pub fn drop_client_windows(&mut self, client: usize) {
        let frames: Vec<Rect> = self
            .windows
            .iter()
            .filter(|w| w.client == client)
            .map(Window::frame)
            .collect();
        for f in frames {
            self.invalidate(f);
        }
        self.windows.retain(|w| w.client != client);
        self.invalidate(self.panel());
        if self.focus.is_some_and(|(c, _)| c == client) {
            self.focus = None;
        }
    }

    /// Sets a window's title (already made safe by [`Title::from_bytes`]).
    pub fn set_title(&mut self, client: usize, id: u16, title: Title) {
        if let Some(i) = self.window_index(client, id) {
            self.windows[i].title = title;
            let bar = self.windows[i].frame();
            self.invalidate(Rect::new(bar.x, bar.y, bar.w, BORDER + TITLE_HEIGHT));
        }
    }

    /// The client drew `r` (window coordinates, clamped to the window here): paint it again.
    pub fn damage(&mut self, client: usize, id: u16, r: Rect) {
        if let Some(i) = self.window_index(client, id) {
            let area = self.windows[i].area;
            let on_screen = r.offset(area.x, area.y).intersect(&area);
            self.invalidate(on_screen);
            self.damaged = Some((client, on_screen == area));
        }
    }

    /// The last damage applied since the last call: (client, whether it covered its whole
    /// window). For measurements.
    pub fn take_damaged(&mut self) -> Option<(usize, bool)> {
        self.damaged.take()
    }

    /// Focuses window `i` (an index into the windows) and raises it; tells both clients.
    pub(crate) fn focus_index(&mut self, i: usize) {
        let w = self.windows.remove(i);
        let key = (w.client, w.id);
        self.invalidate(w.frame());
        self.windows.push(w);
        if self.focus == Some(key) {
            return;
        }
        if let Some((c, id)) = self.focus {
            self.out.push((
                c,
                FromGui::Focus {
                    window: id,
                    focused: false,
                },
            ));
        }
        self.focus = Some(key);
        self.out.push((
            key.0,
            FromGui::Focus {
                window: key.1,
                focused: true,
            },
        ));
        self.invalidate(self.panel());
    }

    /// The next window in stacking order gets the focus (the trusted focus hotkey).
    pub fn cycle_focus(&mut self) {
        if !self.windows.is_empty() {
            // The bottom window comes to the top.
            self.focus_index(0);
        }
    }

    /// The topmost window whose frame holds `(x, y)`.
    pub fn window_at(&self, x: i32, y: i32) -> Option<usize> {
        self.windows.iter().rposition(|w| w.frame().contains(x, y))
    }

    /// The focused window's index.
    pub(crate) fn focused_index(&self) -> Option<usize> {
        let (c, id) = self.focus?;
        self.window_index(c, id)
    }

    /// The panel's rectangle.
    pub fn panel(&self) -> Rect {
        Rect::new(0, 0, self.screen.w, PANEL_HEIGHT)
    }

    /// The pointer's rectangle.
    pub(crate) fn pointer_rect(&self) -> Rect {
        Rect::new(self.pointer.0, self.pointer.1, 10, POINTER.len() as i32)
    }

    /// Paints `area` of the screen into `canvas`: background, windows bottom to top (frames
    /// from the gui qube, contents from `pixels`), the panel, the pointer.
    pub fn paint(&self, canvas: &mut Canvas, area: Rect, pixels: &mut impl Pixels) {
        let area = area.intersect(&self.screen).intersect(&canvas.bounds());
        if area.is_empty() {
            return;
        }
        canvas.fill(area, area, BACKGROUND);
        for w in &self.windows {
            self.paint_window(canvas, area, w, pixels);
        }
        self.paint_panel(canvas, area);
        if let Some(p) = self.prompts.shown() {
            p.paint(canvas, area, self.screen);
        }
        for (dy, (start, len)) in POINTER.iter().enumerate() {
            let (x, y) = (self.pointer.0 + start, self.pointer.1 + dy as i32);
            canvas.fill(Rect::new(x, y, *len, 1), area, 0x00FF_FFFF);
            canvas.fill(Rect::new(x + len, y, 1, 1), area, 0);
        }
    }

    fn paint_window(&self, canvas: &mut Canvas, clip: Rect, w: &Window, pixels: &mut impl Pixels) {
        let frame = w.frame();
        if frame.intersect(&clip).is_empty() {
            return;
        }
        let client = &self.clients[w.client];
        let colour = client.label.rgb();
        // Border and title bar: the label's colour, exactly.
        canvas.fill(frame, clip, colour);
        let bar_text = text_colour_on(colour);
        let text_y = frame.y + BORDER + (TITLE_HEIGHT - TEXT_HEIGHT) / 2;
        // The text stays off the border.
        let bar = Rect::new(
            frame.x + BORDER,
            frame.y + BORDER,
            frame.w - 2 * BORDER,
            TITLE_HEIGHT,
        )
        .intersect(&clip);
        let mut x = frame.x + BORDER + 4;
        for part in ["[", client.name.as_str(), "] ", w.title.as_str()] {
            x = canvas.text(x, text_y, part, bar_text, colour, bar);
        }
        // The content, row by row from the surface.
        let shown = w.area.intersect(&clip);
        if shown.is_empty() {
            return;
        }
        let stride = usize::from(w.stride) * BYTES_PER_PIXEL;
        for y in shown.y..shown.bottom() {
            let (wx, wy) = ((shown.x - w.area.x) as usize, (y - w.area.y) as usize);
            let offset = wy * stride + wx * BYTES_PER_PIXEL;
            let dst = canvas.row_mut(y, shown.x, shown.w);
            pixels.row(w.client, &w.surface, offset, dst);
        }
    }

    fn paint_panel(&self, canvas: &mut Canvas, clip: Rect) {
        let panel = self.panel();
        let clip = clip.intersect(&panel);
        if clip.is_empty() {
            return;
        }
        canvas.fill(panel, clip, PANEL_BACKGROUND);
        let y = (PANEL_HEIGHT - TEXT_HEIGHT) / 2;
        // The focused qube, in its colour.
        let mut x = 6;
        match self.focus.and_then(|(c, _)| self.clients.get(c)) {
            Some(c) => {
                let colour = c.label.rgb();
                let w = (c.name.len() as i32 + 2) * CHAR_WIDTH + 8;
                canvas.fill(Rect::new(x, 2, w, PANEL_HEIGHT - 4), clip, colour);
                let fg = text_colour_on(colour);
                let mut tx = canvas.text(x + 4, y, "[", fg, colour, clip);
                tx = canvas.text(tx, y, c.name.as_str(), fg, colour, clip);
                canvas.text(tx, y, "]", fg, colour, clip);
                x += w + 12;
            }
            None => {
                x = canvas.text(x, y, "no focus", PANEL_TEXT, PANEL_BACKGROUND, clip) + 12;
            }
        }
        // Every client with a window, each name in its colour.
        for (i, c) in self.clients.iter().enumerate() {
            if self.windows.iter().any(|w| w.client == i) {
                let colour = c.label.rgb();
                canvas.fill(Rect::new(x, 8, 8, 8), clip, colour);
                x = canvas.text(
                    x + 11,
                    y,
                    c.name.as_str(),
                    PANEL_TEXT,
                    PANEL_BACKGROUND,
                    clip,
                ) + 10;
            }
        }
        // The status message, right-aligned.
        let sw = self.status.len() as i32 * CHAR_WIDTH;
        let sx = (panel.w - sw - 6).max(x);
        canvas.text(sx, y, &self.status, PANEL_TEXT, PANEL_BACKGROUND, clip);
    }
}
