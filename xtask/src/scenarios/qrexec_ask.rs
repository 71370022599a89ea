//! The qrexec policy's `ask` through the gui qube (`qrexec-ask`,
//! `systems/tests/qrexec-ask.toml`): a test client calls a test server at `@default`; the
//! admin qube asks the gui qube, which draws the prompt over everything; the test checks
//! the prompt is on the screen, allows the first call with Enter and refuses the second with
//! Escape, and the client checks each answer.

use super::{Scenario, boots, expect};
use crate::qemu::qmp::{self, Qmp};
use crate::qemu::{self, Control, HvEvent};
use anyhow::{Result, bail};
use std::time::Duration;

pub const QREXEC_ASK: Scenario = Scenario {
    name: "qrexec-ask",
    about: "an ask policy shows a prompt drawn by the gui qube; Enter allows the call, Escape refuses it",
    run: ask,
};

const SYSTEM: &str = "systems/tests/qrexec-ask.toml";
/// Where the prompt is drawn on the 1024x768 screen (`bulkhead_gui_compose::prompt`).
const PROMPT_CORNER: (u32, u32) = (202, 322);

fn ask() -> Result<String> {
    let a = boots::assemble(SYSTEM)?;
    let mut opts = boots::options(&a, "max", 90, "qrexec-ask");
    opts.display_device = Some(qemu::BOCHS_DISPLAY.into());
    let socket = qmp::socket_path("qrexec-ask");
    opts.qmp_socket = Some(socket.clone());
    let mut prompts = 0;
    let mut failure = None;
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        let from = e.line.source.as_deref();
        if from == Some("gui")
            && e.line.body.contains("gui: prompt ")
            && e.line.body.contains(": test.Echo from client")
        {
            prompts += 1;
            // Let it be drawn, look, answer.
            std::thread::sleep(Duration::from_millis(500));
            let key = if prompts == 1 { "ret" } else { "esc" };
            if let Err(err) = answer(&socket, key) {
                failure = Some(err);
                return Control::Stop;
            }
        }
        Control::stop_if(
            from == Some("client")
                && (e.line.body.contains("checks passed") || e.line.body.contains("FAILED")),
        )
    });
    let _ = std::fs::remove_file(&socket);
    let out = out?;
    if let Some(err) = failure {
        return Err(err);
    }
    boots::finished(&out)?;
    let client = out.lines_from("client");
    let admin = out.lines_from("admin");
    expect(
        client.iter().any(|l| l.contains("all 2 checks passed")),
        || format!("the client's checks: {client:?}"),
    )?;
    expect(prompts == 2, || {
        format!("{prompts} prompts shown, 2 expected")
    })?;
    for what in ["the user allowed it", "the user refused it"] {
        expect(
            admin.iter().filter(|l| l.contains(what)).count() == 1,
            || format!("the admin qube did not log {what:?} once: {admin:?}"),
        )?;
    }
    Ok("2 prompts drawn over the desktop; Enter allowed the call, Escape refused it".into())
}

/// Checks the prompt is on the screen, then presses `key`.
fn answer(socket: &std::path::Path, key: &str) -> Result<()> {
    let mut q = Qmp::connect(socket, Duration::from_secs(10))?;
    let ppm = crate::bundle::out_dir().join("qrexec-ask.ppm");
    let screen = q.screendump(&ppm)?;
    let _ = std::fs::remove_file(&ppm);
    let (x, y) = PROMPT_CORNER;
    let (frame, inside) = (screen.pixel(x, y), screen.pixel(x + 5, y + 5));
    if frame != [0, 0, 0] || inside != [0xF2, 0xF2, 0xF2] {
        bail!("no prompt on the screen: frame {frame:?}, inside {inside:?} at ({x}, {y})");
    }
    if key == "ret" {
        // For the docs and for a person checking by eye.
        let dir = crate::bundle::out_dir().join("screens");
        std::fs::create_dir_all(&dir)?;
        screen.write_png(&dir.join("qrexec-ask.png"))?;
    }
    q.send_key(&[key])
}
