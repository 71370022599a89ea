//! The qube's settings, from the kernel command line: `bulkhead.name=<qube>`,
//! `bulkhead.net=<channel to the firewall>`, `bulkhead.gui=<channel to the gui qube>`,
//! `bulkhead.qrexec=<channel to the admin qube>`, `bulkhead.home=<block channel to the
//! storage qube>` (the private volume, `/home`), `bulkhead.root=<block channel to the
//! storage qube>` (the template's read-only root) with its dm-verity parameters
//! `bulkhead.verity=<data_blocks>:<hash_start_block>:<root hex>:<salt hex>` ([`Verity`]),
//! `bulkhead.template=<template>`, and the network
//! (`bulkhead.ip=10.137.0.10/24 bulkhead.gw=10.137.0.1 bulkhead.dns=10.139.1.1`). Other
//! parameters are ignored. [`Settings::parse`] never fails as a whole: a bad value is kept as
//! an error line and the rest is used.

use std::fmt;
use std::net::Ipv4Addr;

/// The network settings of the qube.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Name servers, in order (`bulkhead.dns=` may repeat or hold a comma-separated list).
    pub dns: Vec<Ipv4Addr>,
}

/// Why the command line did not give a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// No `bulkhead.ip=`: the qube has no network.
    NoAddress,
    /// A `bulkhead.*` value that does not parse.
    Bad { key: String, value: String },
    /// A `bulkhead.*` value that does not parse, and why.
    Invalid {
        key: String,
        value: String,
        why: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoAddress => write!(f, "no bulkhead.ip= on the kernel command line"),
            ConfigError::Bad { key, value } => write!(f, "bad value for {key}: {value:?}"),
            ConfigError::Invalid { key, value, why } => {
                write!(f, "bad value for {key}: {value:?} ({why})")
            }
        }
    }
}

/// Parses the network settings out of a kernel command line. Other parameters are ignored;
/// a later `bulkhead.ip=` or `bulkhead.gw=` replaces an earlier one.
pub fn parse_cmdline(cmdline: &str) -> Result<NetConfig, ConfigError> {
    let mut address = None;
    let mut gateway = None;
    let mut dns = Vec::new();
    for word in cmdline.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let bad = || ConfigError::Bad {
            key: key.to_string(),
            value: value.to_string(),
        };
        match key {
            "bulkhead.ip" => {
                let (ip, len) = value.split_once('/').unwrap_or((value, "32"));
                let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
                let len: u8 = len.parse().map_err(|_| bad())?;
                if len > 32 {
                    return Err(bad());
                }
                address = Some((ip, len));
            }
            "bulkhead.gw" => gateway = Some(value.parse().map_err(|_| bad())?),
            "bulkhead.dns" => {
                for part in value.split(',').filter(|p| !p.is_empty()) {
                    dns.push(part.parse().map_err(|_| bad())?);
                }
            }
            _ => {}
        }
    }
    let (address, prefix_len) = address.ok_or(ConfigError::NoAddress)?;
    Ok(NetConfig {
        address,
        prefix_len,
        gateway,
        dns,
    })
}

/// Longest qube, channel or template name accepted (the ABI's name length).
pub const NAME_MAX: usize = bulkhead_abi::boot_info::NAME_MAX;

/// Everything the agent takes from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `bulkhead.name=`: this qube's name (for `Hello`s and log lines).
    pub name: Option<String>,
    /// `bulkhead.net=`: the name of the channel to the firewall.
    pub net_channel: Option<String>,
    /// `bulkhead.gui=`: the name of the channel to the gui qube (no windows without it).
    pub gui_channel: Option<String>,
    /// `bulkhead.qrexec=`: the name of the channel to the admin qube (no qrexec without it).
    pub qrexec_channel: Option<String>,
    /// `bulkhead.home=`: the block channel to the storage qube whose volume is `/home` (no
    /// private volume without it).
    pub home_channel: Option<String>,
    /// `bulkhead.root=`: the block channel to the storage qube whose (read-only) volume is
    /// the template's root (no template root without it).
    pub root_channel: Option<String>,
    /// `bulkhead.verity=`: the dm-verity parameters of that volume; without them the root
    /// is never used.
    pub verity: Option<Verity>,
    /// `bulkhead.template=`: the template this qube was made from (disposables check it).
    pub template: Option<String>,
    /// The network settings, when `bulkhead.ip=` is given and the values parse.
    pub net: Option<NetConfig>,
    /// `appvm.selftest=`: the steps `/bin/appvm-selftest` runs (a test's; the agent looks
    /// only for `block-hostile`, which takes the block channels: `blockdev::hostile`).
    pub selftest: Vec<String>,
    /// One line per value that did not parse (that setting is left out).
    pub errors: Vec<ConfigError>,
}

