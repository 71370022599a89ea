//! The GUI client against a gui qube played by the other end of a heap channel (side A) and
//! fake shells.

use super::{GuiClient, State};
use crate::channel::CountingBell;
use crate::channel::Transport;
use crate::channel::ring::{RingChannel, pair_with_bulk, reset_region};
use crate::terminal::pty::{Shell, Spawner};
use crate::terminal::render::{CELL_H, CELL_W};
use bulkhead_abi::gui::{
    CLIPBOARD_MAX, FromGui, GUI_SLOT_SIZE, GUI_VERSION, Rect, ToGui, modifiers,
};
use bulkhead_abi::proto::BulkRef;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

/// What a fake shell saw and will say.
#[derive(Debug, Default)]
struct Pipes {
    out: VecDeque<u8>,
    input: Vec<u8>,
    closed: bool,
    hung_up: bool,
    size: (u16, u16),
}

struct FakeShell(Rc<RefCell<Pipes>>);

impl Shell for FakeShell {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut p = self.0.borrow_mut();
        if p.out.is_empty() {
            return Ok(if p.closed { Some(0) } else { None });
        }
        let n = buf.len().min(p.out.len());
        for b in buf.iter_mut().take(n) {
            *b = p.out.pop_front().unwrap_or(0);
        }
        Ok(Some(n))
    }
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().input.extend_from_slice(data);
        Ok(data.len())
    }
    fn resize(&mut self, cols: u16, rows: u16, _: u16, _: u16) {
        self.0.borrow_mut().size = (cols, rows);
    }
    fn fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    fn pid(&self) -> u32 {
        7
    }
    fn hang_up(&mut self) {
        let mut p = self.0.borrow_mut();
        p.hung_up = true;
        p.closed = true;
    }
    fn exit_status(&mut self) -> Option<i32> {
        self.0.borrow().closed.then_some(0)
    }
}

#[derive(Clone, Default)]
struct FakeSpawner(Rc<RefCell<Vec<Rc<RefCell<Pipes>>>>>);

impl Spawner for FakeSpawner {
    fn spawn(&mut self, cols: u16, rows: u16, _: u16, _: u16) -> io::Result<Box<dyn Shell>> {
        let p = Rc::new(RefCell::new(Pipes {
            size: (cols, rows),
            ..Pipes::default()
        }));
        self.0.borrow_mut().push(p.clone());
        Ok(Box::new(FakeShell(p)))
    }
}

/// A message from the client, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    Hello(u16),
    Create {
        window: u16,
        width: u16,
        height: u16,
        surface: BulkRef,
    },
    Title(u16, Vec<u8>),
    Damage(u16, Rect),
    Destroy(u16),
    Clipboard(Option<BulkRef>),
    Returned(BulkRef),
}

type Ch = RingChannel<CountingBell>;

/// The gui qube's end of a channel for windows up to `w × h` (bulk sized as the system
/// compiler sizes it, times `surfaces` surfaces).
fn setup(w: u16, h: u16, surfaces: usize) -> (Ch, GuiClient<Ch, FakeSpawner>, FakeSpawner) {
    let pool =
        (usize::from(w) * usize::from(h) * 4 * surfaces + CLIPBOARD_MAX).next_multiple_of(4096);
    let (gui, client) = pair_with_bulk(65536, GUI_SLOT_SIZE, (2 * pool) as u32).unwrap();
    let spawner = FakeSpawner::default();
    (gui, GuiClient::new(client, spawner.clone()), spawner)
}

fn drain(gui: &mut Ch) -> Vec<Got> {
    let mut out = Vec::new();
    while let Some(m) = gui
        .try_recv_with(|b| {
            postcard::from_bytes::<ToGui<'_>>(b).map(|m| match m {
                ToGui::Hello { version } => Got::Hello(version),
                ToGui::Create {
                    window,
                    width,
                    height,
                    surface,
                } => Got::Create {
                    window,
                    width,
                    height,
                    surface,
                },
                ToGui::Title { window, title } => Got::Title(window, title.to_vec()),
                ToGui::Damage { window, rect } => Got::Damage(window, rect),
                ToGui::Destroy { window } => Got::Destroy(window),
                ToGui::Clipboard(r) => Got::Clipboard(r),
                ToGui::Returned(r) => Got::Returned(r),
            })
        })
        .unwrap()
    {
        out.push(m.unwrap());
    }
    out
}

