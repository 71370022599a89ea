//! The gui qube in QEMU (`systems/tests/gui.toml`): it owns a Bochs display and shows the
//! windows of seven client qubes, four of them hostile. The scenario waits until every
//! window the gui qube logs as placed is there and the liar's channel is closed, then
//! compares screenshots (QMP `screendump`) with the screen `bulkhead-gui-compose` paints for
//! the same windows, pixel for pixel: the panel, every frame in its qube's label colour,
//! every title bar in the gui qube's font, every client's checkerboard, the background.
//! Only the noisy client's own content (random by design) is left out. So a hostile client
//! that drew anywhere but inside its window, forged a frame or a title, or disturbed another
//! window would show as a difference.

use super::{Scenario, boots, expect};
use crate::bundle;
use crate::qemu::qmp::{self, Qmp};
use crate::qemu::{self, BOCHS_DISPLAY, Control, HvEvent, Image, Line};
use anyhow::{Context, Result, bail};
use bulkhead_abi::label::Label;
use bulkhead_abi::proto::BulkRef;
use bulkhead_gui_compose::canvas::Canvas;
use bulkhead_gui_compose::desktop::{BORDER, Client, Desktop, Pixels, TITLE_HEIGHT};
use bulkhead_gui_compose::geom::Rect;
use bulkhead_gui_compose::title::Title;
use std::path::Path;
use std::time::{Duration, Instant};

pub const GUI: Scenario = Scenario {
    name: "gui",
    about: "gui qube: windows of 7 qubes framed in their labels, hostile clients contained (screenshot compared)",
    run,
};

/// The clients as `gui.toml` lists them: name, label, largest window, checkerboard colour
/// (`None`: content not predictable), and each window's title as the client sends it last.
struct Fixture {
    name: &'static str,
    label: Label,
    max: (u16, u16),
    colour: Option<u32>,
    titles: &'static [(u16, &'static [u8])],
}

const CLIENTS: [Fixture; 7] = [
    Fixture {
        name: "work",
        label: Label::Blue,
        max: (400, 300),
        colour: Some(0x3465a4),
        titles: &[(0, b"terminal")],
    },
    Fixture {
        name: "personal",
        label: Label::Yellow,
        max: (640, 400),
        colour: Some(0xc4a000),
        titles: &[(0, b"notes")],
    },
    // Window 3 is the title attack's: its last title, over a zeroed surface.
    Fixture {
        name: "evil",
        label: Label::Red,
        max: (640, 400),
        colour: Some(0xa40000),
        titles: &[(0, b"[banking]"), (3, b"]]]]")],
    },
    Fixture {
        name: "flooder",
        label: Label::Orange,
        max: (640, 400),
        colour: Some(0xce5c00),
        titles: &[(0, b"terminal")],
    },
    Fixture {
        name: "noisy",
        label: Label::Purple,
        max: (640, 400),
        colour: None,
        titles: &[(0, b"terminal")],
    },
    Fixture {
        name: "liar",
        label: Label::Gray,
        max: (640, 400),
        colour: None,
        titles: &[],
    },
    Fixture {
        name: "refused",
        label: Label::Green,
        max: (640, 400),
        colour: Some(0x4e9a06),
        titles: &[(0, b"terminal")],
    },
];

/// Windows the gui qube must place: each client's window 0 but the liar's (its surface lies
/// outside its pool), and the attack windows 3 of evil and flooder.
const WINDOWS: usize = 8;
/// What the gui qube says when it closes the liar's channel.
const LIAR_CLOSED: &str = "channel liar.gui closed: channel broken by the peer: bulk buffer";

/// One placement as the gui qube logs it.
#[derive(Debug, PartialEq, Eq)]
struct Placed {
    client: usize,
    window: u16,
    area: Rect,
}

/// A window as the gui qube logs its placement: `[info] gui: NAME window ID at X,Y size WxH`
/// (the body of one of its console lines). Every GUI scenario and `bench --gui` read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The client qube.
    pub qube: String,
    /// The client's number for the window.
    pub window: u16,
    /// Where its content is on the screen.
    pub area: Rect,
}

