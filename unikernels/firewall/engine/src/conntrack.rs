//! The connection table: every accepted connection with the addresses and ports it had on
//! the client side (its *original* key) and the key its replies arrive with (its *reply*
//! key), timeouts per protocol and state, and the choice of translated ports.
//!
//! Storage is allocated once, in [`Table::new`], and never grows: a slot array, a free list
//! and two open-addressing indexes (one per key, linear probing with backward-shift
//! deletion, at most half full) keyed by a seeded hash, so a client cannot pick flows that
//! collide without knowing the seed.

use crate::stats::DropReason;
use crate::{Ipv4, timeouts};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use bulkhead_qubeconfig::MAX_DOWNSTREAM;

/// [`Key::port`] of the uplink; client `i` is `i + 1`.
pub const UPLINK: u8 = 0;

/// A packet's identity as it arrives on a port: ICMP echo uses its identifier as both ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub port: u8,
    pub proto: u8,
    pub src: Ipv4,
    pub sport: u16,
    pub dst: Ipv4,
    pub dport: u16,
}

impl Key {
    /// The key of a packet going the other way.
    pub fn reversed(&self, port: u8) -> Key {
        Key {
            port,
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }

    fn hash(&self, seed: u64) -> usize {
        let a =
            u64::from(u32::from_be_bytes(self.src)) << 32 | u64::from(u32::from_be_bytes(self.dst));
        let b = u64::from(self.sport) << 48
            | u64::from(self.dport) << 32
            | u64::from(self.proto) << 8
            | u64::from(self.port);
        let x = mix(a ^ seed, b ^ seed.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15);
        mix(x, seed ^ 0xa076_1d64_78bd_642f) as usize
    }
}

/// Folded 64x64 -> 128-bit multiply.
fn mix(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b | 1);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Which way a packet goes within its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the client that opened it.
    Orig,
    /// From the peer.
    Reply,
}

const REPLIED: u8 = 1;
const FIN_ORIG: u8 = 2;
const FIN_REPLY: u8 = 4;
const RST: u8 = 8;

/// One connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// As the client sent its first packet.
    pub orig: Key,
    /// As replies arrive (after translation on the way out).
    pub reply: Key,
    /// The client that opened it.
    pub client: u8,
    flags: u8,
    /// When it expires (milliseconds).
    pub expires: u64,
}

impl Conn {
    /// A new connection, not yet replied to.
    pub fn new(orig: Key, reply: Key, client: u8, now: u64) -> Conn {
        let mut c = Conn {
            orig,
            reply,
            client,
            flags: 0,
            expires: 0,
        };
        c.expires = now.saturating_add(c.timeout());
        c
    }

    fn timeout(&self) -> u64 {
        use crate::packet::{PROTO_TCP, PROTO_UDP};
        let f = self.flags;
        match self.orig.proto {
            PROTO_TCP if f & RST != 0 => timeouts::TCP_CLOSED_MS,
            PROTO_TCP if f & (FIN_ORIG | FIN_REPLY) == FIN_ORIG | FIN_REPLY => {
                timeouts::TCP_TIME_WAIT_MS
            }
            PROTO_TCP if f & (FIN_ORIG | FIN_REPLY) != 0 => timeouts::TCP_FIN_WAIT_MS,
            PROTO_TCP if f & REPLIED != 0 => timeouts::TCP_ESTABLISHED_MS,
            PROTO_TCP => timeouts::TCP_SYN_SENT_MS,
            PROTO_UDP if f & REPLIED != 0 => timeouts::UDP_REPLIED_MS,
            PROTO_UDP => timeouts::UDP_MS,
            _ => timeouts::ICMP_MS,
        }
    }

