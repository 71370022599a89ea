//! Channels for unikernels: the ring endpoints of `bulkhead-ring` over the windows the
//! hypervisor mapped, with event-driven waiting.
//!
//! ```ignore
//! let mut ch = Channel::open(boot, 0)?;
//! ch.send(&Probe::Ping { seq, payload })?;      // notifies the peer only if it sleeps
//! let reply: Probe = ch.recv()?;                // waits for the event when the ring is empty
//! ```
//!
//! The ring is the truth and events are only hints: `recv` checks the ring before and after
//! it sets its waiting flag, so an event consumed by another waiter, or coalesced with
//! another, never loses a message.

use crate::boot::Boot;
use crate::events::{self, Events};
use crate::hypercall;
use alloc::boxed::Box;
use bulkhead_abi::boot_info::ChannelInfo;
use bulkhead_abi::channel::{MAX_CHANNEL_SIZE, window};
pub use bulkhead_ring::{Breach, Bulk, BulkRef, ChannelError, Sent, Side};
use bulkhead_ring::{Endpoint, SharedRegion};
use core::time::Duration;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a receiver waits for the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Look at the ring and yield the CPU between looks (one exit per look). It never
    /// sleeps, so a sender never needs to notify it. (On one CPU a pure spin would only wait
    /// for its time slice to end before the peer could answer.)
    Poll,
    /// Look at the ring without ever leaving the CPU (a `pause` between looks): no exit at
    /// all. For a qube with a CPU to itself whose peer runs on another CPU; on a shared CPU
    /// each look waits for the end of the time slice.
    Spin,
    /// Sleep in `wait_event` until the peer notifies.
    Event,
}

/// Why a channel could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The boot info lists no channel with that index or name.
    NoSuchChannel,
    /// The boot info's window is not where the ABI puts it.
    BadWindow,
    /// The ring refused the region (header).
    Ring(ChannelError),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::NoSuchChannel => write!(f, "no such channel"),
            OpenError::BadWindow => write!(f, "channel window outside the ABI's window area"),
            OpenError::Ring(e) => write!(f, "{e:?}"),
        }
    }
}

/// One open channel.
pub struct Channel {
    ep: Endpoint,
    /// Its bulk area, if the system description gave it one.
    bulk: Option<Box<Bulk>>,
    local: usize,
    info: ChannelInfo,
    /// Notifications sent (each is one hypercall, so one VM exit).
    pub notifies: u64,
    /// Times `recv` went to sleep.
    pub sleeps: u64,
    /// Times the channel was reset because the peer restarted.
    pub resets: u64,
}

impl Channel {
    /// Opens local channel `local` from the boot info.
    pub fn open(boot: &Boot, local: usize) -> Result<Channel, OpenError> {
        let info = *boot.channels().get(local).ok_or(OpenError::NoSuchChannel)?;
        if info.gpa != window(local) || info.size == 0 || info.size > MAX_CHANNEL_SIZE {
            return Err(OpenError::BadWindow);
        }
        let side = if info.side == 0 { Side::A } else { Side::B };
        // SAFETY: the hypervisor maps exactly `size` bytes at `gpa` (checked to be this
        // channel's window above) into this qube and the peer only, for the qube's lifetime;
        // nothing else in this qube uses the window, and `bulkhead-ring` treats its content
        // as shared with a hostile peer.
        #[allow(unsafe_code)]
        let region = unsafe { SharedRegion::new(info.gpa as *mut u8, info.size as usize) };
        let ep = Endpoint::open(region, side).map_err(OpenError::Ring)?;
        // `Boot::new` checked the area is at this channel's bulk window with a valid size; the
        // header must name the same size.
        let bulk = match boot.bulk(local) {
            None if ep.bulk_size() == 0 => None,
            Some(area) if area.size == u64::from(ep.bulk_size()) => {
                // SAFETY: the hypervisor maps exactly `size` bytes at `gpa` (this channel's
                // bulk window, checked by `Boot::new`) into this qube and the peer only: our
                // pool writable, the peer's read-only; nothing else in this qube uses the
                // window, and `Bulk` treats the peer's pool as written by a hostile peer.
                #[allow(unsafe_code)]
                let region = unsafe { SharedRegion::new(area.gpa as *mut u8, area.size as usize) };
                Some(Box::new(
                    Bulk::open(region, side, ep.bulk_size()).map_err(OpenError::Ring)?,
                ))
            }
            _ => return Err(OpenError::BadWindow),
        };
        Ok(Channel {
            ep,
            bulk,
            local,
            info,
            notifies: 0,
            sleeps: 0,
            resets: 0,
        })
    }

