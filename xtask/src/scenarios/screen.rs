//! The screen through QMP.
//!
//! - `qmp-screen`: the service qubes boot with a Bochs display and a QMP socket; once every
//!   qube is ready (the gui qube says ready after its first frame), a screendump parses at
//!   the gui qube's 1024x768 and shows its empty desktop (panel colour at the top, background
//!   below); QEMU takes keys, typed text, PS/2 mouse motion and clicks, and refuses absolute
//!   motion (no tablet) with its own reason. Kept as `target/bulkhead/screens/qmp-screen.png`.
//! - `boot-default-max` ([`desktop`]): the default system, the desktop, boots; every qube is
//!   ready, the gui qube places both AppVMs' terminal windows, and the screenshot
//!   (`screens/desktop.png`) shows each window's frame in its qube's label colour.

use super::{Scenario, boots, expect};
use crate::bundle;
use crate::qemu::qmp::{self, Button, Qmp};
use crate::qemu::{self, BOCHS_DISPLAY, Control, HvEvent, Line, Rect};
use anyhow::{Context, Result, bail};
use bulkhead_abi::label::Label;
use bulkhead_gui_compose::desktop::{BACKGROUND, PANEL_BACKGROUND};
use std::path::Path;
use std::time::Duration;

pub const QMP_SCREEN: Scenario = Scenario {
    name: "qmp-screen",
    about: "default system with a Bochs display: a QMP screendump parses; keys and PS/2 mouse taken",
    run,
};

/// The gui qube's screen mode.
const MODE: (u32, u32) = (1024, 768);

fn run() -> Result<String> {
    let a = boots::assemble("systems/tests/services.toml")?;
    let mut opts = boots::options(&a, "max", 90, "qmp-screen");
    opts.display_device = Some(BOCHS_DISPLAY.into());
    let socket = qmp::socket_path("qmp-screen");
    opts.qmp_socket = Some(socket.clone());
    let dir = bundle::out_dir().join("screens");
    std::fs::create_dir_all(&dir)?;
    let png = dir.join("qmp-screen.png");
    let mut checked = None;
    let out = qemu::boot(&opts, |e| {
        let ready = e.line.text.contains("qubes ready:");
        if ready {
            checked = Some(look_and_type(&socket, &png));
        }
        Control::stop_if(ready || matches!(e.hv, Some(HvEvent::Panic(_))))
    });
    let _ = std::fs::remove_file(&socket);
    let out = out?;
    boots::finished(&out)?;
    boots::check_all_ready(&out, &a.qube_names(), "boot: PVH")?;
    match checked {
        Some(result) => result,
        None => bail!("no `all N qubes ready` line"),
    }
}

/// Takes the screenshot, then sends keys and mouse events; says what it saw.
fn look_and_type(socket: &Path, png: &Path) -> Result<String> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let ppm = png.with_extension("ppm");
    let screen = qmp.screendump(&ppm)?;
    let _ = std::fs::remove_file(&ppm);
    screen.write_png(png)?;
    let size = (screen.width(), screen.height());
    expect(size == MODE, || {
        format!("the screen is {size:?}, the gui qube sets {MODE:?}")
    })?;
    let rgb = super::gui::rgb;
    let panel = screen.count_pixels(Rect::new(0, 0, 1024, 24), rgb(PANEL_BACKGROUND));
    let background = screen.count_pixels(Rect::new(0, 24, 1024, 744), rgb(BACKGROUND));
    // The panel: its colour but for the text; the desktop: empty but for the pointer.
    expect(
        panel > 1024 * 24 * 9 / 10 && background > 1024 * 744 - 200,
        || {
            format!(
                "not the gui qube's empty desktop: {panel} panel and {background} background pixels"
            )
        },
    )?;
    let (corner, same) = (rgb(BACKGROUND), background);
    qmp.send_key(&["ctrl", "alt", "f1"])?;
    qmp.type_text("ls -l ~/Docs\n")?;
    qmp.move_rel(10, -5)?;
    qmp.click(Button::Left)?;
    let refused = qmp.move_abs(10, 10, size).err().map(|e| e.to_string());
    let why = "Input handler not found for event type abs";
    expect(refused.as_deref().is_some_and(|r| r.contains(why)), || {
        format!("absolute motion without a tablet: expected QEMU's {why:?}, got {refused:?}")
    })?;
    Ok(format!(
        "{}x{} screendump ({same} pixels of the corner's {corner:?}) in {}; keys, text, \
         motion and a click taken",
        size.0,
        size.1,
        png.display()
    ))
}

