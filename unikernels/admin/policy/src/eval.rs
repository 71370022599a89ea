//! Deciding one call: the first entry whose service, source and target match decides; no
//! match denies. The semantics are Qubes OS' policy v5 (`docs/qrexec.md`, "Policy").

use super::table::{Action, Argument, Entry, Qube, Redirect, Service, Source, Table, Target};
use super::{MAX_QUBES, valid_argument, valid_service};
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// Most choices an `ask` offers: every qube, a disposable of each, and the admin qube.
pub const MAX_CANDIDATES: usize = 2 * MAX_QUBES + 1;

/// A service call as the admin qube received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call<'a> {
    /// The service name (`qubes.Filecopy`).
    pub service: &'a str,
    /// The argument, empty when the call has none.
    pub argument: &'a str,
    /// The calling qube, by index.
    pub source: u8,
    /// What the caller asked for.
    pub target: Requested,
}

/// The target a caller asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Requested {
    /// A qube, by index (the admin qube's index is the same as [`Requested::AdminVm`]).
    Named(u8),
    /// No target: the policy chooses (`@default`).
    Default,
    /// A fresh disposable of the caller's `default_dispvm` (`@dispvm`).
    DispVm,
    /// A fresh disposable of this disposable qube, by index (`@dispvm:NAME`).
    DispVmOf(u8),
    /// The admin qube (`@adminvm`).
    AdminVm,
}

/// Where an allowed call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resolved {
    /// This qube, by index.
    Qube(u8),
    /// A fresh disposable of this disposable qube, by index.
    Disposable(u8),
    /// The admin qube.
    Admin,
}

/// Why a call is denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The call is malformed: an unknown source or target qube, `@dispvm:NAME` of a qube
    /// that is not a disposable, or a service name or argument that is not one.
    InvalidCall,
    /// No entry matches.
    NoMatch,
    /// The entry that matched says `deny`.
    Policy,
    /// The entry allows a call that named no target, but has no `redirect` to run it at.
    NoTarget,
    /// The call (or the entry's redirect) is for `@dispvm`, and the caller has no
    /// `default_dispvm`.
    NoDefaultDispvm,
    /// The entry says `ask`, but no target is allowed or asked for this call.
    NoCandidates,
    /// The entry names a qube or disposable that does not exist (a table that did not pass
    /// [`Table::check`]).
    BrokenEntry,
}

/// What to do with a call, and which entry said so (for the log line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Refuse it.
    Deny {
        /// Why.
        reason: DenyReason,
        /// The entry that matched, if one did.
        entry: Option<usize>,
    },
    /// Run it at `target`.
    Allow {
        /// Where.
        target: Resolved,
        /// The entry that matched.
        entry: usize,
    },
    /// Ask the user where to run it, if at all.
    Ask {
        /// The preselected choice: the entry's `default_target`, else the requested
        /// target, when it is one of `candidates`.
        default: Option<Resolved>,
        /// The choices, never empty, in [`Resolved`]'s order: with a `redirect`, that one;
        /// otherwise every target for which the same call naming that target would be
        /// allowed or asked.
        candidates: Vec<Resolved, MAX_CANDIDATES>,
        /// The entry that matched.
        entry: usize,
    },
}

impl Decision {
    /// The entry that decided, if one matched.
    pub fn entry(&self) -> Option<usize> {
        match self {
            Decision::Deny { entry, .. } => *entry,
            Decision::Allow { entry, .. } | Decision::Ask { entry, .. } => Some(*entry),
        }
    }
}

/// Decides `call` by `table`; `qubes` are the system's qubes by index. Never panics.
pub fn evaluate(table: &Table, qubes: &[Qube], call: &Call<'_>) -> Decision {
    let deny = |reason, entry| Decision::Deny { reason, entry };
    let system = System { qubes };
    let target = system.normalise(call.target);
    let valid = system.qube(call.source).is_some()
        && valid_service(call.service)
        && valid_argument(call.argument);
    let Some(target) = target.filter(|_| valid) else {
        return deny(DenyReason::InvalidCall, None);
    };
    let Some((index, entry)) = system.first_match(table, call, target) else {
        return deny(DenyReason::NoMatch, None);
    };
    match entry.action {
        Action::Deny => deny(DenyReason::Policy, Some(index)),
        Action::Allow { redirect } => {
            match system.resolve(call.source, redirect.map_or(target, requested)) {
                Ok(target) => Decision::Allow {
                    target,
                    entry: index,
                },
                Err(reason) => deny(reason, Some(index)),
            }
        }
        Action::Ask {
            redirect,
            default_target,
        } => {
            let candidates = match redirect {
                Some(r) => system
                    .resolve(call.source, requested(r))
                    .ok()
                    .into_iter()
                    .collect(),
                None => system.candidates(table, call),
            };
            if candidates.is_empty() {
                return deny(DenyReason::NoCandidates, Some(index));
            }
            let offered = |r: Requested| {
                system
                    .resolve(call.source, r)
                    .ok()
                    .filter(|t| candidates.contains(t))
            };
            let default = default_target
                .and_then(|d| offered(requested(d)))
                .or_else(|| offered(target));
            Decision::Ask {
                default,
                candidates,
                entry: index,
            }
        }
    }
}

/// A redirect as the target it stands for.
fn requested(r: Redirect) -> Requested {
    match r {
        Redirect::Qube(i) => Requested::Named(i),
        Redirect::DispVm => Requested::DispVm,
        Redirect::DispVmOf(i) => Requested::DispVmOf(i),
        Redirect::AdminVm => Requested::AdminVm,
    }
}

/// The qubes a call is judged against.
struct System<'a> {
    qubes: &'a [Qube],
}

