//! The qube's settings. For now they come from the kernel command line
//! (`bulkhead.ip=10.137.0.10/24 bulkhead.gw=10.137.0.1 bulkhead.dns=10.139.1.1`); later from
//! the hypervisor's boot information.

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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoAddress => write!(f, "no bulkhead.ip= on the kernel command line"),
            ConfigError::Bad { key, value } => write!(f, "bad value for {key}: {value:?}"),
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
}
