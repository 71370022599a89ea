//! The compiled policy: what `xtask/sysdesc` writes for each `[[policy]]` table, with qubes,
//! tags, service names and arguments replaced by indices, and what the evaluator knows of
//! each qube ([`Qube`]).

use super::{MAX_ENTRIES, MAX_NAMES, MAX_QUBES, MAX_TAGS, SERVICE_MAX};
use super::{valid_argument, valid_service};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// A compiled policy: its entries in order (the first that matches a call decides) and the
/// service names and arguments they name, each stored once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Service names and arguments, referred to by index from [`Service`] and [`Argument`].
    pub names: Vec<String<SERVICE_MAX>, MAX_NAMES>,
    /// The entries, in the order written.
    pub entries: Vec<Entry, MAX_ENTRIES>,
}

/// One `[[policy]]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Which calls it is about.
    pub service: Service,
    /// Which callers.
    pub source: Source,
    /// Which requested targets.
    pub target: Target,
    /// What happens to a call it matches.
    pub action: Action,
}

/// `service = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Service {
    /// `"*"`: every service, with any argument.
    Any,
    /// `"name"`, `"name+"` or `"name+ARG"`.
    Named {
        /// The service name: an index into [`Table::names`].
        name: u8,
        /// Which arguments.
        argument: Argument,
    },
}

/// The argument part of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Argument {
    /// `"name"`: any argument, or none.
    Any,
    /// `"name+"`: only a call without an argument.
    Empty,
    /// `"name+ARG"`: only this argument (an index into [`Table::names`]).
    Exactly(u8),
}

/// `source = "..."`: who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A qube, by index.
    Qube(u8),
    /// `@anyvm`: any qube but the admin qube.
    AnyVm,
    /// `@tag:NAME`: a qube with that tag (by index), never the admin qube.
    Tag(u8),
    /// `@adminvm`: the admin qube.
    AdminVm,
}

/// `target = "..."`: which requested targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A qube, by index (the admin qube's index means `@adminvm`).
    Qube(u8),
    /// `@anyvm`: a request naming any qube but the admin qube, or for any disposable
    /// (`@dispvm`, `@dispvm:NAME`); not a request that names no target.
    AnyVm,
    /// `@default`: a request that names no target.
    Default,
    /// `@dispvm`: a request for the caller's default disposable.
    DispVm,
    /// `@dispvm:NAME`: a request for a fresh disposable of this qube (by index), or for the
    /// caller's default disposable when that is this qube.
    DispVmOf(u8),
    /// `@tag:NAME`: a request naming a qube with that tag (by index), never the admin qube.
    Tag(u8),
    /// `@adminvm`: a request for the admin qube.
    AdminVm,
}

/// `action = "..."`, with `redirect` and `default_target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Refuse the call.
    Deny,
    /// Run the call, at `redirect` when set (Qubes' `target=`), else where it asked.
    Allow {
        /// Where the call runs instead of the requested target.
        redirect: Option<Redirect>,
    },
    /// Ask the user; `redirect` is then the only choice.
    Ask {
        /// The only target offered, when set.
        redirect: Option<Redirect>,
        /// The prompt's preselected choice.
        default_target: Option<Redirect>,
    },
}

/// A target written in `redirect` or `default_target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redirect {
    /// A qube, by index.
    Qube(u8),
    /// The caller's default disposable.
    DispVm,
    /// A fresh disposable of this qube (by index).
    DispVmOf(u8),
    /// The admin qube.
    AdminVm,
}

/// What the evaluator knows of a qube; qubes are named by their index in the manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qube {
    /// Whether it is the admin qube (Qubes' `@adminvm`).
    pub admin: bool,
    /// Whether it is a disposable (`disposable = true`): `@dispvm:NAME` may name it.
    pub disposable: bool,
    /// Its `default_dispvm`, by index: what its `@dispvm` requests mean.
    pub default_dispvm: Option<u8>,
    /// Its tags.
    pub tags: Tags,
}

/// A set of tags, by index: bit `t` is tag `t`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags(pub u32);

impl Tags {
    /// No tags.
    pub const NONE: Tags = Tags(0);

    /// These tags and tag `t` (unchanged if `t` is not below [`MAX_TAGS`]).
    pub fn with(self, t: u8) -> Tags {
        Tags(self.0 | 1u32.checked_shl(u32::from(t)).unwrap_or(0))
    }

    /// Whether tag `t` is in the set.
    pub fn contains(self, t: u8) -> bool {
        self.0 & 1u32.checked_shl(u32::from(t)).unwrap_or(0) != 0
    }
}

/// Why a table or its qubes cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// More qubes than [`MAX_QUBES`], or more than one admin qube.
    Qubes,
    /// Qube `i` has a default disposable that is not a disposable, or a tag beyond the
    /// system's.
    Qube(usize),
    /// Name `i` is neither a service name nor an argument.
    Name(usize),
    /// Entry `i` names a qube, tag, name or disposable that does not exist.
    Entry(usize),
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TableError::Qubes => write!(f, "policy: too many qubes or admin qubes"),
            TableError::Qube(i) => write!(f, "policy: qube {i} is inconsistent"),
            TableError::Name(i) => write!(f, "policy: name {i} is not a service or argument"),
            TableError::Entry(i) => write!(f, "policy: entry {i} names what does not exist"),
        }
    }
}

impl Table {
    /// Name `i` (a service name or an argument), if there is one.
    pub fn name(&self, i: u8) -> Option<&str> {
        self.names.get(usize::from(i)).map(String::as_str)
    }