impl System<'_> {
    fn qube(&self, i: u8) -> Option<&Qube> {
        self.qubes.get(usize::from(i))
    }

    fn is_admin(&self, i: u8) -> bool {
        self.qube(i).is_some_and(|q| q.admin)
    }

    fn has_tag(&self, i: u8, tag: u8) -> bool {
        self.qube(i)
            .is_some_and(|q| !q.admin && q.tags.contains(tag))
    }

    fn is_disposable(&self, i: u8) -> bool {
        self.qube(i).is_some_and(|q| q.disposable)
    }

    /// The requested target with the admin qube's name read as `@adminvm`; `None` when it
    /// names no qube or a disposable of a qube that is not one.
    fn normalise(&self, target: Requested) -> Option<Requested> {
        match target {
            Requested::Named(i) if self.is_admin(i) => Some(Requested::AdminVm),
            Requested::Named(i) => self.qube(i).map(|_| target),
            Requested::DispVmOf(i) => self.is_disposable(i).then_some(target),
            Requested::Default | Requested::DispVm | Requested::AdminVm => Some(target),
        }
    }

    /// The first entry that matches `call` asking for `target` (normalised), and its index.
    fn first_match<'t>(
        &self,
        table: &'t Table,
        call: &Call<'_>,
        target: Requested,
    ) -> Option<(usize, &'t Entry)> {
        table.entries.iter().enumerate().find(|(_, e)| {
            service_matches(table, e.service, call)
                && self.source_matches(e.source, call.source)
                && self.target_matches(e.target, call.source, target)
        })
    }

    fn source_matches(&self, source: Source, caller: u8) -> bool {
        match source {
            Source::Qube(i) => i == caller,
            Source::AnyVm => !self.is_admin(caller),
            Source::Tag(t) => self.has_tag(caller, t),
            Source::AdminVm => self.is_admin(caller),
        }
    }

    fn target_matches(&self, target: Target, caller: u8, asked: Requested) -> bool {
        match (target, asked) {
            (Target::Qube(i), Requested::Named(j)) => i == j,
            (Target::Qube(i), Requested::AdminVm) => self.is_admin(i),
            // `asked` is normalised: a named qube is not the admin qube.
            (Target::AnyVm, Requested::Named(_) | Requested::DispVm | Requested::DispVmOf(_)) => {
                true
            }
            (Target::Default, Requested::Default) => true,
            (Target::DispVm, Requested::DispVm) => true,
            (Target::DispVmOf(i), Requested::DispVmOf(j)) => i == j,
            (Target::DispVmOf(i), Requested::DispVm) => {
                self.qube(caller).and_then(|q| q.default_dispvm) == Some(i)
            }
            (Target::Tag(t), Requested::Named(j)) => self.has_tag(j, t),
            (Target::AdminVm, Requested::AdminVm) => true,
            _ => false,
        }
    }

    /// Where a call from `caller` asking for `target` runs.
    fn resolve(&self, caller: u8, target: Requested) -> Result<Resolved, DenyReason> {
        match target {
            Requested::Named(i) if self.is_admin(i) => Ok(Resolved::Admin),
            Requested::Named(i) if self.qube(i).is_some() => Ok(Resolved::Qube(i)),
            Requested::Default => Err(DenyReason::NoTarget),
            Requested::DispVm => match self.qube(caller).and_then(|q| q.default_dispvm) {
                Some(d) if self.is_disposable(d) => Ok(Resolved::Disposable(d)),
                Some(_) => Err(DenyReason::BrokenEntry),
                None => Err(DenyReason::NoDefaultDispvm),
            },
            Requested::DispVmOf(i) if self.is_disposable(i) => Ok(Resolved::Disposable(i)),
            Requested::AdminVm => Ok(Resolved::Admin),
            Requested::Named(_) | Requested::DispVmOf(_) => Err(DenyReason::BrokenEntry),
        }
    }

    /// Every target `call` could run at if it had named it: each qube, `@dispvm`, each
    /// `@dispvm:NAME` and `@adminvm`, asked for explicitly and resolved by the entry that
    /// matches then, when that entry allows or asks. Sorted, each once.
    fn candidates(&self, table: &Table, call: &Call<'_>) -> Vec<Resolved, MAX_CANDIDATES> {
        let count = self.qubes.len().min(MAX_QUBES) as u8;
        let named = (0..count)
            .filter(|i| !self.is_admin(*i))
            .map(Requested::Named);
        let disposables = (0..count)
            .filter(|i| self.is_disposable(*i))
            .map(Requested::DispVmOf);
        let explicit = named
            .chain([Requested::DispVm])
            .chain(disposables)
            .chain([Requested::AdminVm]);
        let mut out: Vec<Resolved, MAX_CANDIDATES> = Vec::new();
        for target in explicit {
            let redirect = match self.first_match(table, call, target).map(|(_, e)| e.action) {
                Some(Action::Allow { redirect } | Action::Ask { redirect, .. }) => redirect,
                Some(Action::Deny) | None => continue,
            };
            let Ok(resolved) = self.resolve(call.source, redirect.map_or(target, requested)) else {
                continue;
            };
            if !out.contains(&resolved) {
                // At most one of each resolution: the bound holds them all.
                let _ = out.push(resolved);
            }
        }
        out.sort_unstable();
        out
    }
}

fn service_matches(table: &Table, service: Service, call: &Call<'_>) -> bool {
    match service {
        Service::Any => true,
        Service::Named { name, argument } => {
            table.name(name) == Some(call.service)
                && match argument {
                    Argument::Any => true,
                    Argument::Empty => call.argument.is_empty(),
                    Argument::Exactly(a) => table.name(a) == Some(call.argument),
                }
        }
    }
}
