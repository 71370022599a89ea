//! Each rule of the semantics on a small system: admin (0), work (1, tag "dev"),
//! personal (2), disp (3, a disposable), vault (4, tag "dev").

extern crate std;

use super::*;
use heapless::Vec;

const ADMIN: u8 = 0;
pub(super) const WORK: u8 = 1;
pub(super) const PERSONAL: u8 = 2;
const DISP: u8 = 3;
const VAULT: u8 = 4;
const DEV: u8 = 0;

pub(super) fn qubes() -> [Qube; 5] {
    let plain = Qube::default();
    [
        Qube {
            admin: true,
            ..plain
        },
        Qube {
            default_dispvm: Some(DISP),
            tags: Tags::NONE.with(DEV),
            ..plain
        },
        plain,
        Qube {
            disposable: true,
            ..plain
        },
        Qube {
            tags: Tags::NONE.with(DEV),
            ..plain
        },
    ]
}

/// A table of `entries`, with services written as in the description (`"a"`, `"a+"`,
/// `"a+x"`, `"*"`).
fn table(entries: &[(&str, Source, Target, Action)]) -> Table {
    let mut t = Table::default();
    for (service, source, target, action) in entries {
        let service = match service.split_once('+') {
            _ if *service == "*" => Service::Any,
            None => Service::Named {
                name: t.intern(service).unwrap(),
                argument: Argument::Any,
            },
            Some((name, "")) => Service::Named {
                name: t.intern(name).unwrap(),
                argument: Argument::Empty,
            },
            Some((name, arg)) => Service::Named {
                name: t.intern(name).unwrap(),
                argument: Argument::Exactly(t.intern(arg).unwrap()),
            },
        };
        let entry = Entry {
            service,
            source: *source,
            target: *target,
            action: *action,
        };
        t.entries.push(entry).unwrap();
    }
    t.check(&qubes(), 1).unwrap();
    t
}

std::thread_local! {
    static TABLE: core::cell::RefCell<Table> = core::cell::RefCell::new(Table::default());
}

/// Evaluates calls against `entries`.
fn with(entries: &[(&str, Source, Target, Action)]) {
    TABLE.with(|t| *t.borrow_mut() = table(entries));
}

fn decide(service: &str, argument: &str, source: u8, target: Requested) -> Decision {
    let table = TABLE.with(|t| t.borrow().clone());
    evaluate(
        &table,
        &qubes(),
        &Call {
            service,
            argument,
            source,
            target,
        },
    )
}

const ALLOW: Action = Action::Allow { redirect: None };
const ASK: Action = Action::Ask {
    redirect: None,
    default_target: None,
};

fn allowed(target: Resolved, entry: usize) -> Decision {
    Decision::Allow { target, entry }
}

fn denied(reason: DenyReason, entry: Option<usize>) -> Decision {
    Decision::Deny { reason, entry }
}

#[test]
fn no_entries_deny_everything() {
    with(&[]);
    let d = decide("qubes.Filecopy", "", WORK, Requested::Named(PERSONAL));
    assert_eq!(d, denied(DenyReason::NoMatch, None));
    assert_eq!(d.entry(), None);
}

#[test]
fn the_first_matching_entry_decides() {
    use Source::*;
    with(&[
        ("s", Qube(WORK), Target::Qube(PERSONAL), Action::Deny),
        ("s", AnyVm, Target::AnyVm, ALLOW),
    ]);
    let n = Requested::Named;
    assert_eq!(
        decide("s", "", WORK, n(PERSONAL)),
        denied(DenyReason::Policy, Some(0))
    );
    assert_eq!(
        decide("s", "", WORK, n(VAULT)),
        allowed(Resolved::Qube(VAULT), 1)
    );
    assert_eq!(
        decide("s", "", PERSONAL, n(WORK)),
        allowed(Resolved::Qube(WORK), 1)
    );
    assert_eq!(
        decide("t", "", PERSONAL, n(WORK)),
        denied(DenyReason::NoMatch, None)
    );
}

