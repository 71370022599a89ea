mod host;
mod hostile;

use crate::testkit::*;
use crate::{HOST, Outcome, Relay};
use bulkhead_abi::qrexec::{FromAdmin, Io, Refusal, Stream, ToAdmin};
use std::vec::Vec;

/// A relay for the test system, and its world with `up` having said hello.
fn world<'c>(config: &'c bulkhead_qubeconfig::AdminConfig, up: &[u8]) -> (Relay<'c>, Sim) {
    let (mut relay, mut sim) = (Relay::new(config), Sim::new());
    hello_all(&mut relay, &mut sim, up);
    (relay, sim)
}

/// Checks the first message `q` got since the last take is a refusal of `call`.
fn assert_refused(sim: &mut Sim, q: u8, call: u32, reason: Refusal) {
    let got = sim.take(q);
    assert_eq!(decode(&got[0]), FromAdmin::Refused { call, reason });
}

fn call<'a>(call: u32, service: &'a str, target: &'a str) -> ToAdmin<'a> {
    ToAdmin::Call {
        call,
        service,
        argument: "",
        target,
    }
}

fn data(call: u32, stream: Stream, bytes: &[u8]) -> ToAdmin<'_> {
    ToAdmin::Io(Io::Data {
        call,
        stream,
        bytes,
    })
}

/// The target's number for the call it was just given, and who it is from.
fn incoming(sim: &mut Sim, q: u8) -> (u32, std::string::String) {
    let got = sim.take(q);
    assert_eq!(got.len(), 1, "{q} got {} messages", got.len());
    match decode(&got[0]) {
        FromAdmin::Incoming { call, source, .. } => (call, source.into()),
        other => panic!("{q} got {other:?}"),
    }
}

#[test]
fn an_allowed_call_runs_in_its_target_and_bytes_flow_both_ways() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK, PERSONAL]);
    let r = relay.on_message(&mut sim, WORK, &call(7, "qubes.VMShell", "personal"));
    assert_eq!(r, Outcome::Done);
    let (n, source) = incoming(&mut sim, PERSONAL);
    assert_eq!(source, "work");
    let accepted = sim.take(WORK);
    assert_eq!(
        decode(&accepted[0]),
        FromAdmin::Accepted {
            call: 7,
            target: "personal"
        }
    );
    assert!(
        sim.logged("policy: qubes.VMShell work -> personal: allowed to personal, policy entry 1")
    );
    relay.on_message(&mut sim, WORK, &data(7, Stream::Stdin, b"uname\n"));
    let got = sim.take(PERSONAL);
    assert_eq!(
        decode(&got[0]),
        FromAdmin::Io(Io::Data {
            call: n,
            stream: Stream::Stdin,
            bytes: b"uname\n"
        })
    );
    relay.on_message(&mut sim, PERSONAL, &data(n, Stream::Stdout, b"Linux\n"));
    relay.on_message(
        &mut sim,
        PERSONAL,
        &ToAdmin::Io(Io::Exit { call: n, code: 3 }),
    );
    let got = sim.take(WORK);
    assert_eq!(
        decode(&got[0]),
        FromAdmin::Io(Io::Data {
            call: 7,
            stream: Stream::Stdout,
            bytes: b"Linux\n"
        })
    );
    assert_eq!(
        decode(&got[1]),
        FromAdmin::Io(Io::Exit { call: 7, code: 3 })
    );
    assert_eq!(relay.open_calls(), 0);
    // The call is over: more bytes for it go nowhere.
    relay.on_message(&mut sim, WORK, &data(7, Stream::Stdin, b"late"));
    assert!(sim.take(PERSONAL).is_empty());
}

#[test]
fn a_denied_call_never_reaches_its_target_and_is_logged_once() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK, PERSONAL]);
    relay.on_message(&mut sim, PERSONAL, &call(1, "qubes.VMShell", "work"));
    assert_refused(&mut sim, PERSONAL, 1, Refusal::Denied);
    assert!(sim.take(WORK).is_empty());
    let lines: Vec<_> = sim
        .log
        .iter()
        .filter(|l| l.contains("personal -> work"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("denied (NoMatch)"));
    // A qube that does not exist, and a malformed service.
    relay.on_message(&mut sim, WORK, &call(2, "qubes.VMShell", "nosuch"));
    relay.on_message(&mut sim, WORK, &call(3, "bad service", "personal"));
    for (m, n) in sim.take(WORK).iter().zip([2, 3]) {
        assert_eq!(
            decode(m),
            FromAdmin::Refused {
                call: n,
                reason: Refusal::Malformed
            }
        );
    }
    assert!(sim.take(PERSONAL).is_empty());
}

