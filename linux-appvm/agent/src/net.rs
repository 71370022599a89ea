//! The qube's network interface: a TAP device (`/dev/net/tun`, ioctl TUNSETIFF) whose frames
//! the agent will carry over the channel to the firewall; its address and default route are
//! set with busybox `ip`, and the name servers go to `/etc/resolv.conf`.

use crate::config::NetConfig;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

/// The interface's name.
pub const IFNAME: &str = "bulkhead0";

// From <linux/if_tun.h>: _IOW('T', 202, int), and the flags.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (the union is 24 bytes).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP interface; it exists as long as this does.
#[derive(Debug)]
pub struct Tap {
    pub file: File,
    pub name: String,
}

/// Creates the TAP interface `name` (no packet-information header: plain Ethernet frames).
pub fn create_tap(name: &str) -> io::Result<Tap> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the descriptor is open for as long as `file` lives, and `req` is a valid,
    // 40-byte `struct ifreq` that TUNSETIFF reads and writes back in place.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    Ok(Tap {
        file,
        name: String::from_utf8_lossy(&req.name[..len]).into_owned(),
    })
}

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

/// Creates and configures the interface, writes resolv.conf.
pub fn setup(config: &NetConfig) -> io::Result<Tap> {
    let tap = create_tap(IFNAME)?;
    for args in ip_commands(config, &tap.name) {
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
    std::fs::write("/etc/resolv.conf", resolv_conf(&config.dns))?;
    Ok(tap)
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

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert!(create_tap("").is_err());
        assert!(create_tap("a-name-much-too-long").is_err());
    }
}
