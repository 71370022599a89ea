//! Deciding a call and getting it to its target: the policy, the `ask` prompt, starting
//! the target, and the first messages to both ends.

use crate::calls::{Open, State};
use crate::{HOST, Host, Outcome, Relay};
use bulkhead_abi::qrexec::{FromAdmin, INCOMING_BASE, MAX_CANDIDATES, Refusal};
use bulkhead_policy::{Call, Decision, DenyReason, Requested, Resolved, evaluate};
use heapless::{String, Vec};

impl Relay<'_> {
    /// A new call from `from`.
    pub(crate) fn call(
        &mut self,
        host: &mut impl Host,
        from: u8,
        call: u32,
        service: &str,
        argument: &str,
        target: &str,
    ) -> Outcome {
        if host.room(from) == 0 {
            return Outcome::Retry;
        }
        let (Ok(service_s), Ok(argument_s)) =
            (String::try_from(service), String::try_from(argument))
        else {
            return self.refuse(host, from, call, Refusal::Malformed);
        };
        if call >= INCOMING_BASE || self.calls.source_uses(from, call) {
            return self.refuse(host, from, call, Refusal::Malformed);
        }
        let qube = |t: u8| &self.config.qubes[usize::from(t)].policy;
        let decision = match (from, self.requested(target)) {
            // The host's console calls like Qubes' dom0: without policy. The admin qube's
            // name means `@adminvm`, and only a disposable has disposables.
            (HOST, Some(Requested::Named(t))) if !qube(t).admin => Decision::Allow {
                target: Resolved::Qube(t),
                entry: usize::MAX,
            },
            (HOST, Some(Requested::DispVmOf(t))) if qube(t).disposable => Decision::Allow {
                target: Resolved::Disposable(t),
                entry: usize::MAX,
            },
            (HOST, Some(Requested::AdminVm | Requested::Named(_))) => Decision::Allow {
                target: Resolved::Admin,
                entry: usize::MAX,
            },
            (HOST, _) | (_, None) => Decision::Deny {
                reason: DenyReason::InvalidCall,
                entry: None,
            },
            (_, Some(requested)) => {
                let c = Call {
                    service,
                    argument,
                    source: from,
                    target: requested,
                };
                evaluate(&self.config.policy, &self.qubes, &c)
            }
        };
        let id = self.calls.fresh_id();
        let mut open = Open {
            id,
            source: from,
            source_call: call,
            target: None,
            disposable: false,
            service: service_s,
            argument: argument_s,
            state: State::Running,
        };
        match decision {
            Decision::Deny { reason, entry } => {
                self.log_decision(
                    host,
                    &open,
                    target,
                    format_args!("denied ({reason:?}{})", Entry(entry)),
                );
                let why = match reason {
                    DenyReason::InvalidCall => Refusal::Malformed,
                    _ => Refusal::Denied,
                };
                self.refuse(host, from, call, why)
            }
            Decision::Allow { target: t, entry } => {
                self.log_decision(
                    host,
                    &open,
                    target,
                    format_args!(
                        "allowed to {}{}",
                        self.resolved_name(t).as_str(),
                        Entry(Some(entry))
                    ),
                );
                match self.calls.push(open) {
                    Ok(i) => {
                        self.route(host, i, t);
                        self.tick(host);
                        Outcome::Done
                    }
                    Err(why) => self.refuse(host, from, call, why),
                }
            }
            Decision::Ask {
                default,
                candidates,
                entry,
            } => {
                // A gui qube still starting gets the prompt once it says hello.
                let gui_running = self
                    .config
                    .gui
                    .is_some_and(|g| self.is_up(g) || host.state(g).is_some_and(|s| s.running));
                if !gui_running {
                    self.log_decision(
                        host,
                        &open,
                        target,
                        format_args!("ask, but no gui qube to ask: denied{}", Entry(Some(entry))),
                    );
                    return self.refuse(host, from, call, Refusal::UserRefused);
                }
                let mut offered: Vec<Resolved, { bulkhead_policy::MAX_CANDIDATES }> = Vec::new();
                // The default first, so the prompt preselects index 0.
                for c in default.into_iter().chain(candidates.iter().copied()) {
                    if !offered.contains(&c) && offered.len() < MAX_CANDIDATES {
                        let _ = offered.push(c);
                    }
                }
                self.log_decision(
                    host,
                    &open,
                    target,
                    format_args!(
                        "asking the user ({} choices){}",
                        offered.len(),
                        Entry(Some(entry))
                    ),
                );
                open.state = State::Asking {
                    candidates: offered,
                    query: None,
                    unsent: true,
                };
                match self.calls.push(open) {
                    Ok(i) => {
                        self.send_ask(host, i);
                        Outcome::Done
                    }
                    Err(why) => self.refuse(host, from, call, why),
                }
            }
        }
    }

    /// The gui qube asks whether `source` may call `service` at `target` (a paste).
    pub(crate) fn query(
        &mut self,
        host: &mut impl Host,
        query: u32,
        service: &str,
        source: &str,
        target: &str,
    ) -> Outcome {
        let gui = self.config.gui.unwrap_or(HOST);
        if host.room(gui) == 0 {
            return Outcome::Retry;
        }
        let (s, t) = (self.index_of(source), self.index_of(target));
        let decision = match (s, t) {
            (Some(s), Some(t)) => evaluate(
                &self.config.policy,
                &self.qubes,
                &Call {
                    service,
                    argument: "",
                    source: s,
                    target: Requested::Named(t),
                },
            ),
            _ => Decision::Deny {
                reason: DenyReason::InvalidCall,
                entry: None,
            },
        };
        let allowed = match (decision, s, t) {
            (Decision::Allow { .. }, ..) => true,
            // A paste the policy asks about: the user answers at the paste itself.
            (Decision::Ask { .. }, Some(s), Some(t)) => {
                if self.ask_query(host, query, service, s, t) {
                    host.log(format_args!(
                        "{service} {source} -> {target}: asking the user"
                    ));
                    return Outcome::Done;
                }
                false
            }
            _ => false,
        };
        host.log(format_args!(
            "{service} {source} -> {target}: {}",
            if allowed { "allowed" } else { "denied" }
        ));
        let _ = host.send(gui, &FromAdmin::Verdict { query, allowed });
        Outcome::Done
    }

    /// Opens a question for the gui qube's query `query`; false when it cannot be asked.
    fn ask_query(&mut self, host: &mut impl Host, query: u32, service: &str, s: u8, t: u8) -> bool {
        let (Ok(service), true) = (String::try_from(service), self.config.gui.is_some()) else {
            return false;
        };
        let mut candidates = Vec::new();
        let _ = candidates.push(Resolved::Qube(t));
        let open = Open {
            id: self.calls.fresh_id(),
            source: s,
            source_call: 0,
            target: Some(t),
            disposable: false,
            service,
            argument: String::new(),
            state: State::Asking {
                candidates,
                query: Some(query),
                unsent: true,
            },
        };
        match self.calls.push(open) {
            Ok(i) => {
                self.send_ask(host, i);
                true
            }
            Err(_) => false,
        }
    }

    /// The user answered question `ask`.
    pub(crate) fn answer(&mut self, host: &mut impl Host, ask: u32, choice: Option<u8>) -> Outcome {
        let Some(i) = self.calls.find_ask(ask) else {
            self.dropped += 1;
            return Outcome::Done;
        };
        let State::Asking {
            ref candidates,
            query,
            ..
        } = self.calls[i].state
        else {
            return Outcome::Done;
        };
        let picked = choice.and_then(|k| candidates.get(usize::from(k)).copied());
        let c = &self.calls[i];
        host.log(format_args!(
            "{}: the user {}",
            c.describe(self),
            if picked.is_some() {
                "allowed it"
            } else {
                "refused it"
            }
        ));
        if let Some(query) = query {
            let gui = self.config.gui.unwrap_or(HOST);
            let verdict = FromAdmin::Verdict {
                query,
                allowed: picked.is_some(),
            };
            if host.send(gui, &verdict).is_err() {
                return Outcome::Retry;
            }
            self.calls.remove(i);
            return Outcome::Done;
        }
        match picked {
            Some(t) => self.route(host, i, t),
            None => {
                self.calls[i].state = State::Closing {
                    to_source: Some(Refusal::UserRefused),
                };
            }
        }
        self.tick(host);
        Outcome::Done
    }

    /// Sends call `i`'s prompt to the gui qube, if its ring takes it.
    pub(crate) fn send_ask(&mut self, host: &mut impl Host, i: usize) {
        let gui = self.config.gui.unwrap_or(HOST);
        if !self.is_up(gui) {
            return;
        }
        let mut names: Vec<String<40>, MAX_CANDIDATES> = Vec::new();
        let sent = {
            let c = &self.calls[i];
            let State::Asking { ref candidates, .. } = c.state else {
                return;
            };
            for r in candidates {
                let _ = names.push(self.resolved_name(*r));
            }
            let ask = FromAdmin::Ask {
                ask: c.id,
                source: self.name(c.source),
                service: &c.service,
                argument: &c.argument,
                candidates: names.iter().map(|n| n.as_str()).collect(),
                default: Some(0),
            };
            host.send(gui, &ask).is_ok()
        };
        if let State::Asking { unsent, .. } = &mut self.calls[i].state {
            *unsent = !sent;
        }
    }

    /// Sends call `i` on its way to `t`.
    fn route(&mut self, host: &mut impl Host, i: usize, t: Resolved) {
        let now = host.now_ms();
        let (q, disposable) = match t {
            Resolved::Admin => {
                self.calls[i].target = None;
                self.serve_locally(host, i);
                return;
            }
            Resolved::Qube(q) => (q, false),
            Resolved::Disposable(q) => (q, true),
        };
        self.calls[i].target = Some(q);
        let has_channel = self
            .config
            .qubes
            .get(usize::from(q))
            .is_some_and(|q| q.qrexec.is_some());
        let running = host.state(q).is_some_and(|s| s.running);
        let refuse = |why| State::Closing {
            to_source: Some(why),
        };
        self.calls[i].state = if !has_channel {
            refuse(Refusal::Unavailable)
        } else if disposable && running {
            host.log(format_args!("disposable {} is in use", self.name(q)));
            refuse(Refusal::Busy)
        } else if running || host.start(q) {
            if !running {
                host.log(format_args!("{} started for the call", self.name(q)));
            }
            State::Starting { since: now }
        } else {
            refuse(Refusal::Unavailable)
        };
        // Only a disposable started for this call is destroyed when it ends: never one that
        // was refused (another call may be using it).
        self.calls[i].disposable =
            disposable && matches!(self.calls[i].state, State::Starting { .. });
    }

    /// Call `i`'s target is up: it gets the call, then the source hears where it runs.
    pub(crate) fn deliver(&mut self, host: &mut impl Host, i: usize) {
        let c = &self.calls[i];
        let Some(t) = c.target else { return };
        if host.room(t) == 0 || host.room(c.source) == 0 {
            return;
        }
        let sent = {
            let incoming = FromAdmin::Incoming {
                call: c.id,
                source: self.name(c.source),
                service: &c.service,
                argument: &c.argument,
            };
            let accepted = FromAdmin::Accepted {
                call: c.source_call,
                target: self.name(t),
            };
            host.send(t, &incoming).is_ok() && host.send(c.source, &accepted).is_ok()
        };
        if sent {
            self.calls[i].state = State::Running;
        }
    }

    fn refuse(&mut self, host: &mut impl Host, to: u8, call: u32, reason: Refusal) -> Outcome {
        match host.send(to, &FromAdmin::Refused { call, reason }) {
            Ok(()) => Outcome::Done,
            Err(_) => Outcome::Retry,
        }
    }

    /// The target a caller wrote, as the policy names it (`None`: no such qube).
    fn requested(&self, target: &str) -> Option<Requested> {
        match target {
            "@default" | "" => Some(Requested::Default),
            "@dispvm" => Some(Requested::DispVm),
            "@adminvm" => Some(Requested::AdminVm),
            _ => match target.strip_prefix("@dispvm:") {
                Some(name) => self.index_of(name).map(Requested::DispVmOf),
                None => self.index_of(target).map(Requested::Named),
            },
        }
    }

    fn index_of(&self, name: &str) -> Option<u8> {
        let i = self.config.qubes.iter().position(|q| q.name == name)?;
        u8::try_from(i).ok()
    }

    /// How a prompt and a log line name a target.
    fn resolved_name(&self, r: Resolved) -> String<40> {
        let mut s = String::new();
        let _ = match r {
            Resolved::Qube(q) => s.push_str(self.name(q)),
            Resolved::Disposable(q) => s
                .push_str("@dispvm:")
                .and_then(|()| s.push_str(self.name(q))),
            Resolved::Admin => s.push_str("@adminvm"),
        };
        s
    }

    fn log_decision(
        &self,
        host: &mut impl Host,
        open: &Open,
        asked: &str,
        what: core::fmt::Arguments<'_>,
    ) {
        let plus = if open.argument.is_empty() { "" } else { "+" };
        host.log(format_args!(
            "policy: {}{plus}{} {} -> {}: {what}",
            open.service,
            open.argument,
            self.name(open.source),
            asked
        ));
    }
}

/// ", entry N" for a log line (1-based, as written in the system description).
struct Entry(Option<usize>);

impl core::fmt::Display for Entry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(usize::MAX) => write!(f, ", from the host"),
            Some(n) => write!(f, ", policy entry {}", n + 1),
            None => Ok(()),
        }
    }
}
