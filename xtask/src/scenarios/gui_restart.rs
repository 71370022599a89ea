//! The gui qube restarted under load (`systems/tests/gui-restart.toml`): its first life
//! panics 1 s after both windows are shown (`crash-after-windows`, a test hook built only
//! into test images) while the
//! `noisy` client redraws its window without end; the hypervisor restarts it (its channels
//! are reset), and both clients, the Linux AppVM's terminal and the unikernel, open their
//! windows again. The screenshot after the restart shows both frames in their label colours.

use super::{Scenario, boots, expect};
use crate::bundle;
use crate::qemu::qmp;
use crate::qemu::{self, BOCHS_DISPLAY, Control, HvEvent, Line};
use anyhow::{Context, Result};
use bulkhead_abi::label::Label;
use std::time::Duration;

pub const GUI_RESTART: Scenario = Scenario {
    name: "gui-restart",
    about: "the gui qube crashes under load and is restarted; the AppVM's and the unikernel's windows come back",
    run,
};

/// The clients and their labels.
const CLIENTS: [(&str, Label); 2] = [("work", Label::Blue), ("noisy", Label::Purple)];

/// The qube and position of a window 0 a gui qube line's body places.
fn placed(body: &str) -> Option<(String, i32, i32)> {
    let p = super::gui::placement(body).filter(|p| p.window == 0)?;
    Some((p.qube, p.area.x, p.area.y))
}

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble_with_test_hooks("systems/tests/gui-restart.toml")?;
    let mut opts = boots::options(&a, "max", 300, "gui-restart");
    opts.display_device = Some(BOCHS_DISPLAY.into());
    let socket = qmp::socket_path("gui-restart");
    opts.qmp_socket = Some(socket.clone());
    let png = bundle::out_dir().join("screens").join("gui-restart.png");
    std::fs::create_dir_all(png.parent().context("screens folder")?)?;
    // Placements before and after the restart.
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut restarted = false;
    let mut shot = None;
    let out = qemu::boot(&opts, |e| {
        match &e.hv {
            Some(HvEvent::Panic(_)) => return Control::Stop,
            Some(HvEvent::Restarting { qube, .. }) if qube == "gui" => restarted = true,
            _ => {}
        }
        let line = Line::parse(&e.line.text);
        if line.source.as_deref() == Some("gui")
            && let Some(p) = placed(&line.body)
        {
            if restarted { &mut after } else { &mut before }.push(p);
        }
        let done = restarted && after.len() >= CLIENTS.len();
        if done {
            std::thread::sleep(Duration::from_millis(1500));
            shot = Some(qmp::save_screenshot(&socket, &png));
        }
        Control::stop_if(done)
    });
    let _ = std::fs::remove_file(&socket);
    let out = out?;
    boots::finished(&out)?;
    let gui = out.lines_from("gui");
    expect(
        gui.iter().any(|l| l.contains("crashing on purpose")),
        || format!("the gui qube did not crash on purpose: {gui:?}"),
    )?;
    expect(restarted, || {
        "the hypervisor did not restart the gui qube".into()
    })?;
    let names = |v: &[(String, i32, i32)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
    for (name, _) in CLIENTS {
        expect(names(&before).iter().any(|n| n == name), || {
            format!("{name} had no window before the restart: {before:?}")
        })?;
    }
    let screen = shot.context("the windows did not come back after the restart")??;
    for (name, label) in CLIENTS {
        let (_, x, y) = after
            .iter()
            .find(|p| p.0 == name)
            .with_context(|| format!("{name}'s window did not come back: {after:?}"))?;
        super::gui::frame_in_label_colour(&screen, name, (*x, *y), label, &png)?;
    }
    Ok(format!(
        "the gui qube crashed with {} windows and was restarted; both came back framed ({})",
        before.len(),
        png.display()
    ))
}