impl Settings {
    /// Reads the `bulkhead.*` keys (and `appvm.selftest=`) of a kernel command line; unknown
    /// keys are ignored.
    pub fn parse(cmdline: &str) -> Settings {
        let mut s = Settings::default();
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            if key == "appvm.selftest" {
                s.selftest = value.split(',').map(String::from).collect();
                continue;
            }
            if key == "bulkhead.verity" {
                // A bad value drops an earlier good one too: never a root checked against
                // parameters other than the last ones given.
                s.verity = None;
                match Verity::parse(value) {
                    Ok(v) => s.verity = Some(v),
                    Err(why) => s.errors.push(ConfigError::Invalid {
                        key: key.to_string(),
                        value: value.to_string(),
                        why,
                    }),
                }
                continue;
            }
            let slot = match key {
                "bulkhead.name" => &mut s.name,
                "bulkhead.net" => &mut s.net_channel,
                "bulkhead.gui" => &mut s.gui_channel,
                "bulkhead.qrexec" => &mut s.qrexec_channel,
                "bulkhead.home" => &mut s.home_channel,
                "bulkhead.root" => &mut s.root_channel,
                "bulkhead.template" => &mut s.template,
                _ => continue,
            };
            if is_name(value) {
                *slot = Some(value.to_string());
            } else {
                s.errors.push(ConfigError::Bad {
                    key: key.to_string(),
                    value: value.to_string(),
                });
            }
        }
        match parse_cmdline(cmdline) {
            Ok(net) => s.net = Some(net),
            Err(ConfigError::NoAddress) => {}
            Err(e) => s.errors.push(e),
        }
        s
    }

    /// The qube's name, `appvm` when the command line gives none.
    pub fn qube(&self) -> &str {
        self.name.as_deref().unwrap_or("appvm")
    }

    /// The channel to the firewall: `bulkhead.net=`, else `<name>.net` (the channel name the
    /// system compiler gives a client's link to its netvm).
    pub fn net_channel_name(&self) -> Option<String> {
        self.net_channel
            .clone()
            .or_else(|| self.name.as_ref().map(|n| format!("{n}.net")))
    }
}

/// The dm-verity parameters of the template's root volume (`bulkhead.verity=`): the format
/// xtask writes and this agent reads is defined once, in `bulkhead_qubeconfig::verity`.
pub use bulkhead_qubeconfig::verity::{Hex, VerityParams as Verity};