    /// Notes a packet of the connection (`tcp_flags` for TCP, else 0) and renews the timer.
    pub fn seen(&mut self, dir: Dir, tcp_flags: u8, now: u64) {
        use crate::packet::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
        let closed =
            self.flags & RST != 0 || self.flags & (FIN_ORIG | FIN_REPLY) == FIN_ORIG | FIN_REPLY;
        if dir == Dir::Orig && closed && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            // The client reuses the 4-tuple for a new connection.
            self.flags = 0;
        }
        if dir == Dir::Reply {
            self.flags |= REPLIED;
        }
        if tcp_flags & TCP_RST != 0 {
            self.flags |= RST;
        }
        if tcp_flags & TCP_FIN != 0 {
            self.flags |= if dir == Dir::Orig {
                FIN_ORIG
            } else {
                FIN_REPLY
            };
        }
        self.expires = now.saturating_add(self.timeout());
    }
}

/// An open-addressing index: cell value `slot + 1`, 0 = empty.
struct Index {
    cells: Box<[u16]>,
    mask: usize,
}

impl Index {
    fn new(cells: usize) -> Index {
        Index {
            cells: vec![0u16; cells].into_boxed_slice(),
            mask: cells - 1,
        }
    }

    /// The cell and slot holding `key`.
    fn find(
        &self,
        key: &Key,
        seed: u64,
        slots: &[Option<Conn>],
        pick: fn(&Conn) -> &Key,
    ) -> Option<(usize, usize)> {
        let mut cell = key.hash(seed) & self.mask;
        for _ in 0..self.cells.len() {
            let v = self.cells[cell];
            if v == 0 {
                return None;
            }
            let slot = usize::from(v - 1);
            if slots[slot].as_ref().is_some_and(|c| pick(c) == key) {
                return Some((cell, slot));
            }
            cell = (cell + 1) & self.mask;
        }
        None
    }

    fn insert(&mut self, key: &Key, seed: u64, slot: usize) {
        let mut cell = key.hash(seed) & self.mask;
        while self.cells[cell] != 0 {
            cell = (cell + 1) & self.mask;
        }
        self.cells[cell] = slot as u16 + 1;
    }

    /// Empties `cell` and shifts later entries of the probe run back into the hole.
    fn remove(&mut self, cell: usize, seed: u64, slots: &[Option<Conn>], pick: fn(&Conn) -> &Key) {
        let mut hole = cell;
        self.cells[hole] = 0;
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let v = self.cells[j];
            if v == 0 {
                return;
            }
            let Some(conn) = slots[usize::from(v - 1)].as_ref() else {
                return;
            };
            let home = pick(conn).hash(seed) & self.mask;
            if j.wrapping_sub(home) & self.mask >= j.wrapping_sub(hole) & self.mask {
                self.cells[hole] = v;
                self.cells[j] = 0;
                hole = j;
            }
        }
    }
}

fn orig_key(c: &Conn) -> &Key {
    &c.orig
}

fn reply_key(c: &Conn) -> &Key {
    &c.reply
}

/// The table.
pub struct Table {
    slots: Box<[Option<Conn>]>,
    free: Vec<u16>,
    by_orig: Index,
    by_reply: Index,
    per_client: [usize; MAX_DOWNSTREAM],
    per_client_max: usize,
    seed: u64,
    next_port: u32,
    last_full_sweep: Option<u64>,
    /// Connections created so far.
    pub created: u64,
    /// Connections removed because they expired (or were forgotten) so far.
    pub expired: u64,
}

/// How many other ports to try when the client's own source port is taken.
const PORT_TRIES: usize = 512;
/// Translated TCP and UDP ports are taken from 1024..=65535.
const FIRST_PORT: u32 = 1024;