#[test]
fn a_dispvm_call_starts_the_disposable_and_destroys_it_afterwards() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK]);
    relay.on_message(&mut sim, WORK, &call(1, "qubes.VMShell", "@dispvm"));
    assert_eq!(sim.started, [DISP]);
    assert!(
        sim.take(WORK).is_empty(),
        "accepted before the disposable is up"
    );
    // A second call while it is in use is refused.
    relay.on_message(&mut sim, WORK, &call(2, "qubes.VMShell", "@dispvm"));
    assert_refused(&mut sim, WORK, 2, Refusal::Busy);
    // Its channel resets as it starts: the call waits on.
    relay.reset(&mut sim, DISP);
    assert!(sim.take(WORK).is_empty() && sim.killed.is_empty());
    let hello = ToAdmin::Hello {
        version: bulkhead_abi::qrexec::QREXEC_VERSION,
    };
    relay.on_message(&mut sim, DISP, &hello);
    let got = sim.take(DISP);
    assert!(matches!(decode(&got[0]), FromAdmin::Hello { .. }));
    let n = match decode(&got[1]) {
        FromAdmin::Incoming { call, source, .. } => {
            assert_eq!(source, "work");
            call
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        decode(&sim.take(WORK)[0]),
        FromAdmin::Accepted {
            call: 1,
            target: "disp"
        }
    );
    relay.on_message(&mut sim, DISP, &ToAdmin::Io(Io::Exit { call: n, code: 0 }));
    // The caller gets the end first; the disposable goes at the next pass.
    assert_eq!(
        decode(&sim.take(WORK)[0]),
        FromAdmin::Io(Io::Exit { call: 1, code: 0 })
    );
    assert!(sim.killed.is_empty());
    relay.destroy_done(&mut sim);
    assert_eq!(sim.killed, [DISP]);
    assert!(sim.logged("disposable disp done; destroyed"));
    relay.destroy_done(&mut sim);
    assert_eq!(sim.killed, [DISP], "destroyed once");
}

#[test]
fn a_target_that_never_comes_up_times_out() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK]);
    relay.on_message(&mut sim, WORK, &call(1, "qubes.VMShell", "@dispvm"));
    sim.now += crate::START_TIMEOUT_MS + 1;
    relay.tick(&mut sim);
    assert_refused(&mut sim, WORK, 1, Refusal::Unavailable);
    relay.destroy_done(&mut sim);
    assert_eq!(sim.killed, [DISP]);
    assert_eq!(relay.open_calls(), 0);
}

#[test]
fn a_qube_without_a_qrexec_channel_is_unavailable() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK]);
    relay.on_message(&mut sim, WORK, &call(1, "qubes.VMShell", "usb"));
    assert_refused(&mut sim, WORK, 1, Refusal::Unavailable);
}

