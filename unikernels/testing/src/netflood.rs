//! `mode=net-flood kind=syn|udp seconds=S`: a client that floods sys-firewall's connection
//! table. It resolves the test name first (so sys-net has its lease and the firewall routes),
//! then for S seconds (default 30) sends raw frames that each open a new flow nobody
//! answers: TCP SYNs (`kind=syn`) or UDP datagrams (`kind=udp`) to the hosts `dst=` (default
//! 10.0.2.100) through +99 on the uplink's network, which do not exist (the firewall keeps
//! each connection and drops the frame when ARP finds nobody), every port in turn. It logs
//! `net-flood: N new flows` at each multiple of 4096 and `net-flood: done, N new flows in S
//! s` at the end, and exits 0.

use core::net::Ipv4Addr;
use core::time::Duration;

use bulkhead_rt::net::frame::{self, Ipv4Ends};
use bulkhead_rt::net::smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
use bulkhead_rt::{Args, Boot, info, now_ns};

use crate::netclient::{Client, argument, fail, status};

/// Flows logged at each multiple of this.
const PROGRESS: u32 = 4096;

/// A TCP SYN in an Ethernet frame (built from a UDP frame of the same length).
fn syn(ends: &Ipv4Ends, src_port: u16, dst_port: u16) -> alloc::vec::Vec<u8> {
    let mut f = frame::udp_ipv4(ends, src_port, dst_port, &[0; 12]);
    let ip = 14;
    f[ip + 9] = 6;
    Ipv4Packet::new_unchecked(&mut f[ip..]).fill_checksum();
    let t = &mut f[ip + 20..];
    t[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
    t[8..12].fill(0);
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t[16..20].fill(0);
    let (src, dst) = (
        IpAddress::Ipv4(Ipv4Addr::from(ends.src_ip)),
        IpAddress::Ipv4(Ipv4Addr::from(ends.dst_ip)),
    );
    TcpPacket::new_unchecked(&mut f[ip + 20..]).fill_checksum(&src, &dst);
    f
}

/// `mode=net-flood`.
pub fn flood(boot: &Boot, args: &Args<'_>) -> i32 {
    match run(boot, args) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

fn run(boot: &Boot, args: &Args<'_>) -> Result<(), i32> {
    let syn_flood = match args.get("kind").unwrap_or("syn") {
        "syn" => true,
        "udp" => false,
        other => {
            return Err(fail(
                crate::EXIT_BAD_MODE,
                format_args!("kind={other}: syn or udp"),
            ));
        }
    };
    let seconds: u64 = argument(args, "seconds", 30)?;
    let base: Ipv4Addr = argument(args, "dst", Ipv4Addr::new(10, 0, 2, 100))?;
    let name = args.get("name").unwrap_or("bulkhead-test.internal");
    let mut c = Client::start(boot)?;
    let addr = c.resolve(name)?;
    info!("net-client: dns {name} -> {addr}");
    let gateway_mac = c.gateway_mac()?;
    let start = now_ns();
    let end = start + seconds * 1_000_000_000;
    let mut flows = 0u32;
    let mut refused = 0u32;
    while now_ns() < end {
        let n = flows;
        let host = u32::from(base) + n % 100;
        let ends = Ipv4Ends {
            src_mac: c.mac,
            dst_mac: gateway_mac,
            src_ip: c.address.octets(),
            dst_ip: Ipv4Addr::from(host).octets(),
        };
        let dst_port = 1024 + ((n / 100) % 60000) as u16;
        let frame = if syn_flood {
            syn(&ends, 20000 + (n % 40000) as u16, dst_port)
        } else {
            frame::udp_ipv4(&ends, 20000, dst_port, b"flood")
        };
        if c.net.device.send_frame(&frame) {
            flows += 1;
            if flows % PROGRESS == 0 {
                info!("net-flood: {flows} new flows");
            }
        } else {
            // The ring is full: let the firewall catch up.
            refused += 1;
            c.net.device.wait(Some(Duration::from_millis(1)));
        }
        // Take what the firewall sends back (nothing is expected) so its ring never fills.
        while c.net.device.recv_frame(|_| ()).is_some() {}
        if refused > 1_000_000 {
            return Err(fail(
                status::SEND_FAILED,
                format_args!("the firewall stopped taking frames"),
            ));
        }
    }
    info!("net-flood: done, {flows} new flows in {seconds} s");
    Ok(())
}
