//! The GUI channels: one per client qube (from this qube's configuration blob), each with a
//! bulk area holding the client's window surfaces. Messages are taken a bounded number per
//! pass, checked and applied by `bulkhead-gui-compose`; a client that breaks its channel
//! loses its windows and nothing else.

use alloc::vec;
use alloc::vec::Vec;
use bulkhead_abi::gui::{BYTES_PER_PIXEL, CLIPBOARD_MAX, FromGui, GUI_VERSION, ToGui};
use bulkhead_abi::proto::BulkRef;
use bulkhead_gui_compose::client::{Needs, handle};
use bulkhead_gui_compose::clipboard::{Clipboard, Paste};
use bulkhead_gui_compose::desktop::{Desktop, Pixels};
use bulkhead_rt::channel::{Breach, Channel, ChannelError};
use bulkhead_rt::{Boot, error, info, warn};

/// Messages taken from one client per pass: a flooding client cannot hold the others up.
const BUDGET: usize = 64;
/// What a surface that cannot be read shows.
const UNREADABLE: u32 = 0x0040_0040;

/// One client's channel.
pub struct Link {
    channel: Option<Channel>,
    /// It said hello with our version.
    greeted: bool,
    max: (u16, u16),
    /// Messages to it that found its ring full (dropped).
    pub dropped: u64,
}

/// Every client's channel, by the index the desktop knows it by.
pub struct Links {
    links: Vec<Link>,
    /// Scratch for one row of pixels.
    row: Vec<u8>,
}

impl Links {
    /// Opens each client's channel; one that does not open is logged and left out.
    pub fn open(boot: &Boot, clients: &[(&str, (u16, u16))]) -> Links {
        let links = clients
            .iter()
            .map(|(name, max)| {
                let channel = match Channel::open_named(boot, name).map(|mut c| {
                    let has_bulk = c.bulk().is_some();
                    (c, has_bulk)
                }) {
                    Ok((c, true)) => Some(c),
                    Ok(_) => {
                        error!("gui: channel {name} has no bulk area; its qube gets no windows");
                        None
                    }
                    Err(e) => {
                        error!("gui: channel {name}: {e}");
                        None
                    }
                };
                Link {
                    channel,
                    greeted: false,
                    max: *max,
                    dropped: 0,
                }
            })
            .collect();
        let mut links = Links {
            links,
            row: Vec::new(),
        };
        for i in 0..links.links.len() {
            links.hello(i);
        }
        links
    }

    /// Sends our hello to client `i`.
    fn hello(&mut self, i: usize) {
        let (w, h) = self.links[i].max;
        let msg = FromGui::Hello {
            version: GUI_VERSION,
            max_width: w,
            max_height: h,
        };
        self.send(i, &msg);
    }

    /// Sends `msg` to client `i` if its ring has room (a full ring drops it: a client that
    /// stops reading cannot stop the gui qube).
    pub fn send(&mut self, i: usize, msg: &FromGui) {
        let Some(link) = self.links.get_mut(i) else {
            return;
        };
        let Some(ch) = link.channel.as_mut() else {
            return;
        };
        match ch.try_send(msg) {
            Ok(true) => {}
            Ok(false) => link.dropped += 1,
            Err(e) => self.failed(i, e, None),
        }
    }

    /// Client `i`'s channel failed: a reset (the client restarted) starts it afresh, a
    /// breach ends it; either way its windows go.
    fn failed(&mut self, i: usize, e: ChannelError, desktop: Option<&mut Desktop>) {
        if let Some(d) = desktop {
            d.drop_client_windows(i);
        }
        let link = &mut self.links[i];
        link.greeted = false;
        match e {
            ChannelError::Reset => {
                info!("gui: client {i} restarted; waiting for its hello");
                self.hello(i);
            }
            e => {
                let name = link.channel.as_ref().map(|c| c.name()).unwrap_or("?");
                warn!("gui: channel {name} closed: {e}");
                link.channel = None;
            }
        }
    }

