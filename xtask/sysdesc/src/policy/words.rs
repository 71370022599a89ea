//! The words of `source`, `target`, `redirect` and `default_target`: a qube, `@anyvm`,
//! `@default`, `@dispvm`, `@dispvm:NAME`, `@tag:NAME`, `@adminvm`; which place takes which,
//! and how each compiles.

use super::super::admin::ADMIN_IMAGE;
use super::super::diagnostics::Diagnostics;
use super::super::hints;
use super::super::schema::Section;
use super::Scope;
use bulkhead_policy::{Redirect, Source, Target};
use std::ops::Range;

/// A qube, tag or keyword as written in `source`, `target`, `redirect` or `default_target`,
/// with its names resolved to indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Word {
    Qube(u8),
    AnyVm,
    Default,
    DispVm,
    DispVmOf(u8),
    Tag(u8),
    AdminVm,
}

/// Where a word is written, and which words it takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Source,
    Target,
    Redirect,
}

impl Place {
    pub(super) fn takes(self, w: Word) -> bool {
        match self {
            Place::Source => matches!(
                w,
                Word::Qube(_) | Word::AnyVm | Word::Tag(_) | Word::AdminVm
            ),
            Place::Target => true,
            Place::Redirect => matches!(
                w,
                Word::Qube(_) | Word::DispVm | Word::DispVmOf(_) | Word::AdminVm
            ),
        }
    }

    pub(super) fn forms(self) -> &'static str {
        match self {
            Place::Source => "a qube, @anyvm, @tag:NAME or @adminvm",
            Place::Target => {
                "a qube, @anyvm, @default, @dispvm, @dispvm:NAME, @tag:NAME or @adminvm"
            }
            Place::Redirect => "a qube, @dispvm, @dispvm:NAME or @adminvm",
        }
    }
}

