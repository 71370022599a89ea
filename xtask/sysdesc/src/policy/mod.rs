//! `[[policy]]` tables: the qrexec policy (Qubes' policy v5, `docs/qrexec.md`), checked
//! entry by entry and compiled into a `bulkhead_policy::Table` for the admin qube. Entries
//! that can never match are warned about in `shadow.rs`.

mod words;

pub(crate) use words::Word;

use super::admin::{ADMIN_IMAGE, Admin};
use super::diagnostics::Diagnostics;
use super::hints;
use super::schema::{Raw, Section};
use bulkhead_policy::{
    Action, Argument, Entry, MAX_ENTRIES, MAX_NAMES, Service, Table, valid_argument, valid_service,
};
use std::ops::Range;
use words::{Place, redirect_of, source_of, target_of, word};

/// Actions, as written.
const ACTIONS: &[&str] = &["allow", "deny", "ask"];

/// What the entries may name.
struct Scope<'a> {
    names: Vec<Option<&'a str>>,
    /// Whether the qubes could be read (otherwise every name would look unknown).
    known: bool,
    admin: &'a Admin,
    /// Places `@adminvm` was written although the system has no admin qube.
    adminvm_without_admin: usize,
}

/// Checks every `[[policy]]` and compiles them in order; `None` when one is wrong (reported).
pub(super) fn check(raw: &Raw, admin: &Admin, text: &str, d: &mut Diagnostics) -> Option<Table> {
    let items = &raw.policy.items;
    if let Some(extra) = items.get(MAX_ENTRIES) {
        let message = format!("{} policy entries, at most {MAX_ENTRIES} fit", items.len());
        let hint = "merge entries with @anyvm, @tag:NAME or service = \"*\"";
        d.push(text, extra.span.clone(), extra.path.clone(), message, hint);
        return None;
    }
    let mut scope = Scope {
        names: raw.qubes.item_names(),
        known: raw.qubes.known(),
        admin,
        adminvm_without_admin: 0,
    };
    let mut table = Table::default();
    let mut ok = !raw.policy.malformed;
    for p in items {
        let entry = entry(p, &mut scope, &mut table, text, d);
        ok &= entry.is_some_and(|e| table.entries.push(e).is_ok());
    }
    if let (None, Some(first), 0) = (admin.qube, items.first(), scope.adminvm_without_admin) {
        let message = "[[policy]] tables, but no qube is the admin qube";
        let hint = format!(
            "the admin qube applies the policy: add a qube with image = \"{ADMIN_IMAGE}\", or \
             remove the [[policy]] tables"
        );
        d.push(text, first.span.clone(), first.path.clone(), message, hint);
        ok = false;
    }
    ok.then_some(table)
}

/// One entry: its service, source, target and action (with `redirect`, `default_target`).
fn entry(
    p: &Section,
    scope: &mut Scope,
    table: &mut Table,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Entry> {
    let mut required = |key: &str, example: &str| {
        let value = p.text(key);
        if value.is_none() && p.absent(key) {
            let hint = format!("add {key} = {example}");
            d.push(
                text,
                p.span.clone(),
                p.key(key),
                format!("missing {key}"),
                hint,
            );
        }
        value
    };
    let service_text = required("service", "\"qubes.Filecopy\" (or \"*\" for any service)");
    let source_text = required("source", "\"@anyvm\"");
    let target_text = required("target", "\"@default\"");
    let action_text = required("action", "\"ask\" (allow, deny or ask)");
    let service = service_text.and_then(|(s, span)| service(p, s, span, table, text, d));
    let source =
        source_text.and_then(|(s, span)| word(p, "source", s, span, Place::Source, scope, text, d));
    let target =
        target_text.and_then(|(s, span)| word(p, "target", s, span, Place::Target, scope, text, d));
    let mut optional = |key: &'static str| match p.text(key) {
        Some((s, span)) => word(p, key, s, span, Place::Redirect, scope, text, d).map(Some),
        None => p.absent(key).then_some(None),
    };
    let redirect = optional("redirect");
    let default_target = optional("default_target");
    let (action_text, action_span) = action_text?;
    let misplaced = |key: &str, why: &str, d: &mut Diagnostics| {
        let span = p.text(key).map(|(_, s)| s);
        let message = format!("{key} with action = \"{action_text}\"");
        d.push(text, span, p.key(key), message, why.to_string());
        None
    };
    let action = match action_text {
        "deny" if !p.absent("redirect") => misplaced(
            "redirect",
            "a denied call runs nowhere: remove redirect, or make the action allow or ask",
            d,
        ),
        "allow" | "deny" if !p.absent("default_target") => misplaced(
            "default_target",
            "default_target is the preselected choice of an ask prompt: remove it, or make \
             the action ask",
            d,
        ),
        "deny" => Some(Action::Deny),
        "allow" if target == Some(Word::Default) && p.absent("redirect") => {
            let message = "allow for target = \"@default\" without redirect: a call that \
                           names no target has nowhere to run";
            let hint = "add redirect = \"...\" (where such calls run), or make the action ask";
            d.fail(text, Some(action_span), p.key("action"), message, hint)
        }
        "allow" => Some(Action::Allow {
            redirect: redirect?.map(redirect_of),
        }),
        "ask" => Some(Action::Ask {
            redirect: redirect?.map(redirect_of),
            default_target: default_target?.map(redirect_of),
        }),
        other => {
            let message = format!("unknown action {}", hints::quoted(other));
            d.fail(
                text,
                Some(action_span),
                p.key("action"),
                message,
                hints::one_of("actions", other, ACTIONS),
            )
        }
    };
    Some(Entry {
        service: service?,
        source: source_of(source?),
        target: target_of(target?),
        action: action?,
    })
}

/// `"*"`, `"name"`, `"name+"` or `"name+ARG"`.
fn service(
    p: &Section,
    s: &str,
    span: Range<usize>,
    table: &mut Table,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Service> {
    let key = p.key("service");
    let (name, argument) = match s.split_once('+') {
        Some((name, arg)) => (name, Some(arg)),
        None => (s, None),
    };
    let problem = if name == "*" && argument.is_some() {
        Some("service \"*\" takes no argument: it matches every service and argument".to_string())
    } else if name != "*" && !valid_service(name) {
        Some(format!("{} is not a service name", hints::quoted(name)))
    } else if argument.is_some_and(|a| !valid_argument(a)) {
        Some(format!(
            "{} is not a service argument",
            hints::quoted(argument.unwrap_or(""))
        ))
    } else {
        None
    };
    if let Some(message) = problem {
        let hint = "write \"name\" (any argument), \"name+\" (none), \"name+ARG\" or \"*\"; \
                    names are 1 to 64 bytes of A-Z a-z 0-9 . _ -, arguments at most 64 bytes, \
                    + allowed";
        return d.fail(text, Some(span), key, message, hint);
    }
    if name == "*" {
        return Some(Service::Any);
    }
    let mut full = || {
        let message = format!("more than {MAX_NAMES} different service names and arguments");
        let hint = "merge entries with service = \"*\" or fewer arguments";
        d.push(text, Some(span.clone()), key.clone(), message, hint);
        None
    };
    let Some(index) = table.intern(name) else {
        return full();
    };
    let argument = match argument {
        None => Argument::Any,
        Some("") => Argument::Empty,
        Some(a) => match table.intern(a) {
            Some(a) => Argument::Exactly(a),
            None => return full(),
        },
    };
    Some(Service::Named {
        name: index,
        argument,
    })
}