    /// Takes up to [`BUDGET`] messages from every client and applies them.
    pub fn poll(&mut self, d: &mut Desktop, clipboard: &mut Clipboard) {
        for i in 0..self.links.len() {
            for _ in 0..BUDGET {
                match self.take(i, d, clipboard) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        self.failed(i, e, Some(d));
                        clipboard.forget(i);
                        break;
                    }
                }
            }
        }
        let out = core::mem::take(&mut d.out);
        for (i, msg) in &out {
            if let FromGui::Configure { window, .. } = msg
                && let Some(w) = d
                    .windows()
                    .iter()
                    .find(|w| w.client == *i && w.id == *window)
            {
                let a = w.area;
                let name = &d.clients()[*i].name;
                info!(
                    "gui: {name} window {window} at {},{} size {}x{}",
                    a.x, a.y, a.w, a.h
                );
            }
            self.send(*i, msg);
        }
    }

    /// One message from client `i`, if there is one.
    fn take(
        &mut self,
        i: usize,
        d: &mut Desktop,
        clipboard: &mut Clipboard,
    ) -> Result<bool, ChannelError> {
        let link = &mut self.links[i];
        let Some(ch) = link.channel.as_mut() else {
            return Ok(false);
        };
        let greeted = link.greeted;
        let decode = ChannelError::Broken(Breach::Decode);
        // The pool's size, to check a new window's surface lies inside it before the desktop
        // keeps it (a descriptor outside is a breach, as for any bulk read).
        let pool = ch.bulk().map_or(0, |b| b.pool_size());
        let got = ch.try_recv_with(|bytes| match postcard::from_bytes::<ToGui<'_>>(bytes) {
            Ok(ToGui::Create { surface, .. }) if greeted && !surface_inside(&surface, pool) => {
                Err(ChannelError::Broken(Breach::BulkOutOfRange {
                    offset: surface.offset,
                    len: surface.len,
                    pool: pool as u32,
                }))
            }
            Ok(ToGui::Hello { version }) if version == GUI_VERSION => Ok(None),
            Ok(ToGui::Hello { version }) => {
                error!(
                    "gui: client {i} speaks GUI protocol version {version}, this qube {GUI_VERSION}"
                );
                Err(decode)
            }
            // Nothing before the hello.
            Ok(_) if !greeted => Err(decode),
            Ok(msg) => Ok(Some(handle(d, i, &msg))),
            Err(_) => Err(decode),
        })?;
        let needs = match got {
            None => return Ok(false),
            Some(Err(e)) => return Err(e),
            Some(Ok(None)) => {
                link.greeted = true;
                return Ok(true);
            }
            Some(Ok(Some(needs))) => needs,
        };
        match needs {
            Needs::Nothing => {}
            Needs::WrongVersion(_) => return Err(decode),
            Needs::Reclaim(r) => {
                if let Some(b) = ch.bulk() {
                    b.reclaim(&r)?;
                }
            }
            Needs::Clipboard(r) => self.clipboard_answer(i, r, d, clipboard)?,
        }
        Ok(true)
    }

    /// Client `i` answered a clipboard request (or sent clipboard data unasked: refused).
    fn clipboard_answer(
        &mut self,
        i: usize,
        r: Option<BulkRef>,
        d: &mut Desktop,
        clipboard: &mut Clipboard,
    ) -> Result<(), ChannelError> {
        let Some(ch) = self.links[i].channel.as_mut() else {
            return Ok(());
        };
        let Some(r) = r else {
            clipboard.answered(d, i, None);
            return Ok(());
        };
        let Some(bulk) = ch.bulk() else {
            return Ok(());
        };
        if !clipboard.awaits(i) || r.len as usize > CLIPBOARD_MAX {
            // Unasked or too large: not read, given straight back.
            bulk.check_peer_ref(&r)?;
            warn!(
                "gui: client {i} sent clipboard data nobody asked for, or too much: {} bytes",
                r.len
            );
        } else {
            let mut data = vec![0u8; r.len as usize];
            bulk.read(&r, &mut data)?;
            clipboard.answered(d, i, Some(&data));
            data.fill(0);
        }
        self.send(i, &FromGui::Returned(r));
        Ok(())
    }

    /// Ctrl+Shift+V: lends the clipboard to the focused client, or returns the (from, to)
    /// pair the qrexec policy must decide first (`ask_policy`).
    pub fn paste(
        &mut self,
        d: &mut Desktop,
        clipboard: &mut Clipboard,
        ask_policy: bool,
    ) -> Option<(usize, usize)> {
        match clipboard.paste(d, ask_policy) {
            Paste::Give { to, data } => {
                if self.give_clipboard(to, data) {
                    clipboard.wipe();
                }
                None
            }
            Paste::Ask { from, to } => Some((from, to)),
            Paste::Nothing => None,
        }
    }

    /// The qrexec policy's verdict on a paste [`Links::paste`] asked about.
    pub fn pasted(
        &mut self,
        d: &mut Desktop,
        clipboard: &mut Clipboard,
        (from, to): (usize, usize),
        allowed: bool,
    ) {
        if let Paste::Give { to, data } = clipboard.decided(d, from, to, allowed)
            && self.give_clipboard(to, data)
        {
            clipboard.wipe();
        }
    }

    /// Lends `data` to client `to` as a paste; true when it was sent.
    fn give_clipboard(&mut self, to: usize, data: &[u8]) -> bool {
        let lent = self.links[to]
            .channel
            .as_mut()
            .and_then(|c| c.bulk())
            .map(|b| b.lend(data));
        match lent {
            Some(Ok(r)) => {
                self.send(to, &FromGui::ClipboardPaste(r));
                true
            }
            Some(Err(e)) => {
                warn!("gui: paste into client {to} failed: {e}");
                false
            }
            None => false,
        }
    }

    /// Marks every channel as about to sleep; true if a message is already waiting.
    pub fn prepare_wait(&mut self) -> bool {
        let mut ready = false;
        for l in &mut self.links {
            if let Some(c) = l.channel.as_mut() {
                ready |= c.prepare_wait().unwrap_or(true);
            }
        }
        ready
    }

    /// After a sleep.
    pub fn finish_wait(&mut self) {
        for l in &mut self.links {
            if let Some(c) = l.channel.as_mut() {
                c.finish_wait();
            }
        }
    }
}

/// Whether `r` lies inside a pool of `pool` bytes, page-aligned.
fn surface_inside(r: &BulkRef, pool: usize) -> bool {
    let (offset, len) = (r.offset as usize, r.len as usize);
    offset.is_multiple_of(4096) && offset.checked_add(len).is_some_and(|e| e <= pool)
}

impl Pixels for Links {
    fn row(&mut self, client: usize, surface: &BulkRef, offset: usize, dst: &mut [u32]) {
        self.row.resize(dst.len() * BYTES_PER_PIXEL, 0);
        let read = self
            .links
            .get_mut(client)
            .and_then(|l| l.channel.as_mut())
            .and_then(|c| c.bulk())
            .map(|b| b.read_unchecked_at(surface, offset, &mut self.row));
        match read {
            Some(Ok(())) => {
                for (px, bytes) in dst.iter_mut().zip(self.row.chunks_exact(BYTES_PER_PIXEL)) {
                    *px = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0]);
                }
            }
            // The breach (if any) is the bulk area's; the next message on the channel fails
            // with it and the client loses its windows.
            _ => dst.fill(UNREADABLE),
        }
    }
}