fn send(gui: &mut Ch, m: FromGui) {
    assert!(gui.try_send(&m).unwrap());
}

/// Greets the client and returns the window it creates.
fn greet(
    gui: &mut Ch,
    client: &mut GuiClient<Ch, FakeSpawner>,
    w: u16,
    h: u16,
) -> (u16, u16, u16, BulkRef) {
    client.step();
    assert_eq!(drain(gui), vec![Got::Hello(GUI_VERSION)]);
    send(
        gui,
        FromGui::Hello {
            version: GUI_VERSION,
            max_width: w,
            max_height: h,
        },
    );
    client.step();
    let got = drain(gui);
    let Some(Got::Create {
        window,
        width,
        height,
        surface,
    }) = got.first().cloned()
    else {
        panic!("no Create: {got:?}");
    };
    assert_eq!(got[1], Got::Title(window, b"terminal".to_vec()));
    assert_eq!(got[2], Got::Damage(window, Rect::new(0, 0, width, height)));
    (window, width, height, surface)
}

/// Pixel `(x, y)` of a surface, as the gui qube copies it.
fn pixel(gui: &mut Ch, s: &BulkRef, stride: u16, x: usize, y: usize) -> u32 {
    let mut px = [0u8; 4];
    let at = (y * usize::from(stride) + x) * 4;
    gui.bulk()
        .unwrap()
        .read_unchecked_at(s, at, &mut px)
        .unwrap();
    u32::from_le_bytes(px)
}

#[test]
fn a_window_of_whole_cells_shows_the_shell_and_takes_keys() {
    let (mut gui, mut client, shells) = setup(640, 400, 1);
    let (window, width, height, surface) = greet(&mut gui, &mut client, 640, 400);
    assert_eq!((window, width, height), (0, 91 * 7, 400));
    assert_eq!(shells.0.borrow()[0].borrow().size, (91, 25));
    // The cursor block (the window has no focus yet: an outline) is in the surface.
    let fg = crate::terminal::render::DEFAULT_FG;
    assert_eq!(pixel(&mut gui, &surface, width, 0, 0), fg);
    send(
        &mut gui,
        FromGui::Configure {
            window,
            width,
            height,
        },
    );
    send(
        &mut gui,
        FromGui::Focus {
            window,
            focused: true,
        },
    );
    let shell = shells.0.borrow()[0].clone();
    shell.borrow_mut().out.extend(b"$ ");
    client.step();
    assert!(
        client
            .take_notes()
            .iter()
            .any(|n| n.contains("terminal 0 shown at 637x400, 91x25 cells"))
    );
    let damage = drain(&mut gui);
    assert_eq!(
        damage,
        vec![Got::Damage(
            0,
            Rect::new(0, 0, 3 * CELL_W as u16, CELL_H as u16)
        )]
    );
    // The focused cursor at (2, 0) is a block in the foreground colour.
    assert_eq!(pixel(&mut gui, &surface, width, 2 * CELL_W + 3, 8), fg);
    for (usage, mods) in [
        (0x0b, 0),
        (0x0c, modifiers::SHIFT),
        (0x28, 0),
        (0x06, modifiers::CTRL),
    ] {
        send(
            &mut gui,
            FromGui::Key {
                window,
                usage,
                pressed: true,
                modifiers: mods,
            },
        );
        send(
            &mut gui,
            FromGui::Key {
                window,
                usage,
                pressed: false,
                modifiers: mods,
            },
        );
    }
    // Keys for a window we do not have go nowhere.
    send(
        &mut gui,
        FromGui::Key {
            window: 5,
            usage: 0x04,
            pressed: true,
            modifiers: 0,
        },
    );
    client.step();
    assert_eq!(shell.borrow().input, b"hI\r\x03");
    // The gui qube shows less: the terminal takes the whole cells of it.
    send(
        &mut gui,
        FromGui::Configure {
            window,
            width: 300,
            height: 100,
        },
    );
    client.step();
    assert_eq!(shell.borrow().size, (42, 6));
    assert_eq!(client.windows[0].term.screen.grid().cols(), 42);
}