    /// Opens the channel called `name`.
    pub fn open_named(boot: &Boot, name: &str) -> Result<Channel, OpenError> {
        let local = boot.channels().iter().position(|c| c.name() == name);
        Channel::open(boot, local.ok_or(OpenError::NoSuchChannel)?)
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.info.name()
    }

    /// How many more messages the peer's ring takes for sure now (it may take more: the
    /// peer publishes what it consumed every quarter ring and before it sleeps).
    pub fn room(&self) -> usize {
        (self.ep.capacity() - self.ep.unconsumed()) as usize
    }

    /// Largest message payload.
    pub fn max_payload(&self) -> usize {
        self.ep.max_payload()
    }

    /// The channel's bulk area, if it has one: lend buffers from our pool, read the peer's
    /// (see `bulkhead_ring::Bulk`). A breach it reports breaks this channel as a ring breach
    /// does; after a reset (the peer restarted) every loan is forgotten.
    pub fn bulk(&mut self) -> Option<&mut Bulk> {
        self.bulk.as_deref_mut()
    }

    /// What the peer did wrong, once the channel is broken.
    pub fn broken(&self) -> Option<Breach> {
        self.ep.broken()
    }

    /// Passes `r` on; on [`ChannelError::Reset`] (the peer restarted and the hypervisor reset
    /// the channel) it first reopens the endpoint, so the next call starts afresh and the
    /// caller only has to start its conversation again (send its `Hello`).
    fn after<R>(&mut self, r: Result<R, ChannelError>) -> Result<R, ChannelError> {
        if let Err(ChannelError::Reset) = r {
            self.ep = self.ep.reopen()?;
            if let Some(b) = self.bulk.as_deref_mut() {
                b.reset();
            }
            self.resets += 1;
        }
        r
    }

    /// Sends `msg`, waiting (yielding the CPU) while the ring is full, and notifies the peer
    /// if it sleeps.
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), ChannelError> {
        while !self.try_send(msg)? {
            hypercall::yield_now();
        }
        Ok(())
    }

    /// Sends `msg` if the ring has room (notifying the peer if it sleeps); `Ok(false)` when
    /// the ring is full and nothing was sent. Unlike [`Channel::send`] it never waits, so a
    /// peer that stopped receiving cannot hold this qube up.
    pub fn try_send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<bool, ChannelError> {
        let sent = self.ep.send(msg);
        match self.after(sent)? {
            Sent::Queued { notify } => {
                if notify {
                    self.notifies += 1;
                    hypercall::notify(self.local);
                }
                Ok(true)
            }
            Sent::Full => Ok(false),
        }
    }

    /// Sleeps until the peer sends (its event), another event arrives, or `timeout` passes
    /// (`None`: no limit); returns at once when a message is already waiting. Returns the
    /// events seen (empty on a timeout or when a message was waiting). Events are hints:
    /// look at the ring (and whatever else the caller polls) afterwards in any case.
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> Result<Events, ChannelError> {
        if self.prepare_wait()? {
            return Ok(Events::NONE);
        }
        self.sleeps += 1;
        let seen = events::wait_event(timeout);
        self.finish_wait();
        Ok(seen)
    }

    /// Takes the next message if there is one.
    pub fn try_recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ChannelError> {
        let r = self.ep.try_recv();
        self.after(r)
    }

    /// Takes the next message if there is one and calls `f` on its bytes (a private copy):
    /// for decoding types that borrow, such as `proto::Net::Frame`.
    pub fn try_recv_with<R>(
        &mut self,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, ChannelError> {
        let r = self.ep.recv_with(f);
        self.after(r)
    }

    /// Waits for the next message.
    pub fn recv<T: DeserializeOwned>(&mut self, mode: WaitMode) -> Result<T, ChannelError> {
        loop {
            if let Some(m) = self.try_recv()? {
                return Ok(m);
            }
            self.wait(mode)?;
        }
    }

    /// Sets the waiting flag before the caller sleeps on events from several sources: true
    /// means a message is already here (do not sleep; the flag is cleared again), false means
    /// sleep. Call [`Channel::finish_wait`] after.
    pub fn prepare_wait(&mut self) -> Result<bool, ChannelError> {
        let r = self.ep.prepare_wait();
        self.after(r)
    }

    /// Clears the waiting flag after a sleep.
    pub fn finish_wait(&mut self) {
        self.ep.finish_wait();
    }

    /// Raises the peer's event whether or not it sleeps on the ring: what starts a qube that
    /// starts on request (a disposable), which has not opened its end yet.
    pub fn notify_peer(&mut self) {
        self.notifies += 1;
        hypercall::notify(self.local);
    }

    /// Local channel index (its event bit).
    pub fn local(&self) -> usize {
        self.local
    }

    /// Waits once for the peer, the ring having looked empty: yields (poll) or sleeps until
    /// the peer's event unless a message arrived meanwhile (event).
    fn wait(&mut self, mode: WaitMode) -> Result<(), ChannelError> {
        match mode {
            WaitMode::Poll => hypercall::yield_now(),
            WaitMode::Spin => core::hint::spin_loop(),
            WaitMode::Event => {
                if !self.prepare_wait()? {
                    self.sleeps += 1;
                    let _ = events::wait_event(None);
                }
                self.ep.finish_wait();
            }
        }
        Ok(())
    }
}

