//! A Linux AppVM's terminal window (`systems/tests/appvm-gui.toml`): the agent draws a shell
//! on a pty into its surface and the gui qube shows it in a blue frame. Through QMP the test
//! clicks into the terminal, runs `echo hello-from-work`, copies (Ctrl+Shift+C: the last line
//! of output), pastes into the `personal` unikernel's window, copies personal's clipboard and
//! pastes it into the shell, then types `exit`: each step is checked in the qubes' logs, and
//! a screenshot shows the terminal's window is not blank.

use super::{Scenario, boots, expect};
use crate::bundle;
use crate::qemu::qmp::{self, Button, Qmp};
use crate::qemu::{self, BOCHS_DISPLAY, Control, HvEvent, Line};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

pub const APPVM_GUI: Scenario = Scenario {
    name: "appvm-gui",
    about: "a Linux AppVM's terminal window: typed into, copied from and pasted into through the gui qube",
    run,
};

/// Window 0 of `name` as (x, y, w, h), from a gui qube line's body.
fn placed(body: &str, name: &str) -> Option<(i32, i32, i32, i32)> {
    let p = super::gui::placement(body).filter(|p| p.qube == name && p.window == 0)?;
    Some((p.area.x, p.area.y, p.area.w, p.area.h))
}

/// What the agent says when the shell is gone (the last step). Its exit status is not
/// checked: the agent may reap the shell after the pty closed and then reports it unknown.
const CLOSED: &str = "closing the window";

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/tests/appvm-gui.toml")?;
    let mut opts = boots::options(&a, "max", 600, "appvm-gui");
    opts.display_device = Some(BOCHS_DISPLAY.into());
    let socket = qmp::socket_path("appvm-gui");
    opts.qmp_socket = Some(socket.clone());
    let png = bundle::out_dir().join("screens").join("appvm-gui.png");
    std::fs::create_dir_all(png.parent().context("screens folder")?)?;
    let (mut work, mut personal) = (None, None);
    let mut shown = false;
    let mut used = None;
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        let line = Line::parse(&e.line.text);
        match line.source.as_deref() {
            Some("gui") => {
                work = work.or(placed(&line.body, "work"));
                personal = personal.or(placed(&line.body, "personal"));
            }
            Some("work") => shown |= line.body.contains("agent: gui: terminal 0 shown at"),
            _ => {}
        }
        if used.is_none()
            && shown
            && let (Some(w), Some(p)) = (work, personal)
        {
            let r = use_it(&socket, &png, w, p);
            let failed = r.is_err();
            used = Some(r);
            return Control::stop_if(failed);
        }
        Control::stop_if(line.body.contains(CLOSED))
    });
    let _ = std::fs::remove_file(&socket);
    let out = out?;
    boots::finished(&out)?;
    let blank = used.context("the terminal window never showed")??;
    let has = |q: &str, what: &str| out.lines_from(q).iter().any(|l| l.contains(what));
    let work_log = || format!("{:?}", out.lines_from("work"));
    expect(
        has("work", "clipboard requested: 15 bytes from terminal 0"),
        || {
            format!(
                "work did not give `hello-from-work` as its clipboard: {}",
                work_log()
            )
        },
    )?;
    expect(has("personal", "pasted 15 bytes: hello-from-work"), || {
        format!(
            "personal did not get the terminal's output: {:?}",
            out.lines_from("personal")
        )
    })?;
    expect(has("work", "pasted 13 bytes into terminal 0"), || {
        format!("the shell did not get personal's clipboard: {}", work_log())
    })?;
    expect(has("work", CLOSED), || {
        format!("the shell did not exit on `exit`: {}", work_log())
    })?;
    Ok(format!(
        "typed into the terminal, its output copied into personal, personal's pasted back, \
         `exit` closed it; the window showed {blank} colours"
    ))
}

/// The QMP steps; returns how many colours the terminal's window showed after the command.
fn use_it(
    socket: &Path,
    png: &Path,
    work: (i32, i32, i32, i32),
    personal: (i32, i32, i32, i32),
) -> Result<usize> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
    let centre = |w: (i32, i32, i32, i32)| (w.0 + w.2 / 2, w.1 + w.3 / 2);
    let mut at = (512, 384);
    let mut click = |qmp: &mut Qmp, to: (i32, i32)| -> Result<()> {
        qmp.move_rel(to.0 - at.0, to.1 - at.1)?;
        at = to;
        pause(500);
        qmp.click(Button::Left)?;
        pause(500);
        Ok(())
    };
    click(&mut qmp, centre(work))?;
    qmp.type_text("echo hello-from-work\n")?;
    pause(2000);
    let ppm = png.with_extension("ppm");
    let screen = qmp.screendump(&ppm)?;
    let _ = std::fs::remove_file(&ppm);
    screen.write_png(png)?;
    let mut colours = std::collections::BTreeSet::new();
    for y in work.1..work.1 + work.3 {
        for x in work.0..work.0 + work.2 {
            colours.insert(screen.pixel(x as u32, y as u32));
        }
    }
    expect(colours.len() > 2, || {
        format!(
            "the terminal's window shows {} colours: nothing drawn (see {})",
            colours.len(),
            png.display()
        )
    })?;
    qmp.send_key(&["ctrl", "shift", "c"])?;
    pause(1000);
    click(&mut qmp, centre(personal))?;
    qmp.send_key(&["ctrl", "shift", "v"])?;
    pause(1000);
    qmp.send_key(&["ctrl", "shift", "c"])?;
    pause(1000);
    click(&mut qmp, centre(work))?;
    qmp.send_key(&["ctrl", "shift", "v"])?;
    pause(1000);
    // The pasted text is on the command line: run it (not found), then leave cleanly.
    qmp.type_text("\nexit 0\n")?;
    Ok(colours.len())
}