#[test]
fn services_and_arguments() {
    let any = (Source::AnyVm, Target::AnyVm, ALLOW);
    with(&[
        ("a+x", any.0, any.1, any.2),
        ("b+", any.0, any.1, any.2),
        ("c", any.0, any.1, any.2),
    ]);
    let t = Requested::Named(PERSONAL);
    let ok = |entry| allowed(Resolved::Qube(PERSONAL), entry);
    assert_eq!(decide("a", "x", WORK, t), ok(0));
    assert_eq!(decide("a", "y", WORK, t).entry(), None);
    assert_eq!(decide("a", "", WORK, t).entry(), None);
    assert_eq!(decide("b", "", WORK, t), ok(1));
    assert_eq!(decide("b", "x", WORK, t).entry(), None);
    assert_eq!(decide("c", "", WORK, t), ok(2));
    assert_eq!(decide("c", "anything", WORK, t), ok(2));
    with(&[("*", any.0, any.1, any.2)]);
    assert_eq!(decide("whatever.Service", "arg+1", WORK, t), ok(0));
}

#[test]
fn sources() {
    let entry = |source| ("s", source, Target::AnyVm, ALLOW);
    with(&[entry(Source::Tag(DEV))]);
    let t = Requested::Named(PERSONAL);
    assert_eq!(decide("s", "", VAULT, t).entry(), Some(0));
    assert_eq!(decide("s", "", PERSONAL, t).entry(), None);
    with(&[entry(Source::AdminVm)]);
    assert_eq!(decide("s", "", ADMIN, t).entry(), Some(0));
    assert_eq!(decide("s", "", WORK, t).entry(), None);
    with(&[entry(Source::AnyVm)]);
    assert_eq!(
        decide("s", "", ADMIN, t).entry(),
        None,
        "@anyvm is not the admin qube"
    );
    assert_eq!(decide("s", "", DISP, t).entry(), Some(0));
}

#[test]
fn targets() {
    let entry = |target| ("s", Source::AnyVm, target, ALLOW);
    let r = Requested::Named;
    with(&[entry(Target::AnyVm)]);
    assert_eq!(decide("s", "", WORK, Requested::AdminVm).entry(), None);
    assert_eq!(
        decide("s", "", WORK, r(ADMIN)).entry(),
        None,
        "the admin qube by name"
    );
    assert_eq!(decide("s", "", WORK, Requested::Default).entry(), None);
    assert_eq!(
        decide("s", "", WORK, Requested::DispVmOf(DISP)),
        allowed(Resolved::Disposable(DISP), 0)
    );
    with(&[entry(Target::Tag(DEV))]);
    assert_eq!(decide("s", "", PERSONAL, r(VAULT)).entry(), Some(0));
    assert_eq!(decide("s", "", PERSONAL, r(DISP)).entry(), None);
    with(&[entry(Target::AdminVm)]);
    assert_eq!(decide("s", "", WORK, r(ADMIN)), allowed(Resolved::Admin, 0));
    with(&[entry(Target::Qube(ADMIN))]);
    assert_eq!(
        decide("s", "", WORK, Requested::AdminVm),
        allowed(Resolved::Admin, 0)
    );
}

#[test]
fn disposables() {
    let entry = |target| ("s", Source::AnyVm, target, ALLOW);
    with(&[entry(Target::DispVmOf(DISP))]);
    // work's default_dispvm is disp: its @dispvm matches @dispvm:disp; personal has none.
    assert_eq!(
        decide("s", "", WORK, Requested::DispVm),
        allowed(Resolved::Disposable(DISP), 0)
    );
    assert_eq!(decide("s", "", PERSONAL, Requested::DispVm).entry(), None);
    with(&[entry(Target::DispVm)]);
    assert_eq!(
        decide("s", "", WORK, Requested::DispVmOf(DISP)).entry(),
        None
    );
    assert_eq!(
        decide("s", "", PERSONAL, Requested::DispVm),
        denied(DenyReason::NoDefaultDispvm, Some(0))
    );
    let invalid = denied(DenyReason::InvalidCall, None);
    assert_eq!(decide("s", "", WORK, Requested::DispVmOf(VAULT)), invalid);
}

