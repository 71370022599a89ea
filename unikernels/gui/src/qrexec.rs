//! The gui qube's qrexec channel to the admin qube (`gui.qrexec`, when the system has an
//! admin qube): the policy's `ask` prompts come in and the user's answers go back, and a
//! paste asks the policy (`qubes.ClipboardPaste` from the copying qube to the pasting one)
//! before the clipboard is given.

use crate::clients::Links;
use alloc::vec::Vec;
use bulkhead_abi::qrexec::{FromAdmin, QREXEC_VERSION, ToAdmin};
use bulkhead_gui_compose::clipboard::Clipboard;
use bulkhead_gui_compose::desktop::Desktop;
use bulkhead_gui_compose::prompt::Prompt;
use bulkhead_rt::channel::{Channel, ChannelError};
use bulkhead_rt::{Boot, info, warn};

/// Pastes waiting for a verdict at once; an older one is forgotten.
const MAX_PENDING: usize = 4;

/// The channel and the pastes waiting for the policy.
pub struct Qrexec {
    channel: Option<Channel>,
    next: u32,
    /// (query, (from, to)).
    pending: Vec<(u32, (usize, usize))>,
}

impl Qrexec {
    /// Opens `name` and says hello; without a name (no admin qube) the policy is the system
    /// description's `clipboard_deny` alone and nobody asks.
    pub fn open(boot: &Boot, name: Option<&str>) -> Qrexec {
        let channel = name.and_then(|n| match Channel::open_named(boot, n) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!("gui: qrexec channel {n}: {e}; pastes follow clipboard_deny alone");
                None
            }
        });
        let mut q = Qrexec {
            channel,
            next: 1,
            pending: Vec::new(),
        };
        q.hello();
        q
    }

    /// Whether pastes ask the admin qube.
    pub fn asks(&self) -> bool {
        self.channel.is_some()
    }

    fn hello(&mut self) {
        let hello = ToAdmin::Hello {
            version: QREXEC_VERSION,
        };
        if let Some(c) = self.channel.as_mut() {
            let _ = c.try_send(&hello);
        }
    }

    /// Asks whether `from`'s clipboard may be pasted into `to`.
    pub fn ask_paste(&mut self, d: &mut Desktop, (from, to): (usize, usize)) {
        let (Some(f), Some(t)) = (d.clients().get(from), d.clients().get(to)) else {
            return;
        };
        let query = self.next;
        self.next = self.next.wrapping_add(1);
        let msg = ToAdmin::Query {
            query,
            service: "qubes.ClipboardPaste",
            source: &f.name,
            target: &t.name,
        };
        let sent = self
            .channel
            .as_mut()
            .is_some_and(|c| c.try_send(&msg) == Ok(true));
        if !sent {
            d.set_status(format_args!(
                "paste refused: the admin qube does not answer"
            ));
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.remove(0);
        }
        self.pending.push((query, (from, to)));
    }

    /// Sends the user's answers and handles what the admin qube sent.
    pub fn poll(&mut self, d: &mut Desktop, links: &mut Links, clipboard: &mut Clipboard) {
        let Some(ch) = self.channel.as_mut() else {
            return;
        };
        for (ask, choice) in d.take_answers() {
            info!("gui: prompt {ask} answered: {choice:?}");
            let _ = ch.try_send(&ToAdmin::Answer { ask, choice });
        }
        for _ in 0..16 {
            let got =
                ch.try_recv_with(|bytes| match postcard::from_bytes::<FromAdmin<'_>>(bytes) {
                    Ok(FromAdmin::Ask {
                        ask,
                        source,
                        service,
                        argument,
                        candidates,
                        default,
                    }) => {
                        info!("gui: prompt {ask}: {service} from {source}");
                        d.ask(Prompt::new(
                            ask,
                            source,
                            service,
                            argument,
                            &candidates,
                            default,
                        ));
                        None
                    }
                    Ok(FromAdmin::Verdict { query, allowed }) => Some((query, allowed)),
                    Ok(_) => None,
                    Err(_) => {
                        warn!("gui: a qrexec message that does not decode; dropped");
                        None
                    }
                });
            match got {
                Ok(Some(Some((query, allowed)))) => {
                    let at = self.pending.iter().position(|(q, _)| *q == query);
                    if let Some(at) = at {
                        let (_, pair) = self.pending.remove(at);
                        links.pasted(d, clipboard, pair, allowed);
                    }
                }
                Ok(Some(None)) => {}
                Ok(None) => return,
                Err(ChannelError::Reset) => {
                    info!("gui: the admin qube restarted");
                    d.clear_prompts();
                    self.pending.clear();
                    self.hello();
                    return;
                }
                Err(e) => {
                    warn!("gui: qrexec channel: {e}; closed");
                    self.channel = None;
                    return;
                }
            }
        }
    }

    /// Marks the channel as about to sleep; true if a message is already waiting.
    pub fn prepare_wait(&mut self) -> bool {
        self.channel
            .as_mut()
            .is_some_and(|c| c.prepare_wait().unwrap_or(true))
    }

    /// After a sleep.
    pub fn finish_wait(&mut self) {
        if let Some(c) = self.channel.as_mut() {
            c.finish_wait();
        }
    }
}
