//! The rules for `[[channel]]` tables: each joins two different known qubes, has a unique
//! name, a size and slot size the channel layout accepts (`channel::Geometry`), an optional
//! bulk area (`bulk_kib`, `channel::bulk_size_valid`; unikernel and Linux ends alike) and
//! a short purpose; no qube is an endpoint of more channels than it has windows for, and the system
//! has no more channels than the manifest holds. The channels a qube's `netvm` makes
//! ([`Automatic`]) come after the declared ones and count against the same limits.

use super::check::name_problem;
use super::diagnostics::Diagnostics;
use super::hints;
use super::schema::{Raw, Section};
use bulkhead_abi::channel::{
    BULK_POOL_ALIGN, Geometry, HEADER_SIZE, MAX_BULK_SIZE, MAX_CHANNEL_SIZE, MAX_CHANNELS_PER_QUBE,
    MAX_SLOT_SIZE, MIN_CHANNEL_SIZE, MIN_SLOT_SIZE, RING_CONTROL_SIZE, bulk_size_valid,
};
use bulkhead_abi::manifest::{MAX_CHANNELS, PURPOSE_MAX};
use std::ops::Range;

/// Region size of a channel that gives none, in KiB.
pub(super) const DEFAULT_SIZE_KIB: u32 = 16;
/// Slot size of a channel that gives none, in bytes.
pub(super) const DEFAULT_SLOT_SIZE: u32 = 256;
/// Channel sizes are whole pages: multiples of this many KiB.
const SIZE_GRANULE_KIB: u32 = 4;
const MIN_SIZE_KIB: u32 = (MIN_CHANNEL_SIZE / 1024) as u32;
const MAX_SIZE_KIB: u32 = (MAX_CHANNEL_SIZE / 1024) as u32;
/// Bulk areas are two equal pools of whole pages: multiples of this many KiB.
const BULK_GRANULE_KIB: u32 = (2 * BULK_POOL_ALIGN / 1024) as u32;
const MAX_BULK_KIB: u32 = (MAX_BULK_SIZE / 1024) as u32;

/// Slots per ring of a network channel: frames queue up while the other side is busy. 128
/// holds a whole 64 KiB TCP segment of an AppVM cut into frames (45), so the agent need not
/// wait for room in the middle of one (`cargo xtask bench --network`: 32 slots cost up to a
/// quarter more instructions and a tenth more exits per MB).
pub(super) const NET_CHANNEL_SLOTS: u32 = 128;

/// Region size in bytes of the channel between a qube and its netvm: the smallest whole
/// number of pages whose rings hold [`NET_CHANNEL_SLOTS`] slots of
/// [`bulkhead_abi::proto::NET_SLOT_SIZE`] bytes.
pub(super) fn net_channel_size() -> u32 {
    ring_channel_size(bulkhead_abi::proto::NET_SLOT_SIZE, NET_CHANNEL_SLOTS)
}

/// The smallest region, in bytes and whole pages, whose rings hold `slots` slots of
/// `slot_size` bytes (the largest region if none does).
pub(super) fn ring_channel_size(slot_size: u32, slots: u32) -> u32 {
    (MIN_SIZE_KIB..=MAX_SIZE_KIB)
        .step_by(SIZE_GRANULE_KIB as usize)
        .map(|kib| kib * 1024)
        .find(|size| {
            Geometry::new(u64::from(*size), slot_size).is_some_and(|g| g.slot_count >= slots)
        })
        .unwrap_or(MAX_SIZE_KIB * 1024)
}

/// A channel the compiler makes: between a qube (side B) and its netvm (side A), or between
/// a qube allowed to start a disposable (side A) and the disposable (side B).
pub(super) struct Automatic {
    pub channel: Channel,
    /// Where it comes from: the key path and place of the client's `netvm`, or of the
    /// requester's `disposables` entry.
    pub key: String,
    pub span: Option<Range<usize>>,
}

