//! GUI client modes of the testing qube, over its GUI channel (`guivm`):
//!
//! - `gui-client`: opens a `w=`×`h=` window titled `title=`, its surface a checkerboard of
//!   `colour=` (hex) and that colour ^ 0x202020 in 8-pixel squares, so a screenshot can be
//!   checked pixel by pixel. Each key press it receives lights the next 16×16 square of the
//!   top row white (input is visible on the screen) and is logged. It answers clipboard
//!   requests with `clip=` and logs what is pasted. If the gui qube restarts, it opens its
//!   window again.
//!   With `frames=N`, the key F (HID 0x09) makes it redraw its whole window N times in a
//!   new colour each, 2 ms apart (what `cargo xtask bench --gui` times).
//! - `gui-hostile`: first does what `attack=` says (`refused`: windows the gui qube must
//!   refuse; `title`: forged titles with control characters; `flood`: thousands of damage
//!   messages with rectangles out of range; `rewrite`: redraws its surface with noise without
//!   end; `outside`: a surface descriptor outside its pool, which breaks its own channel),
//!   then behaves as `gui-client`.

use alloc::vec;
use alloc::vec::Vec;
use bulkhead_abi::gui::{FromGui, GUI_VERSION, Rect, ToGui};
use bulkhead_abi::proto::BulkRef;
use bulkhead_qubeconfig::QubeConfig;
use bulkhead_rt::channel::{Channel, ChannelError};
use bulkhead_rt::{Args, Boot, error, info, warn};
use core::time::Duration;

/// Exit status: no GUI channel.
const EXIT_NO_GUI: i32 = 4;
/// Exit status: the channel failed.
const EXIT_CHANNEL: i32 = 3;

/// The window this client shows.
struct Window {
    w: u16,
    h: u16,
    colour: u32,
    surface: Option<BulkRef>,
    keys: u16,
    /// Full-window frames the key F asks for (0: F is an ordinary key).
    frames: u32,
}

