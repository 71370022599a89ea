//! The screen and input through QMP, the mechanics only (the GUI qube does not draw yet):
//! the default system boots with a Bochs display and a QMP socket; once every qube is ready,
//! one screendump parses at the size the display has before any guest sets a mode and shows
//! the firmware's boot messages; QEMU takes keys, typed text, PS/2 mouse motion and clicks,
//! and refuses absolute motion (no tablet) with its own reason. The screenshot is kept as
//! `target/bulkhead/screens/qmp-screen.png`.

use super::{Scenario, boots, expect};
use crate::bundle;
use crate::qemu::qmp::{self, Button, Qmp};
use crate::qemu::{self, BOCHS_DISPLAY, Control, HvEvent, Rect};
use anyhow::{Result, bail};
use std::path::Path;
use std::time::Duration;

pub const QMP_SCREEN: Scenario = Scenario {
    name: "qmp-screen",
    about: "default system with a Bochs display: a QMP screendump parses; keys and PS/2 mouse taken",
    run,
};

/// The Bochs display's size before any guest sets a mode: the one SeaBIOS's VGA BIOS for
/// it (which QEMU runs at boot, also before a PVH kernel) leaves.
const UNSET_MODE: (u32, u32) = (1280, 800);

fn run() -> Result<String> {
    let a = boots::assemble("systems/default.toml")?;
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
    expect(size == UNSET_MODE, || {
        format!("the screen is {size:?}, expected {UNSET_MODE:?} before any mode is set")
    })?;
    let corner = screen.pixel(0, 0);
    let same = screen.count_pixels(screen.bounds(), corner);
    // The firmware's banner ("SeaBIOS (version ...)") is on the top line: what QEMU dumped
    // is the display's contents, not an empty frame.
    let banner = Rect::new(0, 0, 160, 16);
    let background = screen.count_pixels(banner, corner);
    expect(background < 160 * 16, || {
        "the top line of the screen is empty: no firmware banner in the screendump".into()
    })?;
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
