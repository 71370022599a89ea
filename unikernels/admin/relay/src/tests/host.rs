//! Calls from the host's console (`cargo xtask qvm`): no policy, and a new client forgets
//! the calls an earlier one left open.

use super::{call, data, incoming};
use crate::testkit::*;
use crate::{HOST, Relay};
use bulkhead_abi::qrexec::{FromAdmin, Io, Refusal, Stream, ToAdmin};

#[test]
fn the_host_calls_any_qube_without_policy_and_is_logged() {
    let config = config();
    let (mut relay, mut sim) = (Relay::new(&config), Sim::new());
    hello_all(&mut relay, &mut sim, &[WORK, PERSONAL]);
    // No entry allows qubes.VMShell to usb from anyone but @tag:office, nor to personal
    // from anyone but work: the host needs none.
    relay.on_message(&mut sim, HOST, &call(1, "qubes.VMShell", "personal"));
    let (n, source) = incoming(&mut sim, PERSONAL);
    assert_eq!(source, "host");
    assert!(
        sim.logged("policy: qubes.VMShell host -> personal: allowed to personal, from the host")
    );
    assert_eq!(relay.calls_from(HOST), 1);
    assert_eq!(relay.calls_from(WORK), 0);
    relay.on_message(&mut sim, PERSONAL, &data(n, Stream::Stdout, b"Linux\n"));
    relay.on_message(
        &mut sim,
        PERSONAL,
        &ToAdmin::Io(Io::Exit { call: n, code: 0 }),
    );
    let got = sim.take(HOST);
    assert_eq!(
        decode(&got[0]),
        FromAdmin::Accepted {
            call: 1,
            target: "personal"
        }
    );
    assert_eq!(
        decode(got.last().unwrap()),
        FromAdmin::Io(Io::Exit { call: 1, code: 0 })
    );
    assert_eq!(relay.calls_from(HOST), 0);
}

#[test]
fn a_reset_of_the_host_aborts_its_calls_at_their_targets() {
    let config = config();
    let (mut relay, mut sim) = (Relay::new(&config), Sim::new());
    hello_all(&mut relay, &mut sim, &[WORK, PERSONAL]);
    relay.on_message(&mut sim, HOST, &call(1, "qubes.VMShell", "work"));
    let (n, _) = incoming(&mut sim, WORK);
    relay.reset(&mut sim, HOST);
    assert_eq!(relay.open_calls(), 0);
    assert_eq!(
        decode(&sim.take(WORK)[0]),
        FromAdmin::Io(Io::Abort { call: n })
    );
    // The target's late bytes for it go nowhere; the next client may use number 1 again.
    relay.on_message(&mut sim, WORK, &data(n, Stream::Stdout, b"late"));
    relay.on_message(&mut sim, HOST, &call(1, "qubes.VMShell", "personal"));
    incoming(&mut sim, PERSONAL);
    let got = sim.take(HOST);
    assert_eq!(got.len(), 2, "the old Accepted and the new one only");
}

#[test]
fn the_host_gets_disposables_of_disposables_only_and_the_admin_qube_by_name() {
    let config = config();
    let (mut relay, mut sim) = (Relay::new(&config), Sim::new());
    hello_all(&mut relay, &mut sim, &[WORK, PERSONAL]);
    relay.on_message(&mut sim, HOST, &call(1, "qubes.VMShell", "@dispvm:work"));
    assert_eq!(
        decode(&sim.take(HOST)[0]),
        FromAdmin::Refused {
            call: 1,
            reason: Refusal::Malformed
        }
    );
    assert!(sim.started.is_empty() && sim.killed.is_empty());
    relay.on_message(&mut sim, HOST, &call(2, "qubes.VMShell", "@dispvm:disp"));
    assert_eq!(sim.started, [DISP]);
    relay.on_message(&mut sim, HOST, &call(3, "admin.vm.List", "admin"));
    let got = sim.take(HOST);
    assert_eq!(
        decode(&got[0]),
        FromAdmin::Accepted {
            call: 3,
            target: "@adminvm"
        }
    );
}