    /// The index of `text` in [`Table::names`], added if new; `None` when it is too long or
    /// the table has no room.
    pub fn intern(&mut self, text: &str) -> Option<u8> {
        if let Some(i) = self.names.iter().position(|n| n.as_str() == text) {
            return u8::try_from(i).ok();
        }
        let i = u8::try_from(self.names.len()).ok()?;
        self.names.push(String::try_from(text).ok()?).ok()?;
        Some(i)
    }

    /// Checks that every index in the table and in `qubes` names something that exists:
    /// qubes, disposables, the system's `tags` tags, service names and arguments. A table
    /// that passes is what the compiler writes; [`evaluate`](super::evaluate) is safe on
    /// any table, but decides sensibly only on these.
    pub fn check(&self, qubes: &[Qube], tags: usize) -> Result<(), TableError> {
        let admins = qubes.iter().filter(|q| q.admin).count();
        if qubes.len() > MAX_QUBES || tags > MAX_TAGS || admins > 1 {
            return Err(TableError::Qubes);
        }
        let disposable = |i: u8| qubes.get(usize::from(i)).is_some_and(|q| q.disposable);
        let tags_mask = 1u64.checked_shl(tags as u32).map_or(u64::MAX, |m| m - 1);
        for (i, q) in qubes.iter().enumerate() {
            if q.default_dispvm.is_some_and(|d| !disposable(d)) || u64::from(q.tags.0) > tags_mask {
                return Err(TableError::Qube(i));
            }
        }
        for (i, n) in self.names.iter().enumerate() {
            if !valid_service(n) && !valid_argument(n) {
                return Err(TableError::Name(i));
            }
        }
        let qube = |i: u8| usize::from(i) < qubes.len();
        let tag = |t: u8| usize::from(t) < tags;
        let redirect = |r: Option<Redirect>| match r {
            None | Some(Redirect::DispVm | Redirect::AdminVm) => true,
            Some(Redirect::Qube(i)) => qube(i),
            Some(Redirect::DispVmOf(i)) => disposable(i),
        };
        for (i, e) in self.entries.iter().enumerate() {
            let service = match e.service {
                Service::Any => true,
                Service::Named { name, argument } => {
                    self.name(name).is_some_and(valid_service)
                        && match argument {
                            Argument::Any | Argument::Empty => true,
                            Argument::Exactly(a) => self
                                .name(a)
                                .is_some_and(|a| !a.is_empty() && valid_argument(a)),
                        }
                }
            };
            let source = match e.source {
                Source::Qube(q) => qube(q),
                Source::Tag(t) => tag(t),
                Source::AnyVm | Source::AdminVm => true,
            };
            let target = match e.target {
                Target::Qube(q) => qube(q),
                Target::Tag(t) => tag(t),
                Target::DispVmOf(q) => disposable(q),
                Target::AnyVm | Target::Default | Target::DispVm | Target::AdminVm => true,
            };
            let action = match e.action {
                Action::Deny => true,
                Action::Allow { redirect: r } => redirect(r),
                Action::Ask {
                    redirect: r,
                    default_target: d,
                } => redirect(r) && redirect(d),
            };
            if !(service && source && target && action) {
                return Err(TableError::Entry(i));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::super::tests::{PERSONAL, WORK, qubes};
    use super::super::{SERVICE_MAX, valid_argument, valid_service};
    use super::*;

    const ALLOW: Action = Action::Allow { redirect: None };

    #[test]
    fn names_and_tags() {
        assert!(valid_service("qubes.Filecopy") && valid_service("a-b_c.D9"));
        assert!(!valid_service("") && !valid_service("a+b") && !valid_service("a*"));
        assert!(valid_argument("") && valid_argument("+x+y") && !valid_argument("a b"));
        let t = Tags::NONE.with(0).with(31).with(32);
        assert!(t.contains(0) && t.contains(31) && !t.contains(1) && !t.contains(32));
    }

    #[test]
    fn check_finds_what_does_not_exist() {
        let q = qubes();
        let entry = |target| Entry {
            service: Service::Any,
            source: Source::AnyVm,
            target,
            action: ALLOW,
        };
        let mut t = Table::default();
        t.entries.push(entry(Target::DispVmOf(WORK))).unwrap();
        assert_eq!(t.check(&q, 1), Err(TableError::Entry(0)));
        t.entries[0] = entry(Target::Tag(1));
        assert_eq!(t.check(&q, 1), Err(TableError::Entry(0)));
        assert_eq!(t.check(&q, 2), Ok(()));
        t.entries[0].service = Service::Named {
            name: 0,
            argument: Argument::Any,
        };
        assert_eq!(t.check(&q, 2), Err(TableError::Entry(0)));
        t.names
            .push(heapless::String::try_from("a b").unwrap())
            .unwrap();
        assert_eq!(t.check(&q, 2), Err(TableError::Name(0)));
        let mut two_admins = q;
        two_admins[1].admin = true;
        assert_eq!(
            Table::default().check(&two_admins, 1),
            Err(TableError::Qubes)
        );
        let mut bad_default = qubes();
        bad_default[1].default_dispvm = Some(PERSONAL);
        assert_eq!(
            Table::default().check(&bad_default, 1),
            Err(TableError::Qube(1))
        );
        assert_eq!(Table::default().check(&q, 0), Err(TableError::Qube(1)));
    }

    #[test]
    fn interning_shares_names() {
        let mut t = Table::default();
        assert_eq!(t.intern("a"), Some(0));
        assert_eq!(t.intern("b"), Some(1));
        assert_eq!(t.intern("a"), Some(0));
        assert_eq!(t.intern(&"x".repeat(SERVICE_MAX + 1)), None);
        for i in 2..MAX_NAMES {
            assert!(t.intern(&std::format!("n{i}")).is_some());
        }
        assert_eq!(t.intern("one-too-many"), None);
    }
}
