//! The gui qube: owns the display and draws every qube's windows, each in a frame of its
//! qube's label colour with its name, which no qube can forge.
//!
//! It opens the display (`display`), the GUI channel of every client its configuration blob
//! names (`clients`), and then loops: take the clients' messages (bounded per client), apply
//! them to the desktop (`bulkhead-gui-compose`), paint what changed into the back buffer,
//! copy that to the screen, sleep until a channel event or the next input poll.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod bench;
mod clients;
mod display;
mod ps2;
mod qrexec;

use alloc::vec::Vec;
use bulkhead_abi::label::Label;
use bulkhead_freestanding as _;
use bulkhead_gui_compose::canvas::Canvas;
use bulkhead_gui_compose::clipboard::Clipboard;
use bulkhead_gui_compose::desktop::{Client, Desktop};
use bulkhead_gui_compose::keyboard::Hotkey;
use bulkhead_qubeconfig::{GuiServer, QubeConfig};
use bulkhead_rt::{Boot, error, info, warn};
use core::time::Duration;

bulkhead_rt::entry!(main);

/// Exit statuses.
mod status {
    /// The arguments are not understood.
    pub const BAD_ARGS: i32 = 2;
    /// The configuration blob is unreadable.
    pub const BAD_CONFIG: i32 = 5;
}

/// The screen mode without `mode=`.
const DEFAULT_MODE: (u16, u16) = (1024, 768);
/// How often the loop wakes without an event (input is polled).
const TICK: Duration = Duration::from_millis(10);

/// `mode=WxH`.
fn parse_mode(boot: &Boot) -> Option<(u16, u16)> {
    let Some(m) = boot.args().get("mode") else {
        return Some(DEFAULT_MODE);
    };
    let (w, h) = m.split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    ((320..=4096).contains(&w) && (200..=4096).contains(&h)).then_some((w, h))
}

/// The clients the blob names, for the desktop, and the clipboard pairs it refuses.
fn clients_of(server: Option<&GuiServer>) -> (Vec<Client>, Vec<(usize, usize)>) {
    let Some(s) = server else {
        return (Vec::new(), Vec::new());
    };
    let clients = s
        .clients
        .iter()
        .map(|c| Client {
            name: c.qube.as_str().try_into().unwrap_or_default(),
            label: Label::from_u8(c.label).unwrap_or(Label::Red),
            max_width: c.max_width,
            max_height: c.max_height,
        })
        .collect();
    let deny = s
        .clipboard_deny
        .iter()
        .map(|(a, b)| (usize::from(*a), usize::from(*b)))
        .collect();
    (clients, deny)
}

