//! The `ask` prompt of the qrexec policy: the admin qube asks, the gui qube shows the
//! question over everything (no qube can draw over it or type into it), the user picks a
//! target with the arrow keys and allows with Enter or refuses with Escape. While a prompt
//! is up, pressed keys go to it and to no qube. Prompts queue, one shown at a time.

use crate::canvas::{CHAR_WIDTH, Canvas, TEXT_HEIGHT};
use crate::geom::Rect;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// Most prompts waiting; more are refused at once.
pub const MAX_QUEUED: usize = 8;
/// Longest text of any field drawn (longer is cut).
const FIELD_MAX: usize = 40;
const WIDTH: i32 = 620;
const HEIGHT: i32 = 4 * LINE + 2 * PAD;
const LINE: i32 = TEXT_HEIGHT + 8;
const PAD: i32 = 14;
const BACKGROUND: u32 = 0x00F2_F2F2;
const BORDER: u32 = 0x0000_0000;
const TEXT: u32 = 0x0010_1010;
const CHOICE: u32 = 0x0020_4A87;
const CHOICE_TEXT: u32 = 0x00FF_FFFF;

/// HID usages the prompt reacts to.
mod usage {
    pub const ENTER: u8 = 0x28;
    pub const ESCAPE: u8 = 0x29;
    pub const TAB: u8 = 0x2b;
    pub const RIGHT: u8 = 0x4f;
    pub const LEFT: u8 = 0x50;
    pub const DOWN: u8 = 0x51;
    pub const UP: u8 = 0x52;
    pub const KEYPAD_ENTER: u8 = 0x58;
}

/// One question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The admin qube's number for it.
    pub ask: u32,
    /// Who calls.
    pub source: String,
    /// `service` or `service+argument`.
    pub service: String,
    /// The targets offered.
    pub candidates: Vec<String>,
    /// The one chosen now.
    pub selected: usize,
}

impl Prompt {
    /// A question; every text is cut to printable ASCII of a bounded length (the admin
    /// qube checked names, but the prompt is drawn by the trusted path whatever it gets).
    pub fn new(
        ask: u32,
        source: &str,
        service: &str,
        argument: &str,
        candidates: &[&str],
        default: Option<u8>,
    ) -> Prompt {
        let mut full = safe(service);
        if !argument.is_empty() {
            full.push('+');
            full.push_str(&safe(argument));
        }
        let candidates: Vec<String> = candidates.iter().map(|c| safe(c)).collect();
        let selected = default.map_or(0, usize::from);
        Prompt {
            ask,
            source: safe(source),
            service: full,
            selected: if selected < candidates.len() {
                selected
            } else {
                0
            },
            candidates,
        }
    }

    /// A pressed key: `Some(answer)` when the user decided (`None` inside: refused).
    pub fn key(&mut self, usage: u8) -> Option<Option<u8>> {
        let n = self.candidates.len();
        match usage {
            usage::ENTER | usage::KEYPAD_ENTER if n > 0 => Some(u8::try_from(self.selected).ok()),
            usage::ESCAPE => Some(None),
            usage::RIGHT | usage::DOWN | usage::TAB if n > 0 => {
                self.selected = (self.selected + 1) % n;
                None
            }
            usage::LEFT | usage::UP if n > 0 => {
                self.selected = (self.selected + n - 1) % n;
                None
            }
            _ => None,
        }
    }

    /// Where it is drawn on a `screen`: centred.
    pub fn rect(screen: Rect) -> Rect {
        let (w, h) = (WIDTH.min(screen.w), HEIGHT.min(screen.h));
        Rect::new((screen.w - w) / 2, (screen.h - h) / 2, w, h)
    }

    /// Draws it inside `clip`.
    pub fn paint(&self, canvas: &mut Canvas, clip: Rect, screen: Rect) {
        let r = Prompt::rect(screen);
        if r.intersect(&clip).is_empty() {
            return;
        }
        canvas.fill(r, clip, BORDER);
        let inner = Rect::new(r.x + 3, r.y + 3, r.w - 6, r.h - 6);
        canvas.fill(inner, clip, BACKGROUND);
        let clip = clip.intersect(&inner);
        let x = r.x + PAD;
        let row = |k: i32| r.y + PAD + k * LINE;
        let line = |canvas: &mut Canvas, k: i32, parts: &[&str]| {
            let mut tx = x;
            for p in parts {
                tx = canvas.text(tx, row(k), p, TEXT, BACKGROUND, clip);
            }
        };
        line(canvas, 0, &["Service call from ", &self.source]);
        line(canvas, 1, &["wants to run ", &self.service, " in:"]);
        line(
            canvas,
            3,
            &["Left/Right: choose   Enter: allow   Esc: refuse"],
        );
        let cy = row(2);
        let mut cx = x;
        for (i, c) in self.candidates.iter().enumerate() {
            let w = (c.len() as i32 + 2) * CHAR_WIDTH;
            let (fg, bg) = if i == self.selected {
                (CHOICE_TEXT, CHOICE)
            } else {
                (TEXT, BACKGROUND)
            };
            canvas.fill(Rect::new(cx - 2, cy - 2, w + 4, TEXT_HEIGHT + 4), clip, bg);
            canvas.text(cx + CHAR_WIDTH, cy, c, fg, bg, clip);
            cx += w + 10;
        }
    }
}

/// Printable ASCII of `s`, at most [`FIELD_MAX`] bytes.
fn safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(FIELD_MAX)
        .collect()
}

/// The prompts: the first is shown, the rest wait.
#[derive(Debug, Default)]
pub struct Prompts {
    queue: VecDeque<Prompt>,
    /// Answers for the admin qube: (ask, choice).
    pub answers: Vec<(u32, Option<u8>)>,
}

impl Prompts {
    /// Queues `p`; a full queue refuses it at once.
    pub fn push(&mut self, p: Prompt) {
        if self.queue.len() >= MAX_QUEUED {
            self.answers.push((p.ask, None));
        } else {
            self.queue.push_back(p);
        }
    }

    /// The prompt shown, if any.
    pub fn shown(&self) -> Option<&Prompt> {
        self.queue.front()
    }

    /// A pressed key for the shown prompt; true if there is one (the key is used up).
    pub fn key(&mut self, usage: u8) -> bool {
        let Some(p) = self.queue.front_mut() else {
            return false;
        };
        if let Some(choice) = p.key(usage) {
            self.answers.push((p.ask, choice));
            self.queue.pop_front();
        }
        true
    }

    /// Forgets every prompt (the admin qube restarted): nobody waits for their answers.
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}