/// A channel whose every field follows the rules.
pub(super) struct Channel {
    pub name: String,
    /// Index of side A in the qubes.
    pub a: usize,
    /// Index of side B in the qubes.
    pub b: usize,
    /// Region size in bytes.
    pub size: u32,
    /// Bytes per slot.
    pub slot_size: u32,
    /// Bytes of the bulk area (0: none).
    pub bulk_size: u32,
    pub purpose: String,
}

/// The outcome of checking every channel.
pub(super) struct Channels {
    /// The channels, when every one follows the rules.
    pub list: Option<Vec<Channel>>,
    /// KiB taken by the channels (regions and bulk areas) whose size is known, for the RAM
    /// budget (a lower bound of the channels' memory when some sizes are wrong).
    pub kib: u64,
}

/// What one channel table yielded: each part when it is right.
struct Parts<'a> {
    /// The `[[channel]]` table; `None` for an automatic channel.
    section: Option<&'a Section>,
    /// How messages name the channel.
    path: String,
    /// Where problems with its endpoints are shown: a key path and its place.
    ends_at: (String, Option<Range<usize>>),
    name: Option<String>,
    ends: Option<(usize, usize)>,
    size: Option<u32>,
    slot_size: Option<u32>,
    /// Bulk area bytes (0: none).
    bulk: Option<u32>,
    purpose: Option<String>,
}

/// The qubes a channel may name: each `[[qube]]`'s name as written, in order.
struct Qubes<'a> {
    names: Vec<Option<&'a str>>,
    /// Whether there are qubes to check endpoints against (when the qubes are missing or
    /// malformed, every endpoint would look unknown; that problem is reported already).
    known: bool,
}

impl Qubes<'_> {
    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == Some(name))
    }

    fn listed(&self) -> Vec<&str> {
        self.names.iter().flatten().copied().collect()
    }

    /// `between = [...]` with real qube names, for hints.
    fn example(&self, first: Option<&str>) -> String {
        let listed = self.listed();
        let a = first.or(listed.first().copied()).unwrap_or("net");
        let b = listed
            .iter()
            .copied()
            .find(|n| *n != a)
            .unwrap_or(if a == "firewall" { "net" } else { "firewall" });
        format!("between = [\"{a}\", \"{b}\"]")
    }
}

/// Checks every `[[channel]]` of `raw` against the qubes it names, then the limits with the
/// `automatic` channels added after them.
pub(super) fn check(
    raw: &Raw,
    automatic: Vec<Automatic>,
    text: &str,
    diags: &mut Diagnostics,
) -> Channels {
    let qubes = Qubes {
        names: raw.qubes.item_names(),
        known: raw.qubes.known(),
    };
    if let Some(extra) = raw.channels.items.get(MAX_CHANNELS) {
        // Declared channels alone do not fit: one problem, not one per channel.
        let total = raw.channels.items.len() + automatic.len();
        let message = format!("{total} channels, at most {MAX_CHANNELS} fit");
        let hint = format!(
            "remove {} channel(s), or carry several kinds of message over one channel; the \
             other channel checks run once the channels fit",
            total - MAX_CHANNELS
        );
        diags.push(text, extra.span.clone(), extra.path.clone(), message, hint);
        return Channels { list: None, kib: 0 };
    }
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut parts = Vec::new();
    for c in &raw.channels.items {
        let name = name(c, &mut seen, text, diags);
        let ends = between(c, &qubes, text, diags);
        let (size, slot_size) = sizes(c, text, diags);
        let bulk = bulk(c, text, diags);
        let purpose = purpose(c, text, diags);
        let ends_at = (
            c.key("between"),
            c.names("between").map(|(_, s)| s).or(c.span.clone()),
        );
        parts.push(Parts {
            section: Some(c),
            path: c.path.clone(),
            ends_at,
            name,
            ends,
            size,
            slot_size,
            bulk,
            purpose,
        });
    }
    for a in automatic {
        let c = a.channel;
        parts.push(Parts {
            section: None,
            path: format!("channel \"{}\"", c.name),
            ends_at: (a.key, a.span),
            name: Some(c.name),
            ends: Some((c.a, c.b)),
            size: Some(c.size),
            slot_size: Some(c.slot_size),
            bulk: Some(c.bulk_size),
            purpose: Some(c.purpose),
        });
    }
    exact_duplicates(&parts, &qubes, text, diags);
    per_qube(&parts, &qubes, text, diags);
    let kib = parts
        .iter()
        .flat_map(|p| [p.size, p.bulk])
        .flatten()
        .map(|s| u64::from(s) / 1024)
        .sum();
    let total = parts.len();
    if total > MAX_CHANNELS {
        let extra = &parts[MAX_CHANNELS];
        let message = format!("{total} channels, at most {MAX_CHANNELS} fit");
        let mut hint = format!(
            "remove {} channel(s), or carry several kinds of message over one channel",
            total - MAX_CHANNELS
        );
        let (key, span) = match extra.section {
            Some(c) => (c.path.clone(), c.span.clone()),
            None => {
                hint.push_str(
                    " (each qube's netvm, each disposable it may start, its guivm and, with an \
                     admin qube, qrexec make one channel each)",
                );
                extra.ends_at.clone()
            }
        };
        diags.push(text, span, key, message, hint);
        return Channels { list: None, kib };
    }
    let list = parts
        .into_iter()
        .map(|p| {
            let (a, b) = p.ends?;
            Some(Channel {
                name: p.name?,
                a,
                b,
                size: p.size?,
                slot_size: p.slot_size?,
                bulk_size: p.bulk?,
                purpose: p.purpose?,
            })
        })
        .collect();
    Channels { list, kib }
}