#[test]
fn redirects_and_default() {
    let redirect = |r| Action::Allow { redirect: Some(r) };
    with(&[
        (
            "a",
            Source::AnyVm,
            Target::Default,
            redirect(Redirect::Qube(VAULT)),
        ),
        ("b", Source::AnyVm, Target::Default, ALLOW),
        (
            "c",
            Source::AnyVm,
            Target::AnyVm,
            redirect(Redirect::DispVm),
        ),
    ]);
    let d = Requested::Default;
    assert_eq!(decide("a", "", WORK, d), allowed(Resolved::Qube(VAULT), 0));
    assert_eq!(
        decide("b", "", WORK, d),
        denied(DenyReason::NoTarget, Some(1))
    );
    let p = Requested::Named(PERSONAL);
    assert_eq!(
        decide("c", "", WORK, p),
        allowed(Resolved::Disposable(DISP), 2)
    );
    assert_eq!(
        decide("c", "", PERSONAL, p),
        denied(DenyReason::NoDefaultDispvm, Some(2))
    );
}

#[test]
fn ask_offers_what_the_same_call_could_name() {
    with(&[
        ("s", Source::AnyVm, Target::Qube(PERSONAL), Action::Deny),
        ("s", Source::AnyVm, Target::Default, ASK),
        ("s", Source::AnyVm, Target::Tag(DEV), ALLOW),
        ("s", Source::AnyVm, Target::DispVm, ASK),
        (
            "s",
            Source::AnyVm,
            Target::AdminVm,
            Action::Allow {
                redirect: Some(Redirect::Qube(WORK)),
            },
        ),
    ]);
    let d = decide("s", "", WORK, Requested::Default);
    let expected: Vec<Resolved, MAX_CANDIDATES> = Vec::from_slice(&[
        Resolved::Qube(WORK),
        Resolved::Qube(VAULT),
        Resolved::Disposable(DISP),
    ])
    .unwrap();
    assert_eq!(
        d,
        Decision::Ask {
            default: None,
            candidates: expected,
            entry: 1
        }
    );
    // personal has no default disposable: nothing resolves @dispvm for it.
    let Decision::Ask { candidates, .. } = decide("s", "", PERSONAL, Requested::Default) else {
        panic!()
    };
    assert!(!candidates.contains(&Resolved::Disposable(DISP)));
    // The requested target is proposed when it is a choice.
    let Decision::Ask { default, .. } = decide("s", "", WORK, Requested::DispVm) else {
        panic!()
    };
    assert_eq!(default, Some(Resolved::Disposable(DISP)));
}

#[test]
fn ask_with_redirect_and_default_target() {
    let ask = Action::Ask {
        redirect: None,
        default_target: Some(Redirect::Qube(VAULT)),
    };
    with(&[("s", Source::AnyVm, Target::AnyVm, ask)]);
    let Decision::Ask {
        default,
        candidates,
        ..
    } = decide("s", "", WORK, Requested::Named(PERSONAL))
    else {
        panic!()
    };
    assert_eq!(default, Some(Resolved::Qube(VAULT)));
    assert!(candidates.contains(&Resolved::Qube(PERSONAL)));
    assert!(!candidates.contains(&Resolved::Admin));
    let ask = Action::Ask {
        redirect: Some(Redirect::Qube(VAULT)),
        default_target: None,
    };
    with(&[("s", Source::AnyVm, Target::AnyVm, ask)]);
    let d = decide("s", "", WORK, Requested::Named(PERSONAL));
    let only: Vec<Resolved, MAX_CANDIDATES> = Vec::from_slice(&[Resolved::Qube(VAULT)]).unwrap();
    let expected = Decision::Ask {
        default: None,
        candidates: only,
        entry: 0,
    };
    assert_eq!(d, expected);
    // Nothing to choose from: denied.
    with(&[("s", Source::AnyVm, Target::Default, ASK)]);
    let d = decide("s", "", WORK, Requested::Default);
    assert_eq!(d, denied(DenyReason::NoCandidates, Some(0)));
}

#[test]
fn malformed_calls_are_denied_before_any_entry() {
    with(&[("*", Source::AnyVm, Target::AnyVm, ALLOW)]);
    let p = Requested::Named(PERSONAL);
    let invalid = denied(DenyReason::InvalidCall, None);
    assert_eq!(decide("s", "", 9, p), invalid);
    assert_eq!(decide("s", "", WORK, Requested::Named(9)), invalid);
    assert_eq!(decide("", "", WORK, p), invalid);
    assert_eq!(decide("a b", "", WORK, p), invalid);
    assert_eq!(decide("s", "x/y", WORK, p), invalid);
    assert_eq!(decide(&"s".repeat(SERVICE_MAX + 1), "", WORK, p), invalid);
}