/// A qube, tag or keyword written at `place` under `key`.
#[allow(
    clippy::too_many_arguments,
    reason = "one value with its key, place and context"
)]
pub(super) fn word(
    p: &Section,
    key: &str,
    s: &str,
    span: Range<usize>,
    place: Place,
    scope: &mut Scope,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Word> {
    let (word, message, hint) = read_word(s, scope);
    let problem = match word {
        Some(w) if !place.takes(w) => Some((
            format!("{} cannot be written in {key}", hints::quoted(s)),
            format!("{key} is {}", place.forms()),
        )),
        Some(w) => return Some(w),
        None if message.is_empty() => return None,
        None => Some((message, hint)),
    };
    if let Some((message, hint)) = problem {
        d.push(text, Some(span), p.key(key), message, hint);
    }
    if s == "@adminvm" && scope.admin.qube.is_none() {
        scope.adminvm_without_admin += 1;
    }
    None
}

/// `s` read against `scope`: the word, or why not (an empty message: nothing to say, the
/// qubes could not be read).
fn read_word(s: &str, scope: &Scope) -> (Option<Word>, String, String) {
    let qubes: Vec<&str> = scope.names.iter().flatten().copied().collect();
    let qube = |name: &str| scope.names.iter().position(|n| *n == Some(name));
    let unknown = |name: &str| {
        if !scope.known {
            return (None, String::new(), String::new());
        }
        let message = format!("unknown qube {}", hints::quoted(name));
        (None, message, hints::one_of("qubes", name, &qubes))
    };
    match s {
        "@anyvm" => return (Some(Word::AnyVm), String::new(), String::new()),
        "@default" => return (Some(Word::Default), String::new(), String::new()),
        "@dispvm" => return (Some(Word::DispVm), String::new(), String::new()),
        "@adminvm" if scope.admin.qube.is_none() => {
            let message = "@adminvm names the admin qube, and this system has none".to_string();
            let hint = format!(
                "add a qube with image = \"{ADMIN_IMAGE}\" (it applies the policy and answers \
                 admin.* calls)"
            );
            return (None, message, hint);
        }
        "@adminvm" => return (Some(Word::AdminVm), String::new(), String::new()),
        _ => {}
    }
    if let Some(tag) = s.strip_prefix("@tag:") {
        return match scope.admin.tags.iter().position(|t| t == tag) {
            Some(t) => (Some(Word::Tag(t as u8)), String::new(), String::new()),
            None => {
                let message = format!("unknown tag {}: no qube has it", hints::quoted(tag));
                let tags: Vec<&str> = scope.admin.tags.iter().map(String::as_str).collect();
                let add = format!("add tags = [\"{tag}\"] to the qubes it stands for");
                let hint = match (hints::closest(tag, &tags), tags.is_empty()) {
                    (Some(c), _) => {
                        format!("did you mean \"@tag:{c}\"? tags are {}", tags.join(", "))
                    }
                    (None, true) => format!("{add}; no qube has tags yet"),
                    (None, false) => format!("{add}; tags are {}", tags.join(", ")),
                };
                (None, message, hint)
            }
        };
    }
    if let Some(base) = s.strip_prefix("@dispvm:") {
        return match qube(base) {
            None => unknown(base),
            Some(j) if scope.admin.disposable.get(j) == Some(&true) => {
                (Some(Word::DispVmOf(j as u8)), String::new(), String::new())
            }
            Some(_) => (
                None,
                format!("\"{base}\" is not a disposable"),
                format!(
                    "@dispvm:NAME names a qube with disposable = true; add it to \"{base}\", or \
                     name a disposable"
                ),
            ),
        };
    }
    if s.starts_with('@') {
        let message = format!("unknown keyword {}", hints::quoted(s));
        let keywords = [
            "@anyvm", "@default", "@dispvm", "@adminvm", "@tag:", "@dispvm:",
        ];
        return (None, message, hints::one_of("keywords", s, &keywords));
    }
    match qube(s) {
        Some(j) => (Some(Word::Qube(j as u8)), String::new(), String::new()),
        None => unknown(s),
    }
}

impl From<Source> for Word {
    fn from(s: Source) -> Word {
        match s {
            Source::Qube(i) => Word::Qube(i),
            Source::AnyVm => Word::AnyVm,
            Source::Tag(t) => Word::Tag(t),
            Source::AdminVm => Word::AdminVm,
        }
    }
}

impl From<Target> for Word {
    fn from(t: Target) -> Word {
        match t {
            Target::Qube(i) => Word::Qube(i),
            Target::AnyVm => Word::AnyVm,
            Target::Default => Word::Default,
            Target::DispVm => Word::DispVm,
            Target::DispVmOf(i) => Word::DispVmOf(i),
            Target::Tag(t) => Word::Tag(t),
            Target::AdminVm => Word::AdminVm,
        }
    }
}

impl From<Redirect> for Word {
    fn from(r: Redirect) -> Word {
        match r {
            Redirect::Qube(i) => Word::Qube(i),
            Redirect::DispVm => Word::DispVm,
            Redirect::DispVmOf(i) => Word::DispVmOf(i),
            Redirect::AdminVm => Word::AdminVm,
        }
    }
}

pub(super) fn source_of(w: Word) -> Source {
    match w {
        Word::Qube(i) => Source::Qube(i),
        Word::Tag(t) => Source::Tag(t),
        Word::AdminVm => Source::AdminVm,
        _ => Source::AnyVm,
    }
}

pub(super) fn target_of(w: Word) -> Target {
    match w {
        Word::Qube(i) => Target::Qube(i),
        Word::AnyVm => Target::AnyVm,
        Word::Default => Target::Default,
        Word::DispVm => Target::DispVm,
        Word::DispVmOf(i) => Target::DispVmOf(i),
        Word::Tag(t) => Target::Tag(t),
        Word::AdminVm => Target::AdminVm,
    }
}

pub(super) fn redirect_of(w: Word) -> Redirect {
    match w {
        Word::Qube(i) => Redirect::Qube(i),
        Word::DispVmOf(i) => Redirect::DispVmOf(i),
        Word::AdminVm => Redirect::AdminVm,
        _ => Redirect::DispVm,
    }
}