/// Reports a missing required key.
fn missing<T>(c: &Section, key: &str, hint: String, text: &str, d: &mut Diagnostics) -> Option<T> {
    if c.absent(key) {
        let message = format!("missing {key}");
        d.push(text, c.span.clone(), c.key(key), message, hint);
    }
    None
}

/// The channel's name: valid, and unique among channels.
fn name<'a>(
    c: &'a Section,
    seen: &mut Vec<(&'a str, &'a str)>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<String> {
    let Some((name, span)) = c.text("name") else {
        let hint = "add name = \"...\" (a-z, 0-9 and -, unique among channels)".to_string();
        return missing(c, "name", hint, text, d);
    };
    if let Some((message, hint)) = name_problem(name) {
        return d.fail(text, Some(span), c.key("name"), message, hint);
    }
    if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
        let message = format!("a second channel is called \"{name}\"");
        let hint = format!("another channel ({first}) is already called \"{name}\"; rename one");
        return d.fail(text, Some(span), c.key("name"), message, hint);
    }
    seen.push((name, &c.path));
    Some(name.to_string())
}

/// The two endpoints, as indices of the qubes: exactly two different known qubes.
fn between(c: &Section, qubes: &Qubes, text: &str, d: &mut Diagnostics) -> Option<(usize, usize)> {
    let key = c.key("between");
    let Some((ends, span)) = c.names("between") else {
        let hint = format!(
            "add {} (two qube names: the first is side A, the second side B)",
            qubes.example(None)
        );
        return missing(c, "between", hint, text, d);
    };
    let [(a, a_span), (b, b_span)] = ends else {
        let message = format!(
            "between names {} qube{}, a channel joins exactly two",
            ends.len(),
            if ends.len() == 1 { "" } else { "s" }
        );
        let first = ends.first().map(|(n, _)| n.as_str());
        let hint = if ends.len() > 2 {
            format!(
                "keep two names (side A first), e.g. {}; join more qubes with one channel \
                 per pair",
                qubes.example(first)
            )
        } else {
            format!(
                "name both endpoints, side A first, e.g. {}",
                qubes.example(first)
            )
        };
        return d.fail(text, Some(span), key, message, hint);
    };
    let mut found = [None, None];
    for (i, (slot, (end, end_span))) in found.iter_mut().zip([(a, a_span), (b, b_span)]).enumerate()
    {
        *slot = qubes.index(end);
        // The same unknown name twice is reported once.
        if slot.is_none() && qubes.known && !(i == 1 && a == b) {
            let message = format!("unknown qube {}", hints::quoted(end));
            let hint = hints::one_of("qubes", end, &qubes.listed());
            d.push(text, Some(end_span.clone()), key.clone(), message, hint);
        }
    }
    if a == b {
        let message = format!("a channel from {} to itself", hints::quoted(a));
        let others: Vec<&str> = qubes.listed().into_iter().filter(|n| n != a).collect();
        let hint = match others.first() {
            Some(peer) => format!(
                "a channel joins two different qubes; name the peer second, e.g. \
                 between = [\"{a}\", \"{peer}\"]"
            ),
            None => "a channel joins two different qubes; add the peer qube and name it \
                     second"
                .to_string(),
        };
        return d.fail(text, Some(b_span.clone()), key, message, hint);
    }
    Some((found[0]?, found[1]?))
}

