//! The network test clients, behind sys-firewall on their uplink channel (configuration
//! blob: `uplink` with the channel, address, prefix, gateway and DNS).
//!
//! `mode=net-client`: resolves `name=` (default `bulkhead-test.internal`; an address literal
//! is taken as is) through the first configured DNS server, talks TCP to it at `port=` (default 5555): a line
//! `hello from QUBE\n` answered by `ack hello from QUBE\n`, then [`PATTERN_LEN`] bytes echoed
//! back, checked byte for byte both ways; then checks that `denied=IP:PORT` (default
//! 10.0.2.2:5556) does not connect within 3 s, and sends one UDP datagram with the spoofed
//! source `spoof-src=` (default 10.137.0.99) to `spoof=IP:PORT` (default 10.0.2.2:5557) as a
//! raw frame through the channel (the host checks it never arrives).
//!
//! `mode=net-client-isolated`: resolves `name=` (must work), then tries to reach the other
//! client `peer=` (default 10.137.0.10) by TCP at `peer-port=` (default 7) and by ICMP echo,
//! both as raw frames sent to the gateway's MAC (so the test does not depend on how the
//! firewall answers ARP for other clients' addresses); neither may get an answer.
//!
//! Every failure prints one `net-client: ...` line with the reason and returns its own
//! status ([`status`]).

use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use bulkhead_qubeconfig::{QubeConfig, Uplink};
use bulkhead_rt::channel::Channel;
use bulkhead_rt::net::frame::{self, Ipv4Ends};
use bulkhead_rt::net::smoltcp::iface::SocketHandle;
use bulkhead_rt::net::smoltcp::socket::{dns, tcp};
use bulkhead_rt::net::smoltcp::wire::{DnsQueryType, IpAddress, Ipv4Cidr};
use bulkhead_rt::net::{LinkEvent, NetLink, Stack};
use bulkhead_rt::{Args, Boot, error, info, now_ns};

/// Exit statuses of the network modes (2 is the image's bad-mode status).
pub mod status {
    /// No configuration blob, or it has no uplink with an address.
    pub const NO_UPLINK: i32 = 10;
    /// The uplink channel cannot be opened.
    pub const NO_CHANNEL: i32 = 11;
    /// The firewall did not say hello on the channel in time.
    pub const NO_HELLO: i32 = 12;
    /// The name did not resolve.
    pub const DNS: i32 = 13;
    /// The TCP connection to the echo server did not open.
    pub const TCP_CONNECT: i32 = 14;
    /// The server's first line was not `ack` + ours.
    pub const TCP_ACK: i32 = 15;
    /// An echoed byte differs from the one sent.
    pub const TCP_ECHO: i32 = 16;
    /// The exchange did not finish in time (or the connection closed early).
    pub const TCP_TIMEOUT: i32 = 17;
    /// The denied destination accepted the connection.
    pub const DENIED_REACHED: i32 = 18;
    /// The gateway did not answer ARP (its MAC is needed for raw frames).
    pub const NO_GATEWAY_MAC: i32 = 19;
    /// The other client answered TCP.
    pub const PEER_TCP: i32 = 20;
    /// The other client answered an ICMP echo.
    pub const PEER_ICMP: i32 = 21;
    /// A raw frame could not be sent (ring full or channel broken).
    pub const SEND_FAILED: i32 = 22;
    /// `net-uplink`: no `Uplink` message from sys-net in time.
    pub const NO_UPLINK_INFO: i32 = 23;
    /// `net-uplink`: exiting on purpose so the restart policy starts the qube again.
    pub const RESTART_ME: i32 = 3;
}

/// Bytes echoed after the line.
pub const PATTERN_LEN: usize = 64 * 1024;
/// How long the firewall has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long name resolution may take, retries included (sys-net may still be getting its
/// lease when the client starts).
const DNS_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP connection set-up to the echo server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole echo exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// A destination that must stay silent gets this long.
const SILENCE: Duration = Duration::from_secs(3);
/// Longest sleep while polling (channel events wake the qube earlier).
const STEP: Duration = Duration::from_millis(20);

/// The byte at position `i` of the echoed pattern.
fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8).wrapping_mul(7) ^ 0x5c
}

/// One `net-client: ...` failure line, and its status.
pub(crate) fn fail(status: i32, why: core::fmt::Arguments<'_>) -> i32 {
    error!("net-client: {why}");
    status
}

type Net = Stack<NetLink<Channel>>;

