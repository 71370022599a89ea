//! The desktop against hostile clients: whatever they send, their pixels land only inside
//! their own windows, frames and panel are the gui qube's, input goes to the focus only.

use crate::canvas::Canvas;
use crate::client::{Needs, handle};
use crate::desktop::{BORDER, Client, Desktop, PANEL_HEIGHT, Pixels, TITLE_HEIGHT};
use crate::geom::Rect;
use crate::keyboard::{Hotkey, Key};
use crate::mouse::Motion;
use alloc::vec;
use alloc::vec::Vec;
use bulkhead_abi::gui::{FromGui, GUI_VERSION, Rect as WireRect, ToGui, refusal};
use bulkhead_abi::label::Label;
use bulkhead_abi::proto::BulkRef;
use proptest::prelude::*;

/// Each client's pixels are one colour no frame or panel uses; every read is checked to lie
/// inside the surface.
struct Flat;

fn client_colour(client: usize) -> u32 {
    (0x0001_0203 * (client as u32 + 1)) | 0x0080_0000
}

impl Pixels for Flat {
    fn row(&mut self, client: usize, surface: &BulkRef, offset: usize, dst: &mut [u32]) {
        assert!(
            offset + dst.len() * 4 <= surface.len as usize,
            "read past the surface"
        );
        dst.fill(client_colour(client));
    }
}

fn clients() -> Vec<Client> {
    [
        ("work", Label::Blue),
        ("personal", Label::Yellow),
        ("evil", Label::Red),
    ]
    .into_iter()
    .map(|(n, label)| Client {
        name: n.try_into().unwrap(),
        label,
        max_width: 400,
        max_height: 300,
    })
    .collect()
}

fn surface(w: u16, h: u16) -> BulkRef {
    BulkRef {
        offset: 0,
        len: u32::from(w) * u32::from(h) * 4,
        check: 0,
    }
}

fn painted(d: &Desktop) -> Canvas {
    let s = d.screen();
    let mut c = Canvas::new(s.w as u32, s.h as u32);
    d.paint(&mut c, d.screen(), &mut Flat);
    c
}

#[test]
fn a_window_is_framed_in_its_label_colour_and_clamped() {
    let mut d = Desktop::new(640, 480, clients());
    d.create(0, 1, 1000, 1000, surface(1000, 1000));
    assert_eq!(
        d.out.pop(),
        Some((
            0,
            FromGui::Configure {
                window: 1,
                width: 400,
                height: 300
            }
        ))
    );
    let w = d.windows()[0].clone();
    let c = painted(&d);
    let f = w.frame();
    assert!(f.y >= PANEL_HEIGHT, "below the panel");
    for x in f.x..f.right() {
        assert_eq!(c.pixel(x, f.y), Some(Label::Blue.rgb()), "top edge at {x}");
        assert_eq!(c.pixel(x, f.bottom() - 1), Some(Label::Blue.rgb()));
    }
    for y in f.y..f.bottom() {
        assert_eq!(c.pixel(f.x, y), Some(Label::Blue.rgb()));
        assert_eq!(c.pixel(f.right() - 1, y), Some(Label::Blue.rgb()));
    }
    assert_eq!(c.pixel(w.area.x, w.area.y), Some(client_colour(0)));
    assert_eq!(f.h, w.area.h + 2 * BORDER + TITLE_HEIGHT);
}

#[test]
fn refusals() {
    let mut d = Desktop::new(640, 480, clients());
    let small = BulkRef {
        len: 100,
        ..surface(1, 1)
    };
    d.create(2, 0, 10, 10, small);
    d.create(2, 99, 10, 10, surface(10, 10));
    d.create(2, 1, 0, 10, surface(10, 10));
    d.create(2, 2, 10, 10, surface(10, 10));
    d.create(2, 2, 10, 10, surface(10, 10));
    let reasons: Vec<_> = d
        .out
        .iter()
        .map(|(_, m)| match m {
            FromGui::Refused { reason, .. } => *reason,
            _ => 0,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            refusal::SURFACE,
            refusal::WINDOW,
            refusal::SIZE,
            0,
            refusal::WINDOW
        ]
    );
    assert_eq!(d.windows().len(), 1);
    assert_eq!(
        handle(&mut d, 2, &ToGui::Hello { version: 9 }),
        Needs::WrongVersion(9)
    );
    assert_eq!(
        handle(
            &mut d,
            2,
            &ToGui::Hello {
                version: GUI_VERSION
            }
        ),
        Needs::Nothing
    );
}

#[test]
fn keys_go_to_the_focused_window_only_and_hotkeys_to_no_one() {
    let mut d = Desktop::new(640, 480, clients());
    d.create(0, 0, 100, 100, surface(100, 100));
    d.create(1, 0, 100, 100, surface(100, 100));
    d.out.clear();
    let a = Key {
        usage: 0x04,
        pressed: true,
    };
    assert_eq!(d.key(a, 0), None);
    assert!(d.out.is_empty(), "no focus, nobody hears the key");
    // A click on personal's window focuses it.
    let target = d.windows()[1].area;
    let (px, py) = d.pointer_at();
    let to = |m: i32, n: i32| Motion {
        dx: m,
        dy: n,
        buttons: 0,
    };
    d.pointer(to(target.x + 5 - px, target.y + 5 - py), 0);
    d.pointer(
        Motion {
            buttons: 1,
            ..to(0, 0)
        },
        0,
    );
    assert_eq!(d.focus(), Some((1, 0)));
    d.out.clear();
    d.key(a, 0);
    assert_eq!(d.out.len(), 1);
    assert_eq!(d.out[0].0, 1, "only personal hears it");
    d.out.clear();
    let c = Key {
        usage: 0x06,
        pressed: true,
    };
    assert_eq!(d.key(c, 0b11), Some(Hotkey::Copy));
    assert!(d.out.is_empty(), "Ctrl+Shift+C reaches no qube");
    let tab = Key {
        usage: 0x2b,
        pressed: true,
    };
    assert_eq!(d.key(tab, 0b100), Some(Hotkey::NextWindow));
    assert_eq!(d.focus(), Some((0, 0)));
}

