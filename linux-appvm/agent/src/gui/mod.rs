//! The AppVM's windows: a client of the gui qube over the channel `bulkhead.gui=` names
//! (`bulkhead_abi::gui`), showing terminal windows.
//!
//! After the `Hello`s the client opens one terminal of the largest size the gui qube allows,
//! in whole cells. Each window's pixels live in a *surface* lent from our pool of the
//! channel's bulk area for the window's life; the terminal draws into a private buffer and
//! copies what changed into the surface, then says where with `Damage`. Keys go to the
//! window's shell; Ctrl+Shift+N opens another window when the pool has room for one (a
//! smaller one if the whole size does not fit, always keeping a clipboard's worth free).
//! Ctrl+Shift+C (the gui qube's `ClipboardRequest`) lends the focused window's selection,
//! made with the left button, or without one the last line of output; a paste is read,
//! given back, and typed into the focused window. A window closed by the user hangs up its
//! shell; a shell that exits closes its window. If the gui qube restarts (a reset), the
//! shells keep running and their windows are shown again after its `Hello`.
//!
//! Everything the gui qube sends is checked: a descriptor outside its pool or a return of
//! something we never lent breaks the channel until it is reset; unknown windows are ignored.

mod clipboard;
pub mod run;
pub mod window;
mod windows;

#[cfg(test)]
mod tests;

use crate::channel::{ChannelError, Transport};
use crate::terminal::keys::KeyState;
use crate::terminal::pty::Spawner;
use bulkhead_abi::gui::{FromGui, GUI_VERSION, ToGui, modifiers};
use bulkhead_abi::proto::BulkRef;
use std::collections::VecDeque;
use window::{Pumped, TermWindow};

/// The window title.
pub const TITLE: &[u8] = b"terminal";
/// Messages taken from the gui qube per pass.
const BUDGET: usize = 64;
/// The smallest extra window opened (rows).
const MIN_ROWS: usize = 4;
/// Usage of the N key: Ctrl+Shift+N opens a window.
const KEY_N: u8 = 0x11;

/// Where the conversation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Our `Hello` is out; waiting for the gui qube's.
    Greeting,
    /// Greeted: windows up to this size.
    Up { max_width: u16, max_height: u16 },
    /// The gui qube broke the protocol (or speaks another version): nothing more until the
    /// channel is reset.
    Stopped,
}

/// A message for the gui qube that waits for room in the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Hello,
    Create {
        window: u16,
        width: u16,
        height: u16,
        surface: BulkRef,
    },
    Title {
        window: u16,
    },
    Destroy {
        window: u16,
    },
    Clipboard(Option<BulkRef>),
    Returned(BulkRef),
}

impl Out {
    fn message(&self) -> ToGui<'static> {
        match *self {
            Out::Hello => ToGui::Hello {
                version: GUI_VERSION,
            },
            Out::Create {
                window,
                width,
                height,
                surface,
            } => ToGui::Create {
                window,
                width,
                height,
                surface,
            },
            Out::Title { window } => ToGui::Title {
                window,
                title: TITLE,
            },
            Out::Destroy { window } => ToGui::Destroy { window },
            Out::Clipboard(r) => ToGui::Clipboard(r),
            Out::Returned(r) => ToGui::Returned(r),
        }
    }
}

/// The GUI client: its channel, its windows and their shells.
pub struct GuiClient<T: Transport, S: Spawner> {
    ch: T,
    spawner: S,
    pub state: State,
    pub windows: Vec<TermWindow>,
    keys: KeyState,
    /// The window with the focus.
    focus: Option<u16>,
    /// Clipboard buffers lent and not yet returned.
    clip_loans: Vec<BulkRef>,
    outbox: VecDeque<Out>,
    /// The first window was opened (a restart of the gui qube shows the same ones again).
    opened: bool,
    notes: Vec<String>,
    scratch: Vec<u8>,
    /// Shells of removed windows not reaped yet.
    reaping: Vec<Box<dyn crate::terminal::pty::Shell>>,
}

impl<T: Transport, S: Spawner> GuiClient<T, S> {
    /// A client over `ch` starting shells with `spawner`; says hello at the first step.
    pub fn new(ch: T, spawner: S) -> Self {
        GuiClient {
            ch,
            spawner,
            state: State::Greeting,
            windows: Vec::new(),
            keys: KeyState::default(),
            focus: None,
            clip_loans: Vec::new(),
            outbox: VecDeque::from([Out::Hello]),
            opened: false,
            notes: Vec::new(),
            scratch: Vec::new(),
            reaping: Vec::new(),
        }
    }