fn main(boot: &Boot) -> i32 {
    // A test hook: the first life panics 1 s after this many windows are shown
    // (`gui-restart`).
    let crash_after_windows = match boot.args().get("crash-after-windows") {
        None => None,
        Some(_) if !cfg!(feature = "test-hooks") => {
            error!("gui: crash-after-windows is a test hook, left out of this build; refusing");
            return status::BAD_ARGS;
        }
        Some(n) => match n.parse::<usize>() {
            Ok(n) if boot.restart_count() == 0 => Some(n),
            Ok(_) => None,
            Err(_) => {
                error!("gui: crash-after-windows takes a number of windows");
                return status::BAD_ARGS;
            }
        },
    };
    let mut crash_at = None;
    let Some((width, height)) = parse_mode(boot) else {
        error!(
            "gui: mode= takes WIDTHxHEIGHT, 320x200 to 4096x4096 (args \"{}\")",
            boot.args().as_str()
        );
        return status::BAD_ARGS;
    };
    let config = match boot.config() {
        [] => QubeConfig::empty(),
        blob => match QubeConfig::decode(blob) {
            Ok(c) => c,
            Err(e) => {
                error!("gui: {e}");
                return status::BAD_CONFIG;
            }
        },
    };
    let display = match display::Display::open(boot, width, height) {
        Ok(d) => d,
        Err(e) => {
            // Without a screen there is nothing to show windows on: the qube says why and
            // stays up idle (a restart would not bring a display), its clients unanswered.
            error!("gui: {e}; no windows are shown");
            bulkhead_rt::hypercall::ready();
            loop {
                bulkhead_rt::events::wait_forever();
            }
        }
    };
    let (clients, deny) = clients_of(config.gui.as_ref());
    let channels: Vec<(&str, (u16, u16))> = config
        .gui
        .iter()
        .flat_map(|s| s.clients.iter())
        .map(|c| (c.channel.as_str(), (c.max_width, c.max_height)))
        .collect();
    info!(
        "gui: display {}x{} on {}, {} client(s)",
        display.width(),
        display.height(),
        display.source(),
        clients.len()
    );
    let mut desktop = Desktop::new(display.width(), display.height(), clients);
    let mut canvas = Canvas::new(display.width(), display.height());
    let mut links = clients::Links::open(boot, &channels);
    let mut clipboard = Clipboard::new(deny);
    let mut qrexec = qrexec::Qrexec::open(boot, config.qrexec.as_deref());
    let mut input = match ps2::Ps2::open(boot) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!(
                "gui: no keyboard or mouse: {e} (give this qube io_ports = [\"0x60\", \"0x64\"])"
            );
            None
        }
    };
    let mut buttons = 0u8;
    let mut frames = 0u64;
    let mut bench = boot
        .args()
        .get("marks")
        .and_then(|n| n.parse().ok())
        .map(bench::Bench::new);
    let mut status: heapless::String<96> = heapless::String::new();
    loop {
        let mut paste = false;
        let mut key_to = None;
        if let Some(p) = input.as_mut() {
            p.poll(|event, mods| match event {
                ps2::Input::Key(k) => match desktop.key(k, mods) {
                    Some(Hotkey::Copy) if k.pressed => clipboard.copy(&mut desktop),
                    Some(Hotkey::Paste) if k.pressed => paste = true,
                    None if k.pressed => key_to = desktop.focus().map(|(c, _)| c),
                    _ => {}
                },
                ps2::Input::Mouse(m) => {
                    desktop.pointer(m, buttons);
                    buttons = m.buttons;
                }
            });
        }
        if paste && let Some(pair) = links.paste(&mut desktop, &mut clipboard, qrexec.asks()) {
            qrexec.ask_paste(&mut desktop, pair);
        }
        links.poll(&mut desktop, &mut clipboard);
        qrexec.poll(&mut desktop, &mut links, &mut clipboard);
        if desktop.status() != status.as_str() {
            status = desktop.status().try_into().unwrap_or_default();
            info!("gui: panel: {status}");
        }
        let damage = desktop.take_damaged();
        let dirty = desktop.take_dirty();
        if !dirty.is_empty() {
            desktop.paint(&mut canvas, dirty, &mut links);
            display.present(&canvas, dirty);
            frames += 1;
            if frames == 1 {
                info!("gui: first frame drawn");
                // Ready once the desktop shows.
                bulkhead_rt::hypercall::ready();
            }
        }
        if crash_at.is_none() && crash_after_windows.is_some_and(|n| desktop.windows().len() >= n) {
            crash_at = Some(bulkhead_rt::now_ns() + 1_000_000_000);
        }
        if crash_at.is_some_and(|t| bulkhead_rt::now_ns() >= t) {
            panic!("gui: crashing on purpose (crash-after-windows, a test)");
        }
        if let Some(b) = bench.as_mut() {
            // After the present: a mark that ends a span counts the frame in it.
            b.pass(desktop.windows().len(), key_to, damage, !dirty.is_empty());
        }
        if !links.prepare_wait() && !qrexec.prepare_wait() {
            bulkhead_rt::events::wait_event(Some(TICK));
        }
        links.finish_wait();
        qrexec.finish_wait();
    }
}
