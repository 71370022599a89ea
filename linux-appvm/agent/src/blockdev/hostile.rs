//! `bulkhead-agent block-hostile CHANNEL` (the self-test step `block-hostile`, `cargo xtask
//! test appvm-block-hostile`): the AppVM as a hostile client of the storage qube, on one of
//! its own block channels: `<qube>.blk` (its private volume) or `<qube>.root` (its
//! template's root, read-only). After `Info` (the volume's size and limits) it sends, one
//! after the other, messages the storage qube must refuse ([`plan`]): sectors past the
//! volume's end and at `u64::MAX`, zero sectors, more than `max_sectors_per_request`, pool
//! offsets past the pool or not sector-aligned, writes and discards past the end (on a
//! read-only volume: anywhere), bytes that are not a request; then [`FLOOD`] reads past the
//! end as fast as the ring takes them (a full ring is met by taking answers); last `Info`
//! again: the storage qube still serves the channel. Nothing is judged by `block::check`
//! before it is sent ([`Link::try_send_raw`]), and no request names data inside the volume
//! that could be read or written: a refusal leaves the disk as it was, an acceptance would
//! show in the storage qube's counters and on the disk.
//!
//! "Another qube's volume" cannot be named: the protocol has no field for a volume. The
//! storage qube binds each channel to one volume from its configuration (written from the
//! system description, never by a client) and adds that volume's first sector itself, so
//! what a client can try is every sector outside its own volume's range, where the disk's
//! other volumes lie: past the end, across it, and at `u64::MAX` (an overflow).
//!
//! Each answer is judged ([`judge`]) and printed: `selftest: block-hostile: CHANNEL: WHAT:
//! refused ERROR` (the right error), `... refused ERROR, wanted ERROR`, `... ACCEPTED
//! (REPLY)`, or no answer; then a summary line with the counts. The exit status is 0 when
//! every message was refused with the error due.
//!
//! While this step is on the command line the agent serves neither volume
//! ([`leave_volumes`]): its NBD requests would share the channels with these.

use super::link::{Link, PATIENCE};
use super::{HOME, ROOT};
use crate::channel::uio::{self, UioChannel};
use crate::config::Settings;
use crate::log::printable;
use bulkhead_abi::block::{
    BlockError, BlockOp, BlockReply, BlockRequest, BlockResponse, SECTOR_SIZE, VolumeGeometry,
};
use serde::ser::{Serialize, SerializeTuple, Serializer};
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

/// The self-test step (`appvm.selftest=block-hostile`).
pub const STEP: &str = "block-hostile";
/// The start of every line.
pub const PREFIX: &str = "selftest: block-hostile: ";
/// Bad reads sent in the flood.
pub const FLOOD: u64 = 2000;
/// The tag the storage qube answers to bytes that do not start with one (its
/// `serve::UNKNOWN_TAG`).
pub const UNKNOWN_TAG: u32 = u32::MAX;
/// Times a message answered `Busy` is sent again.
const BUSY_RETRIES: u32 = 100;

/// With the `block-hostile` step on the command line: the agent serves neither volume,
/// closes its ends of the block channels (the test opens them itself) and writes both
/// volumes' `failed` files at once, so `/init` and `agent: ready` do not wait for them.
/// True if it did.
pub fn leave_volumes(settings: &Settings, channels: &mut Vec<UioChannel>) -> bool {
    if !settings.selftest.iter().any(|s| s == STEP) {
        return false;
    }
    let ours = [&settings.home_channel, &settings.root_channel];
    channels.retain(|c| {
        let name = c.found.info.name.as_str();
        !ours.iter().any(|n| n.as_deref() == Some(name))
    });
    let why = "not served: the block-hostile self-test uses its channel";
    if settings.home_channel.is_some() {
        super::fail(&HOME, why);
    }
    if settings.root_channel.is_some() {
        super::fail(&ROOT, why);
    }
    true
}

/// Bytes that are not a block request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Garbage {
    /// 16 bytes of 0xff: not even a tag (a varint of more than 32 bits).
    NoTag,
    /// A tag, then operation 99, which does not exist.
    UnknownOp,
    /// `Info` with a byte left over.
    ByteTooMany,
}