fn arg<T: core::str::FromStr>(args: &Args<'_>, key: &str, default: T) -> T {
    args.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The checkerboard pixel at `(x, y)`.
pub fn pattern(colour: u32, x: u32, y: u32) -> u32 {
    if (x / 8 + y / 8) % 2 == 0 {
        colour
    } else {
        colour ^ 0x0020_2020
    }
}

fn open(boot: &Boot) -> Result<Channel, i32> {
    let config = QubeConfig::decode(boot.config()).ok();
    let Some(name) = config.as_ref().and_then(|c| c.gui_channel.as_ref()) else {
        error!("testing: no GUI channel: give this qube guivm = \"gui\"");
        return Err(EXIT_NO_GUI);
    };
    Channel::open_named(boot, name).map_err(|e| {
        error!("testing: cannot open {name}: {e}");
        EXIT_NO_GUI
    })
}

/// Sends `msg`, yielding while the ring is full.
fn send(ch: &mut Channel, msg: &ToGui<'_>) -> Result<(), ChannelError> {
    ch.send(msg)
}

/// Says hello and waits for the gui qube's; returns the largest window allowed.
fn hello(ch: &mut Channel) -> Result<(u16, u16), ChannelError> {
    send(
        ch,
        &ToGui::Hello {
            version: GUI_VERSION,
        },
    )?;
    loop {
        if let Some(m) = ch.try_recv::<FromGui>()? {
            match m {
                FromGui::Hello {
                    version,
                    max_width,
                    max_height,
                } if version == GUI_VERSION => {
                    return Ok((max_width, max_height));
                }
                other => warn!("testing: gui: before hello: {other:?}"),
            }
        }
        ch.wait_timeout(Some(Duration::from_millis(20)))?;
    }
}

/// Lends the surface, draws the checkerboard into it, opens the window and shows it all.
fn show(ch: &mut Channel, win: &mut Window, title: &[u8]) -> Result<(), ChannelError> {
    let (w, h) = (usize::from(win.w), usize::from(win.h));
    let Some(bulk) = ch.bulk() else {
        return Err(ChannelError::BadHeader);
    };
    let surface = bulk.lend(&vec![0u8; w * h * 4])?;
    let mut row = vec![0u8; w * 4];
    for y in 0..h {
        for (x, px) in row.chunks_exact_mut(4).enumerate() {
            px.copy_from_slice(&pattern(win.colour, x as u32, y as u32).to_le_bytes());
        }
        bulk.write_lent(&surface, y * w * 4, &row)?;
    }
    win.surface = Some(surface);
    send(
        ch,
        &ToGui::Create {
            window: 0,
            width: win.w,
            height: win.h,
            surface,
        },
    )?;
    send(ch, &ToGui::Title { window: 0, title })?;
    send(
        ch,
        &ToGui::Damage {
            window: 0,
            rect: Rect::new(0, 0, win.w, win.h),
        },
    )
}

/// Lights key square `n` (16×16, along the top row) white and says so.
fn light(ch: &mut Channel, win: &Window, n: u16) -> Result<(), ChannelError> {
    let (Some(s), Some(bulk)) = (win.surface, ch.bulk()) else {
        return Ok(());
    };
    let x0 = (u32::from(n) * 16) % u32::from(win.w.max(16));
    let white = [0xffu8; 16 * 4];
    for y in 0..16usize.min(usize::from(win.h)) {
        let at = (y * usize::from(win.w) + x0 as usize) * 4;
        let len = (16.min(u32::from(win.w) - x0) * 4) as usize;
        bulk.write_lent(&s, at, &white[..len])?;
    }
    send(
        ch,
        &ToGui::Damage {
            window: 0,
            rect: Rect::new(x0 as u16, 0, 16, 16),
        },
    )
}

/// Redraws the whole window `win.frames` times, a new colour each time.
fn redraw(ch: &mut Channel, win: &mut Window) -> Result<(), ChannelError> {
    let Some(s) = win.surface else {
        return Ok(());
    };
    let (w, h) = (usize::from(win.w), usize::from(win.h));
    let mut row = vec![0u8; w * 4];
    for n in 0..win.frames {
        let colour = 0x0010_2030u32.wrapping_mul(n + 1) & 0x00ff_ffff;
        for px in row.chunks_exact_mut(4) {
            px.copy_from_slice(&colour.to_le_bytes());
        }
        if let Some(bulk) = ch.bulk() {
            for y in 0..h {
                bulk.write_lent(&s, y * w * 4, &row)?;
            }
        }
        send(
            ch,
            &ToGui::Damage {
                window: 0,
                rect: Rect::new(0, 0, win.w, win.h),
            },
        )?;
        bulkhead_rt::sleep(Duration::from_millis(2));
    }
    info!("testing: gui: {} full-window frames drawn", win.frames);
    Ok(())
}

/// Handles what the gui qube sends, forever.
fn serve(
    ch: &mut Channel,
    win: &mut Window,
    clip: &[u8],
    title: &[u8],
    rewrite: bool,
) -> Result<(), ChannelError> {
    let mut round = 0u32;
    loop {
        let Some(m) = ch.try_recv::<FromGui>()? else {
            if rewrite && let (Some(s), Some(b)) = (win.surface, ch.bulk()) {
                round += 1;
                b.write_lent(&s, 0, &noise(round, s.len as usize))?;
                send(
                    ch,
                    &ToGui::Damage {
                        window: 0,
                        rect: Rect::new(0, 0, win.w, win.h),
                    },
                )?;
                ch.wait_timeout(Some(Duration::from_millis(5)))?;
            } else {
                ch.wait_timeout(Some(Duration::from_millis(100)))?;
            }
            continue;
        };
        match m {
            FromGui::Configure { width, height, .. } => {
                info!("testing: gui: window shown at {width}x{height}");
            }
            FromGui::Key {
                usage,
                pressed,
                modifiers,
                ..
            } => {
                info!(
                    "testing: gui: key {usage:#04x} {} mods {modifiers:#x}",
                    if pressed { "down" } else { "up" }
                );
                if pressed && usage == 0x09 && win.frames > 0 {
                    redraw(ch, win)?;
                } else if pressed {
                    light(ch, win, win.keys)?;
                    win.keys += 1;
                }
            }
            FromGui::Pointer { x, y, buttons, .. } => {
                info!("testing: gui: pointer {x},{y} buttons {buttons}");
            }
            FromGui::Focus { focused, .. } => info!("testing: gui: focus {focused}"),
            FromGui::ClipboardRequest => {
                let lent = ch.bulk().map(|b| b.lend(clip)).transpose()?;
                info!(
                    "testing: gui: clipboard requested, {} bytes given",
                    clip.len()
                );
                send(ch, &ToGui::Clipboard(lent))?;
            }
            FromGui::ClipboardPaste(r) => {
                let mut data = vec![0u8; (r.len as usize).min(256 * 1024)];
                if let Some(b) = ch.bulk() {
                    b.read(&r, &mut data)?;
                }
                let text = core::str::from_utf8(&data).unwrap_or("(not UTF-8)");
                info!("testing: gui: pasted {} bytes: {text}", data.len());
                send(ch, &ToGui::Returned(r))?;
            }
            FromGui::Returned(r) => {
                if let Some(b) = ch.bulk() {
                    b.reclaim(&r)?;
                }
            }
            FromGui::Refused { window, reason } => {
                info!("testing: gui: refused window {window}: reason {reason}");
            }
            FromGui::Close { .. } => info!("testing: gui: close asked"),
            FromGui::Hello { .. } => {
                // The gui qube restarted (its hello again): show the window again.
                info!("testing: gui: the gui qube said hello again; showing the window again");
                if let Some(b) = ch.bulk() {
                    b.reset();
                }
                send(
                    ch,
                    &ToGui::Hello {
                        version: GUI_VERSION,
                    },
                )?;
                show(ch, win, title)?;
            }
        }
    }
}

/// `gui-client` (and `gui-hostile` after its attack).
pub fn client(boot: &Boot, args: &Args<'_>) -> i32 {
    let mut ch = match open(boot) {
        Ok(c) => c,
        Err(s) => return s,
    };
    let title = args.get("title").unwrap_or("terminal").as_bytes();
    let clip = args.get("clip").unwrap_or("hello from testing").as_bytes();
    let colour =
        u32::from_str_radix(args.get("colour").unwrap_or("336699"), 16).unwrap_or(0x336699);
    let mut win = Window {
        w: arg(args, "w", 320),
        h: arg(args, "h", 200),
        colour,
        surface: None,
        keys: 0,
        frames: arg(args, "frames", 0),
    };
    let attack = args.get("attack");
    loop {
        let run = (|| {
            let (mw, mh) = hello(&mut ch)?;
            (win.w, win.h) = (win.w.min(mw), win.h.min(mh));
            if let Some(a) = attack {
                hostile(&mut ch, a, &win)?;
            }
            show(&mut ch, &mut win, title)?;
            info!("testing: gui: window 0 of {}x{} opened", win.w, win.h);
            serve(&mut ch, &mut win, clip, title, attack == Some("rewrite"))
        })();
        match run {
            Err(ChannelError::Reset) => {
                info!("testing: gui: channel reset (the gui qube restarted); opening again");
                win.surface = None;
            }
            Err(e) => {
                error!("testing: gui: channel failed: {e}");
                return EXIT_CHANNEL;
            }
            Ok(()) => return 0,
        }
    }
}

/// What `gui-hostile` does before it behaves.
fn hostile(ch: &mut Channel, attack: &str, win: &Window) -> Result<(), ChannelError> {
    info!("testing: gui: attack {attack}");
    let Some(bulk) = ch.bulk() else {
        return Ok(());
    };
    let small = bulk.lend(&[0u8; 4096])?;
    // A 32x32 window over that zeroed page: what the title and flood attacks aim at.
    let small_window = ToGui::Create {
        window: 3,
        width: 32,
        height: 32,
        surface: small,
    };
    match attack {
        "refused" => {
            for (id, w, h) in [(1u16, 4000u16, 4000u16), (200, 10, 10), (2, 0, 5)] {
                send(
                    ch,
                    &ToGui::Create {
                        window: id,
                        width: w,
                        height: h,
                        surface: small,
                    },
                )?;
            }
        }
        "title" => {
            send(ch, &small_window)?;
            for t in [
                &b"[banking] \x1b[2J\r\n\x00secure"[..],
                &[0xff; 200][..],
                b"]]]]",
            ] {
                send(
                    ch,
                    &ToGui::Title {
                        window: 3,
                        title: t,
                    },
                )?;
            }
        }
        "flood" => {
            send(ch, &small_window)?;
            for i in 0..5000u16 {
                let rect = Rect::new(i.wrapping_mul(7919), 65535 - i, u16::MAX, u16::MAX);
                send(
                    ch,
                    &ToGui::Damage {
                        window: 3 + i % 2,
                        rect,
                    },
                )?;
            }
        }
        "outside" => {
            let outside = BulkRef {
                offset: 0x7fff_f000,
                len: 1 << 20,
                check: 0,
            };
            send(
                ch,
                &ToGui::Create {
                    window: 4,
                    width: 256,
                    height: 256,
                    surface: outside,
                },
            )?;
            let _ = win;
        }
        _ => {}
    }
    Ok(())
}

/// `gui-hostile attack=rewrite`'s noise: the whole surface is rewritten again and again
/// while the gui qube copies it (only its own window can change).
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
