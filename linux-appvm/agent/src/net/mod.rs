//! The qube's network interface: a TAP device ([`tap`]) whose frames the bridge carries
//! over the channel to the firewall; its address and default route are set with busybox
//! `ip`, and the name servers go to `/etc/resolv.conf`.

pub mod offload;
pub mod tap;

use crate::config::NetConfig;
use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
pub use tap::{FrameDevice, Tap};

/// The interface's name.
pub const IFNAME: &str = "bulkhead0";

/// The `ip` commands that give `ifname` its address and route (pure, for tests).
pub fn ip_commands(config: &NetConfig, ifname: &str) -> Vec<Vec<String>> {
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let mut cmds = vec![
        words(&format!(
            "addr add {}/{} dev {ifname}",
            config.address, config.prefix_len
        )),
        words(&format!("link set {ifname} up")),
    ];
    if let Some(gw) = config.gateway {
        // The gateway may lie outside the prefix (a /32 address): reach it on the link.
        cmds.push(words(&format!("route add {gw} dev {ifname}")));
        cmds.push(words(&format!("route add default via {gw} dev {ifname}")));
    }
    cmds
}

/// The contents of `/etc/resolv.conf`.
pub fn resolv_conf(dns: &[Ipv4Addr]) -> String {
    dns.iter().map(|d| format!("nameserver {d}\n")).collect()
}

/// Gives the interface `ifname` its address and routes, writes resolv.conf. IPv6 is turned
/// off on it first (the firewall drops IPv6; this keeps the kernel from sending any).
pub fn configure(config: &NetConfig, ifname: &str) -> io::Result<()> {
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
        "1",
    );
    for args in ip_commands(config, ifname) {
        let status = Command::new("ip").args(&args).status()?;
        // "route add <gw>" fails harmlessly when the gateway is already on the link.
        let optional = args[0] == "route" && args.len() == 4;
        if status.success() || optional {
            continue;
        }
        return Err(io::Error::other(format!(
            "`ip {}` failed ({status})",
            args.join(" ")
        )));
    }
    std::fs::write("/etc/resolv.conf", resolv_conf(&config.dns))
}

/// Brings `ifname` up without an address (the bridge still runs: the user may configure it).
pub fn link_up(ifname: &str) -> io::Result<()> {
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
        "1",
    );
    let status = Command::new("ip")
        .args(["link", "set", ifname, "up"])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip link set {ifname} up` failed ({status})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(gateway: Option<Ipv4Addr>) -> NetConfig {
        NetConfig {
            address: Ipv4Addr::new(10, 137, 0, 10),
            prefix_len: 24,
            gateway,
            dns: vec![Ipv4Addr::new(10, 139, 1, 1), Ipv4Addr::new(10, 139, 1, 2)],
        }
    }

    #[test]
    fn commands_for_address_and_route() {
        let cmds: Vec<String> = ip_commands(&config(Some(Ipv4Addr::new(10, 137, 0, 1))), "tap0")
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            cmds,
            [
                "addr add 10.137.0.10/24 dev tap0",
                "link set tap0 up",
                "route add 10.137.0.1 dev tap0",
                "route add default via 10.137.0.1 dev tap0"
            ]
        );
        assert_eq!(ip_commands(&config(None), "tap0").len(), 2);
    }

    #[test]
    fn resolv_conf_lists_servers_in_order() {
        assert_eq!(
            resolv_conf(&config(None).dns),
            "nameserver 10.139.1.1\nnameserver 10.139.1.2\n"
        );
        assert_eq!(resolv_conf(&[]), "");
    }
}