impl Garbage {
    /// The bytes, starting with `tag` where they start with one, and the tag their answer
    /// must carry.
    pub fn bytes(self, tag: u32) -> (Vec<u8>, u32) {
        match self {
            Garbage::NoTag => (vec![0xff; 16], UNKNOWN_TAG),
            Garbage::UnknownOp => {
                let mut b = postcard::to_allocvec(&tag).unwrap_or_default();
                b.extend([99, 0x01]);
                (b, tag)
            }
            Garbage::ByteTooMany => {
                let info = BlockRequest {
                    tag,
                    op: BlockOp::Info,
                };
                let mut b = postcard::to_allocvec(&info).unwrap_or_default();
                b.push(0);
                (b, tag)
            }
        }
    }
}

/// Bytes sent as they are: a tuple of bytes, which postcard writes without a length.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

/// A message the storage qube must refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// A request (sent with a fresh tag) and the error it must get.
    Op(BlockOp, BlockError),
    /// Bytes that are not a request: `BadRequest`.
    Bytes(Garbage),
}

/// One message of the plan and what it is, for the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// What it asks, in words.
    pub what: String,
    /// The message.
    pub bad: Bad,
}

/// The messages sent one after the other to a volume of geometry `g` over pools of `pool`
/// bytes, each with the error due (`block::check`'s, which the storage qube applies; the
/// tests hold the two together).
pub fn plan(g: &VolumeGeometry, pool: u32) -> Vec<Case> {
    use BlockError::{BadPoolRange, BadRequest, OutOfRange, ReadOnly, TooLong, Unaligned};
    let (end, max) = (g.sectors, g.max_sectors_per_request);
    // A write or discard on a read-only volume is refused before its range is looked at.
    let changing = |e| if g.read_only { ReadOnly } else { e };
    let read = |sector, count, pool_offset| BlockOp::Read {
        sector,
        count,
        pool_offset,
    };
    let write = |sector| BlockOp::Write {
        sector,
        count: 1,
        pool_offset: 0,
    };
    let op = |what: String, op, want| Case {
        what,
        bad: Bad::Op(op, want),
    };
    let mut cases = vec![
        op(
            format!(
                "a read past the end (sector {end}, where the next volume on the disk may \
                 begin)"
            ),
            read(end, 1, 0),
            OutOfRange,
        ),
        op(
            "a read across the volume's end".into(),
            read(end.saturating_sub(1), 2, 0),
            OutOfRange,
        ),
        op(
            "a read of sector u64::MAX".into(),
            read(u64::MAX, 1, 0),
            OutOfRange,
        ),
        op("a read of 0 sectors".into(), read(0, 0, 0), BadRequest),
        op(
            format!("a read of {} sectors (at most {max} allowed)", max + 1),
            read(0, max + 1, 0),
            TooLong,
        ),
        op(
            "a read of u32::MAX sectors".into(),
            read(0, u32::MAX, 0),
            TooLong,
        ),
        op(
            format!("a read into pool offset {pool:#x} (past the {pool}-byte pool)"),
            read(0, 1, pool),
            BadPoolRange,
        ),
        op(
            "a read into the unaligned pool offset 0x1".into(),
            read(0, 1, 1),
            Unaligned,
        ),
        op(
            "a read running off the pool's end".into(),
            read(0, 2, pool - SECTOR_SIZE),
            BadPoolRange,
        ),
        op(
            format!("a write past the volume's end (sector {end})"),
            write(end),
            changing(OutOfRange),
        ),
        op(
            "a write at sector u64::MAX".into(),
            write(u64::MAX),
            changing(OutOfRange),
        ),
        op(
            "a discard past the volume's end".into(),
            BlockOp::Discard {
                sector: end,
                count: 8,
            },
            changing(OutOfRange),
        ),
    ];
    if g.read_only {
        cases.push(op(
            "a write of sector 0 of the read-only volume".into(),
            write(0),
            ReadOnly,
        ));
        cases.push(op(
            "a discard of sector 0 of the read-only volume".into(),
            BlockOp::Discard {
                sector: 0,
                count: 1,
            },
            ReadOnly,
        ));
    }
    for (what, g) in [
        ("16 bytes of 0xff (not a request)", Garbage::NoTag),
        ("a tag then an unknown operation", Garbage::UnknownOp),
        ("an Info request with a byte too many", Garbage::ByteTooMany),
    ] {
        cases.push(Case {
            what: what.into(),
            bad: Bad::Bytes(g),
        });
    }
    cases
}

