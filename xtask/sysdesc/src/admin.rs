//! The admin qube (`image = "admin"`, Qubes' `@adminvm`: it applies the qrexec policy) and the
//! qube keys the policy reads: `tags = ["..."]` (names like qube names) and
//! `default_dispvm = "disp"` (a `disposable = true` qube: what the qube's `@dispvm` means).

use super::check::name_problem;
use super::diagnostics::Diagnostics;
use super::hints;
use super::linux::is_disposable;
use super::schema::Raw;
use bulkhead_policy::MAX_TAGS;

/// The image the admin qube runs.
pub const ADMIN_IMAGE: &str = "admin";

/// The admin qube and what the policy knows of each qube, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Admin {
    /// The admin qube, by index, if the system has one.
    pub qube: Option<usize>,
    /// The system's tags, in the order they first appear.
    pub tags: Vec<String>,
    /// Each qube's tags, as indices of `tags`.
    pub qube_tags: Vec<Vec<usize>>,
    /// Each qube's `default_dispvm`, by index.
    pub default_dispvm: Vec<Option<usize>>,
    /// Each qube's `disposable = true`.
    pub disposable: Vec<bool>,
}

impl Admin {
    /// What the policy engine knows of each qube.
    pub fn facts(&self) -> Vec<bulkhead_policy::Qube> {
        (0..self.disposable.len())
            .map(|i| bulkhead_policy::Qube {
                admin: self.qube == Some(i),
                disposable: self.disposable[i],
                default_dispvm: self.default_dispvm[i].map(|d| d as u8),
                tags: self.qube_tags[i]
                    .iter()
                    .fold(bulkhead_policy::Tags::NONE, |t, tag| t.with(*tag as u8)),
            })
            .collect()
    }
}

/// Checks the admin qube (at most one), every `tags` and every `default_dispvm`. What is right
/// is kept (the first admin qube, the valid tags), and the `bool` is false when a rule is
/// broken (reported).
pub(super) fn check(raw: &Raw, text: &str, d: &mut Diagnostics) -> (Admin, bool) {
    let qubes = &raw.qubes.items;
    let names = raw.qubes.item_names();
    let known = raw.qubes.known();
    let mut admin = Admin {
        disposable: qubes.iter().map(is_disposable).collect(),
        ..Admin::default()
    };
    let mut ok = true;
    for (i, q) in qubes.iter().enumerate() {
        if let Some((ADMIN_IMAGE, span)) = q.text("image") {
            match admin.qube {
                Some(first) => {
                    let message = format!("{} runs the admin qube already", qubes[first].path);
                    let hint = "a system has one admin qube (it applies the qrexec policy): \
                                keep image = \"admin\" on one qube";
                    d.push(text, Some(span), q.key("image"), message, hint);
                    ok = false;
                }
                None => admin.qube = Some(i),
            }
        }
        let mut mine = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (tag, span) in q.names("tags").map_or(&[][..], |(t, _)| t) {
            let problem = if let Some((message, hint)) = name_problem(tag) {
                Some((format!("tag {message}"), hint))
            } else if seen.contains(&tag.as_str()) {
                let message = format!("tag \"{tag}\" is listed twice");
                Some((message, "name each tag once".to_string()))
            } else if !admin.tags.contains(tag) && admin.tags.len() == MAX_TAGS {
                Some((
                    format!("a system has at most {MAX_TAGS} tags"),
                    format!("use fewer tags; they are {}", admin.tags.join(", ")),
                ))
            } else {
                None
            };
            seen.push(tag);
            if let Some((message, hint)) = problem {
                d.push(text, Some(span.clone()), q.key("tags"), message, hint);
                ok = false;
                continue;
            }
            let t = match admin.tags.iter().position(|t| t == tag) {
                Some(t) => t,
                None => {
                    admin.tags.push(tag.clone());
                    admin.tags.len() - 1
                }
            };
            mine.push(t);
        }
        ok &= q.absent("tags") || q.names("tags").is_some();
        admin.qube_tags.push(mine);
        let dispvm = default_dispvm(raw, &names, i, known, text, d);
        ok &= dispvm.is_some();
        admin.default_dispvm.push(dispvm.flatten());
    }
    (admin, ok)
}

/// Qube `i`'s `default_dispvm`, by index (`Some(None)`: none); `None` when it does not name
/// a disposable (reported).
fn default_dispvm(
    raw: &Raw,
    names: &[Option<&str>],
    i: usize,
    known: bool,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Option<usize>> {
    let q = &raw.qubes.items[i];
    let Some((target, span)) = q.text("default_dispvm") else {
        return q.absent("default_dispvm").then_some(None);
    };
    let disposables: Vec<&str> = raw
        .qubes
        .items
        .iter()
        .zip(names)
        .filter(|(q, _)| is_disposable(q))
        .filter_map(|(_, n)| *n)
        .collect();
    let problem = match names.iter().position(|n| *n == Some(target)) {
        None if !known => None,
        None => Some((
            format!("unknown qube {}", hints::quoted(target)),
            if disposables.is_empty() {
                "there are no disposables: add a qube with disposable = true".to_string()
            } else {
                hints::one_of("disposables", target, &disposables)
            },
        )),
        Some(j) if !is_disposable(&raw.qubes.items[j]) => Some((
            format!("\"{target}\" is not a disposable"),
            format!(
                "default_dispvm names a qube with disposable = true, whose fresh copies \
                 @dispvm calls run in; add disposable = true to \"{target}\" or name another"
            ),
        )),
        Some(j) => return Some(Some(j)),
    };
    if let Some((message, hint)) = problem {
        d.push(text, Some(span), q.key("default_dispvm"), message, hint);
    }
    None
}