/// The client's network: configuration, link, interface.
pub(crate) struct Client {
    pub(crate) net: Net,
    uplink: Uplink,
    pub(crate) address: Ipv4Addr,
    pub(crate) mac: [u8; 6],
    name: heapless::String<24>,
}

/// A locally administered MAC address made of the IPv4 address: 02:00:a:b:c:d.
fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let o = address.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

pub(crate) fn argument<T: core::str::FromStr>(
    args: &Args<'_>,
    key: &str,
    default: T,
) -> Result<T, i32> {
    match args.parse::<T>(key) {
        None => Ok(default),
        Some(Ok(v)) => Ok(v),
        Some(Err(_)) => {
            error!("net-client: {key}= is not valid");
            Err(crate::EXIT_BAD_MODE)
        }
    }
}

impl Client {
    /// Reads the uplink from the configuration, opens its channel, sets up the interface and
    /// waits for the firewall's hello.
    pub(crate) fn start(boot: &Boot) -> Result<Client, i32> {
        let config = match boot.config() {
            [] => {
                return Err(fail(
                    status::NO_UPLINK,
                    format_args!("no configuration blob"),
                ));
            }
            blob => QubeConfig::decode(blob)
                .map_err(|e| fail(status::NO_UPLINK, format_args!("{e}")))?,
        };
        let Some(uplink) = config.uplink else {
            return Err(fail(
                status::NO_UPLINK,
                format_args!("no uplink configured"),
            ));
        };
        let Some(address) = uplink.address.map(Ipv4Addr::from) else {
            return Err(fail(
                status::NO_UPLINK,
                format_args!("the uplink has no address (a client behind sys-net needs DHCP)"),
            ));
        };
        let channel = Channel::open_named(boot, uplink.channel.as_str()).map_err(|e| {
            fail(
                status::NO_CHANNEL,
                format_args!("cannot open the uplink channel {}: {e}", uplink.channel),
            )
        })?;
        let mac = mac_for(address);
        let mut net = Stack::new(NetLink::new(channel, boot.name()), mac);
        net.set_ipv4(
            Ipv4Cidr::new(address, uplink.prefix_len),
            Some(Ipv4Addr::from(uplink.gateway)),
        );
        let mut name = heapless::String::new();
        for c in boot.name().chars() {
            let _ = name.push(c);
        }
        let mut client = Client {
            net,
            uplink,
            address,
            mac,
            name,
        };
        let up = client
            .net
            .run_until(HELLO_TIMEOUT, STEP, |s| s.device.is_up().then_some(()));
        if up.is_none() {
            return Err(fail(
                status::NO_HELLO,
                format_args!(
                    "no hello from the firewall on {} within {} s",
                    client.uplink.channel,
                    HELLO_TIMEOUT.as_secs()
                ),
            ));
        }
        info!(
            "net-client: {} on {}, gateway {}, link up",
            Ipv4Cidr::new(address, client.uplink.prefix_len),
            client.uplink.channel,
            Ipv4Addr::from(client.uplink.gateway)
        );
        Ok(client)
    }