/// What came of one bad message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Refused with the error due.
    Refused(BlockError),
    /// Refused, but with another error.
    Wrong { got: BlockError, want: BlockError },
    /// Carried out: a failure.
    Accepted(BlockReply),
    /// The answer carries another tag than `want`, or (`None`) one that no request in
    /// flight carries.
    OtherTag { got: u32, want: Option<u32> },
    /// No answer in [`PATIENCE`].
    Unanswered,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Refused(e) => write!(f, "refused {e:?}"),
            Verdict::Wrong { got, want } => write!(f, "refused {got:?}, wanted {want:?}"),
            Verdict::Accepted(reply) => write!(f, "ACCEPTED ({reply:?})"),
            Verdict::OtherTag {
                got,
                want: Some(want),
            } => write!(f, "answered tag {got}, not tag {want}"),
            Verdict::OtherTag { got, want: None } => {
                write!(f, "answered tag {got}, which no request in flight carries")
            }
            Verdict::Unanswered => write!(f, "no answer in {} s", PATIENCE.as_secs()),
        }
    }
}

/// Judges the answer `r` to a message whose answer must carry `tag` and the error `want`.
pub fn judge(want: BlockError, tag: u32, r: &BlockResponse) -> Verdict {
    if r.tag != tag {
        return Verdict::OtherTag {
            got: r.tag,
            want: Some(tag),
        };
    }
    match r.result {
        Err(e) if e == want => Verdict::Refused(e),
        Err(got) => Verdict::Wrong { got, want },
        Ok(reply) => Verdict::Accepted(reply),
    }
}

/// The counts of one channel's run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages sent, `Info` and `Busy` repeats included (what the storage qube counts as
    /// requests).
    pub sent: u64,
    /// Bad messages judged, and how: refused with the error due, accepted, refused with
    /// another error, answered with another tag or not at all.
    pub bad: u64,
    pub refused: u64,
    pub accepted: u64,
    pub wrong: u64,
    pub unanswered: u64,
}

impl Tally {
    /// Counts a verdict.
    pub fn count(&mut self, v: &Verdict) {
        self.bad += 1;
        match v {
            Verdict::Refused(_) => self.refused += 1,
            Verdict::Accepted(_) => self.accepted += 1,
            Verdict::Wrong { .. } => self.wrong += 1,
            Verdict::OtherTag { .. } | Verdict::Unanswered => self.unanswered += 1,
        }
    }

    /// Every bad message refused with the error due.
    pub fn passed(&self) -> bool {
        self.bad > 0 && self.refused == self.bad
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bad requests: {} refused, {} accepted, {} wrong error, {} unanswered; {} \
             requests in all",
            self.bad, self.refused, self.accepted, self.wrong, self.unanswered, self.sent
        )
    }
}

/// `bulkhead-agent block-hostile CHANNEL`: prints the lines, returns the exit status (0
/// every bad message refused with the error due, 1 not, 2 usage).
pub fn main(args: &[String]) -> u8 {
    let [channel] = args else {
        eprintln!(
            "usage: bulkhead-agent block-hostile CHANNEL (a block channel: QUBE.blk or QUBE.root)"
        );
        return 2;
    };
    let name = printable(channel, 32);
    let mut out = |l: &str| println!("{PREFIX}{name}: {l}");
    match run(channel, &mut out) {
        Ok(t) => {
            out(&t.to_string());
            u8::from(!t.passed())
        }
        Err(e) => {
            out(&format!("stopped: {e}"));
            1
        }
    }
}

fn run(channel: &str, out: &mut dyn FnMut(&str)) -> Result<Tally, String> {
    let mut link = Link::open(uio::open_named(channel)?)?;
    let pool = link.pool();
    let g = link.info()?;
    let mut t = Tally {
        sent: 1,
        ..Tally::default()
    };
    out(&format!(
        "Info: {} sectors ({} KiB), {}, {} sectors per request at most, pools of {pool} bytes",
        g.sectors,
        g.sectors / 2,
        if g.read_only {
            "read-only"
        } else {
            "read-write"
        },
        g.max_sectors_per_request
    ));
    for case in plan(&g, pool) {
        let v = ask(&mut link, case.bad, &mut t)?;
        t.count(&v);
        out(&format!("{}: {v}", case.what));
    }
    flood(&mut link, &g, &mut t, out)?;
    let again = link.info()?;
    t.sent += 1;
    if again != g {
        return Err(format!("Info changed: {g:?} before, {again:?} after"));
    }
    out("Info still answered, the same: the storage qube serves on");
    Ok(t)
}