#[test]
fn ask_goes_to_the_gui_qube_and_the_answer_decides() {
    let config = config();
    let (mut relay, mut sim) = (Relay::new(&config), Sim::new());
    // Without the gui qube running, ask is deny.
    hello_all(&mut relay, &mut sim, &[WORK, PERSONAL]);
    sim.running[usize::from(GUI)] = false;
    relay.on_message(&mut sim, WORK, &call(1, "qubes.Filecopy", "@default"));
    assert_refused(&mut sim, WORK, 1, Refusal::UserRefused);
    assert!(sim.logged("ask, but no gui qube to ask: denied"));
    // A gui qube still starting gets the prompt when it says hello.
    sim.running[usize::from(GUI)] = true;
    relay.on_message(&mut sim, WORK, &call(9, "qubes.Filecopy", "@default"));
    assert!(sim.take(GUI).is_empty() && sim.take(WORK).is_empty());
    let hello = ToAdmin::Hello {
        version: bulkhead_abi::qrexec::QREXEC_VERSION,
    };
    relay.on_message(&mut sim, GUI, &hello);
    let got = sim.take(GUI);
    assert!(
        matches!(decode(&got[1]), FromAdmin::Ask { .. }),
        "no prompt after the hello"
    );
    let ask = match decode(&got[1]) {
        FromAdmin::Ask { ask, .. } => ask,
        _ => unreachable!(),
    };
    relay.on_message(&mut sim, GUI, &ToAdmin::Answer { ask, choice: None });
    sim.take(WORK);
    for (k, answer) in [(2u32, Some("personal")), (3, None)] {
        relay.on_message(&mut sim, WORK, &call(k, "qubes.Filecopy", "@default"));
        let got = sim.take(GUI);
        let FromAdmin::Ask {
            ask,
            source,
            service,
            ref candidates,
            ..
        } = decode(&got[0])
        else {
            panic!("no prompt");
        };
        assert_eq!((source, service), ("work", "qubes.Filecopy"));
        assert!(!candidates.contains(&"work") || candidates.contains(&"personal"));
        let choice = answer.map(|a| candidates.iter().position(|c| *c == a).unwrap() as u8);
        relay.on_message(&mut sim, GUI, &ToAdmin::Answer { ask, choice });
        match answer {
            Some(_) => {
                let (_, source) = incoming(&mut sim, PERSONAL);
                assert_eq!(source, "work");
                assert_eq!(
                    decode(&sim.take(WORK)[0]),
                    FromAdmin::Accepted {
                        call: k,
                        target: "personal"
                    }
                );
            }
            None => assert_eq!(
                decode(&sim.take(WORK)[0]),
                FromAdmin::Refused {
                    call: k,
                    reason: Refusal::UserRefused
                }
            ),
        }
    }
    // Only the gui qube answers.
    relay.on_message(&mut sim, WORK, &call(4, "qubes.Filecopy", "@default"));
    let ask = match decode(&sim.take(GUI)[0]) {
        FromAdmin::Ask { ask, .. } => ask,
        other => panic!("{other:?}"),
    };
    let forged = ToAdmin::Answer {
        ask,
        choice: Some(0),
    };
    relay.on_message(&mut sim, WORK, &forged);
    assert!(sim.take(PERSONAL).is_empty() && sim.take(WORK).is_empty());
    assert!(sim.logged("not the gui qube"));
}

#[test]
fn clipboard_queries_follow_the_policy() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[GUI]);
    let query = |query, source, target| ToAdmin::Query {
        query,
        service: "qubes.ClipboardPaste",
        source,
        target,
    };
    relay.on_message(&mut sim, GUI, &query(1, "work", "personal"));
    relay.on_message(&mut sim, GUI, &query(2, "disp", "work"));
    relay.on_message(&mut sim, GUI, &query(3, "personal", "work"));
    let got = sim.take(GUI);
    assert_eq!(
        decode(&got[0]),
        FromAdmin::Verdict {
            query: 1,
            allowed: false
        }
    );
    assert_eq!(
        decode(&got[1]),
        FromAdmin::Verdict {
            query: 2,
            allowed: true
        }
    );
    let FromAdmin::Ask { ask, .. } = decode(&got[2]) else {
        panic!("personal -> work is asked");
    };
    relay.on_message(
        &mut sim,
        GUI,
        &ToAdmin::Answer {
            ask,
            choice: Some(0),
        },
    );
    assert_eq!(
        decode(&sim.take(GUI)[0]),
        FromAdmin::Verdict {
            query: 3,
            allowed: true
        }
    );
    // Another qube may not ask.
    relay.on_message(&mut sim, WORK, &query(4, "work", "personal"));
    assert!(sim.take(WORK).is_empty() && sim.take(GUI).is_empty());
}

#[test]
fn a_full_ring_holds_the_message_until_there_is_room() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK, PERSONAL]);
    relay.on_message(&mut sim, WORK, &call(1, "qubes.VMShell", "personal"));
    let _ = incoming(&mut sim, PERSONAL);
    sim.take(WORK);
    sim.capacity = 2;
    let chunk = data(1, Stream::Stdin, b"x");
    assert_eq!(relay.on_message(&mut sim, WORK, &chunk), Outcome::Done);
    assert_eq!(relay.on_message(&mut sim, WORK, &chunk), Outcome::Done);
    assert_eq!(relay.on_message(&mut sim, WORK, &chunk), Outcome::Retry);
    sim.take(PERSONAL);
    assert_eq!(relay.on_message(&mut sim, WORK, &chunk), Outcome::Done);
}