    /// Resolves `name` (A record) through the first configured DNS server, retrying failed
    /// queries until [`DNS_TIMEOUT`].
    /// An address literal is its own answer (no query).
    pub(crate) fn resolve(&mut self, name: &str) -> Result<Ipv4Addr, i32> {
        if let Ok(literal) = name.parse::<Ipv4Addr>() {
            return Ok(literal);
        }
        let Some(server) = self.uplink.dns.first().copied().map(Ipv4Addr::from) else {
            return Err(fail(status::DNS, format_args!("no DNS server configured")));
        };
        let servers = [IpAddress::Ipv4(server)];
        let handle = self.net.sockets.add(dns::Socket::new(&servers, vec![None]));
        let deadline = now_ns() + DNS_TIMEOUT.as_nanos() as u64;
        let mut last = "no answer";
        while now_ns() < deadline {
            let net = &mut self.net;
            let query = {
                let cx = net.iface.context();
                net.sockets
                    .get_mut::<dns::Socket>(handle)
                    .start_query(cx, name, DnsQueryType::A)
            };
            let query = match query {
                Ok(q) => q,
                Err(e) => {
                    return Err(fail(
                        status::DNS,
                        format_args!("cannot ask for {name}: {e:?}"),
                    ));
                }
            };
            let left = Duration::from_nanos(deadline.saturating_sub(now_ns()));
            let result = net.run_until(left, STEP, |s| {
                match s
                    .sockets
                    .get_mut::<dns::Socket>(handle)
                    .get_query_result(query)
                {
                    Err(dns::GetQueryResultError::Pending) => None,
                    other => Some(other),
                }
            });
            match result {
                Some(Ok(addrs)) => {
                    #[allow(
                        unreachable_patterns,
                        reason = "IPv6 exists only if another image enables it in smoltcp"
                    )]
                    let found = addrs.iter().find_map(|a| match a {
                        IpAddress::Ipv4(v4) => Some(*v4),
                        _ => None,
                    });
                    self.net.sockets.remove(handle);
                    return found
                        .ok_or_else(|| fail(status::DNS, format_args!("{name} has no A record")));
                }
                Some(Err(_)) => last = "the query failed (timed out or refused)",
                None => {
                    net.sockets
                        .get_mut::<dns::Socket>(handle)
                        .cancel_query(query);
                    break;
                }
            }
        }
        Err(fail(
            status::DNS,
            format_args!(
                "{name} did not resolve through {server} within {} s: {last}",
                DNS_TIMEOUT.as_secs()
            ),
        ))
    }

    /// A TCP socket with room for the echo exchange.
    fn tcp_socket(&mut self) -> SocketHandle {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
        );
        self.net.sockets.add(socket)
    }

    /// A local port for a new connection.
    fn local_port(&self, n: u16) -> u16 {
        49152 + ((now_ns() / 1000) as u16 % 8000) + n
    }

    /// Opens a TCP connection; `Ok(true)` once established, `Ok(false)` if it did not
    /// within `timeout` (or was refused).
    fn connect(
        &mut self,
        handle: SocketHandle,
        to: SocketAddrV4,
        timeout: Duration,
        n: u16,
    ) -> bool {
        let port = self.local_port(n);
        let net = &mut self.net;
        let cx = net.iface.context();
        if net
            .sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(cx, (IpAddress::Ipv4(*to.ip()), to.port()), port)
            .is_err()
        {
            return false;
        }
        net.run_until(timeout, STEP, |s| {
            let socket = s.sockets.get_mut::<tcp::Socket>(handle);
            match socket.state() {
                tcp::State::Established => Some(true),
                tcp::State::Closed => Some(false),
                _ => None,
            }
        })
        .unwrap_or(false)
    }

    /// The line, the ack and the echoed pattern.
    fn exchange(&mut self, handle: SocketHandle) -> Result<usize, i32> {
        let mut line: Vec<u8> = Vec::new();
        line.extend_from_slice(b"hello from ");
        line.extend_from_slice(self.name.as_bytes());
        line.push(b'\n');
        let mut expect_ack: Vec<u8> = b"ack ".to_vec();
        expect_ack.extend_from_slice(&line);
        let mut ack: Vec<u8> = Vec::new();
        let (mut line_sent, mut sent, mut got) = (0, 0, 0);
        let mut mismatch: Option<(usize, u8)> = None;
        let mut bad_ack = false;
        let done = self.net.run_until(EXCHANGE_TIMEOUT, STEP, |s| {
            let socket = s.sockets.get_mut::<tcp::Socket>(handle);
            if !socket.may_send() && !socket.may_recv() {
                return Some(false);
            }
            if line_sent < line.len() && socket.can_send() {
                line_sent += socket.send_slice(&line[line_sent..]).unwrap_or(0);
            }
            let acked = ack.len() == expect_ack.len();
            if line_sent == line.len() && acked && socket.can_send() && sent < PATTERN_LEN {
                let chunk: Vec<u8> = (sent..PATTERN_LEN.min(sent + 4096)).map(pattern).collect();
                sent += socket.send_slice(&chunk).unwrap_or(0);
            }
            while socket.can_recv() {
                let mut buf = [0u8; 2048];
                let n = socket.recv_slice(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut data = &buf[..n];
                if ack.len() < expect_ack.len() {
                    let take = data.len().min(expect_ack.len() - ack.len());
                    ack.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if ack[..] != expect_ack[..ack.len()] {
                        bad_ack = true;
                        return Some(false);
                    }
                }
                for &b in data {
                    if b != pattern(got) {
                        mismatch = Some((got, b));
                        return Some(false);
                    }
                    got += 1;
                }
            }
            (got == PATTERN_LEN).then_some(true)
        });
        if bad_ack {
            return Err(fail(
                status::TCP_ACK,
                format_args!(
                    "the server answered {:?}, expected {:?}",
                    core::str::from_utf8(&ack).unwrap_or("(not UTF-8)"),
                    core::str::from_utf8(&expect_ack).unwrap_or("?")
                ),
            ));
        }
        if let Some((at, b)) = mismatch {
            return Err(fail(
                status::TCP_ECHO,
                format_args!("echoed byte {at} is {b:#04x}, sent {:#04x}", pattern(at)),
            ));
        }
        if done != Some(true) {
            return Err(fail(
                status::TCP_TIMEOUT,
                format_args!(
                    "exchange incomplete: line {line_sent}/{} sent, ack {}/{}, {sent} bytes sent, {got} echoed",
                    line.len(),
                    ack.len(),
                    expect_ack.len()
                ),
            ));
        }
        Ok(sent)
    }

    /// Closes the connection and waits (briefly) for the far end's FIN, so the server sees
    /// the session end.
    fn close(&mut self, handle: SocketHandle) {
        self.net.sockets.get_mut::<tcp::Socket>(handle).close();
        self.net.run_until(Duration::from_secs(3), STEP, |s| {
            let state = s.sockets.get_mut::<tcp::Socket>(handle).state();
            matches!(state, tcp::State::Closed | tcp::State::TimeWait).then_some(())
        });
    }

    /// The gateway's MAC address, by ARP (raw frames: smoltcp keeps its cache private).
    pub(crate) fn gateway_mac(&mut self) -> Result<[u8; 6], i32> {
        let gateway = self.uplink.gateway;
        for _ in 0..3 {
            let request = frame::arp_request(self.mac, self.address.octets(), gateway);
            if !self.net.device.send_frame(&request) {
                return Err(fail(
                    status::SEND_FAILED,
                    format_args!("cannot send an ARP request"),
                ));
            }
            let end = now_ns() + 1_000_000_000;
            while now_ns() < end {
                if let Some(Some(mac)) = self
                    .net
                    .device
                    .recv_frame(|f| frame::arp_reply_from(f, gateway))
                {
                    return Ok(mac);
                }
                self.net.device.wait(Some(STEP));
            }
        }
        Err(fail(
            status::NO_GATEWAY_MAC,
            format_args!("no ARP reply from the gateway {}", Ipv4Addr::from(gateway)),
        ))
    }

    /// Sends `frame` and watches the link for [`SILENCE`]: true when a frame matching
    /// `answer` arrives.
    fn answered(&mut self, frame: &[u8], answer: impl Fn(&[u8]) -> bool) -> Result<bool, i32> {
        if !self.net.device.send_frame(frame) {
            return Err(fail(
                status::SEND_FAILED,
                format_args!("cannot send a raw frame"),
            ));
        }
        let end = now_ns() + SILENCE.as_nanos() as u64;
        while now_ns() < end {
            match self.net.device.recv_frame(|f| answer(f)) {
                Some(true) => return Ok(true),
                Some(false) => {}
                None => {
                    self.net.device.wait(Some(STEP));
                }
            }
        }
        Ok(false)
    }
}

