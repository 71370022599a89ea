//! The kernel command line of a Linux qube, written into the bundle as its `Cmdline` entry.
//! The hypervisor appends ` tsc_early_khz=<kHz>` when it boots the qube.
//!
//! ```text
//! console=ttyS0 loglevel=4 reboot=t panic=-1 tsc=reliable
//!   bulkhead.name=<qube> bulkhead.template=<template>
//!   [bulkhead.net=<qube>.net bulkhead.ip=<address>/<prefix> bulkhead.gw=<gateway>
//!    bulkhead.dns=<dns>[,<dns>]]
//!   [bulkhead.gui=<qube>.gui]
//!   [bulkhead.qrexec=<qube>.qrexec]
//!   [bulkhead.home=<qube>.blk]
//!   [bulkhead.root=<qube>.root]
//!   [<kernel_args>]
//! ```
//!
//! - `console=ttyS0`: the hypervisor's 16550 (the qube's log). No `earlyprintk`: every
//!   early character would be a VM exit.
//! - `loglevel=4`: warnings and worse reach the console, the rest stays in `dmesg`.
//! - `reboot=t panic=-1`: a reboot or a panic triple-faults at once, which stops the qube
//!   (the hypervisor's restart policy decides what follows).
//! - `tsc=reliable`: the TSC is the clock; there is no other to check it against.
//! - KASLR stays on.
//! - `bulkhead.*` are read by the agent (`linux-appvm/agent/src/config.rs`): the qube's and
//!   its template's names, for a networked qube the channel to its netvm and the
//!   addresses its router gives it, for a qube with a guivm its GUI channel, when the
//!   system has an admin qube its qrexec channel, and for a qube with a private volume its
//!   block channel (the agent serves the volume as `/dev/nbd0`, `/init` mounts it at `/home`),
//!   and for a qube booting its template's root from the disk, the root channel (`/dev/nbd1`
//!   under dm-verity; xtask appends `bulkhead.verity=` with the template's hash-tree
//!   parameters when it builds the bundle, as only it knows the template's image).

use super::ip;
use bulkhead_qubeconfig::Ipv4;

/// What every Linux qube's command line starts with.
pub const BASE: &str = "console=ttyS0 loglevel=4 reboot=t panic=-1 tsc=reliable";
/// The longest command line the compiler writes (the kernel takes 2048 bytes with the NUL,
/// and the hypervisor appends `tsc_early_khz=`).
pub const MAX_LEN: usize = 1536;

/// A networked Linux qube's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Net<'a> {
    /// The channel to its netvm (`<qube>.net`).
    pub channel: &'a str,
    /// Its address in the client network.
    pub address: Ipv4,
    /// The client network's prefix length.
    pub prefix_len: u8,
    /// The gateway its router presents.
    pub gateway: Ipv4,
    /// The virtual DNS addresses (one or two).
    pub dns: &'a [Ipv4],
}

/// The channels a Linux qube opens by name, besides its network channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels<'a> {
    /// Its GUI channel (`<qube>.gui`), when it has a guivm.
    pub gui: Option<&'a str>,
    /// Its qrexec channel (`<qube>.qrexec`), when the system has an admin qube.
    pub qrexec: Option<&'a str>,
    /// Its block channel (`<qube>.blk`), when it has a private volume: its `/home`.
    pub home: Option<&'a str>,
    /// Its root channel (`<qube>.root`), when it boots its template's root from a disk.
    pub root: Option<&'a str>,
}

/// The command line of qube `qube` booting `template`, with `net` when it has a netvm, its
/// GUI and qrexec `channels`, and `kernel_args` (already checked: printable ASCII, no
/// `bulkhead.*`) last.
pub fn build(
    qube: &str,
    template: &str,
    net: Option<&Net<'_>>,
    channels: Channels<'_>,
    kernel_args: &str,
) -> String {
    let mut words = vec![
        BASE.to_string(),
        format!("bulkhead.name={qube}"),
        format!("bulkhead.template={template}"),
    ];
    if let Some(n) = net {
        words.push(format!("bulkhead.net={}", n.channel));
        words.push(format!(
            "bulkhead.ip={}/{}",
            ip::show(n.address),
            n.prefix_len
        ));
        words.push(format!("bulkhead.gw={}", ip::show(n.gateway)));
        if !n.dns.is_empty() {
            let dns: Vec<String> = n.dns.iter().map(|a| ip::show(*a)).collect();
            words.push(format!("bulkhead.dns={}", dns.join(",")));
        }
    }
    if let Some(channel) = channels.gui {
        words.push(format!("bulkhead.gui={channel}"));
    }
    if let Some(channel) = channels.qrexec {
        words.push(format!("bulkhead.qrexec={channel}"));
    }
    if let Some(channel) = channels.home {
        words.push(format!("bulkhead.home={channel}"));
    }
    if let Some(channel) = channels.root {
        words.push(format!("bulkhead.root={channel}"));
    }
    let extra = kernel_args.trim();
    if !extra.is_empty() {
        words.push(extra.to_string());
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_qube() {
        assert_eq!(
            build("disp", "debian", None, Channels::default(), ""),
            "console=ttyS0 loglevel=4 reboot=t panic=-1 tsc=reliable bulkhead.name=disp \
             bulkhead.template=debian"
        );
    }

    #[test]
    fn networked_qube_with_extra_arguments() {
        let net = Net {
            channel: "work.net",
            address: [10, 137, 0, 10],
            prefix_len: 24,
            gateway: [10, 137, 0, 1],
            dns: &[[10, 139, 1, 1], [10, 139, 1, 2]],
        };
        let channels = Channels {
            gui: Some("work.gui"),
            qrexec: Some("work.qrexec"),
            home: Some("work.blk"),
            root: Some("work.root"),
        };
        let line = build("work", "debian", Some(&net), channels, " mitigations=auto ");
        assert_eq!(
            line,
            "console=ttyS0 loglevel=4 reboot=t panic=-1 tsc=reliable bulkhead.name=work \
             bulkhead.template=debian bulkhead.net=work.net bulkhead.ip=10.137.0.10/24 \
             bulkhead.gw=10.137.0.1 bulkhead.dns=10.139.1.1,10.139.1.2 bulkhead.gui=work.gui \
             bulkhead.qrexec=work.qrexec bulkhead.home=work.blk bulkhead.root=work.root \
             mitigations=auto"
        );
        assert!(!line.contains("nokaslr") && !line.contains("earlyprintk"));
    }

    #[test]
    fn the_longest_fits() {
        let net = Net {
            channel: &"n".repeat(24),
            address: [255; 4],
            prefix_len: 30,
            gateway: [255; 4],
            dns: &[[255; 4], [255; 4]],
        };
        let args = "a".repeat(super::super::linux::KERNEL_ARGS_MAX);
        let (gui, qrexec, home) = ("g".repeat(24), "x".repeat(24), "h".repeat(24));
        let root = "r".repeat(24);
        let channels = Channels {
            gui: Some(&gui),
            qrexec: Some(&qrexec),
            home: Some(&home),
            root: Some(&root),
        };
        let line = build(
            &"q".repeat(24),
            &"t".repeat(24),
            Some(&net),
            channels,
            &args,
        );
        assert!(line.len() <= MAX_LEN, "{}", line.len());
    }
}