/// The placement a gui qube line's body logs, if it is one.
pub fn placement(body: &str) -> Option<Placement> {
    let rest = body.strip_prefix("[info] gui: ")?;
    let (name, rest) = rest.split_once(" window ")?;
    let (id, rest) = rest.split_once(" at ")?;
    let (xy, size) = rest.split_once(" size ")?;
    let (x, y) = xy.split_once(',')?;
    let (w, h) = size.split_once('x')?;
    Some(Placement {
        qube: name.to_string(),
        window: id.parse().ok()?,
        area: Rect::new(
            x.parse().ok()?,
            y.parse().ok()?,
            w.parse().ok()?,
            h.parse().ok()?,
        ),
    })
}

/// `0x00RRGGBB` as the screenshot's `[r, g, b]`.
pub fn rgb(c: u32) -> [u8; 3] {
    [(c >> 16) as u8, (c >> 8) as u8, c as u8]
}

/// Checks that the top-left corner of the frame around the window whose content starts at
/// `(x, y)` (its border, above the title bar) is `label`'s colour on `screen`; `png` names
/// the screenshot in the message.
pub fn frame_in_label_colour(
    screen: &Image,
    name: &str,
    (x, y): (i32, i32),
    label: Label,
    png: &Path,
) -> Result<()> {
    let (fx, fy) = ((x - BORDER) as u32, (y - BORDER - TITLE_HEIGHT) as u32);
    let (got, want) = (screen.pixel(fx, fy), rgb(label.rgb()));
    expect(got == want, || {
        format!(
            "{name}'s frame at {fx},{fy} is {got:?}, not its label colour {want:?} (see {})",
            png.display()
        )
    })
}

/// A placement of one of [`CLIENTS`].
fn parse_placed(body: &str) -> Option<Placed> {
    let p = placement(body)?;
    Some(Placed {
        client: CLIENTS.iter().position(|c| c.name == p.qube)?,
        window: p.window,
        area: p.area,
    })
}

/// The clients' surfaces as the test knows them: `check` carries the stride, `offset` the
/// client's colour (0: a zeroed surface).
struct Known;

impl Pixels for Known {
    fn row(&mut self, _client: usize, s: &BulkRef, offset: usize, dst: &mut [u32]) {
        let stride = s.check as usize;
        let colour = s.offset;
        for (i, px) in dst.iter_mut().enumerate() {
            let p = offset / 4 + i;
            let (x, y) = ((p % stride) as u32, (p / stride) as u32);
            *px = if colour == 0 {
                0
            } else if (x / 8 + y / 8) % 2 == 0 {
                colour
            } else {
                colour ^ 0x0020_2020
            };
        }
    }
}

/// The screen the gui qube should show for these placements, and the areas not compared.
fn expected(placed: &[Placed]) -> Result<(Canvas, Vec<Rect>)> {
    let clients = CLIENTS
        .iter()
        .map(|c| Client {
            name: c.name.try_into().unwrap_or_default(),
            label: c.label,
            max_width: c.max.0,
            max_height: c.max.1,
        })
        .collect();
    let mut d = Desktop::new(1024, 768, clients);
    let mut masked = Vec::new();
    for p in placed {
        let f = &CLIENTS[p.client];
        let (w, h) = (p.area.w as u16, p.area.h as u16);
        let colour = if p.window == 0 {
            f.colour.unwrap_or(0)
        } else {
            0
        };
        let surface = BulkRef {
            offset: colour,
            len: u32::from(w) * u32::from(h) * 4,
            check: u64::from(w),
        };
        d.create(p.client, p.window, w, h, surface);
        let got = d.windows().last().map(|w| w.area);
        expect(got == Some(p.area), || {
            format!("the gui qube placed {p:?}; the same desktop on the host places it at {got:?}")
        })?;
        if f.colour.is_none() {
            masked.push(p.area);
        }
    }
    for (client, f) in CLIENTS.iter().enumerate() {
        for (id, title) in f.titles {
            d.set_title(client, *id, Title::from_bytes(title));
        }
    }
    let mut canvas = Canvas::new(1024, 768);
    d.paint(&mut canvas, d.screen(), &mut Known);
    Ok((canvas, masked))
}