    /// The channel (the event loop arms it).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.ch
    }

    /// Log lines since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Whether something waits for room (the ring, a shell's input): poll again soon.
    pub fn has_pending(&self) -> bool {
        !self.outbox.is_empty()
            || self
                .windows
                .iter()
                .any(|w| w.input_pending() || !w.damage.is_empty())
    }

    /// The descriptors of the shells' terminals.
    pub fn shell_fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        self.windows
            .iter()
            .filter(|w| !w.ended)
            .filter_map(|w| w.shell.fd())
    }

    /// One pass: the gui qube's messages, the shells' output and input, drawing, sending.
    /// Returns whether anything moved.
    pub fn step(&mut self) -> bool {
        let mut busy = false;
        match self.receive() {
            Ok(moved) => busy |= moved,
            Err(e) => self.channel_error(e),
        }
        let mut ended = Vec::new();
        for w in &mut self.windows {
            match w.pump_output() {
                Pumped::Idle => {}
                Pumped::Moved => busy = true,
                Pumped::Ended if !w.closing => ended.push(w.id),
                Pumped::Ended => {}
            }
            busy |= w.pump_input();
        }
        for id in ended {
            self.shell_ended(id);
        }
        self.reaping.retain_mut(|s| s.exit_status().is_none());
        if let Err(e) = self.draw().and_then(|()| self.flush()) {
            self.channel_error(e);
        }
        busy
    }

    /// Takes up to [`BUDGET`] messages.
    fn receive(&mut self) -> Result<bool, ChannelError> {
        let mut moved = false;
        for _ in 0..BUDGET {
            let got = self
                .ch
                .try_recv_with(|b| postcard::from_bytes::<FromGui>(b).ok())?;
            match got {
                None => break,
                Some(None) => return Err(ChannelError::Broken(crate::channel::Breach::Decode)),
                Some(Some(_)) if self.state == State::Stopped => {}
                Some(Some(m)) => self.handle(m)?,
            }
            moved = true;
        }
        Ok(moved)
    }

    fn window(&mut self, id: u16) -> Option<&mut TermWindow> {
        self.windows.iter_mut().find(|w| w.id == id && !w.closing)
    }

    fn handle(&mut self, m: FromGui) -> Result<(), ChannelError> {
        match m {
            FromGui::Hello { version, .. } if version != GUI_VERSION => {
                self.notes.push(format!(
                    "the gui qube speaks version {version}, not {GUI_VERSION}: stopped"
                ));
                self.state = State::Stopped;
            }
            FromGui::Hello {
                max_width,
                max_height,
                ..
            } => {
                if self.state != State::Greeting {
                    // Greeted twice: it lost our windows. Show them again.
                    self.forget_gui();
                }
                self.state = State::Up {
                    max_width,
                    max_height,
                };
                self.notes.push(format!(
                    "the gui qube allows windows up to {max_width}x{max_height}"
                ));
                if !self.opened {
                    self.opened = true;
                    self.open_window();
                } else {
                    let n = self.windows.len();
                    for i in 0..n {
                        self.show(i)?;
                    }
                    if n > 0 {
                        self.notes.push(format!("{n} terminal(s) shown again"));
                    }
                }
            }
            FromGui::Configure {
                window,
                width,
                height,
            } => {
                if let Some(w) = self.window(window) {
                    let (cols, rows) = w.configure(width, height);
                    if !std::mem::replace(&mut w.shown, true) {
                        let note = format!(
                            "terminal {window} shown at {width}x{height}, {cols}x{rows} cells"
                        );
                        self.notes.push(note);
                    }
                }
            }
            FromGui::Key {
                window,
                usage,
                pressed: true,
                modifiers: mods,
            } => {
                let app_cursor = match self.window(window) {
                    Some(w) => w.term.screen.modes.app_cursor,
                    None => return Ok(()),
                };
                if usage == KEY_N
                    && mods & (modifiers::CTRL | modifiers::SHIFT)
                        == modifiers::CTRL | modifiers::SHIFT
                {
                    self.open_window();
                    return Ok(());
                }
                let bytes = self.keys.press(usage, mods, app_cursor);
                if let Some(w) = self.window(window) {
                    w.typed(&bytes);
                }
            }
            FromGui::Key { .. } => {}
            FromGui::Pointer {
                window,
                x,
                y,
                buttons,
            } => {
                if let Some(w) = self.window(window) {
                    w.pointer(x, y, buttons);
                }
            }
            FromGui::Focus { window, focused } => {
                if let Some(w) = self.window(window) {
                    w.focused = focused;
                    if focused {
                        self.focus = Some(window);
                    } else if self.focus == Some(window) {
                        self.focus = None;
                    }
                }
            }
            FromGui::Close { window } => {
                if self.window(window).is_some() {
                    self.notes.push(format!(
                        "terminal {window}: closed by the user; hanging up its shell"
                    ));
                    self.close(window);
                }
            }
            FromGui::ClipboardRequest => self.clipboard_request()?,
            FromGui::ClipboardPaste(r) => self.paste(r)?,
            FromGui::Returned(r) => self.returned(r)?,
            FromGui::Refused { window, reason } => {
                self.notes.push(format!(
                    "the gui qube refused window {window} (reason {reason})"
                ));
                if let Some(i) = self
                    .windows
                    .iter()
                    .position(|w| w.id == window && !w.closing)
                {
                    self.windows[i].shell.hang_up();
                    let surface = self.remove_window(i);
                    // It never took the surface: take it back here.
                    if let (Some(s), Some(b)) = (surface, self.ch.bulk()) {
                        b.reclaim(&s)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A channel error: a reset starts the conversation again (the shells keep running), a
    /// breach stops it until a reset.
    pub fn channel_error(&mut self, e: ChannelError) {
        match e {
            ChannelError::Reset => {
                self.notes.push(
                    "the channel was reset (the gui qube restarted): saying hello again".into(),
                );
                self.forget_gui();
                self.outbox = VecDeque::from([Out::Hello]);
                self.state = State::Greeting;
            }
            e if self.state != State::Stopped => {
                self.notes.push(format!(
                    "the gui qube broke the channel: {e}; waiting for a reset"
                ));
                self.state = State::Stopped;
                self.outbox.clear();
            }
            _ => {}
        }
    }
}