/// A name the ABI can carry: 1 to [`NAME_MAX`] bytes of letters, digits, `.`, `-`, `_`.
pub fn is_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= NAME_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_settings() {
        let c = parse_cmdline(
            "console=ttyS0 panic=-1 bulkhead.ip=10.137.0.10/24 bulkhead.gw=10.137.0.1 \
             bulkhead.dns=10.139.1.1 quiet",
        )
        .unwrap();
        assert_eq!(
            c,
            NetConfig {
                address: Ipv4Addr::new(10, 137, 0, 10),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(10, 137, 0, 1)),
                dns: vec![Ipv4Addr::new(10, 139, 1, 1)],
            }
        );
    }

    #[test]
    fn defaults_and_lists() {
        let c =
            parse_cmdline("bulkhead.ip=10.0.0.2 bulkhead.dns=1.1.1.1,9.9.9.9 bulkhead.dns=8.8.8.8")
                .unwrap();
        assert_eq!(c.prefix_len, 32);
        assert_eq!(c.gateway, None);
        assert_eq!(c.dns.len(), 3);
        assert_eq!(c.dns[2], Ipv4Addr::new(8, 8, 8, 8));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_cmdline("console=ttyS0 ro"),
            Err(ConfigError::NoAddress)
        );
        assert_eq!(parse_cmdline(""), Err(ConfigError::NoAddress));
        for bad in [
            "bulkhead.ip=10.0.0.256/24",
            "bulkhead.ip=10.0.0.2/33",
            "bulkhead.ip=10.0.0.2/x",
            "bulkhead.ip=10.0.0.2 bulkhead.gw=gw",
            "bulkhead.ip=10.0.0.2 bulkhead.dns=1.1.1",
        ] {
            assert!(
                matches!(parse_cmdline(bad), Err(ConfigError::Bad { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn settings_keep_what_parses() {
        let s = Settings::parse(
            "console=ttyS0 bulkhead.name=work bulkhead.template=debian-12 bulkhead.gw=x \
             bulkhead.ip=10.137.0.10/24 bulkhead.net=work.net bulkhead.unknown=1 noequals \
             bulkhead.gui=work.gui bulkhead.qrexec=work.qrexec bulkhead.home=work.blk",
        );
        assert_eq!(s.home_channel.as_deref(), Some("work.blk"));
        assert_eq!(s.qube(), "work");
        assert_eq!(s.gui_channel.as_deref(), Some("work.gui"));
        assert_eq!(s.qrexec_channel.as_deref(), Some("work.qrexec"));
        assert_eq!(s.template.as_deref(), Some("debian-12"));
        assert_eq!(s.net_channel_name().as_deref(), Some("work.net"));
        // The bad gateway loses the network settings (they are one unit) but nothing else.
        assert_eq!(s.net, None);
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].to_string(), "bad value for bulkhead.gw: \"x\"");
        assert!(s.selftest.is_empty());
        let s = Settings::parse("appvm.selftest=xstate:2,block-hostile quiet");
        assert_eq!(s.selftest, ["xstate:2", "block-hostile"]);
    }

    #[test]
    fn settings_defaults_and_bad_names() {
        let s = Settings::parse("");
        assert_eq!(s.qube(), "appvm");
        assert_eq!(s.net_channel_name(), None);
        assert!(s.errors.is_empty() && s.net.is_none());
        let s = Settings::parse("bulkhead.name=w bulkhead.name=a/b bulkhead.template=");
        assert_eq!(s.qube(), "w");
        // No guessed GUI channel: windows only when the system description gives one.
        assert_eq!((&s.gui_channel, &s.qrexec_channel), (&None, &None));
        assert_eq!(Settings::parse("bulkhead.gui=a;b").errors.len(), 1);
        assert_eq!(Settings::parse("bulkhead.home=/dev/x").errors.len(), 1);
        assert_eq!(s.home_channel, None);
        assert_eq!(s.net_channel_name().as_deref(), Some("w.net"));
        assert_eq!(s.errors.len(), 2);
        let long = format!("bulkhead.net={}", "n".repeat(NAME_MAX + 1));
        assert_eq!(Settings::parse(&long).errors.len(), 1);
    }

    const ROOT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const SALT: &str = "ffeeddccbbaa99887766554433221100FFEEDDCCBBAA99887766554433221100";

    #[test]
    fn root_and_verity() {
        let s = Settings::parse(&format!(
            "bulkhead.name=work bulkhead.home=work.blk bulkhead.root=work.root \
             bulkhead.verity=25600:25600:{ROOT}:{SALT}"
        ));
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.root_channel.as_deref(), Some("work.root"));
        let v = s.verity.unwrap();
        assert_eq!((v.data_blocks, v.hash_start_block), (25600, 25600));
        assert_eq!(v.root[..3], [0x01, 0x23, 0x45]);
        assert_eq!(v.root[31], 0xef);
        // Either case is read; the table always gets lowercase.
        assert_eq!(v.salt[0], 0xff);
        assert_eq!(v.salt[16], 0xff);
        assert_eq!(Hex(&v.salt).to_string(), SALT.to_lowercase());
        assert_eq!(Hex(&v.root).to_string(), ROOT);
    }

    #[test]
    fn root_without_verity_is_kept_for_the_agent_to_refuse() {
        let s = Settings::parse("bulkhead.root=work.root");
        assert_eq!(s.root_channel.as_deref(), Some("work.root"));
        assert_eq!(s.verity, None);
        assert!(s.errors.is_empty());
        assert_eq!(Settings::parse("bulkhead.root=a/b").errors.len(), 1);
    }

    #[test]
    fn malformed_verity_is_refused_with_a_reason() {
        let long = format!("{ROOT}0");
        let upper_x = format!("{}x", &ROOT[..63]);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "4 fields"),
            (format!("1:2:{ROOT}"), "4 fields"),
            (format!("1:2:{ROOT}:{SALT}:5"), "4 fields"),
            (format!("x:2:{ROOT}:{SALT}"), "data_blocks is not"),
            (format!(":2:{ROOT}:{SALT}"), "data_blocks is not"),
            (format!("+1:2:{ROOT}:{SALT}"), "data_blocks is not"),
            (format!("-1:2:{ROOT}:{SALT}"), "data_blocks is not"),
            (format!("1:0x2:{ROOT}:{SALT}"), "hash_start_block is not"),
            (
                format!("99999999999999999999999:2:{ROOT}:{SALT}"),
                "data_blocks is not",
            ),
            (format!("0:2:{ROOT}:{SALT}"), "data_blocks is 0"),
            (format!("{}:2:{ROOT}:{SALT}", u64::MAX / 8 + 1), "too large"),
            (format!("1:{}:{ROOT}:{SALT}", u64::MAX / 8), "too large"),
            (format!("1:2:{}:{SALT}", &ROOT[..62]), "root hash"),
            (format!("1:2:{long}:{SALT}"), "root hash"),
            (format!("1:2:{upper_x}:{SALT}"), "root hash"),
            (format!("1:2:{ROOT}:-"), "salt"),
            (format!("1:2:{ROOT}:{}", "é".repeat(32)), "salt"),
        ];
        for (value, why) in cases {
            let s = Settings::parse(&format!("bulkhead.root=r.root bulkhead.verity={value}"));
            assert_eq!(s.verity, None, "{value}");
            assert_eq!(s.errors.len(), 1, "{value}");
            let text = s.errors[0].to_string();
            assert!(
                text.starts_with("bad value for bulkhead.verity: "),
                "{text}"
            );
            assert!(text.contains(why), "{value}: {text}");
            // Only the verity parameters are dropped.
            assert_eq!(s.root_channel.as_deref(), Some("r.root"));
        }
        // The largest values that still fit in sectors are taken.
        let v = Verity::parse(&format!(
            "{}:{}:{ROOT}:{SALT}",
            u64::MAX / 8,
            u64::MAX / 8 - 1
        ))
        .unwrap();
        assert_eq!(v.data_blocks, u64::MAX / 8);
    }

    #[test]
    fn a_bad_verity_value_drops_an_earlier_good_one() {
        let good = format!("bulkhead.verity=8:8:{ROOT}:{SALT}");
        let s = Settings::parse(&format!("{good} bulkhead.verity=8:8:{ROOT}:x"));
        assert_eq!((s.verity, s.errors.len()), (None, 1));
        let s = Settings::parse(&format!("bulkhead.verity=8:8:{ROOT}:x {good}"));
        assert_eq!((s.verity.is_some(), s.errors.len()), (true, 1));
    }

    proptest::proptest! {
        #[test]
        fn any_cmdline_parses_without_panic(s in "\\PC{0,200}") {
            let _ = Settings::parse(&s);
            let _ = Settings::parse(&format!("bulkhead.ip={s} bulkhead.name={s}"));
            let _ = Settings::parse(&format!("bulkhead.verity={s}"));
            let _ = Verity::parse(&format!("1:1:{s}:{s}"));
        }
    }
}