/// Bytes for the ring slots in each ring of a `size`-byte region.
fn ring_room(size: u64) -> u64 {
    ((size - HEADER_SIZE) / 2).saturating_sub(RING_CONTROL_SIZE)
}

/// The largest slot size a `size`-byte region holds two slots of per ring.
fn largest_slot(size: u64) -> Option<u32> {
    (MIN_SLOT_SIZE.trailing_zeros()..=MAX_SLOT_SIZE.trailing_zeros())
        .rev()
        .map(|log| 1u32 << log)
        .find(|s| Geometry::new(size, *s).is_some())
}

/// The smallest size in KiB that holds two `slot_size`-byte slots per ring.
fn smallest_size_kib(slot_size: u32) -> Option<u32> {
    (MIN_SIZE_KIB..=MAX_SIZE_KIB)
        .step_by(SIZE_GRANULE_KIB as usize)
        .find(|kib| Geometry::new(u64::from(*kib) * 1024, slot_size).is_some())
}

/// "use 28 or 32" for the allowed values `below` and `above`, keeping those `fits` accepts.
fn choices(key: &str, below: u32, above: u32, fits: impl Fn(u32) -> bool) -> Option<String> {
    let mut values: Vec<u32> = [below, above].into_iter().filter(|v| fits(*v)).collect();
    values.dedup();
    match values.as_slice() {
        [] => None,
        [v] => Some(format!("use {key} = {v}")),
        [v, w, ..] => Some(format!("use {key} = {v} or {w}")),
    }
}

/// Region size (bytes) and slot size, each when it is right on its own; then whether the
/// two together give each ring at least two slots.
fn sizes(c: &Section, text: &str, d: &mut Diagnostics) -> (Option<u32>, Option<u32>) {
    let size_kib = c.number("size_kib");
    let slot = c.number("slot_size");
    let slot_ok = match &slot {
        Some((n, span)) => slot_size(c, *n, span, size_kib.as_ref().map(|s| s.0), text, d),
        None => c.absent("slot_size").then_some(DEFAULT_SLOT_SIZE),
    };
    let size_ok = match &size_kib {
        Some((n, span)) => size(c, *n, span, slot_ok, text, d),
        None => c.absent("size_kib").then_some(DEFAULT_SIZE_KIB * 1024),
    };
    let (Some(size), Some(slot_size)) = (size_ok, slot_ok) else {
        return (size_ok, slot_ok);
    };
    if Geometry::new(u64::from(size), slot_size).is_some() {
        return (Some(size), Some(slot_size));
    }
    let room = ring_room(u64::from(size));
    let message = format!(
        "{} KiB with {slot_size}-byte slots leaves fewer than 2 slots per ring (each ring has \
         {room} bytes for slots)",
        size / 1024
    );
    let mut fixes = Vec::new();
    if let Some(s) = largest_slot(u64::from(size)) {
        fixes.push(format!("slot_size = {s}"));
    }
    if let Some(k) = smallest_size_kib(slot_size) {
        fixes.push(format!("size_kib = {k}"));
    }
    let hint = format!(
        "use {}: a ring needs room for at least 2 slots",
        fixes.join(" or ")
    );
    let (key, span) = match (&slot, &size_kib) {
        (Some((_, span)), _) => ("slot_size", Some(span.clone())),
        (None, Some((_, span))) => ("size_kib", Some(span.clone())),
        (None, None) => ("slot_size", c.span.clone()),
    };
    d.push(text, span, c.key(key), message, hint);
    (Some(size), None)
}

