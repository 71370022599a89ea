//! The core and the ring: queued messages out, the admin qube's messages in, and what a
//! reset or a breach of the channel does to the calls.

use super::out::Out;
use super::types::End;
use super::{Core, RECEIVE_BUDGET};
use crate::channel::{ChannelError, Transport};

impl Core {
    /// The channel was reset (the admin qube restarted) or broke: every open call fails
    /// with `why`, and our `Hello` goes out again.
    pub fn on_reset(&mut self, why: &str) {
        self.fail_all(why);
        self.outbox.push_back(Out::Hello);
        self.greeted = false;
    }

    /// Every open call fails with `why` (a call whose exit arrived keeps its data to be
    /// read); nothing queued for the admin qube is sent.
    pub(super) fn fail_all(&mut self, why: &str) {
        let mut failed = 0;
        for call in self.calls.values_mut().filter(|c| c.end.is_none()) {
            call.end = Some(End::Failed(why.to_string()));
            call.inbound = Default::default();
            failed += 1;
        }
        self.outbox.clear();
        self.outbox_data = 0;
        if failed > 0 {
            self.note(format!("{why}: {failed} open call(s) failed"));
        }
    }

    /// Moves queued messages into the ring until it is full; whether any moved. A reset or
    /// a breach is handled here (every call fails) and returned for the caller to log.
    pub fn send(&mut self, ch: &mut impl Transport) -> Result<bool, ChannelError> {
        let mut moved = false;
        while let Some(out) = self.outbox.front() {
            match ch.try_send_batched(&out.message()) {
                Ok(true) => {
                    moved = true;
                    if let Some(Out::Data { bytes, .. }) = self.outbox.pop_front() {
                        self.outbox_data -= bytes.len();
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    ch.flush();
                    self.channel_error(e);
                    return Err(e);
                }
            }
        }
        ch.flush();
        Ok(moved)
    }

    /// Takes the admin qube's messages from the ring (a budget per pass); whether any came.
    pub fn receive(&mut self, ch: &mut impl Transport) -> Result<bool, ChannelError> {
        let mut moved = false;
        for _ in 0..RECEIVE_BUDGET {
            match ch.try_recv_with(|bytes| self.on_message(bytes)) {
                Ok(Some(())) => moved = true,
                Ok(None) => break,
                Err(e) => {
                    self.channel_error(e);
                    return Err(e);
                }
            }
        }
        Ok(moved)
    }

    fn channel_error(&mut self, e: ChannelError) {
        let why = match e {
            ChannelError::Reset => "the admin qube restarted (the qrexec channel was reset)".into(),
            e => format!("the qrexec channel broke ({e})"),
        };
        self.on_reset(&why);
    }
}