impl Table {
    /// A table for `capacity` connections (at most 65535), `per_client` of them per client.
    pub fn new(capacity: usize, per_client: usize, seed: u64) -> Table {
        let capacity = capacity.clamp(1, usize::from(u16::MAX));
        let cells = (capacity * 2).next_power_of_two();
        Table {
            slots: vec![None; capacity].into_boxed_slice(),
            free: (0..capacity as u16).rev().collect(),
            by_orig: Index::new(cells),
            by_reply: Index::new(cells),
            per_client: [0; MAX_DOWNSTREAM],
            per_client_max: per_client,
            seed,
            next_port: (seed as u32) | 1,
            last_full_sweep: None,
            created: 0,
            expired: 0,
        }
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The connection in `slot`.
    pub fn get(&self, slot: usize) -> Option<&Conn> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// The connection in `slot`, to note a packet.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// The live connection whose original key is `key` (an expired one is removed).
    pub fn lookup_orig(&mut self, key: &Key, now: u64) -> Option<usize> {
        let (_, slot) = self.by_orig.find(key, self.seed, &self.slots, orig_key)?;
        self.live(slot, now)
    }

    /// The live connection whose reply key is `key`.
    pub fn lookup_reply(&mut self, key: &Key, now: u64) -> Option<usize> {
        let (_, slot) = self.by_reply.find(key, self.seed, &self.slots, reply_key)?;
        self.live(slot, now)
    }

    fn live(&mut self, slot: usize, now: u64) -> Option<usize> {
        if self.slots[slot].is_some_and(|c| c.expires <= now) {
            self.remove(slot);
            self.expired += 1;
            return None;
        }
        Some(slot)
    }

    /// Whether some connection (live or not yet swept) expects replies with `key`.
    fn reply_taken(&self, key: &Key) -> bool {
        self.by_reply
            .find(key, self.seed, &self.slots, reply_key)
            .is_some()
    }

    /// A translated port for a connection whose replies look like `reply` (its `dport` is
    /// the port to choose; for ICMP echo, `sport` too): `preferred` if free, else another.
    pub fn free_port(&mut self, reply: Key, preferred: u16) -> Option<u16> {
        let icmp = reply.proto == crate::packet::PROTO_ICMP;
        let with = |port: u16| {
            let mut k = reply;
            k.dport = port;
            if icmp {
                k.sport = port;
            }
            k
        };
        if !self.reply_taken(&with(preferred)) {
            return Some(preferred);
        }
        for _ in 0..PORT_TRIES {
            // An odd stride visits every value of the 16-bit space before repeating.
            self.next_port = self.next_port.wrapping_add(0x9e37);
            let port = if icmp {
                self.next_port as u16
            } else {
                (FIRST_PORT + self.next_port % (65536 - FIRST_PORT)) as u16
            };
            if !self.reply_taken(&with(port)) {
                return Some(port);
            }
        }
        None
    }

    /// Adds `conn`; both its keys must be free (the caller looked them up).
    pub fn insert(&mut self, conn: Conn, now: u64) -> Result<usize, DropReason> {
        let client = usize::from(conn.client);
        let Some(&count) = self.per_client.get(client) else {
            return Err(DropReason::UnknownPort);
        };
        // Reclaim expired entries when the table or the client's share is full, at most
        // every 100 ms so that a flood of new connections against a full table does not
        // turn every packet into a sweep.
        if (self.free.is_empty() || count >= self.per_client_max)
            && self
                .last_full_sweep
                .is_none_or(|t| now >= t.saturating_add(100))
        {
            self.last_full_sweep = Some(now);
            self.sweep(now);
        }
        if self.per_client[client] >= self.per_client_max {
            return Err(DropReason::ClientTableFull);
        }
        let Some(slot) = self.free.pop() else {
            return Err(DropReason::TableFull);
        };
        let slot = usize::from(slot);
        self.slots[slot] = Some(conn);
        self.by_orig.insert(&conn.orig, self.seed, slot);
        self.by_reply.insert(&conn.reply, self.seed, slot);
        self.per_client[client] += 1;
        self.created += 1;
        Ok(slot)
    }

    /// Removes the connection in `slot`.
    pub fn remove(&mut self, slot: usize) {
        let Some(conn) = self.slots.get(slot).copied().flatten() else {
            return;
        };
        if let Some((cell, _)) = self
            .by_orig
            .find(&conn.orig, self.seed, &self.slots, orig_key)
        {
            self.by_orig.remove(cell, self.seed, &self.slots, orig_key);
        }
        if let Some((cell, _)) = self
            .by_reply
            .find(&conn.reply, self.seed, &self.slots, reply_key)
        {
            self.by_reply
                .remove(cell, self.seed, &self.slots, reply_key);
        }
        self.slots[slot] = None;
        self.free.push(slot as u16);
        if let Some(n) = self.per_client.get_mut(usize::from(conn.client)) {
            *n = n.saturating_sub(1);
        }
    }

    /// Removes every connection `pred` selects; returns how many.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Conn) -> bool) -> usize {
        let mut n = 0;
        for slot in 0..self.slots.len() {
            if self.slots[slot].as_ref().is_some_and(&mut pred) {
                self.remove(slot);
                n += 1;
            }
        }
        self.expired += n as u64;
        n
    }