#[test]
fn a_reset_ends_the_calls_of_that_qube_and_tells_the_other_end() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK, PERSONAL]);
    relay.on_message(&mut sim, WORK, &call(1, "qubes.VMShell", "personal"));
    let (n, _) = incoming(&mut sim, PERSONAL);
    sim.take(WORK);
    relay.reset(&mut sim, PERSONAL);
    assert_eq!(
        decode(&sim.take(WORK)[0]),
        FromAdmin::Io(Io::Abort { call: 1 })
    );
    assert_eq!(relay.open_calls(), 0);
    // Its messages are ignored until it says hello again.
    relay.on_message(&mut sim, PERSONAL, &data(n, Stream::Stdout, b"x"));
    relay.on_message(&mut sim, PERSONAL, &call(1, "qubes.VMShell", "work"));
    assert!(sim.take(WORK).is_empty() && sim.take(PERSONAL).is_empty());
}

#[test]
fn a_call_breaking_the_protocol_is_aborted_at_both_ends() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK, PERSONAL]);
    relay.on_message(&mut sim, WORK, &call(1, "qubes.VMShell", "personal"));
    let (n, _) = incoming(&mut sim, PERSONAL);
    sim.take(WORK);
    // The source may not write stdout, nor end the call with an exit code.
    relay.on_message(&mut sim, WORK, &data(1, Stream::Stdout, b"forged"));
    assert_eq!(
        decode(&sim.take(PERSONAL)[0]),
        FromAdmin::Io(Io::Abort { call: n })
    );
    assert_eq!(
        decode(&sim.take(WORK)[0]),
        FromAdmin::Io(Io::Abort { call: 1 })
    );
    assert_eq!(relay.open_calls(), 0);
}

#[test]
fn the_admin_qube_lists_starts_and_kills_qubes() {
    let config = config();
    let (mut relay, mut sim) = world(&config, &[WORK, PERSONAL]);
    relay.on_message(&mut sim, WORK, &call(1, "admin.vm.List", "@adminvm"));
    let got = sim.take(WORK);
    assert_eq!(
        decode(&got[0]),
        FromAdmin::Accepted {
            call: 1,
            target: "@adminvm"
        }
    );
    let FromAdmin::Io(Io::Data { bytes, .. }) = decode(&got[1]) else {
        panic!("no listing");
    };
    let text = core::str::from_utf8(bytes).unwrap();
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.contains("work             Running  AppVM      blue       256 -             0:01:05"),
        "{text}"
    );
    assert!(
        text.contains("disp             Halted   DispVM     red"),
        "{text}"
    );
    assert!(text.contains("admin            Running  AdminVM"), "{text}");
    assert_eq!(
        decode(got.last().unwrap()),
        FromAdmin::Io(Io::Exit { call: 1, code: 0 })
    );
    // work may start qubes; personal may not (no entry); nobody kills the admin qube.
    let start = |call, argument| ToAdmin::Call {
        call,
        service: "admin.vm.Start",
        argument,
        target: "@adminvm",
    };
    relay.on_message(&mut sim, WORK, &start(2, "disp"));
    assert_eq!(sim.started, [DISP]);
    relay.on_message(&mut sim, PERSONAL, &start(3, "disp"));
    assert!(matches!(
        decode(&sim.take(PERSONAL)[0]),
        FromAdmin::Refused { call: 3, .. }
    ));
    // From the host's console: no policy, but the same services.
    let kill = |call, argument| ToAdmin::Call {
        call,
        service: "admin.vm.Kill",
        argument,
        target: "@adminvm",
    };
    relay.on_message(&mut sim, HOST, &kill(1, "personal"));
    relay.on_message(&mut sim, HOST, &kill(2, "admin"));
    assert_eq!(sim.killed, [PERSONAL]);
    let got = sim.take(HOST);
    let exits: Vec<_> = got
        .iter()
        .filter_map(|m| match decode(m) {
            FromAdmin::Io(Io::Exit { code, .. }) => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(exits, [0, 1]);
}