#[test]
fn the_clipboard_gives_the_selection_or_the_last_line_and_pastes_are_typed() {
    let (mut gui, mut client, shells) = setup(320, 160, 1);
    let (window, ..) = greet(&mut gui, &mut client, 320, 160);
    let shell = shells.0.borrow()[0].clone();
    shell
        .borrow_mut()
        .out
        .extend(b"$ echo hello world\r\nhello world\r\n$ ");
    client.step();
    drain(&mut gui);
    let copy = |gui: &mut Ch, client: &mut GuiClient<Ch, FakeSpawner>| {
        send(gui, FromGui::ClipboardRequest);
        client.step();
        let got = drain(gui);
        let Some(Got::Clipboard(Some(r))) =
            got.iter().find(|g| matches!(g, Got::Clipboard(_))).cloned()
        else {
            panic!("no clipboard: {got:?}");
        };
        let mut text = vec![0u8; r.len as usize];
        gui.bulk().unwrap().read(&r, &mut text).unwrap();
        send(gui, FromGui::Returned(r));
        String::from_utf8(text).unwrap()
    };
    assert_eq!(copy(&mut gui, &mut client), "hello world");
    // A selection from `echo` (row 0, column 2) to `hello` on row 1, made by dragging.
    for (x, y, b) in [
        (2 * 7 + 1, 3, 1),
        (30, 17, 1),
        (4 * 7, 17, 1),
        (4 * 7, 17, 0),
    ] {
        send(
            &mut gui,
            FromGui::Pointer {
                window,
                x,
                y,
                buttons: b,
            },
        );
    }
    client.step();
    assert_eq!(copy(&mut gui, &mut client), "echo hello world\nhello");
    client.step();
    assert_eq!(
        client.transport_mut().bulk().unwrap().loans(),
        1,
        "only the surface is lent"
    );
    // A paste from the gui qube's pool: typed as text, given back.
    let r = gui.bulk().unwrap().lend(b"ls\n\x1b[2Jrm -rf").unwrap();
    send(&mut gui, FromGui::ClipboardPaste(r));
    client.step();
    assert_eq!(shell.borrow().input, b"ls\r[2Jrm -rf");
    assert_eq!(drain(&mut gui), vec![Got::Returned(r)]);
    gui.bulk().unwrap().reclaim(&r).unwrap();
}

#[test]
fn closing_windows_and_exiting_shells() {
    let (mut gui, mut client, shells) = setup(320, 160, 2);
    let (window, ..) = greet(&mut gui, &mut client, 320, 160);
    // Ctrl+Shift+N: a second window (the pool holds two surfaces here).
    let n = modifiers::CTRL | modifiers::SHIFT;
    send(
        &mut gui,
        FromGui::Key {
            window,
            usage: 0x11,
            pressed: true,
            modifiers: n,
        },
    );
    client.step();
    let got = drain(&mut gui);
    let Some(Got::Create {
        window: second,
        surface: s2,
        ..
    }) = got.first().cloned()
    else {
        panic!("{got:?}");
    };
    assert_eq!(second, 1);
    assert_eq!(shells.0.borrow().len(), 2);
    // A third does not fit beside a clipboard's worth: refused with a note.
    send(
        &mut gui,
        FromGui::Key {
            window,
            usage: 0x11,
            pressed: true,
            modifiers: n,
        },
    );
    client.step();
    assert!(
        client
            .take_notes()
            .iter()
            .any(|n| n.starts_with("no new window"))
    );
    // The user closes the second: its shell is hung up, the window destroyed; once the
    // surface is back, it is gone.
    send(&mut gui, FromGui::Close { window: second });
    client.step();
    assert!(shells.0.borrow()[1].borrow().hung_up);
    assert_eq!(drain(&mut gui), vec![Got::Destroy(second)]);
    assert_eq!(client.windows.len(), 2);
    send(&mut gui, FromGui::Returned(s2));
    client.step();
    assert_eq!(client.windows.len(), 1);
    // The first shell exits: its window closes.
    shells.0.borrow()[0].borrow_mut().closed = true;
    client.step();
    assert_eq!(drain(&mut gui), vec![Got::Destroy(window)]);
    // A return of something never lent breaks the channel; the client stops until a reset.
    send(
        &mut gui,
        FromGui::Returned(BulkRef {
            offset: 0x10000,
            len: 5,
            check: 1,
        }),
    );
    client.step();
    assert_eq!(client.state, State::Stopped);
}

