//! The `ask` prompt and the policy's say on pastes.

use crate::canvas::Canvas;
use crate::clipboard::{Clipboard, Paste};
use crate::desktop::{Client, Desktop, Pixels};
use crate::keyboard::Key;
use crate::prompt::{MAX_QUEUED, Prompt};
use alloc::vec::Vec;
use bulkhead_abi::gui::FromGui;
use bulkhead_abi::label::Label;
use bulkhead_abi::proto::BulkRef;

struct Grey;

impl Pixels for Grey {
    fn row(&mut self, _: usize, _: &BulkRef, _: usize, dst: &mut [u32]) {
        dst.fill(0x0080_8080);
    }
}

fn desktop() -> Desktop {
    let clients = [("work", Label::Blue), ("personal", Label::Yellow)]
        .into_iter()
        .map(|(n, label)| Client {
            name: n.try_into().unwrap(),
            label,
            max_width: 300,
            max_height: 200,
        })
        .collect();
    let mut d = Desktop::new(800, 600, clients);
    let surface = BulkRef {
        offset: 0,
        len: 300 * 200 * 4,
        check: 0,
    };
    d.create(0, 0, 300, 200, surface);
    d.create(1, 0, 300, 200, surface);
    d.cycle_focus();
    d.out.clear();
    d
}

fn press(d: &mut Desktop, usage: u8) {
    d.key(
        Key {
            usage,
            pressed: true,
        },
        0,
    );
}

const ENTER: u8 = 0x28;
const ESCAPE: u8 = 0x29;
const RIGHT: u8 = 0x4f;
const LETTER_A: u8 = 0x04;

#[test]
fn a_prompt_takes_the_keys_and_answers_with_the_choice() {
    let mut d = desktop();
    d.ask(Prompt::new(
        7,
        "work",
        "qubes.Filecopy",
        "",
        &["personal", "@dispvm:disp"],
        Some(0),
    ));
    press(&mut d, LETTER_A);
    assert!(
        d.out.is_empty(),
        "a key pressed while a prompt is up reached a qube"
    );
    press(&mut d, RIGHT);
    press(&mut d, RIGHT);
    press(&mut d, RIGHT);
    press(&mut d, ENTER);
    assert_eq!(d.take_answers(), [(7, Some(1))]);
    // Gone: keys reach the focus again.
    press(&mut d, LETTER_A);
    assert!(matches!(d.out[..], [(_, FromGui::Key { .. })]));
}

#[test]
fn escape_refuses_and_prompts_queue_one_at_a_time() {
    let mut d = desktop();
    for ask in 0..MAX_QUEUED as u32 + 2 {
        d.ask(Prompt::new(
            ask,
            "work",
            "qubes.VMShell",
            "",
            &["personal"],
            None,
        ));
    }
    // The two that did not fit are refused at once.
    let refused = d.take_answers();
    assert_eq!(refused, [(8, None), (9, None)]);
    press(&mut d, ESCAPE);
    press(&mut d, ENTER);
    assert_eq!(d.take_answers(), [(0, None), (1, Some(0))]);
    d.clear_prompts();
    press(&mut d, ENTER);
    assert!(d.take_answers().is_empty());
}

#[test]
fn the_prompt_is_drawn_over_every_window_with_the_callers_name() {
    let mut d = desktop();
    let before = {
        let mut c = Canvas::new(800, 600);
        d.paint(&mut c, d.screen(), &mut Grey);
        c
    };
    d.ask(Prompt::new(
        1,
        "work",
        "qubes.Filecopy",
        "",
        &["personal"],
        None,
    ));
    let mut c = Canvas::new(800, 600);
    d.paint(&mut c, d.screen(), &mut Grey);
    let r = Prompt::rect(d.screen());
    // Its black frame and light inside, wherever windows were.
    assert_eq!(c.pixel(r.x, r.y), Some(0));
    assert_eq!(c.pixel(r.x + 5, r.y + 5), Some(0x00F2_F2F2));
    let changed = (r.y..r.bottom())
        .flat_map(|y| (r.x..r.x + r.w).map(move |x| (x, y)))
        .filter(|&(x, y)| c.pixel(x, y) != before.pixel(x, y))
        .count();
    assert!(
        changed > (r.w * r.h / 2) as usize,
        "only {changed} pixels changed"
    );
    // Outside it, nothing moved.
    assert_eq!(c.pixel(r.x - 1, r.y), before.pixel(r.x - 1, r.y));
}

#[test]
fn hostile_texts_are_cut_to_printable_ascii() {
    let long = "x".repeat(500);
    let p = Prompt::new(
        1,
        "wo\u{1b}[31mrk",
        &long,
        "a\nb",
        &["per\0sonal"],
        Some(200),
    );
    assert_eq!(p.source, "wo[31mrk");
    assert!(p.service.len() <= 2 * 40 + 1 && p.service.ends_with("+ab"));
    assert_eq!(p.candidates, ["personal"]);
    assert_eq!(p.selected, 0, "a default past the choices");
}

#[test]
fn a_paste_asks_the_policy_and_its_verdict_decides() {
    let mut d = desktop();
    let mut clip = Clipboard::new(Vec::new());
    // The focused qube copies; the other pastes.
    let focused = d.focus().unwrap().0;
    clip.copy(&mut d);
    clip.answered(&mut d, focused, Some(b"secret"));
    d.cycle_focus();
    let to = d.focus().unwrap().0;
    assert_ne!(to, focused);
    assert_eq!(clip.paste(&mut d, true), Paste::Ask { from: focused, to });
    assert_eq!(clip.decided(&mut d, focused, to, false), Paste::Nothing);
    assert!(d.status().contains("paste refused"));
    assert_eq!(
        clip.decided(&mut d, focused, to, true),
        Paste::Give {
            to,
            data: b"secret"
        }
    );
    // A verdict for a clipboard that has changed gives nothing.
    clip.wipe();
    assert_eq!(clip.decided(&mut d, focused, to, true), Paste::Nothing);
}