/// The region size: `kib` KiB, a multiple of the page size within the channel limits.
fn size(
    c: &Section,
    kib: i128,
    span: &Range<usize>,
    slot_size: Option<u32>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<u32> {
    let (min, max, g) = (
        i128::from(MIN_SIZE_KIB),
        i128::from(MAX_SIZE_KIB),
        i128::from(SIZE_GRANULE_KIB),
    );
    let message = if kib < min {
        format!("{kib} KiB is below the smallest channel, {MIN_SIZE_KIB} KiB")
    } else if kib > max {
        format!("{kib} KiB is above the largest channel, {MAX_SIZE_KIB} KiB")
    } else if kib % g != 0 {
        format!("{kib} KiB is not a multiple of {SIZE_GRANULE_KIB} KiB (the page size)")
    } else {
        return u32::try_from(kib * 1024).ok();
    };
    let clamp = |v: i128| v.clamp(min, max) as u32;
    let below = clamp(kib.div_euclid(g) * g);
    let above = clamp((kib.div_euclid(g) + 1) * g);
    let fits = |k: u32| slot_size.is_none_or(|s| Geometry::new(u64::from(k) * 1024, s).is_some());
    let hint = choices("size_kib", below, above, fits).unwrap_or_else(|| {
        let slot = slot_size.unwrap_or(DEFAULT_SLOT_SIZE);
        match smallest_size_kib(slot) {
            Some(k) => format!("use size_kib = {k}, the smallest that holds {slot}-byte slots"),
            None => format!("use size_kib = {MAX_SIZE_KIB}"),
        }
    });
    d.fail(text, Some(span.clone()), c.key("size_kib"), message, hint)
}

/// The slot size: a power of two within the slot limits.
fn slot_size(
    c: &Section,
    bytes: i128,
    span: &Range<usize>,
    size_kib: Option<i128>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<u32> {
    let (min, max) = (i128::from(MIN_SLOT_SIZE), i128::from(MAX_SLOT_SIZE));
    let message = if bytes < min {
        format!("{bytes}-byte slots are below the smallest slot, {MIN_SLOT_SIZE} bytes")
    } else if bytes > max {
        format!("{bytes}-byte slots are above the largest slot, {MAX_SLOT_SIZE} bytes")
    } else if (bytes as u32).is_power_of_two() {
        return u32::try_from(bytes).ok();
    } else {
        format!("{bytes} is not a power of two")
    };
    let powers =
        || (MIN_SLOT_SIZE.trailing_zeros()..=MAX_SLOT_SIZE.trailing_zeros()).map(|l| 1u32 << l);
    let below = powers()
        .rev()
        .find(|p| i128::from(*p) <= bytes)
        .unwrap_or(MIN_SLOT_SIZE);
    let above = powers()
        .find(|p| i128::from(*p) >= bytes)
        .unwrap_or(MAX_SLOT_SIZE);
    // The region the slots go in, when it is right (else only the slot limits count).
    let region = size_kib
        .filter(|k| (i128::from(MIN_SIZE_KIB)..=i128::from(MAX_SIZE_KIB)).contains(k))
        .filter(|k| k % i128::from(SIZE_GRANULE_KIB) == 0)
        .map(|k| k as u64 * 1024);
    let fits = |s: u32| region.is_none_or(|r| Geometry::new(r, s).is_some());
    let hint = choices("slot_size", below, above, fits).unwrap_or_else(|| {
        match region.and_then(largest_slot) {
            Some(s) => format!("use slot_size = {s}, the largest this channel's size holds"),
            None => format!("use slot_size = {DEFAULT_SLOT_SIZE}"),
        }
    });
    let hint = format!("{hint} (a power of two from {MIN_SLOT_SIZE} to {MAX_SLOT_SIZE})");
    d.fail(text, Some(span.clone()), c.key("slot_size"), message, hint)
}

/// The bulk area in bytes: `bulk_kib` KiB, two equal pools of whole pages, at most
/// `MAX_BULK_SIZE`; 0 (none) when not given. Either end may be a unikernel or a Linux qube
/// (whose channel device shows the area as BAR4).
fn bulk(c: &Section, text: &str, d: &mut Diagnostics) -> Option<u32> {
    let Some((kib, span)) = c.number("bulk_kib") else {
        return c.absent("bulk_kib").then_some(0);
    };
    let (max, g) = (i128::from(MAX_BULK_KIB), i128::from(BULK_GRANULE_KIB));
    let message = if kib < 0 {
        format!("{kib} KiB is not a size")
    } else if kib > max {
        format!(
            "{kib} KiB is above the largest bulk area, {MAX_BULK_KIB} KiB ({} MiB)",
            MAX_BULK_SIZE >> 20
        )
    } else if kib % g != 0 {
        format!(
            "{kib} KiB is not a multiple of {BULK_GRANULE_KIB} KiB (a bulk area is two equal \
             pools of whole 4 KiB pages)"
        )
    } else {
        let bytes = u32::try_from(kib * 1024).ok()?;
        return bulk_size_valid(u64::from(bytes)).then_some(bytes);
    };
    let clamp = |v: i128| v.clamp(0, max) as u32;
    let below = clamp(kib.div_euclid(g) * g);
    let above = clamp((kib.div_euclid(g) + 1) * g);
    let hint = choices("bulk_kib", below, above, |_| true)
        .unwrap_or_else(|| format!("use bulk_kib = {MAX_BULK_KIB}"));
    let hint = format!(
        "{hint} (a multiple of {BULK_GRANULE_KIB} up to {MAX_BULK_KIB}; without bulk_kib the \
         channel has no bulk area)"
    );
    d.fail(text, Some(span), c.key("bulk_kib"), message, hint)
}

/// What the channel is for: one short line.
fn purpose(c: &Section, text: &str, d: &mut Diagnostics) -> Option<String> {
    let Some((purpose, span)) = c.text("purpose") else {
        let hint = format!(
            "add purpose = \"...\" saying what the channel carries, in at most {PURPOSE_MAX} \
             bytes"
        );
        return missing(c, "purpose", hint, text, d);
    };
    let key = c.key("purpose");
    if purpose.trim().is_empty() {
        let hint = "say what the channel carries, e.g. purpose = \"Ethernet frames\"";
        return d.fail(text, Some(span), key, "purpose is empty", hint);
    }
    if let Some(ch) = purpose.chars().find(|ch| ch.is_control()) {
        let message = format!("purpose contains the control character {ch:?}");
        let hint = "write it on one line, without tabs or other control characters (it is \
                    printed in log lines)";
        return d.fail(text, Some(span), key, message, hint);
    }
    if purpose.len() > PURPOSE_MAX {
        let message = format!(
            "purpose is {} bytes long, at most {PURPOSE_MAX} fit",
            purpose.len()
        );
        let mut end = PURPOSE_MAX;
        while !purpose.is_char_boundary(end) {
            end -= 1;
        }
        let hint = format!(
            "shorten it by {} bytes, e.g. {:?}; longer notes go in a comment above the channel",
            purpose.len() - PURPOSE_MAX,
            purpose[..end].trim_end()
        );
        return d.fail(text, Some(span), key, message, hint);
    }
    Some(purpose.to_string())
}

/// Two channels between the same qubes with the same purpose are likely one written twice
/// (or written once while a netvm already makes it). The declared one is blamed.
fn exact_duplicates(parts: &[Parts], qubes: &Qubes, text: &str, d: &mut Diagnostics) {
    let same_pair = |x: (usize, usize), y: (usize, usize)| x == y || x == (y.1, y.0);
    let same_purpose = |x: &str, y: &str| x.trim().eq_ignore_ascii_case(y.trim());
    for (j, later) in parts.iter().enumerate() {
        let (Some(ends), Some(purpose)) = (later.ends, &later.purpose) else {
            continue;
        };
        let earlier = parts[..j].iter().find(|p| {
            p.ends.is_some_and(|e| same_pair(e, ends))
                && p.purpose
                    .as_deref()
                    .is_some_and(|q| same_purpose(q, purpose))
                && (p.section.is_none() || later.section.is_none() || name_of(p) != name_of(later))
        });
        let Some(earlier) = earlier else {
            continue;
        };
        let (a, b) = (
            qubes.names[ends.0].unwrap_or("?"),
            qubes.names[ends.1].unwrap_or("?"),
        );
        let (blamed, other, hint) = match (earlier.section, later.section) {
            (Some(_), None) => (earlier, later, automatic_twice(later)),
            (None, Some(_)) => (later, earlier, automatic_twice(earlier)),
            _ => (
                later,
                earlier,
                "this looks like one channel written twice: remove one, or say in purpose \
                 what each carries"
                    .to_string(),
            ),
        };
        let Some(section) = blamed.section else {
            continue;
        };
        let message = format!(
            "{} joins \"{a}\" and \"{b}\" for the same purpose as {}",
            blamed.path, other.path
        );
        let span = section.text("purpose").map(|(_, s)| s);
        d.push(text, span, section.key("purpose"), message, hint);
    }
}

/// The name a `[[channel]]` gives itself, as written.
fn name_of<'a>(p: &Parts<'a>) -> Option<&'a str> {
    p.section.and_then(|s| s.text("name")).map(|n| n.0)
}

