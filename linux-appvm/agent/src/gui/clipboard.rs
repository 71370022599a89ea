//! The clipboard: what Ctrl+Shift+C gives (the focused window's selection, else its last
//! line of output), pastes typed into the focused window, and buffers coming back.

use super::{GuiClient, Out, TermWindow};
use crate::channel::{ChannelError, Transport};
use crate::terminal::pty::Spawner;
use bulkhead_abi::gui::CLIPBOARD_MAX;
use bulkhead_abi::proto::BulkRef;

impl<T: Transport, S: Spawner> GuiClient<T, S> {
    /// The window with the focus, else the only one.
    pub(super) fn target(&mut self) -> Option<&mut TermWindow> {
        let only = match self.windows.as_slice() {
            [w] => Some(w.id),
            _ => None,
        };
        let id = self.focus.or(only)?;
        self.window(id)
    }

    pub(super) fn clipboard_request(&mut self) -> Result<(), ChannelError> {
        let text = self.target().and_then(|w| w.clipboard().map(|c| (w.id, c)));
        let Some((id, (text, what))) = text else {
            self.notes
                .push("clipboard requested: nothing to give".into());
            self.outbox.push_back(Out::Clipboard(None));
            return Ok(());
        };
        let bytes = &text.as_bytes()[..text.len().min(CLIPBOARD_MAX)];
        let lent = match self.ch.bulk() {
            Some(b) => match b.lend(bytes) {
                Ok(r) => Some(r),
                Err(e @ ChannelError::Broken(_)) => return Err(e),
                Err(e) => {
                    self.notes
                        .push(format!("clipboard requested: cannot lend it: {e}"));
                    None
                }
            },
            None => None,
        };
        if let Some(r) = lent {
            self.clip_loans.push(r);
            self.notes.push(format!(
                "clipboard requested: {} bytes from terminal {id} ({what})",
                bytes.len()
            ));
        }
        self.outbox.push_back(Out::Clipboard(lent));
        Ok(())
    }

    pub(super) fn paste(&mut self, r: BulkRef) -> Result<(), ChannelError> {
        let Some(bulk) = self.ch.bulk() else {
            return Ok(());
        };
        bulk.check_peer_ref(&r)?;
        let mut data = vec![0u8; (r.len as usize).min(CLIPBOARD_MAX)];
        let read = if r.len as usize <= CLIPBOARD_MAX {
            bulk.read(&r, &mut data).map(|_| ())
        } else {
            Err(ChannelError::TooLarge {
                len: r.len as usize,
                max: CLIPBOARD_MAX,
            })
        };
        self.outbox.push_back(Out::Returned(r));
        match read {
            Ok(()) => match self.target() {
                Some(w) => {
                    w.pasted(&data);
                    let id = w.id;
                    self.notes
                        .push(format!("pasted {} bytes into terminal {id}", data.len()));
                }
                None => self
                    .notes
                    .push("a paste with no window to type it into".into()),
            },
            Err(e @ ChannelError::Broken(_)) => return Err(e),
            Err(e) => self.notes.push(format!("paste not taken: {e}")),
        }
        Ok(())
    }

    pub(super) fn returned(&mut self, r: BulkRef) -> Result<(), ChannelError> {
        let Some(bulk) = self.ch.bulk() else {
            return Ok(());
        };
        // Checked by the bulk area: exactly something we lent, or a breach.
        bulk.reclaim(&r)?;
        if let Some(i) = self.clip_loans.iter().position(|c| *c == r) {
            self.clip_loans.remove(i);
        } else if let Some(i) = self
            .windows
            .iter()
            .position(|w| w.closing && w.surface == Some(r))
        {
            self.remove_window(i);
        } else if let Some(w) = self.windows.iter_mut().find(|w| w.surface == Some(r)) {
            // The surface of a window it still shows: it let it go.
            w.surface = None;
            self.notes.push(format!(
                "the gui qube gave back the surface of terminal {} unasked",
                w.id
            ));
        }
        Ok(())
    }
}
