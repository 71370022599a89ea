//! The engine against the reference model (`model/`): random systems (an admin qube or
//! none, disposables, default disposables, tags), random policies written as text (every
//! kind of service, source, target, action, redirect and default target) and random calls
//! (including malformed ones) must get the same decision from both.

mod model;

use bulkhead_policy::{
    Action, Argument, Call, Decision, Entry, Qube, Redirect, Requested, Resolved, Service, Source,
    Table, Tags, Target, evaluate,
};
use proptest::prelude::*;
use std::collections::BTreeSet;

const NAMES: [&str; 6] = ["adm", "work", "personal", "disp", "disp2", "vault"];
const TAGS: [&str; 2] = ["red", "blue"];

/// A system: whether "adm" is the admin qube, whether "work" is a disposable too, each
/// qube's default disposable (an index into `[None, disp, disp2]`) and tags (two bits).
fn system() -> impl Strategy<Value = Vec<model::Qube>> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::array::uniform6(0usize..3),
        proptest::array::uniform6(0u8..4),
    )
        .prop_map(|(admin, work_disposable, defaults, tags)| {
            (0..NAMES.len())
                .map(|i| model::Qube {
                    name: NAMES[i].to_string(),
                    admin: admin && i == 0,
                    disposable: i == 3 || i == 4 || (i == 1 && work_disposable),
                    default_dispvm: [None, Some("disp"), Some("disp2")][defaults[i]]
                        .map(str::to_string),
                    tags: (0..2)
                        .filter(|t| tags[i] & (1 << t) != 0)
                        .map(|t| TAGS[t].to_string())
                        .collect(),
                })
                .collect()
        })
}

fn one_of(words: Vec<String>) -> impl Strategy<Value = String> {
    proptest::sample::select(words)
}