/// Sends `msg`, waiting while the ring is full (it should not be: one message at a time).
fn send<T: Serialize + ?Sized>(link: &mut Link, msg: &T) -> Result<(), String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match link.try_send_raw(msg) {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(false) => return Err("the ring stayed full".into()),
            Err(f) => return Err(format!("sending: {f:?}")),
        }
    }
}

/// Sends one bad message and judges its answer (sent again while it is `Busy`).
fn ask(link: &mut Link, bad: Bad, t: &mut Tally) -> Result<Verdict, String> {
    for _ in 0..BUSY_RETRIES {
        let tag = link.tag();
        let (want, answer_tag) = match bad {
            Bad::Op(op, want) => {
                send(link, &BlockRequest { tag, op })?;
                (want, tag)
            }
            Bad::Bytes(g) => {
                let (bytes, answer_tag) = g.bytes(tag);
                send(link, &Raw(&bytes))?;
                (BlockError::BadRequest, answer_tag)
            }
        };
        t.sent += 1;
        let r = link
            .next_response(Instant::now() + PATIENCE)
            .map_err(|f| format!("waiting for the answer: {f:?}"))?;
        match r {
            None => return Ok(Verdict::Unanswered),
            Some(r) if r.result == Err(BlockError::Busy) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Some(r) => return Ok(judge(want, answer_tag, &r)),
        }
    }
    Err(format!("Busy {BUSY_RETRIES} times in a row"))
}

/// [`FLOOD`] reads past the volume's end, sent as fast as the ring takes them; when it is
/// full, the answers are taken (`Busy` ones sent again).
fn flood(
    link: &mut Link,
    g: &VolumeGeometry,
    t: &mut Tally,
    out: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let t0 = Instant::now();
    let before = *t;
    let (mut left, mut sent, mut full, mut busy) = (FLOOD, 0u64, 0u64, 0u64);
    let mut in_flight: HashSet<u32> = HashSet::new();
    let mut shown = 0;
    while left > 0 || !in_flight.is_empty() {
        while left > 0 {
            let tag = link.tag();
            let op = BlockOp::Read {
                sector: g.sectors + sent,
                count: 1,
                pool_offset: 0,
            };
            match link.try_send_raw(&BlockRequest { tag, op }) {
                Ok(true) => {}
                Ok(false) => {
                    full += 1;
                    break;
                }
                Err(f) => return Err(format!("flood: sending: {f:?}")),
            }
            in_flight.insert(tag);
            (left, sent) = (left - 1, sent + 1);
            t.sent += 1;
        }
        if in_flight.is_empty() {
            // A full ring with nothing of ours in it: the storage qube has not taken them.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let r = link
            .next_response(Instant::now() + PATIENCE)
            .map_err(|f| format!("flood: waiting for answers: {f:?}"))?;
        let v = match r {
            None => {
                for _ in 0..in_flight.len() {
                    t.count(&Verdict::Unanswered);
                }
                out(&format!(
                    "flood: {} answers did not come in {} s",
                    in_flight.len(),
                    PATIENCE.as_secs()
                ));
                break;
            }
            Some(r) if !in_flight.remove(&r.tag) => Verdict::OtherTag {
                got: r.tag,
                want: None,
            },
            Some(r) if r.result == Err(BlockError::Busy) => {
                (left, busy) = (left + 1, busy + 1);
                continue;
            }
            Some(r) => judge(BlockError::OutOfRange, r.tag, &r),
        };
        t.count(&v);
        if !matches!(v, Verdict::Refused(_)) && shown < 5 {
            shown += 1;
            out(&format!("flood: a read past the end: {v}"));
        }
    }
    let ms = t0.elapsed().as_millis();
    out(&format!(
        "flood: {FLOOD} reads past the end: {} refused OutOfRange, {} not, in {ms} ms (ring full \
         {full} times, {busy} Busy)",
        t.refused - before.refused,
        (t.bad - before.bad) - (t.refused - before.refused)
    ));
    Ok(())
}

#[cfg(test)]
#[path = "hostile_tests.rs"]
mod tests;
