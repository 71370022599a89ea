//! Warnings for `[[policy]]` entries that can never match: an earlier entry matches every call
//! they would (its service, source and target are the same or wider). The check is
//! conservative: it finds one earlier entry that covers the whole entry, never a union of
//! several.

use super::diagnostics::Diagnostics;
use super::schema::Raw;
use bulkhead_policy::{Argument, Entry, Qube, Service, Source, Table, Target};

/// Warns about each entry of `table` (compiled from `raw`'s `[[policy]]` tables, in order)
/// that an earlier one covers; `qubes` are what the policy knows of each qube.
pub(super) fn warn(raw: &Raw, table: &Table, qubes: &[Qube], text: &str, w: &mut Diagnostics) {
    let entries = &table.entries;
    for (j, later) in entries.iter().enumerate() {
        let Some(i) = (0..j).find(|&i| covers(qubes, &entries[i], later)) else {
            continue;
        };
        let (Some(p), Some(first)) = (raw.policy.items.get(j), raw.policy.items.get(i)) else {
            continue;
        };
        let message = format!(
            "{} can never match: {} before it matches every call it would",
            p.path, first.path
        );
        let hint = format!(
            "the first entry that matches a call decides: remove {}, or move it above {}",
            p.path, first.path
        );
        w.push(text, p.span.clone(), p.path.clone(), message, hint);
    }
}

/// Whether every call `b` matches, `a` matches too.
fn covers(qubes: &[Qube], a: &Entry, b: &Entry) -> bool {
    let facts = |i: u8| qubes.get(usize::from(i)).copied().unwrap_or_default();
    let plain = |i: u8| !facts(i).admin;
    let tagged = |i: u8, t: u8| plain(i) && facts(i).tags.contains(t);
    let service = match (a.service, b.service) {
        (Service::Any, _) => true,
        (
            Service::Named {
                name: x,
                argument: p,
            },
            Service::Named {
                name: y,
                argument: q,
            },
        ) => x == y && (p == Argument::Any || p == q),
        (Service::Named { .. }, Service::Any) => false,
    };
    let source = match (a.source, b.source) {
        (x, y) if x == y => true,
        (Source::AnyVm, Source::Qube(i)) => plain(i),
        (Source::AnyVm, Source::Tag(_)) => true,
        (Source::Tag(t), Source::Qube(i)) => tagged(i, t),
        (Source::Qube(i), Source::AdminVm) | (Source::AdminVm, Source::Qube(i)) => !plain(i),
        _ => false,
    };
    let target = match (admin_named(qubes, a.target), admin_named(qubes, b.target)) {
        (x, y) if x == y => true,
        (Target::AnyVm, Target::Qube(_) | Target::DispVm | Target::DispVmOf(_)) => true,
        (Target::AnyVm, Target::Tag(_)) => true,
        (Target::Tag(t), Target::Qube(i)) => tagged(i, t),
        _ => false,
    };
    service && source && target
}

/// The admin qube's name as a target is `@adminvm`.
fn admin_named(qubes: &[Qube], t: Target) -> Target {
    match t {
        Target::Qube(i) if qubes.get(usize::from(i)).is_some_and(|q| q.admin) => Target::AdminVm,
        other => other,
    }
}