    /// Removes every expired connection; returns how many.
    pub fn sweep(&mut self, now: u64) -> usize {
        self.remove_where(|c| c.expires <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

    fn key(port: u8, sport: u16) -> Key {
        Key {
            port,
            proto: PROTO_UDP,
            src: [10, 137, 0, 5],
            sport,
            dst: [1, 1, 1, 1],
            dport: 53,
        }
    }

    fn conn(sport: u16, now: u64) -> Conn {
        let orig = key(1, sport);
        Conn::new(orig, orig.reversed(UPLINK), 0, now)
    }

    #[test]
    fn insert_find_remove_keeps_the_other_entries_reachable() {
        // A tiny table so that probe runs wrap and shift.
        let mut t = Table::new(16, 16, 7);
        let mut slots = Vec::new();
        for p in 0..16 {
            slots.push(t.insert(conn(p, 0), 0).unwrap());
        }
        assert_eq!(t.insert(conn(99, 0), 0), Err(DropReason::ClientTableFull));
        for p in (0..16).step_by(3) {
            let s = t.lookup_orig(&key(1, p), 1).unwrap();
            t.remove(s);
        }
        for p in 0..16u16 {
            let found = t.lookup_orig(&key(1, p), 1);
            assert_eq!(found.is_some(), p % 3 != 0, "port {p}");
            let back = t.lookup_reply(&key(1, p).reversed(UPLINK), 1);
            assert_eq!(found, back);
        }
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn expired_entries_vanish_and_full_tables_reclaim_them() {
        let mut t = Table::new(4, 4, 1);
        for p in 0..4 {
            t.insert(conn(p, 0), 0).unwrap();
        }
        let late = timeouts::UDP_MS + 1;
        assert!(t.lookup_orig(&key(1, 0), late).is_none());
        assert_eq!(t.len(), 3);
        // Full: the insert sweeps the three expired ones.
        t.insert(conn(10, late), late).unwrap();
        t.insert(conn(11, late), late).unwrap();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn tcp_timeouts_follow_the_state() {
        let orig = Key {
            proto: PROTO_TCP,
            ..key(1, 4000)
        };
        let mut c = Conn::new(orig, orig.reversed(UPLINK), 0, 0);
        assert_eq!(c.expires, timeouts::TCP_SYN_SENT_MS);
        c.seen(Dir::Reply, TCP_SYN | TCP_ACK, 10);
        assert_eq!(c.expires, 10 + timeouts::TCP_ESTABLISHED_MS);
        c.seen(Dir::Orig, TCP_FIN | TCP_ACK, 20);
        assert_eq!(c.expires, 20 + timeouts::TCP_FIN_WAIT_MS);
        c.seen(Dir::Reply, TCP_FIN | TCP_ACK, 30);
        assert_eq!(c.expires, 30 + timeouts::TCP_TIME_WAIT_MS);
        // A new SYN on the same ports starts over.
        c.seen(Dir::Orig, TCP_SYN, 40);
        assert_eq!(c.expires, 40 + timeouts::TCP_SYN_SENT_MS);
        c.seen(Dir::Reply, TCP_RST, 50);
        assert_eq!(c.expires, 50 + timeouts::TCP_CLOSED_MS);
    }

    #[test]
    fn ports_are_kept_when_free_and_moved_when_taken() {
        let mut t = Table::new(64, 64, 3);
        let reply = key(1, 4000).reversed(UPLINK);
        assert_eq!(t.free_port(reply, 4000), Some(4000));
        t.insert(conn(4000, 0), 0).unwrap();
        let other = t.free_port(reply, 4000).unwrap();
        assert_ne!(other, 4000);
        assert!(other >= 1024);
    }
}
