//! The global clipboard, as in Qubes: Ctrl+Shift+C takes the focused qube's clipboard into
//! it, Ctrl+Shift+V gives it to the focused qube once (if the policy allows that pair) and
//! wipes it. A qube gets clipboard data only from a paste in its own window, and its
//! clipboard is taken only after a copy in its window.

use crate::desktop::Desktop;
use alloc::vec::Vec;
use bulkhead_abi::gui::{CLIPBOARD_MAX, FromGui};

/// The global clipboard and the pairs of qubes that may not paste from one to the other.
#[derive(Debug, Default)]
pub struct Clipboard {
    data: Vec<u8>,
    /// The client the data came from.
    from: Option<usize>,
    /// The client asked for its clipboard and not answered yet.
    pending: Option<usize>,
    /// (from, to) pairs refused by the system description's policy.
    deny: Vec<(usize, usize)>,
}

/// What a paste should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Paste<'a> {
    /// Lend these bytes to `to` (the caller sends `ClipboardPaste`), then [`Clipboard::wipe`].
    Give {
        /// The client that pastes.
        to: usize,
        /// The clipboard.
        data: &'a [u8],
    },
    /// Ask the qrexec policy (`qubes.ClipboardPaste` from `from` to `to`) first; its verdict
    /// goes to [`Clipboard::decided`].
    Ask {
        /// Whose clipboard it is.
        from: usize,
        /// Who pastes.
        to: usize,
    },
    /// Nothing to do (no focus, an empty clipboard or a refused pair; the panel says which).
    Nothing,
}

impl Clipboard {
    /// An empty clipboard refusing the (from, to) pairs of `deny`.
    pub fn new(deny: Vec<(usize, usize)>) -> Clipboard {
        Clipboard {
            deny,
            ..Clipboard::default()
        }
    }

    /// The bytes held, and whence.
    pub fn content(&self) -> Option<(usize, &[u8])> {
        self.from.map(|f| (f, self.data.as_slice()))
    }

    /// Ctrl+Shift+C: asks the focused window's qube for its clipboard.
    pub fn copy(&mut self, d: &mut Desktop) {
        let Some((client, _)) = d.focus() else {
            d.set_status(format_args!("copy: no window has the focus"));
            return;
        };
        self.pending = Some(client);
        d.out.push((client, FromGui::ClipboardRequest));
    }

    /// Whether `client`'s clipboard answer is awaited (an answer nobody asked for is refused).
    pub fn awaits(&self, client: usize) -> bool {
        self.pending == Some(client)
    }

    /// `client` answered with `data` (already copied out of its pool and at most
    /// [`CLIPBOARD_MAX`] bytes), or with nothing.
    pub fn answered(&mut self, d: &mut Desktop, client: usize, data: Option<&[u8]>) {
        if !self.awaits(client) {
            return;
        }
        self.pending = None;
        let name = d.clients()[client].name.clone();
        match data {
            Some(bytes) if bytes.len() <= CLIPBOARD_MAX => {
                self.wipe();
                self.data.extend_from_slice(bytes);
                self.from = Some(client);
                d.set_status(format_args!(
                    "clipboard: {} bytes from {}",
                    bytes.len(),
                    name
                ));
            }
            Some(bytes) => d.set_status(format_args!(
                "copy refused: {} bytes from {}, at most {}",
                bytes.len(),
                name,
                CLIPBOARD_MAX
            )),
            None => d.set_status(format_args!("copy: {name} has nothing to copy")),
        }
    }

    /// Ctrl+Shift+V: what to give to the focused window's qube, after the system
    /// description's `clipboard_deny` and, with `ask_policy` (the system has an admin qube),
    /// the qrexec policy.
    pub fn paste<'a>(&'a mut self, d: &mut Desktop, ask_policy: bool) -> Paste<'a> {
        let Some((to, _)) = d.focus() else {
            d.set_status(format_args!("paste: no window has the focus"));
            return Paste::Nothing;
        };
        let Some(from) = self.from else {
            d.set_status(format_args!("paste: the clipboard is empty"));
            return Paste::Nothing;
        };
        if self.deny.contains(&(from, to)) {
            let (f, t) = (&d.clients()[from].name, &d.clients()[to].name);
            let (f, t) = (f.clone(), t.clone());
            d.set_status(format_args!("paste refused: {f} -> {t} (policy)"));
            return Paste::Nothing;
        }
        if ask_policy {
            let (f, t) = (d.clients()[from].name.clone(), d.clients()[to].name.clone());
            d.set_status(format_args!("paste {f} -> {t}: asking the policy"));
            return Paste::Ask { from, to };
        }
        self.give(d, from, to)
    }

    /// The policy's verdict on pasting `from`'s clipboard into `to`: the paste, if the
    /// clipboard still holds what `from` copied.
    pub fn decided<'a>(
        &'a mut self,
        d: &mut Desktop,
        from: usize,
        to: usize,
        allowed: bool,
    ) -> Paste<'a> {
        let names = (d.clients().get(from), d.clients().get(to));
        let (Some(f), Some(t)) = names else {
            return Paste::Nothing;
        };
        let (f, t) = (f.name.clone(), t.name.clone());
        if self.from != Some(from) {
            d.set_status(format_args!(
                "paste {f} -> {t}: the clipboard changed meanwhile"
            ));
            Paste::Nothing
        } else if !allowed {
            d.set_status(format_args!("paste refused: {f} -> {t} (policy)"));
            Paste::Nothing
        } else {
            self.give(d, from, to)
        }
    }

    fn give<'a>(&'a mut self, d: &mut Desktop, from: usize, to: usize) -> Paste<'a> {
        let (f, t) = (d.clients()[from].name.clone(), d.clients()[to].name.clone());
        d.set_status(format_args!(
            "pasted {} bytes from {f} into {t}; clipboard wiped",
            self.data.len()
        ));
        Paste::Give {
            to,
            data: &self.data,
        }
    }

    /// Empties the clipboard (after a paste, or when its source is gone).
    pub fn wipe(&mut self) {
        self.data.iter_mut().for_each(|b| *b = 0);
        self.data.clear();
        self.from = None;
    }

    /// `client`'s channel broke: an answer from it is no longer awaited.
    pub fn forget(&mut self, client: usize) {
        if self.pending == Some(client) {
            self.pending = None;
        }
    }
}
