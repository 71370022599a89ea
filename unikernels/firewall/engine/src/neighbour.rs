//! Next hops: the ARP cache of the uplink side and the packets that wait for an ARP answer
//! (on either side), in storage allocated once.

use crate::stats::DropReason;
use crate::{Ipv4, MAX_FRAME, Mac, Port, timeouts};
use alloc::boxed::Box;
use alloc::vec;

/// Uplink neighbours remembered at once (the gateway and a few hosts on its network).
pub const CACHE_SIZE: usize = 16;
/// Next hops being resolved at once.
pub const MAX_PENDING: usize = 8;
/// Packets kept per next hop being resolved.
pub const PER_HOP: usize = 4;
/// Frames in the queue pool.
const POOL: usize = MAX_PENDING * PER_HOP;

/// A resolved uplink neighbour.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub ip: Ipv4,
    pub mac: Mac,
    /// When it was last confirmed.
    pub learned: u64,
    /// When a refresh request was last sent.
    pub refreshed: u64,
}

/// A next hop being resolved and the frames waiting for it.
#[derive(Clone, Debug)]
pub struct Pending {
    pub port: Port,
    pub ip: Ipv4,
    /// Requests sent so far.
    pub tries: u8,
    /// When to send the next request (or give up).
    pub next_try: u64,
    /// Pool buffers holding the waiting frames, oldest first.
    frames: heapless::Vec<u8, PER_HOP>,
}

/// The cache and the queues.
pub struct Neighbours {
    cache: heapless::Vec<Entry, CACHE_SIZE>,
    pending: heapless::Vec<Pending, MAX_PENDING>,
    pool: Box<[[u8; MAX_FRAME]]>,
    lens: [u16; POOL],
    free: heapless::Vec<u8, POOL>,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Use this MAC.
    Fresh(Mac),
    /// Use this MAC, and send a request to confirm it (it is getting old).
    Refresh(Mac),
    /// Not known.
    Unknown,
}

impl Neighbours {
    pub fn new() -> Neighbours {
        Neighbours {
            cache: heapless::Vec::new(),
            pending: heapless::Vec::new(),
            pool: vec![[0u8; MAX_FRAME]; POOL].into_boxed_slice(),
            lens: [0; POOL],
            free: (0..POOL as u8).collect(),
        }
    }

    /// The MAC of uplink neighbour `ip`.
    pub fn lookup(&mut self, ip: Ipv4, now: u64) -> Found {
        let Some(e) = self.cache.iter_mut().find(|e| e.ip == ip) else {
            return Found::Unknown;
        };
        let age = now.saturating_sub(e.learned);
        if age >= timeouts::ARP_EXPIRE_MS {
            return Found::Unknown;
        }
        if age >= timeouts::ARP_REFRESH_MS
            && now.saturating_sub(e.refreshed) >= timeouts::ARP_RETRY_MS
        {
            e.refreshed = now;
            return Found::Refresh(e.mac);
        }
        Found::Fresh(e.mac)
    }

    /// Whether `ip` is in the cache (fresh or not).
    pub fn known(&self, ip: Ipv4) -> bool {
        self.cache.iter().any(|e| e.ip == ip)
    }

    /// Whether a request of ours for uplink neighbour `ip` is unanswered: it is being
    /// resolved, or its cache entry was sent a confirming request since it was last learned.
    pub fn asked(&self, ip: Ipv4) -> bool {
        self.is_pending(Port::Uplink, ip)
            || self
                .cache
                .iter()
                .any(|e| e.ip == ip && e.refreshed > e.learned)
    }

    /// Records that uplink neighbour `ip` is at `mac`; the oldest entry makes room.
    pub fn learn(&mut self, ip: Ipv4, mac: Mac, now: u64) {
        if let Some(e) = self.cache.iter_mut().find(|e| e.ip == ip) {
            e.mac = mac;
            e.learned = now;
            return;
        }
        let entry = Entry {
            ip,
            mac,
            learned: now,
            refreshed: now,
        };
        if let Err(entry) = self.cache.push(entry)
            && let Some((i, _)) = self.cache.iter().enumerate().min_by_key(|(_, e)| e.learned)
        {
            self.cache[i] = entry;
        }
    }

    /// Forgets expired cache entries.
    pub fn expire(&mut self, now: u64) {
        self.cache
            .retain(|e| now.saturating_sub(e.learned) < timeouts::ARP_EXPIRE_MS);
    }

    /// Forgets the uplink cache.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Whether `ip` on `port` is being resolved.
    pub fn is_pending(&self, port: Port, ip: Ipv4) -> bool {
        self.pending.iter().any(|p| p.port == port && p.ip == ip)
    }

    /// Queues `frame` until `ip` on `port` is resolved. `Ok(true)` when this started a new
    /// resolution (the caller sends the first request).
    pub fn queue(
        &mut self,
        port: Port,
        ip: Ipv4,
        frame: &[u8],
        now: u64,
    ) -> Result<bool, DropReason> {
        let len = u16::try_from(frame.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_FRAME)
            .ok_or(DropReason::TooLarge)?;
        let (k, new) = match self
            .pending
            .iter()
            .position(|p| p.port == port && p.ip == ip)
        {
            Some(k) => (k, false),
            None => {
                let p = Pending {
                    port,
                    ip,
                    tries: 1,
                    next_try: now.saturating_add(timeouts::ARP_RETRY_MS),
                    frames: heapless::Vec::new(),
                };
                self.pending.push(p).map_err(|_| DropReason::QueueFull)?;
                (self.pending.len() - 1, true)
            }
        };
        if self.pending[k].frames.is_full() {
            return Err(DropReason::QueueFull);
        }
        let Some(buf) = self.free.pop() else {
            return Err(DropReason::QueueFull);
        };
        let b = usize::from(buf);
        self.pool[b][..frame.len()].copy_from_slice(frame);
        self.lens[b] = len;
        // Cannot fail: checked not full above.
        let _ = self.pending[k].frames.push(buf);
        Ok(new)
    }

    /// The resolutions in progress.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    /// Notes another request for pending entry `k`.
    pub fn retried(&mut self, k: usize, now: u64) {
        if let Some(p) = self.pending.get_mut(k) {
            p.tries = p.tries.saturating_add(1);
            p.next_try = now.saturating_add(timeouts::ARP_RETRY_MS);
        }
    }

    /// Ends the resolution of `ip` on `port`: each waiting frame is handed to `f` (with its
    /// destination MAC set to `mac`, or dropped when `mac` is `None`) and its buffer freed.
    /// Returns how many frames there were.
    pub fn finish(
        &mut self,
        port: Port,
        ip: Ipv4,
        mac: Option<Mac>,
        f: &mut impl FnMut(Port, &[u8]),
    ) -> usize {
        let Some(k) = self
            .pending
            .iter()
            .position(|p| p.port == port && p.ip == ip)
        else {
            return 0;
        };
        let p = self.pending.swap_remove(k);
        for &buf in &p.frames {
            let b = usize::from(buf);
            if let Some(mac) = mac {
                let frame = &mut self.pool[b][..usize::from(self.lens[b])];
                frame[..6].copy_from_slice(&mac);
                f(port, frame);
            }
            let _ = self.free.push(buf);
        }
        p.frames.len()
    }

    /// Drops every resolution on `port`; returns how many frames waited.
    pub fn clear_port(&mut self, port: Port) -> usize {
        let mut n = 0;
        while let Some(p) = self.pending.iter().find(|p| p.port == port) {
            let ip = p.ip;
            n += self.finish(port, ip, None, &mut |_, _| {});
        }
        n
    }
}