/// The default system, the desktop: every qube ready, then both AppVMs' terminal windows
/// placed; the screenshot shows each window's frame (its top-left corner's border) in its
/// qube's label colour. Then `dispvm` typed into work's terminal starts the disposable, and
/// its terminal window appears framed in red.
pub fn desktop() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/default.toml")?;
    let mut opts = boots::options(&a, "max", 300, "boot-default-max");
    opts.display_device = Some(BOCHS_DISPLAY.into());
    let socket = qmp::socket_path("desktop");
    opts.qmp_socket = Some(socket.clone());
    let png = bundle::out_dir().join("screens").join("desktop.png");
    std::fs::create_dir_all(png.parent().context("screens folder")?)?;
    let mut windows: Vec<(String, i32, i32)> = Vec::new();
    let mut ready = false;
    let (mut shot, mut disp_shot) = (None, None);
    let disp_png = png.with_file_name("desktop-dispvm.png");
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        ready |= e.line.text.contains("qubes ready:");
        let line = Line::parse(&e.line.text);
        if line.source.as_deref() == Some("gui")
            && let Some(p) = super::gui::placement(&line.body).filter(|p| p.window == 0)
        {
            windows.push((p.qube, p.area.x, p.area.y));
        }
        if shot.is_none() && ready && windows.len() >= 2 {
            // The windows' first frames follow their placement.
            std::thread::sleep(std::time::Duration::from_millis(1500));
            shot = Some(qmp::save_screenshot(&socket, &png));
            // Then ask for a disposable from work's terminal: its window must appear.
            let work = windows.iter().find(|w| w.0 == "work").map(|w| (w.1, w.2));
            let typed = work.context("no window of work").and_then(|(x, y)| {
                let mut q = Qmp::connect(&socket, Duration::from_secs(10))?;
                q.move_rel(x + 8 - 512, y + 8 - 384)?;
                q.click(Button::Left)?;
                std::thread::sleep(Duration::from_millis(500));
                q.type_text("dispvm 'uname -n; sleep 20'\n")
            });
            if let Err(e) = typed {
                shot = Some(Err(e));
                return Control::Stop;
            }
        }
        let disp = windows.iter().any(|w| w.0 == "disp");
        if disp {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            disp_shot = Some(qmp::save_screenshot(&socket, &disp_png));
        }
        Control::stop_if(disp)
    });
    let _ = std::fs::remove_file(&socket);
    let out = out?;
    boots::finished(&out)?;
    let (exits, ms) = boots::check_all_ready(&out, &a.qube_names(), "boot: PVH")?;
    let screen = shot.context("the terminal windows were never placed")??;
    for (name, label) in [("work", Label::Blue), ("personal", Label::Yellow)] {
        let (_, x, y) = windows
            .iter()
            .find(|(n, ..)| n == name)
            .with_context(|| format!("no window of {name}: {windows:?}"))?;
        super::gui::frame_in_label_colour(&screen, name, (*x, *y), label, &png)?;
    }
    let screen =
        disp_shot.context("no window of the disposable after `dispvm` in work's terminal")??;
    let (_, x, y) = windows
        .iter()
        .find(|(n, ..)| n == "disp")
        .context("no disp window")?;
    super::gui::frame_in_label_colour(&screen, "disp", (*x, *y), Label::Red, &disp_png)?;
    Ok(format!(
        "all {} qubes ready ({exits} VM exits, {ms} ms guest time); work's and personal's terminal windows framed in blue and yellow ({}); `dispvm` in work's terminal started disp, its window framed in red",
        a.qube_names().len(),
        png.display()
    ))
}