fn with_names(extra: &[&str]) -> Vec<String> {
    NAMES.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// A rule; half the sources and targets are tokens, half qube names.
fn rule() -> impl Strategy<Value = model::Rule> {
    let services = ["*", "*", "s1", "s1", "s1+", "s1+x", "s2", "s2+y"].map(String::from);
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let sources = words(&["@anyvm", "@anyvm", "@adminvm", "@tag:red", "@tag:blue"]);
    let targets = words(&[
        "@anyvm",
        "@default",
        "@dispvm",
        "@dispvm:disp",
        "@dispvm:disp2",
        "@tag:red",
        "@tag:blue",
        "@adminvm",
    ]);
    let redirects = with_names(&["@dispvm", "@dispvm:disp", "@adminvm"]);
    (
        one_of(services.to_vec()),
        prop_oneof![one_of(sources), one_of(with_names(&[]))],
        prop_oneof![one_of(targets), one_of(with_names(&[]))],
        0usize..3,
        proptest::option::weighted(0.3, one_of(redirects.clone())),
        proptest::option::weighted(0.3, one_of(redirects)),
    )
        .prop_map(
            |(service, source, target, action, redirect, default_target)| {
                let action = ["allow", "deny", "ask"][action].to_string();
                model::Rule {
                    redirect: redirect.filter(|_| action != "deny"),
                    default_target: default_target.filter(|_| action == "ask"),
                    service,
                    source,
                    target,
                    action,
                }
            },
        )
}

/// A call, now and then malformed (a service or argument that is not one, `@dispvm:work`
/// when work is not a disposable).
fn call() -> impl Strategy<Value = model::Call> {
    let targets = with_names(&[
        "@default",
        "@dispvm",
        "@dispvm:disp",
        "@dispvm:work",
        "@adminvm",
    ]);
    (
        prop_oneof![9 => one_of(vec!["s1".into(), "s2".into()]), 1 => one_of(vec!["".into(), "s 1".into(), "s3".into()])],
        prop_oneof![9 => one_of(vec!["".into(), "x".into(), "y".into()]), 1 => Just("x/y".to_string())],
        proptest::sample::select(NAMES.to_vec()),
        one_of(targets),
    )
        .prop_map(|(service, argument, source, target)| model::Call {
            service,
            argument,
            source: source.to_string(),
            target,
        })
}

/// The compiler's job, for the test: names become indices.
fn build(qubes: &[model::Qube], rules: &[model::Rule]) -> (Table, Vec<Qube>) {
    let qube = |name: &str| NAMES.iter().position(|n| *n == name).unwrap() as u8;
    let tag = |name: &str| TAGS.iter().position(|t| *t == name).unwrap() as u8;
    let facts = qubes
        .iter()
        .map(|q| Qube {
            admin: q.admin,
            disposable: q.disposable,
            default_dispvm: q.default_dispvm.as_deref().map(qube),
            tags: q.tags.iter().fold(Tags::NONE, |t, name| t.with(tag(name))),
        })
        .collect();
    let redirect = |text: &str| match text {
        "@dispvm" => Redirect::DispVm,
        "@adminvm" => Redirect::AdminVm,
        t => match t.strip_prefix("@dispvm:") {
            Some(base) => Redirect::DispVmOf(qube(base)),
            None => Redirect::Qube(qube(t)),
        },
    };
    let mut table = Table::default();
    for r in rules {
        let service = match r.service.split_once('+') {
            _ if r.service == "*" => Service::Any,
            None => Service::Named {
                name: table.intern(&r.service).unwrap(),
                argument: Argument::Any,
            },
            Some((name, arg)) => Service::Named {
                name: table.intern(name).unwrap(),
                argument: match arg {
                    "" => Argument::Empty,
                    a => Argument::Exactly(table.intern(a).unwrap()),
                },
            },
        };
        let source = match r.source.as_str() {
            "@anyvm" => Source::AnyVm,
            "@adminvm" => Source::AdminVm,
            s => match s.strip_prefix("@tag:") {
                Some(t) => Source::Tag(tag(t)),
                None => Source::Qube(qube(s)),
            },
        };
        let target = match r.target.as_str() {
            "@anyvm" => Target::AnyVm,
            "@default" => Target::Default,
            "@dispvm" => Target::DispVm,
            "@adminvm" => Target::AdminVm,
            t if t.starts_with("@tag:") => Target::Tag(tag(&t[5..])),
            t if t.starts_with("@dispvm:") => Target::DispVmOf(qube(&t[8..])),
            t => Target::Qube(qube(t)),
        };
        let action = match r.action.as_str() {
            "deny" => Action::Deny,
            "allow" => Action::Allow {
                redirect: r.redirect.as_deref().map(redirect),
            },
            _ => Action::Ask {
                redirect: r.redirect.as_deref().map(redirect),
                default_target: r.default_target.as_deref().map(redirect),
            },
        };
        let entry = Entry {
            service,
            source,
            target,
            action,
        };
        table.entries.push(entry).unwrap();
    }
    (table, facts)
}

fn requested(target: &str) -> Requested {
    let qube = |name: &str| NAMES.iter().position(|n| *n == name).unwrap() as u8;
    match target {
        "@default" => Requested::Default,
        "@dispvm" => Requested::DispVm,
        "@adminvm" => Requested::AdminVm,
        t => match t.strip_prefix("@dispvm:") {
            Some(base) => Requested::DispVmOf(qube(base)),
            None => Requested::Named(qube(t)),
        },
    }
}

/// The engine's decision in the model's words.
fn in_words(d: &Decision) -> model::Decision {
    let name = |r: &Resolved| match r {
        Resolved::Qube(i) => NAMES[usize::from(*i)].to_string(),
        Resolved::Disposable(i) => format!("@dispvm:{}", NAMES[usize::from(*i)]),
        Resolved::Admin => "@adminvm".to_string(),
    };
    match d {
        Decision::Deny { reason, entry } => {
            let why = match reason {
                bulkhead_policy::DenyReason::InvalidCall => "invalid call",
                bulkhead_policy::DenyReason::NoMatch => "no match",
                bulkhead_policy::DenyReason::Policy => "policy",
                bulkhead_policy::DenyReason::NoTarget => "no target",
                bulkhead_policy::DenyReason::NoDefaultDispvm => "no default dispvm",
                bulkhead_policy::DenyReason::NoCandidates => "no candidates",
                bulkhead_policy::DenyReason::BrokenEntry => "broken entry",
            };
            model::Decision::Deny(why, *entry)
        }
        Decision::Allow { target, entry } => model::Decision::Allow(name(target), *entry),
        Decision::Ask {
            default,
            candidates,
            entry,
        } => {
            let set: BTreeSet<String> = candidates.iter().map(name).collect();
            assert_eq!(set.len(), candidates.len(), "each candidate once");
            assert!(candidates.windows(2).all(|w| w[0] < w[1]), "sorted");
            model::Decision::Ask(default.as_ref().map(name), set, *entry)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn engine_decides_as_the_model(
        qubes in system(),
        rules in proptest::collection::vec(rule(), 0..12),
        calls in proptest::collection::vec(call(), 1..8),
    ) {
        let (table, facts) = build(&qubes, &rules);
        prop_assert_eq!(table.check(&facts, TAGS.len()), Ok(()));
        let model = model::Model { qubes: &qubes, rules: &rules };
        for c in &calls {
            let call = Call {
                service: &c.service,
                argument: &c.argument,
                source: NAMES.iter().position(|n| *n == c.source).unwrap() as u8,
                target: requested(&c.target),
            };
            let engine = evaluate(&table, &facts, &call);
            prop_assert_eq!(in_words(&engine), model.decide(c), "{:?}\n{:#?}", c, rules);
        }
    }

    /// Entries after catch-alls (every source and target, any service) change nothing, not
    /// even what an `ask` before them offers.
    #[test]
    fn entries_after_a_catch_all_never_decide(
        qubes in system(),
        rules in proptest::collection::vec(rule(), 0..6),
        later in proptest::collection::vec(rule(), 0..6),
        c in call(),
        action in 0usize..2,
    ) {
        let mut before = rules.clone();
        for source in ["@anyvm", "@adminvm"] {
            for target in ["@anyvm", "@default", "@adminvm"] {
                before.push(model::Rule {
                    service: "*".into(),
                    source: source.into(),
                    target: target.into(),
                    action: ["allow", "deny"][action].into(),
                    redirect: (target == "@default").then(|| "vault".into()),
                    default_target: None,
                });
            }
        }
        let mut after = before.clone();
        after.extend(later);
        let decide = |rules: &[model::Rule]| {
            let (table, facts) = build(&qubes, rules);
            let call = Call {
                service: &c.service,
                argument: &c.argument,
                source: NAMES.iter().position(|n| *n == c.source).unwrap() as u8,
                target: requested(&c.target),
            };
            evaluate(&table, &facts, &call)
        };
        prop_assert_eq!(decide(&after), decide(&before));
    }

    /// A compiled table survives the blob's encoding.
    #[test]
    fn tables_round_trip_through_postcard(
        qubes in system(),
        rules in proptest::collection::vec(rule(), 0..20),
    ) {
        let (table, facts) = build(&qubes, &rules);
        let bytes = postcard::to_allocvec(&(&table, &facts)).unwrap();
        let (t, f): (Table, Vec<Qube>) = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(t, table);
        prop_assert_eq!(f, facts);
    }
}