/// The hint for a declared channel that repeats the automatic channel `auto`.
fn automatic_twice(auto: &Parts) -> String {
    format!(
        "{} makes {} already (side A the netvm, side B the qube): remove this channel, or say \
         in purpose what else it carries",
        auto.ends_at.0, auto.path
    )
}

/// No qube may be an endpoint of more than `MAX_CHANNELS_PER_QUBE` channels.
fn per_qube(parts: &[Parts], qubes: &Qubes, text: &str, d: &mut Diagnostics) {
    for (q, name) in qubes.names.iter().enumerate() {
        let Some(name) = name else {
            continue;
        };
        let mine: Vec<&Parts> = parts
            .iter()
            .filter(|p| p.ends.is_some_and(|(a, b)| a == q || b == q))
            .collect();
        if mine.len() <= MAX_CHANNELS_PER_QUBE {
            continue;
        }
        let extra = mine[MAX_CHANNELS_PER_QUBE];
        let message = format!(
            "\"{name}\" is an endpoint of {} channels, at most {MAX_CHANNELS_PER_QUBE} fit",
            mine.len()
        );
        let names: Vec<&str> = mine
            .iter()
            .map(|p| p.name.as_deref().unwrap_or(&p.path))
            .collect();
        let mut hint = format!(
            "remove {} of its channels ({}), or carry several kinds of message over one channel",
            mine.len() - MAX_CHANNELS_PER_QUBE,
            names.join(", ")
        );
        match (extra.section, extra.ends) {
            (None, _) if extra.purpose.as_deref() == Some(super::qrexec::PURPOSE) => hint.push_str(
                "; with an admin qube, each Linux qube and gui qube has a qrexec channel to the admin \
                 qube",
            ),
            (None, Some((a, _))) if a == q => hint.push_str(&format!(
                "; every qube with netvm = \"{name}\" takes one: give some of them another netvm"
            )),
            (None, _) => hint.push_str("; its netvm takes one too"),
            _ => {}
        }
        let (key, span) = extra.ends_at.clone();
        d.push(text, span, key, message, hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_helpers_agree_with_the_abi() {
        assert_eq!(largest_slot(16 * 1024), Some(2048));
        assert_eq!(largest_slot(MIN_CHANNEL_SIZE), Some(1024));
        assert_eq!(smallest_size_kib(65536), Some(264));
        assert_eq!(smallest_size_kib(64), Some(MIN_SIZE_KIB));
        assert!(Geometry::new(u64::from(DEFAULT_SIZE_KIB) * 1024, DEFAULT_SLOT_SIZE).is_some());
        for log in 6..=16 {
            let k = smallest_size_kib(1 << log).unwrap();
            assert!(Geometry::new(u64::from(k) * 1024, 1 << log).is_some());
            if k > MIN_SIZE_KIB {
                assert!(Geometry::new(u64::from(k - 4) * 1024, 1 << log).is_none());
            }
        }
    }
}