/// What a hostile client may send.
#[derive(Clone, Debug)]
enum Op {
    Create(usize, u16, u16, u16, u32),
    Damage(usize, u16, u16, u16, u16, u16),
    Title(usize, u16, Vec<u8>),
    Destroy(usize, u16),
    Click(i32, i32),
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0usize..3;
    prop_oneof![
        (
            c.clone(),
            0u16..12,
            any::<u16>(),
            any::<u16>(),
            any::<u32>()
        )
            .prop_map(|(c, id, w, h, len)| Op::Create(c, id, w % 2000, h % 2000, len)),
        (
            c.clone(),
            0u16..12,
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(c, id, x, y, w, h)| Op::Damage(c, id, x, y, w, h)),
        (
            c.clone(),
            0u16..12,
            prop::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|(c, id, t)| Op::Title(c, id, t)),
        (c, 0u16..12).prop_map(|(c, id)| Op::Destroy(c, id)),
        (-400i32..400, -300i32..300).prop_map(|(x, y)| Op::Click(x, y)),
    ]
}

proptest! {
    /// Whatever the clients send: a client's pixels appear only inside its own windows'
    /// content, never on the panel; every frame edge not under another window is its
    /// qube's label colour; a partial repaint of what was damaged equals a full repaint.
    #[test]
    fn hostile_clients_draw_only_inside_their_windows(ops in prop::collection::vec(op(), 1..40)) {
        // A small screen, so that windows overlap and reach its edges.
        let mut d = Desktop::new(320, 240, clients());
        let mut canvas = Canvas::new(320, 240);
        for op in ops {
            let msg_for;
            let (client, msg) = match op {
                Op::Create(c, id, w, h, len) => {
                    let len = if len % 2 == 0 { u32::from(w) * u32::from(h) * 4 } else { len };
                    (c, ToGui::Create { window: id, width: w, height: h, surface: BulkRef { offset: 0, len, check: 0 } })
                }
                Op::Damage(c, id, x, y, w, h) => (c, ToGui::Damage { window: id, rect: WireRect::new(x, y, w, h) }),
                Op::Title(c, id, t) => {
                    msg_for = t;
                    (c, ToGui::Title { window: id, title: &msg_for })
                }
                Op::Destroy(c, id) => (c, ToGui::Destroy { window: id }),
                Op::Click(x, y) => {
                    let (px, py) = d.pointer_at();
                    d.pointer(Motion { dx: x - px, dy: y - py, buttons: 1 }, 0);
                    let dirty = d.take_dirty();
                    d.paint(&mut canvas, dirty, &mut Flat);
                    continue;
                }
            };
            handle(&mut d, client, &msg);
            let dirty = d.take_dirty();
            d.paint(&mut canvas, dirty, &mut Flat);
        }
        let full = painted(&d);
        let s = d.screen();
        for y in 0..s.h {
            prop_assert!(canvas.row(y, 0, s.w) == full.row(y, 0, s.w), "row {} differs after partial repaints", y);
        }
        for (k, _) in clients().iter().enumerate() {
            let mine: Vec<Rect> = d.windows().iter().filter(|w| w.client == k).map(|w| w.area).collect();
            for y in 0..s.h {
                for x in 0..s.w {
                    if full.pixel(x, y) == Some(client_colour(k)) {
                        prop_assert!(y >= PANEL_HEIGHT, "client {} on the panel at {},{}", k, x, y);
                        prop_assert!(mine.iter().any(|a| a.contains(x, y)), "client {} outside its windows at {},{}", k, x, y);
                    }
                }
            }
        }
        let ws = d.windows();
        for (i, w) in ws.iter().enumerate() {
            let f = w.frame();
            let above = |x: i32, y: i32| ws[i + 1..].iter().any(|o| o.frame().contains(x, y));
            let colour = d.clients()[w.client].label.rgb();
            let edges = (f.x..f.right())
                .flat_map(|x| [(x, f.y), (x, f.bottom() - 1)])
                .chain((f.y..f.bottom()).flat_map(|y| [(f.x, y), (f.right() - 1, y)]));
            for (x, y) in edges {
                if !above(x, y) && !d.pointer_rect().contains(x, y) && full.bounds().contains(x, y) {
                    prop_assert_eq!(full.pixel(x, y), Some(colour), "frame of window {} at {},{}", i, x, y);
                }
            }
        }
    }
}

#[test]
fn partial_repaint_covers_the_pointer() {
    let mut d = Desktop::new(640, 480, vec![]);
    let mut c = Canvas::new(640, 480);
    let all = d.take_dirty();
    d.paint(&mut c, all, &mut Flat);
    d.pointer(
        Motion {
            dx: 50,
            dy: 50,
            buttons: 0,
        },
        0,
    );
    let dirty = d.take_dirty();
    d.paint(&mut c, dirty, &mut Flat);
    let full = painted(&d);
    for y in 0..480 {
        assert_eq!(c.row(y, 0, 640), full.row(y, 0, 640));
    }
}
