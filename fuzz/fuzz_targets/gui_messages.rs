//! The gui qube's message handling against three hostile clients: arbitrary bytes are
//! decoded as GUI protocol messages (most do not decode, as a hostile client's would not)
//! and applied to the desktop, with clicks and keys in between, and the screen is repainted
//! where the desktop says it changed.
//!
//! Checked throughout: nothing panics; every read of a surface lies inside it; a client's
//! pixels land only inside its own windows and never on the panel; partial repaints equal a
//! full repaint at the end.

#![no_main]

use bulkhead_abi::gui::ToGui;
use bulkhead_abi::label::Label;
use bulkhead_abi::proto::BulkRef;
use bulkhead_gui_compose::canvas::Canvas;
use bulkhead_gui_compose::client::handle;
use bulkhead_gui_compose::desktop::{Client, Desktop, PANEL_HEIGHT, Pixels};
use bulkhead_gui_compose::keyboard::Key;
use bulkhead_gui_compose::mouse::Motion;
use libfuzzer_sys::fuzz_target;

/// Client `c`'s pixels: one colour no frame, panel or background uses.
fn colour(c: usize) -> u32 {
    0x0081_0000 | (c as u32 + 1) * 0x0103
}

struct Checked;

impl Pixels for Checked {
    fn row(&mut self, client: usize, surface: &BulkRef, offset: usize, dst: &mut [u32]) {
        assert!(offset + dst.len() * 4 <= surface.len as usize, "read past a surface");
        dst.fill(colour(client));
    }
}

fuzz_target!(|data: &[u8]| {
    let clients = ["work", "personal", "evil"]
        .iter()
        .zip([Label::Blue, Label::Yellow, Label::Red])
        .map(|(n, label)| Client {
            name: (*n).try_into().unwrap(),
            label,
            max_width: 120,
            max_height: 90,
        })
        .collect();
    // A small screen: windows overlap and reach its edges, and runs are fast.
    let (w, h) = (200, 150);
    let mut d = Desktop::new(w, h, clients);
    let mut canvas = Canvas::new(w, h);
    let first = d.take_dirty();
    d.paint(&mut canvas, first, &mut Checked);
    // Records: [kind, client, len, bytes...].
    let mut rest = data;
    while let [kind, client, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let client = usize::from(*client % 3);
        match kind % 4 {
            0 | 1 => {
                if let Ok(msg) = postcard::from_bytes::<ToGui<'_>>(bytes) {
                    handle(&mut d, client, &msg);
                }
            }
            2 => {
                let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
                let m = Motion { dx: i32::from(b(0) as i8) * 3, dy: i32::from(b(1) as i8) * 3, buttons: b(2) & 7 };
                d.pointer(m, b(3) & 7);
            }
            _ => {
                let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
                d.key(Key { usage: b(0), pressed: b(1) & 1 == 1 }, b(2));
            }
        }
        d.out.clear();
        let dirty = d.take_dirty();
        d.paint(&mut canvas, dirty, &mut Checked);
    }
    let mut full = Canvas::new(w, h);
    d.paint(&mut full, d.screen(), &mut Checked);
    for y in 0..h as i32 {
        assert!(canvas.row(y, 0, w as i32) == full.row(y, 0, w as i32), "row {y}");
        for x in 0..w as i32 {
            let px = full.pixel(x, y).unwrap();
            for c in 0..3 {
                if px == colour(c) {
                    assert!(y >= PANEL_HEIGHT);
                    assert!(d.windows().iter().any(|win| win.client == c && win.area.contains(x, y)));
                }
            }
        }
    }
});
