//! Two clients flood the connection table, a third still connects (issue #18): each client
//! is guaranteed its share of the table, a client over its share replaces only its own
//! entries, unanswered ones first, and established flows keep working.

mod common;

use bulkhead_firewall_engine::{MAX_CONNECTIONS, Port, Verdict, timeouts};
use common::*;

/// A new flow's first packet from client `i` to a fresh destination `n`.
fn syn(i: usize, n: usize) -> Pkt {
    Pkt::from_client(
        i,
        [100, 64 + (n >> 16) as u8, (n >> 8) as u8, n as u8],
        L4::Tcp {
            sport: 40000 + (n % 1000) as u16,
            dport: 443,
            flags: TCP_SYN,
        },
    )
}

fn udp(i: usize, n: usize) -> Pkt {
    Pkt::from_client(
        i,
        [100, 64 + (n >> 16) as u8, (n >> 8) as u8, n as u8],
        L4::Udp {
            sport: 50000,
            dport: 9,
        },
    )
}

/// An established TCP connection of client `i` to REMOTE:`port`: what the firewall sent
/// for its SYN.
fn connect(net: &mut Net, i: usize, port: u16) -> Seen {
    let l4 = |flags| L4::Tcp {
        sport: 30000 + port,
        dport: port,
        flags,
    };
    let seen = net.through(i, &Pkt::from_client(i, REMOTE, l4(TCP_SYN)), Port::Uplink);
    net.back(&reply_to(&seen, None), i);
    net.through(i, &Pkt::from_client(i, REMOTE, l4(TCP_ACK)), Port::Uplink);
    seen
}

#[test]
fn two_flooding_clients_and_a_third_that_still_connects() {
    let mut net = Net::new(&[&[], &[], &[]]);
    let share = net.fw.connection_share();
    assert_eq!(share, MAX_CONNECTIONS / 3);
    // Client 2 has an established connection before the flood.
    let before = connect(&mut net, 2, 22);
    // Client 0 floods SYNs nobody answers, client 1 UDP nobody answers: together three
    // times the table, interleaved.
    let mut refused = 0;
    for n in 0..MAX_CONNECTIONS * 3 / 2 {
        for (i, p) in [(0, syn(0, n)), (1, udp(1, n))] {
            if net.send(Port::Client(i), &p.build()) != Verdict::Forwarded {
                refused += 1;
            }
        }
        net.sent.clear();
        if n % 1024 == 0 {
            net.now += 50;
            net.poll();
            net.sent.clear();
        }
    }
    // The flooders never got refused (they replace their own entries), the table is full,
    // and client 2 kept its connection.
    assert_eq!(refused, 0);
    let s = net.fw.stats().clone();
    assert_eq!(s.connections, MAX_CONNECTIONS);
    assert!(s.connections_evicted > 0);
    assert_eq!(net.fw.connections_of(2), 1);
    // Its established flow is still forwarded both ways.
    let ack = Pkt::from_client(
        2,
        REMOTE,
        L4::Tcp {
            sport: 30022,
            dport: 22,
            flags: TCP_ACK,
        },
    );
    net.through(2, &ack, Port::Uplink);
    net.back(&reply_to(&before, Some(data_of(&before))), 2);
    // Its new connections are accepted, up to its whole share, while the flood goes on.
    let now_conn = connect(&mut net, 2, 443);
    for n in 0..share - 2 {
        net.through(2, &udp(2, n), Port::Uplink);
        net.through(0, &syn(0, MAX_CONNECTIONS * 2 + n), Port::Uplink);
        net.through(1, &udp(1, MAX_CONNECTIONS * 2 + n), Port::Uplink);
    }
    assert_eq!(net.fw.connections_of(2), share);
    assert_eq!(
        net.fw.connections_of(0) + net.fw.connections_of(1),
        MAX_CONNECTIONS - share
    );
    // Past its share, client 2 replaces its own oldest unanswered flow: its established
    // connections stay.
    net.through(2, &udp(2, share), Port::Uplink);
    assert_eq!(net.fw.connections_of(2), share);
    net.through(2, &ack, Port::Uplink);
    net.back(&reply_to(&now_conn, Some(data_of(&now_conn))), 2);
    // The SYN flood's entries never answered: they would have lasted the SYN timeout,
    // but client 2 did not wait for that.
    assert!(net.now < 1_000 + timeouts::TCP_SYN_SENT_MS);
}

fn data_of(seen: &Seen) -> L4 {
    let L4::Tcp { sport, dport, .. } = seen.l4 else {
        unreachable!()
    };
    L4::Tcp {
        sport: dport,
        dport: sport,
        flags: TCP_ACK,
    }
}