/// Pixels of `screen` that differ from `want` outside `masked`, and the first few.
fn differences(screen: &Image, want: &Canvas, masked: &[Rect]) -> (usize, Vec<(u32, u32)>) {
    let mut n = 0;
    let mut first = Vec::new();
    for y in 0..want.height() {
        for x in 0..want.width() {
            if masked.iter().any(|m| m.contains(x as i32, y as i32)) {
                continue;
            }
            let w = want.pixel(x as i32, y as i32).unwrap_or(0);
            let [r, g, b] = screen.pixel(x, y);
            if (u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b)) != w {
                n += 1;
                if first.len() < 5 {
                    first.push((x, y));
                }
            }
        }
    }
    (n, first)
}

/// Takes screenshots until one matches `want` (the gui qube may still be painting) or 20 s
/// pass; keeps the last as a PNG.
fn compare(socket: &Path, png: &Path, want: &Canvas, masked: &[Rect]) -> Result<String> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let ppm = png.with_extension("ppm");
    let start = Instant::now();
    loop {
        let screen = qmp.screendump(&ppm)?;
        let size = (screen.width(), screen.height());
        let (n, first) = if size == (1024, 768) {
            differences(&screen, want, masked)
        } else {
            (usize::MAX, vec![])
        };
        if n == 0 || start.elapsed() > Duration::from_secs(20) {
            screen.write_png(png)?;
            let _ = std::fs::remove_file(&ppm);
            expect(size == (1024, 768), || {
                format!("the screen is {size:?}, the gui qube sets 1024x768")
            })?;
            expect(n == 0, || {
                format!(
                    "{n} pixels differ from the expected screen, first at {first:?} (see {})",
                    png.display()
                )
            })?;
            return Ok(format!(
                "{} windows match the expected screen pixel for pixel",
                WINDOWS
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn run() -> Result<String> {
    let a = boots::assemble("systems/tests/gui.toml")?;
    let mut opts = boots::options(&a, "max", 180, "gui");
    opts.display_device = Some(BOCHS_DISPLAY.into());
    let socket = qmp::socket_path("gui");
    opts.qmp_socket = Some(socket.clone());
    let dir = bundle::out_dir().join("screens");
    std::fs::create_dir_all(&dir)?;
    let png = dir.join("gui.png");
    let mut placed = Vec::new();
    let mut liar_closed = false;
    let mut checked = None;
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        let line = Line::parse(&e.line.text);
        if line.source.as_deref() == Some("gui") {
            if let Some(p) = parse_placed(&line.body) {
                placed.push(p);
            }
            liar_closed |= line.body.contains(LIAR_CLOSED);
        }
        if checked.is_none() && placed.len() >= WINDOWS && liar_closed {
            let r =
                expected(&placed).and_then(|(want, masked)| compare(&socket, &png, &want, &masked));
            let r = r.and_then(|s| use_it(&socket, &placed).map(|()| s));
            let failed = r.is_err();
            checked = Some(r);
            return Control::stop_if(failed);
        }
        // The last step of `use_it`: a paste the policy refuses, said on the panel.
        Control::stop_if(line.body.contains(DENIED))
    });
    let _ = std::fs::remove_file(&socket);
    let out = out?;
    boots::finished(&out)?;
    let gui = out.lines_from("gui");
    expect(!gui.iter().any(|l| l.contains("[error]")), || {
        format!("the gui qube reported an error: {gui:?}")
    })?;
    // The display's framebuffer (its prefetchable BAR0) is mapped write-combining, its
    // registers (BAR2) uncached.
    let display = out.lines.iter().find(|l| l.contains("-> qube gui:"));
    expect(
        display.is_some_and(|l| l.contains("2 BAR pieces mapped (1 write-combining)")),
        || format!("the display's BARs are not mapped as expected: {display:?}"),
    )?;
    // Every paste was the admin qube's decision, logged once.
    let admin = out.lines_from("admin");
    for decision in [
        "qubes.ClipboardPaste work -> personal: allowed",
        "qubes.ClipboardPaste personal -> evil: denied",
    ] {
        let n = admin.iter().filter(|l| l.contains(decision)).count();
        expect(n == 1, || {
            format!("the admin qube logged {decision:?} {n} times: {admin:?}")
        })?;
    }
    let refused = out.lines_from("refused");
    for reason in [
        "refused window 1: reason 2",
        "refused window 200: reason 1",
        "refused window 2: reason 3",
    ] {
        expect(refused.iter().any(|l| l.contains(reason)), || {
            format!("refused: no \"{reason}\" in {refused:?}")
        })?;
    }
    let summary = match checked {
        Some(r) => r.with_context(|| format!("placements {placed:?}"))?,
        None => bail!(
            "only {} of {WINDOWS} windows placed (liar's channel closed: {liar_closed})",
            placed.len()
        ),
    };
    let input = check_input(&out)?;
    Ok(format!("{summary}; {input}"))
}

/// The panel's message for the refused paste.
const DENIED: &str = "panel: paste refused: personal -> evil (policy)";

/// The centre of `client`'s window 0.
fn centre(placed: &[Placed], client: &str) -> Result<(i32, i32)> {
    let p = placed
        .iter()
        .find(|p| CLIENTS[p.client].name == client && p.window == 0)
        .with_context(|| format!("no window of {client}"))?;
    Ok((p.area.x + p.area.w / 2, p.area.y + p.area.h / 2))
}

/// Clicks into work's window, types two keys, copies work's clipboard, pastes it into
/// personal twice, copies personal's and pastes it into evil (refused). The pointer starts
/// in the middle of the screen; the gui qube moves it by the PS/2 counts, unaccelerated.
fn use_it(socket: &Path, placed: &[Placed]) -> Result<()> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let mut at = (512, 384);
    let pause = || std::thread::sleep(Duration::from_millis(700));
    let mut click_into = |qmp: &mut Qmp, client: &str| -> Result<()> {
        let (x, y) = centre(placed, client)?;
        qmp.move_rel(x - at.0, y - at.1)?;
        at = (x, y);
        pause();
        qmp.click(qmp::Button::Left)?;
        pause();
        Ok(())
    };
    click_into(&mut qmp, "work")?;
    qmp.type_text("ab")?;
    pause();
    qmp.send_key(&["ctrl", "shift", "c"])?;
    pause();
    click_into(&mut qmp, "personal")?;
    qmp.send_key(&["ctrl", "shift", "v"])?;
    pause();
    qmp.send_key(&["ctrl", "shift", "v"])?;
    pause();
    qmp.send_key(&["ctrl", "shift", "c"])?;
    pause();
    click_into(&mut qmp, "evil")?;
    qmp.send_key(&["ctrl", "shift", "v"])?;
    Ok(())
}

/// What the clicks and keys must have done, from the qubes' logs.
fn check_input(out: &qemu::BootOutcome) -> Result<String> {
    let has = |qube: &str, what: &str| {
        out.lines_from(qube)
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    expect(
        has("work", "key 0x04 down") == 1 && has("work", "key 0x05 down") == 1,
        || {
            format!(
                "work did not get a and b once each: {:?}",
                out.lines_from("work")
            )
        },
    )?;
    expect(has("personal", "gui: focus true") == 1, || {
        "personal never got the focus".into()
    })?;
    for other in ["personal", "evil", "flooder", "noisy", "refused"] {
        let typed = has(other, "gui: key 0x04") + has(other, "gui: key 0x05");
        expect(typed == 0, || {
            format!(
                "{other} got keys typed while work had the focus: {:?}",
                out.lines_from(other)
            )
        })?;
    }
    expect(has("work", "gui: key 0x06") == 0, || {
        "the copy hotkey's C reached work".into()
    })?;
    expect(has("work", "clipboard requested") == 1, || {
        "work was not asked for its clipboard".into()
    })?;
    expect(
        has("personal", "pasted 14 bytes: secret-of-work") == 1,
        || {
            format!(
                "personal did not get work's clipboard exactly once: {:?}",
                out.lines_from("personal")
            )
        },
    )?;
    expect(
        has("gui", "panel: paste: the clipboard is empty") == 1,
        || "the second paste was not refused as empty".into(),
    )?;
    expect(has("gui", DENIED) == 1, || {
        format!("no {DENIED:?} from the gui qube")
    })?;
    expect(has("evil", "pasted") == 0, || {
        "evil got personal's clipboard despite the policy".into()
    })?;
    Ok(
        "keys to the focused qube only; clipboard work -> personal once; personal -> evil refused"
            .into(),
    )
}