#[test]
fn a_restarted_gui_qube_gets_the_windows_again() {
    let (mut gui, mut client, shells) = setup(320, 160, 1);
    let (window, ..) = greet(&mut gui, &mut client, 320, 160);
    shells.0.borrow()[0].borrow_mut().out.extend(b"still here");
    reset_region(gui.region());
    assert!(gui.try_recv_with(|_| ()).is_err());
    client.step();
    assert_eq!(client.state, State::Greeting);
    let (again, ..) = greet(&mut gui, &mut client, 320, 160);
    assert_eq!(again, window);
    assert_eq!(shells.0.borrow().len(), 1, "the same shell");
    let row = client.windows[0].term.screen.grid().row_text(0, 0, 80);
    assert_eq!(row, "still here");
    // A gui qube of another version is not spoken to.
    let (mut gui, mut client, _) = setup(320, 160, 1);
    client.step();
    send(
        &mut gui,
        FromGui::Hello {
            version: GUI_VERSION + 1,
            max_width: 320,
            max_height: 160,
        },
    );
    client.step();
    assert_eq!(client.state, State::Stopped);
    drain(&mut gui);
    client.step();
    assert!(drain(&mut gui).is_empty());
}

fn from_gui() -> impl Strategy<Value = FromGui> {
    let r = (0u32..0x50000, 0u32..0x50000, any::<u64>()).prop_map(|(offset, len, check)| BulkRef {
        offset,
        len,
        check,
    });
    prop_oneof![
        (0u16..3, 0u16..700, 0u16..500).prop_map(|(v, w, h)| FromGui::Hello {
            version: v,
            max_width: w,
            max_height: h
        }),
        (0u16..10, any::<u16>(), any::<u16>()).prop_map(|(window, width, height)| {
            FromGui::Configure {
                window,
                width,
                height,
            }
        }),
        (0u16..10, any::<u8>(), any::<bool>(), any::<u8>()).prop_map(
            |(window, usage, pressed, modifiers)| FromGui::Key {
                window,
                usage,
                pressed,
                modifiers
            }
        ),
        (0u16..10, any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(window, x, y, buttons)| {
            FromGui::Pointer {
                window,
                x,
                y,
                buttons,
            }
        }),
        (0u16..10, any::<bool>()).prop_map(|(window, focused)| FromGui::Focus { window, focused }),
        (0u16..10).prop_map(|window| FromGui::Close { window }),
        Just(FromGui::ClipboardRequest),
        r.clone().prop_map(FromGui::ClipboardPaste),
        r.prop_map(FromGui::Returned),
        (0u16..10, any::<u8>()).prop_map(|(window, reason)| FromGui::Refused { window, reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A hostile gui qube (any messages, garbage, resets, shell output between them) never
    /// panics the client, which keeps at most `MAX_WINDOWS` windows and writes only its pool.
    #[test]
    fn a_hostile_gui_qube_cannot_upset_the_client(
        steps in proptest::collection::vec(prop_oneof![
            6 => from_gui().prop_map(Ok),
            1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Err(Some(b))),
            1 => Just(Err(None)),
        ], 1..40),
        output in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (mut gui, mut client, shells) = setup(200, 100, 2);
        send(&mut gui, FromGui::Hello { version: GUI_VERSION, max_width: 200, max_height: 100 });
        for step in steps {
            match step {
                Ok(m) => { let _ = gui.try_send(&m); }
                Err(Some(bytes)) => { let _ = gui.try_send_bytes(&bytes); }
                Err(None) => reset_region(gui.region()),
            }
            for s in shells.0.borrow().iter() {
                s.borrow_mut().out.extend(&output);
            }
            client.step();
            while let Ok(Some(())) = gui.try_recv_with(|_| ()) {}
            prop_assert!(client.windows.len() <= bulkhead_abi::gui::MAX_WINDOWS);
        }
    }
}
