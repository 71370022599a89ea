//! The connection table: every accepted connection with the addresses and ports it had on
//! the client side (its *original* key) and the key its replies arrive with (its *reply*
//! key), timeouts per protocol and state, and the choice of translated ports.
//!
//! Storage is allocated once, in [`Table::new`], and never grows: a slot array, a free list
//! and two open-addressing indexes (one per key, linear probing with backward-shift
//! deletion, at most half full) keyed by a seeded hash, so a client cannot pick flows that
//! collide without knowing the seed.
//!
//! **Fair shares.** Each configured client is guaranteed `capacity / clients` entries (its
//! *share*). A client may borrow free slots beyond it, but when the table is full a client
//! under its share takes a slot from the client furthest over its share, and a client at or
//! over its share may only replace one of its own entries. Either way the victim is the
//! oldest entry its peer never answered, if there is one (Linux's early drop), else (for a
//! client under its share only) the oldest answered one of that over-share client. Each
//! client's entries are kept in two lists, unanswered and answered, oldest first, so the
//! victim is found at once whatever the table holds.

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

    /// Whether the peer has answered: any reply for UDP and ICMP, a SYN (with or without
    /// ACK) for TCP.
    pub fn replied(&self) -> bool {
        self.flags & REPLIED != 0
    }

    fn closed(&self) -> bool {
        self.flags & RST != 0 || self.flags & (FIN_ORIG | FIN_REPLY) == FIN_ORIG | FIN_REPLY
    }

    /// Whether a TCP segment with `tcp_flags` (valid ones: see
    /// [`crate::packet::tcp_flags_valid`]) may pass in direction `dir`, as Linux's
    /// connection tracking decides before the peer answered the SYN: the client may only
    /// repeat its SYN or reset, the peer may answer (SYN+ACK, or SYN for a simultaneous
    /// open), reset, or send a bare ACK (passed, as Linux ignores it), but not a FIN.
    /// Other protocols always pass.
    #[inline]
    pub fn accepts(&self, dir: Dir, tcp_flags: u8) -> bool {
        use crate::packet::{PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
        if self.orig.proto != PROTO_TCP || self.flags & (REPLIED | RST) != 0 {
            return true;
        }
        let f = tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK);
        match dir {
            Dir::Orig => f == TCP_SYN || f & TCP_RST != 0,
            Dir::Reply => f & TCP_FIN == 0,
        }
    }

    /// Notes a packet of the connection (`tcp_flags` for TCP, else 0) and renews the timer.
    /// Returns whether the connection became replied (or stopped being, when a closed TCP
    /// connection's 4-tuple opens a new one).
    pub fn seen(&mut self, dir: Dir, tcp_flags: u8, now: u64) -> bool {
        use crate::packet::{PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
        let was = self.replied();
        let tcp = self.orig.proto == PROTO_TCP;
        if dir == Dir::Orig && tcp && self.closed() && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            // The client reuses the 4-tuple for a new connection.
            self.flags = 0;
        }
        if dir == Dir::Reply && (!tcp || tcp_flags & TCP_SYN != 0) {
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
        self.replied() != was
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

/// No slot (the end of a list).
const NIL: u16 = u16::MAX;

/// A list of slots, oldest first, linked through [`Table::links`].
#[derive(Clone, Copy, Debug)]
struct List {
    head: u16,
    tail: u16,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// The table.
pub struct Table {
    slots: Box<[Option<Conn>]>,
    /// Per slot: the previous and the next slot in its client's list.
    links: Box<[(u16, u16)]>,
    /// Per client: its unanswered (0) and answered (1) connections.
    lists: [[List; 2]; MAX_DOWNSTREAM],
    free: Vec<u16>,
    by_orig: Index,
    by_reply: Index,
    per_client: [usize; MAX_DOWNSTREAM],
    share: usize,
    seed: u64,
    next_port: u32,
    last_full_sweep: Option<u64>,
    /// Connections created so far.
    pub created: u64,
    /// Connections removed because they expired (or were forgotten) so far.
    pub expired: u64,
    /// Connections removed to make room for another (fair shares, early drop) so far.
    pub evicted: u64,
}

/// How many other ports to try when the client's own source port is taken.
const PORT_TRIES: usize = 512;
/// Translated TCP and UDP ports are taken from 1024..=65535.
const FIRST_PORT: u32 = 1024;

impl Table {
    /// A table for `capacity` connections (at most 65535) shared fairly by `clients`
    /// clients.
    pub fn new(capacity: usize, clients: usize, seed: u64) -> Table {
        let capacity = capacity.clamp(1, usize::from(NIL));
        let cells = (capacity * 2).next_power_of_two();
        Table {
            slots: vec![None; capacity].into_boxed_slice(),
            links: vec![(NIL, NIL); capacity].into_boxed_slice(),
            lists: [[EMPTY; 2]; MAX_DOWNSTREAM],
            free: (0..capacity as u16).rev().collect(),
            by_orig: Index::new(cells),
            by_reply: Index::new(cells),
            per_client: [0; MAX_DOWNSTREAM],
            share: capacity / clients.clamp(1, MAX_DOWNSTREAM),
            seed,
            next_port: (seed as u32) | 1,
            last_full_sweep: None,
            created: 0,
            expired: 0,
            evicted: 0,
        }
    }

    /// The entries each client is guaranteed.
    pub fn share(&self) -> usize {
        self.share
    }

    /// Connections client `client` holds.
    pub fn held(&self, client: usize) -> usize {
        self.per_client.get(client).copied().unwrap_or(0)
    }

    /// Appends `slot` to its client's list `which`.
    fn push(&mut self, client: usize, which: usize, slot: usize) {
        let list = &mut self.lists[client][which];
        self.links[slot] = (list.tail, NIL);
        match list.tail {
            NIL => list.head = slot as u16,
            t => self.links[usize::from(t)].1 = slot as u16,
        }
        list.tail = slot as u16;
    }

    /// Takes `slot` out of its client's list `which`.
    fn unlink(&mut self, client: usize, which: usize, slot: usize) {
        let (prev, next) = self.links[slot];
        let list = &mut self.lists[client][which];
        match prev {
            NIL => list.head = next,
            p => self.links[usize::from(p)].1 = next,
        }
        match next {
            NIL => list.tail = prev,
            n => self.links[usize::from(n)].0 = prev,
        }
        self.links[slot] = (NIL, NIL);
    }

    /// The oldest connection of `client` in list `which`.
    fn oldest(&self, client: usize, which: usize) -> Option<usize> {
        match self.lists[client][which].head {
            NIL => None,
            h => Some(usize::from(h)),
        }
    }

    /// The entry to give up for a new connection of `client` when the table is full (see
    /// the module documentation), or why there is none.
    fn victim(&self, client: usize) -> Result<usize, DropReason> {
        if self.per_client[client] >= self.share {
            return self.oldest(client, 0).ok_or(DropReason::ClientTableFull);
        }
        // Someone is over their share: the shares add up to at most the capacity.
        let over = |which: usize| {
            (0..MAX_DOWNSTREAM)
                .filter(|&j| self.per_client[j] > self.share)
                .filter_map(|j| Some((self.per_client[j], self.oldest(j, which)?)))
                .max_by_key(|&(held, _)| held)
                .map(|(_, slot)| slot)
        };
        over(0).or_else(|| over(1)).ok_or(DropReason::TableFull)
    }

    /// Notes a packet going `dir` (with `tcp_flags` for TCP, else 0) on the connection in
    /// `slot`: refused when its TCP state does not allow it, else the connection's timer is
    /// renewed (and it moves to its client's answered list on the peer's first answer).
    #[inline(always)]
    pub fn seen(
        &mut self,
        slot: usize,
        dir: Dir,
        tcp_flags: u8,
        now: u64,
    ) -> Result<Conn, DropReason> {
        let Some(c) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Err(DropReason::NoConnection);
        };
        if !c.accepts(dir, tcp_flags) {
            return Err(DropReason::InvalidTcp);
        }
        let was = c.replied();
        let changed = c.seen(dir, tcp_flags, now);
        let c = *c;
        if changed {
            self.relist(usize::from(c.client), usize::from(was), slot);
        }
        Ok(c)
    }

    /// Moves `slot` from its client's list `from` to the other one (once per connection,
    /// off the forwarding path).
    #[cold]
    #[inline(never)]
    fn relist(&mut self, client: usize, from: usize, slot: usize) {
        self.unlink(client, from, slot);
        self.push(client, 1 - from, slot);
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The connection in `slot`.
    pub fn get(&self, slot: usize) -> Option<&Conn> {
        self.slots.get(slot).and_then(Option::as_ref)
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

    /// Adds `conn`; both its keys must be free (the caller looked them up). When the table
    /// is full an entry makes room, chosen by the fair-share rule (module documentation).
    pub fn insert(&mut self, conn: Conn, now: u64) -> Result<usize, DropReason> {
        let client = usize::from(conn.client);
        if client >= MAX_DOWNSTREAM {
            return Err(DropReason::UnknownPort);
        }
        // Reclaim expired entries when the table is full, at most every 100 ms so that a
        // flood of new connections against a full table does not turn every packet into a
        // sweep.
        if self.free.is_empty()
            && self
                .last_full_sweep
                .is_none_or(|t| now >= t.saturating_add(100))
        {
            self.last_full_sweep = Some(now);
            self.sweep(now);
        }
        if self.free.is_empty() {
            let victim = self.victim(client)?;
            self.remove(victim);
            self.evicted += 1;
        }
        let Some(slot) = self.free.pop() else {
            return Err(DropReason::TableFull);
        };
        let slot = usize::from(slot);
        self.slots[slot] = Some(conn);
        self.by_orig.insert(&conn.orig, self.seed, slot);
        self.by_reply.insert(&conn.reply, self.seed, slot);
        self.push(client, usize::from(conn.replied()), slot);
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
        let client = usize::from(conn.client);
        if client < MAX_DOWNSTREAM {
            self.unlink(client, usize::from(conn.replied()), slot);
            self.per_client[client] = self.per_client[client].saturating_sub(1);
        }
        self.slots[slot] = None;
        self.free.push(slot as u16);
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
        let mut t = Table::new(16, 1, 7);
        let mut slots = Vec::new();
        for p in 0..16 {
            slots.push(t.insert(conn(p, 0), 0).unwrap());
        }
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

    /// A connection of `client` (UDP, its own source port `sport`).
    fn conn_of(client: u8, sport: u16) -> Conn {
        let orig = key(client + 1, sport);
        Conn::new(orig, orig.reversed(UPLINK), client, 0)
    }

    fn holds(t: &mut Table, client: u8, sport: u16) -> bool {
        t.lookup_orig(&key(client + 1, sport), 1).is_some()
    }

    #[test]
    fn a_full_table_gives_every_client_its_share_and_drops_the_unanswered_first() {
        // 12 entries, 3 clients: 4 each guaranteed.
        let mut t = Table::new(12, 3, 5);
        assert_eq!(t.share(), 4);
        // Client 0: two answered flows, then four unanswered; client 1: six unanswered.
        for p in 0..2 {
            let s = t.insert(conn_of(0, p), 0).unwrap();
            t.seen(s, Dir::Reply, 0, 0).unwrap();
        }
        for p in 2..6 {
            t.insert(conn_of(0, p), 0).unwrap();
        }
        for p in 0..6 {
            t.insert(conn_of(1, p), 0).unwrap();
        }
        assert_eq!((t.len(), t.held(0), t.held(1)), (12, 6, 6));
        // Client 0 is over its share: a new flow replaces its own oldest unanswered one.
        t.insert(conn_of(0, 100), 0).unwrap();
        assert_eq!((t.held(0), t.held(1)), (6, 6));
        assert!(!holds(&mut t, 0, 2));
        assert!(holds(&mut t, 0, 0) && holds(&mut t, 0, 1) && holds(&mut t, 0, 3));
        // Client 2 takes its share back from the others, unanswered entries first.
        for p in 0..4 {
            t.insert(conn_of(2, p), 0).unwrap();
        }
        assert_eq!(t.held(2), 4);
        assert_eq!(t.held(0) + t.held(1), 8);
        assert!(
            holds(&mut t, 0, 0) && holds(&mut t, 0, 1),
            "answered flows stay"
        );
        // At its share, client 2 only replaces its own.
        t.insert(conn_of(2, 4), 0).unwrap();
        assert_eq!(t.held(2), 4);
        assert!(!holds(&mut t, 2, 0) && holds(&mut t, 2, 4));
        assert_eq!(t.evicted, 6);
    }

    #[test]
    fn answered_flows_go_only_to_a_client_under_its_share() {
        let mut t = Table::new(6, 3, 9);
        for client in 0..2 {
            for p in 0..3 {
                let s = t.insert(conn_of(client, p), 0).unwrap();
                t.seen(s, Dir::Reply, 0, 0).unwrap();
            }
        }
        // Over their shares but every flow answered: nothing of their own to replace.
        assert_eq!(t.insert(conn_of(0, 9), 0), Err(DropReason::ClientTableFull));
        assert_eq!(t.insert(conn_of(1, 9), 0), Err(DropReason::ClientTableFull));
        // Client 2 has a share to claim: the oldest answered flow of a client over its own.
        t.insert(conn_of(2, 0), 0).unwrap();
        assert_eq!(t.held(0) + t.held(1), 5);
        t.insert(conn_of(2, 1), 0).unwrap();
        assert_eq!((t.held(0), t.held(1), t.held(2)), (2, 2, 2));
        // At its share, it replaces its own (unanswered) flows, never theirs.
        t.insert(conn_of(2, 2), 0).unwrap();
        assert_eq!((t.held(0), t.held(1), t.held(2)), (2, 2, 2));
        assert!(!holds(&mut t, 2, 0));
    }

    #[test]
    fn the_lists_follow_answers_and_removals() {
        let mut t = Table::new(8, 1, 3);
        let slots: Vec<usize> = (0..8)
            .map(|p| t.insert(conn_of(0, p), 0).unwrap())
            .collect();
        // Answer every other one, remove a few, then fill up: the victims are always the
        // oldest unanswered, in order.
        for &s in slots.iter().step_by(2) {
            t.seen(s, Dir::Reply, 0, 0).unwrap();
        }
        t.remove(slots[3]);
        t.insert(conn_of(0, 50), 0).unwrap();
        for (n, gone) in [(51, 1), (52, 5), (53, 7), (54, 50)] {
            t.insert(conn_of(0, n), 0).unwrap();
            assert!(!holds(&mut t, 0, gone), "{gone}");
            assert_eq!(t.len(), 8);
        }
        for p in [0, 2, 4, 6] {
            assert!(holds(&mut t, 0, p), "answered {p} stays");
        }
    }

    #[test]
    fn expired_entries_vanish_and_full_tables_reclaim_them() {
        let mut t = Table::new(4, 1, 1);
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
        let mut t = Table::new(64, 1, 3);
        let reply = key(1, 4000).reversed(UPLINK);
        assert_eq!(t.free_port(reply, 4000), Some(4000));
        t.insert(conn(4000, 0), 0).unwrap();
        let other = t.free_port(reply, 4000).unwrap();
        assert_ne!(other, 4000);
        assert!(other >= 1024);
    }
}
