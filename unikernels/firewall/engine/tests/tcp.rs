//! TCP validity as Linux's connection tracking judges it (Qubes drops `ct state invalid`):
//! flag combinations outside `tcp_valid_flags`, and segments the connection's state does not
//! allow before the peer answered the SYN.

mod common;

use bulkhead_firewall_engine::{DropReason, Port, Verdict, timeouts};
use common::*;

const PSH: u8 = 0x08;
const URG: u8 = 0x20;

fn tcp(flags: u8) -> L4 {
    L4::Tcp {
        sport: 7000,
        dport: 80,
        flags,
    }
}

fn reason(v: Verdict) -> Option<DropReason> {
    match v {
        Verdict::Dropped { reason, .. } => Some(reason),
        _ => None,
    }
}

/// An established connection from client 0 to REMOTE:80 and what the firewall sent for its
/// SYN.
fn established(net: &mut Net) -> Seen {
    let seen = net.through(0, &Pkt::from_client(0, REMOTE, tcp(TCP_SYN)), Port::Uplink);
    net.back(&reply_to(&seen, None), 0);
    net.through(0, &Pkt::from_client(0, REMOTE, tcp(TCP_ACK)), Port::Uplink);
    seen
}

/// The peer's segment with `flags` on the connection `seen` opened.
fn from_peer(seen: &Seen, flags: u8) -> Pkt {
    let L4::Tcp { sport, dport, .. } = seen.l4 else {
        unreachable!()
    };
    reply_to(
        seen,
        Some(L4::Tcp {
            sport: dport,
            dport: sport,
            flags,
        }),
    )
}

#[test]
fn invalid_flag_combinations_never_open_a_connection() {
    let mut net = Net::new(&[&[]]);
    for flags in [
        TCP_SYN | TCP_FIN,
        TCP_SYN | TCP_FIN | PSH,
        TCP_SYN | TCP_RST,
        0,
        PSH,
        URG,
        TCP_FIN,
        TCP_FIN | PSH | URG,
    ] {
        let v = net.send(
            Port::Client(0),
            &Pkt::from_client(0, REMOTE, tcp(flags)).build(),
        );
        assert_eq!(reason(v), Some(DropReason::InvalidTcp), "{flags:#04x}");
    }
    assert!(net.take().is_empty());
    assert_eq!(net.fw.stats().connections, 0);
    // Even to the firewall's own DNS address, before anything else is decided.
    let dns = Pkt::from_client(
        0,
        VDNS[0],
        L4::Tcp {
            sport: 7000,
            dport: 53,
            flags: 0,
        },
    );
    assert_eq!(
        reason(net.send(Port::Client(0), &dns.build())),
        Some(DropReason::InvalidTcp)
    );
    // A SYN with URG or PSH is a SYN.
    net.through(
        0,
        &Pkt::from_client(0, REMOTE, tcp(TCP_SYN | URG | PSH)),
        Port::Uplink,
    );
}

#[test]
fn a_fin_without_ack_is_dropped_on_an_established_connection_both_ways() {
    let mut net = Net::new(&[&[]]);
    let seen = established(&mut net);
    for flags in [
        TCP_FIN,
        TCP_FIN | PSH,
        0,
        TCP_SYN | TCP_FIN,
        TCP_FIN | TCP_RST,
    ] {
        let v = net.send(
            Port::Client(0),
            &Pkt::from_client(0, REMOTE, tcp(flags)).build(),
        );
        assert_eq!(
            reason(v),
            Some(DropReason::InvalidTcp),
            "client {flags:#04x}"
        );
        let v = net.send(Port::Uplink, &from_peer(&seen, flags).build());
        assert_eq!(reason(v), Some(DropReason::InvalidTcp), "peer {flags:#04x}");
    }
    assert!(net.take().is_empty());
    assert_eq!(net.fw.stats().dropped(DropReason::InvalidTcp), 10);
    // The valid ones still pass, and close the connection as before.
    net.through(
        0,
        &Pkt::from_client(0, REMOTE, tcp(TCP_ACK | PSH)),
        Port::Uplink,
    );
    net.back(&from_peer(&seen, TCP_ACK | PSH | URG), 0);
    net.through(
        0,
        &Pkt::from_client(0, REMOTE, tcp(TCP_FIN | TCP_ACK)),
        Port::Uplink,
    );
    net.back(&from_peer(&seen, TCP_FIN | TCP_ACK | PSH), 0);
    net.now += timeouts::TCP_TIME_WAIT_MS + 1;
    net.poll();
    assert_eq!(net.fw.stats().connections, 0);
}

#[test]
fn before_the_peer_answers_only_syns_and_resets_pass() {
    let mut net = Net::new(&[&[]]);
    let seen = net.through(0, &Pkt::from_client(0, REMOTE, tcp(TCP_SYN)), Port::Uplink);
    // The client cannot go on (or answer its own SYN) before the peer did.
    for flags in [TCP_ACK, TCP_FIN | TCP_ACK, TCP_SYN | TCP_ACK] {
        let v = net.send(
            Port::Client(0),
            &Pkt::from_client(0, REMOTE, tcp(flags)).build(),
        );
        assert_eq!(
            reason(v),
            Some(DropReason::InvalidTcp),
            "client {flags:#04x}"
        );
    }
    // Nor can the peer close what it never accepted.
    let v = net.send(Port::Uplink, &from_peer(&seen, TCP_FIN | TCP_ACK).build());
    assert_eq!(reason(v), Some(DropReason::InvalidTcp));
    // A retransmitted SYN passes; a bare ACK from the peer passes without establishing
    // anything (the SYN timeout still runs).
    net.through(0, &Pkt::from_client(0, REMOTE, tcp(TCP_SYN)), Port::Uplink);
    net.back(&from_peer(&seen, TCP_ACK), 0);
    net.now += timeouts::TCP_SYN_SENT_MS + 1;
    net.poll();
    assert_eq!(net.fw.stats().connections, 0);
    net.learn_gateway();
    // A reset from the client before any answer passes.
    let seen = net.through(0, &Pkt::from_client(0, REMOTE, tcp(TCP_SYN)), Port::Uplink);
    net.through(0, &Pkt::from_client(0, REMOTE, tcp(TCP_RST)), Port::Uplink);
    // After a reset, anything valid passes (Linux's CLOSE state).
    net.back(&from_peer(&seen, TCP_RST | TCP_ACK), 0);
}

#[test]
fn invalid_segments_from_the_uplink_are_invalid_before_they_are_unknown() {
    let mut net = Net::new(&[&[]]);
    let stray = Pkt::from_uplink(
        REMOTE,
        L4::Tcp {
            sport: 80,
            dport: 7000,
            flags: TCP_SYN | TCP_FIN,
        },
    );
    assert_eq!(
        reason(net.send(Port::Uplink, &stray.build())),
        Some(DropReason::InvalidTcp)
    );
}