/// A channel as a byte stream, for code written against `embedded-io` (file copies, logs):
/// each `write` sends one message of at most [`Channel::max_payload`] bytes, and `read`
/// hands out a received message's bytes, keeping what does not fit `buf` for the next read.
pub struct ByteStream {
    channel: Channel,
    mode: WaitMode,
    pending: alloc::vec::Vec<u8>,
    at: usize,
}

/// A channel error seen through `embedded-io`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamError(pub ChannelError);

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

impl core::error::Error for StreamError {}

impl embedded_io::Error for StreamError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self.0 {
            ChannelError::TooLarge { .. } => embedded_io::ErrorKind::InvalidInput,
            ChannelError::Broken(_) | ChannelError::BadHeader | ChannelError::Version { .. } => {
                embedded_io::ErrorKind::BrokenPipe
            }
            ChannelError::Encode | ChannelError::NotLent => embedded_io::ErrorKind::InvalidData,
            ChannelError::Reset => embedded_io::ErrorKind::ConnectionReset,
            ChannelError::BulkExhausted { .. } => embedded_io::ErrorKind::OutOfMemory,
        }
    }
}

impl ByteStream {
    /// Wraps an open channel; `mode` says how `read` waits.
    pub fn new(channel: Channel, mode: WaitMode) -> ByteStream {
        ByteStream {
            channel,
            mode,
            pending: alloc::vec::Vec::new(),
            at: 0,
        }
    }

    /// The channel back.
    pub fn into_inner(self) -> Channel {
        self.channel
    }
}

impl embedded_io::ErrorType for ByteStream {
    type Error = StreamError;
}

impl embedded_io::Write for ByteStream {
    fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        let n = buf.len().min(self.channel.max_payload());
        loop {
            match self.channel.ep.send_bytes(&buf[..n]).map_err(StreamError)? {
                Sent::Queued { notify } => {
                    if notify {
                        self.channel.notifies += 1;
                        hypercall::notify(self.channel.local);
                    }
                    return Ok(n);
                }
                Sent::Full => hypercall::yield_now(),
            }
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
}

impl embedded_io::Read for ByteStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.at >= self.pending.len() {
            let max = self.channel.max_payload();
            self.pending.resize(max, 0);
            self.at = 0;
            match self
                .channel
                .ep
                .try_recv_bytes(&mut self.pending)
                .map_err(StreamError)?
            {
                Some(n) => self.pending.truncate(n),
                None => {
                    self.pending.clear();
                    self.channel.wait(self.mode).map_err(StreamError)?;
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