/// `mode=net-client`.
pub fn client(boot: &Boot, args: &Args<'_>) -> i32 {
    match run_client(boot, args) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

fn run_client(boot: &Boot, args: &Args<'_>) -> Result<(), i32> {
    let name = args.get("name").unwrap_or("bulkhead-test.internal");
    let port: u16 = argument(args, "port", 5555)?;
    let denied: SocketAddrV4 = argument(
        args,
        "denied",
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 5556),
    )?;
    let spoof: SocketAddrV4 = argument(
        args,
        "spoof",
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 5557),
    )?;
    let spoof_src: Ipv4Addr = argument(args, "spoof-src", Ipv4Addr::new(10, 137, 0, 99))?;
    let mut c = Client::start(boot)?;

    let addr = c.resolve(name)?;
    info!("net-client: dns {name} -> {addr}");

    let t0 = now_ns();
    let tcp = c.tcp_socket();
    if !c.connect(tcp, SocketAddrV4::new(addr, port), CONNECT_TIMEOUT, 0) {
        return Err(fail(
            status::TCP_CONNECT,
            format_args!(
                "no TCP connection to {addr}:{port} within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        ));
    }
    let n = c.exchange(tcp)?;
    c.close(tcp);
    c.net.sockets.remove(tcp);
    info!(
        "net-client: tcp ok, {n} bytes each way (plus the line and its ack) in {} ms",
        (now_ns() - t0) / 1_000_000
    );

    let probe = c.tcp_socket();
    if c.connect(probe, denied, SILENCE, 1) {
        return Err(fail(
            status::DENIED_REACHED,
            format_args!("denied destination {denied} accepted a connection"),
        ));
    }
    let how = match c.net.sockets.get_mut::<tcp::Socket>(probe).state() {
        tcp::State::Closed => "refused",
        _ => "no answer",
    };
    c.net.sockets.get_mut::<tcp::Socket>(probe).abort();
    c.net.poll();
    c.net.sockets.remove(probe);
    info!(
        "net-client: denied destination blocked ({denied}: {how} in {} s)",
        SILENCE.as_secs()
    );

    let gateway_mac = c.gateway_mac()?;
    let ends = Ipv4Ends {
        src_mac: c.mac,
        dst_mac: gateway_mac,
        src_ip: spoof_src.octets(),
        dst_ip: spoof.ip().octets(),
    };
    let datagram = frame::udp_ipv4(
        &ends,
        40000,
        spoof.port(),
        b"spoofed source, must not arrive",
    );
    if !c.net.device.send_frame(&datagram) {
        return Err(fail(
            status::SEND_FAILED,
            format_args!("cannot send the spoofed datagram"),
        ));
    }
    info!("net-client: sent spoofed packet ({spoof_src} -> {spoof})");
    // Let the firewall take the frame before this qube stops.
    c.net
        .run_until(Duration::from_millis(300), STEP, |_| None::<()>);
    Ok(())
}

/// `mode=net-client-isolated`.
pub fn isolated(boot: &Boot, args: &Args<'_>) -> i32 {
    match run_isolated(boot, args) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

fn run_isolated(boot: &Boot, args: &Args<'_>) -> Result<(), i32> {
    let name = args.get("name").unwrap_or("bulkhead-test.internal");
    let peer: Ipv4Addr = argument(args, "peer", Ipv4Addr::new(10, 137, 0, 10))?;
    let peer_port: u16 = argument(args, "peer-port", 7)?;
    let mut c = Client::start(boot)?;

    let addr = c.resolve(name)?;
    info!("net-client: dns {name} -> {addr}");

    let gateway_mac = c.gateway_mac()?;
    let ends = Ipv4Ends {
        src_mac: c.mac,
        dst_mac: gateway_mac,
        src_ip: c.address.octets(),
        dst_ip: peer.octets(),
    };
    let port = c.local_port(2);
    let syn = frame::tcp_syn(&ends, port, peer_port, now_ns() as u32);
    if c.answered(&syn, |f| {
        frame::is_tcp_from(f, peer.octets(), peer_port, port)
    })? {
        return Err(fail(
            status::PEER_TCP,
            format_args!("other client reachable: {peer}:{peer_port} answered TCP"),
        ));
    }
    let ident = (now_ns() as u16) | 1;
    let ping = frame::icmp_echo_request(&ends, ident, 1, b"bulkhead isolation probe");
    if c.answered(&ping, |f| {
        frame::is_icmp_echo_reply(f, peer.octets(), ident)
    })? {
        return Err(fail(
            status::PEER_ICMP,
            format_args!("other client reachable: {peer} answered an ICMP echo"),
        ));
    }
    info!(
        "net-client: other client unreachable ({peer}: no TCP answer on port {peer_port}, no echo reply in {} s each)",
        SILENCE.as_secs()
    );
    Ok(())
}

/// `mode=net-uplink restarts=N`: the downstream side of sys-net, for its restart test. Opens
/// the uplink channel (the configuration's, else the first), says hello, waits for sys-net's
/// `Uplink` and logs it (`net-client: uplink ADDR/PREFIX gateway GW dns DNS from MAC`). While
/// the qube has been restarted fewer than `restarts=` (default 0) times it then exits with
/// [`status::RESTART_ME`], so its restart policy starts it again and the hypervisor resets the
/// channel: sys-net has to notice and announce the uplink again. Then it exits 0.
pub fn uplink(boot: &Boot, args: &Args<'_>) -> i32 {
    let restarts: u32 = match argument(args, "restarts", 0) {
        Ok(n) => n,
        Err(status) => return status,
    };
    let config = match boot.config() {
        [] => None,
        blob => match QubeConfig::decode(blob) {
            Ok(c) => Some(c),
            Err(e) => return fail(status::NO_UPLINK, format_args!("{e}")),
        },
    };
    let opened = match config.as_ref().and_then(|c| c.uplink.as_ref()) {
        Some(u) => Channel::open_named(boot, u.channel.as_str()),
        None => Channel::open(boot, 0),
    };
    let channel = match opened {
        Ok(ch) => ch,
        Err(e) => {
            return fail(
                status::NO_CHANNEL,
                format_args!("cannot open the uplink channel: {e}"),
            );
        }
    };
    let name = heapless::String::<24>::try_from(channel.name()).unwrap_or_default();
    let mut link = NetLink::new(channel, boot.name());
    let end = now_ns() + HELLO_TIMEOUT.as_nanos() as u64;
    let info = loop {
        link.recv_frame(|_| ());
        let mut got = None;
        while let Some(e) = link.take_event() {
            if let LinkEvent::Uplink(u) = e {
                got = Some(u);
            }
        }
        if let Some(u) = got {
            break u;
        }
        if now_ns() >= end {
            return fail(
                status::NO_UPLINK_INFO,
                format_args!(
                    "no uplink from sys-net on {name} within {} s",
                    HELLO_TIMEOUT.as_secs()
                ),
            );
        }
        link.wait(Some(Duration::from_millis(100)));
    };
    let m = info.mac;
    info!(
        "net-client: uplink {}/{} gateway {} dns {} from {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} (restart {})",
        Ipv4Addr::from(info.address),
        info.prefix_len,
        info.gateway.map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from),
        info.dns
            .first()
            .copied()
            .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from),
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        boot.restart_count()
    );
    if boot.restart_count() < restarts {
        info!(
            "net-client: exiting with status {} to be restarted",
            status::RESTART_ME
        );
        return status::RESTART_ME;
    }
    0
}

/// `mode=net-echo-loop seconds=S period-ms=P`: resolves the test name once, then every P ms
/// for S seconds opens a TCP connection to it (port `port=`, default 5555) and runs the echo
/// exchange, logging `net-echo: round N ok` or `net-echo: round N failed`. Used across a
/// sys-net restart: rounds fail while it is down and succeed again after. Exits 0 when at
/// least two rounds succeeded; with `all=true`, only when no round failed. `delay-ms=D`
/// waits D ms after resolving, before the first round.
pub fn echo_loop(boot: &Boot, args: &Args<'_>) -> i32 {
    let all: bool = match argument(args, "all", false) {
        Ok(all) => all,
        Err(status) => return status,
    };
    match run_echo_loop(boot, args) {
        Ok((ok, failed)) if ok >= 2 && (failed == 0 || !all) => 0,
        Ok(_) => status::TCP_CONNECT,
        Err(status) => status,
    }
}

fn run_echo_loop(boot: &Boot, args: &Args<'_>) -> Result<(u32, u32), i32> {
    let name = args.get("name").unwrap_or("bulkhead-test.internal");
    let port: u16 = argument(args, "port", 5555)?;
    let seconds: u64 = argument(args, "seconds", 30)?;
    let period = Duration::from_millis(argument(args, "period-ms", 500)?);
    let delay = Duration::from_millis(argument(args, "delay-ms", 0)?);
    let mut c = Client::start(boot)?;
    let addr = c.resolve(name)?;
    info!("net-client: dns {name} -> {addr}");
    c.net.run_until(delay, STEP, |_| None::<()>);
    let end = now_ns() + seconds * 1_000_000_000;
    let (mut round, mut ok, mut failed) = (0u16, 0u32, 0u32);
    while now_ns() < end {
        round = round.wrapping_add(1);
        let tcp = c.tcp_socket();
        let result = if c.connect(
            tcp,
            SocketAddrV4::new(addr, port),
            Duration::from_secs(3),
            round,
        ) {
            c.exchange(tcp).map(|_| ())
        } else {
            Err(status::TCP_CONNECT)
        };
        match result {
            Ok(()) => {
                c.close(tcp);
                ok += 1;
                info!("net-echo: round {round} ok");
            }
            Err(_) => {
                c.net.sockets.get_mut::<tcp::Socket>(tcp).abort();
                c.net.poll();
                failed += 1;
                info!("net-echo: round {round} failed");
            }
        }
        c.net.sockets.remove(tcp);
        c.net.run_until(period, STEP, |_| None::<()>);
    }
    info!("net-echo: {ok} rounds ok, {failed} failed in {seconds} s");
    Ok((ok, failed))
}
