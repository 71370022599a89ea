//! A qube's configuration blob: what xtask compiles from the system description for one qube
//! and the hypervisor copies, unread, into the qube's memory (`BootInfo::config_gpa`).
//!
//! It is postcard-encoded and versioned like the manifest. A qube trusts it as much as its
//! own image (both come from the same bundle), but still decodes it with checks, so a broken
//! blob is a clear error at start, never a panic.
//!
//! Network terms follow Qubes OS: a qube's *netvm* is the qube it reaches the network through
//! (its [`Uplink`]); the qubes that name it as their netvm are its [`Downstream`] clients.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod rules;
pub mod storage;
pub mod verity;

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

pub use admin::{AdminConfig, AdminQube, QubeKind};
pub use rules::{Action, Cidr, PortRange, Proto, Rule, SpecialTarget};
pub use storage::{ClientVolume, MAX_STORAGE_CLIENTS, StorageClient, StorageServer};

/// Version of the blob layout.
pub const CONFIG_VERSION: u16 = 4;
/// Longest qube or channel name (the same limit as the hypervisor's).
pub const NAME_MAX: usize = 24;
/// Most clients one qube may serve.
pub const MAX_DOWNSTREAM: usize = 16;
/// Most firewall rules per client.
pub const MAX_RULES: usize = 32;
/// Most qubes one gui qube shows windows of.
pub const MAX_GUI_CLIENTS: usize = 16;
/// Most clipboard pairs a policy refuses.
pub const MAX_CLIPBOARD_DENY: usize = 64;

/// An IPv4 address, network byte order.
pub type Ipv4 = [u8; 4];

/// One qube's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QubeConfig {
    /// [`CONFIG_VERSION`].
    pub version: u16,
    /// How this qube reaches its netvm, if it has one.
    pub uplink: Option<Uplink>,
    /// The qubes that use this qube as their netvm.
    pub downstream: Vec<Downstream, MAX_DOWNSTREAM>,
    /// Set for a qube that routes for its clients (a firewall): the addresses it presents.
    pub router: Option<Router>,
    /// For the gui qube: the qubes whose windows it shows, and the clipboard policy.
    pub gui: Option<GuiServer>,
    /// For a qube that shows windows through a gui qube: its GUI channel.
    pub gui_channel: Option<String<NAME_MAX>>,
    /// For a unikernel that takes part in qrexec (the gui qube): its channel to the admin
    /// qube, `<qube>.qrexec`. A Linux qube reads it from its command line instead.
    pub qrexec: Option<String<NAME_MAX>>,
    /// For the admin qube: the system's qubes and the qrexec policy.
    pub admin: Option<AdminConfig>,
    /// For a storage qube: the qubes whose private volumes it serves.
    pub storage: Option<StorageServer>,
    /// For a qube with a private volume: its block channel to its storage qube,
    /// `<qube>.blk`.
    pub block_channel: Option<String<NAME_MAX>>,
}

/// What the gui qube knows of its clients, all from the system description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuiServer {
    /// The clients, in the system description's order.
    pub clients: Vec<GuiClient, MAX_GUI_CLIENTS>,
    /// `(from, to)` indices into `clients`: a clipboard copied in `from` may not be pasted
    /// into `to`.
    pub clipboard_deny: Vec<(u8, u8), MAX_CLIPBOARD_DENY>,
}

/// One qube that shows windows through the gui qube.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuiClient {
    /// The qube's name (drawn in its windows' title bars).
    pub qube: String<NAME_MAX>,
    /// Its GUI channel.
    pub channel: String<NAME_MAX>,
    /// Its label (`bulkhead_abi::label::Label` as `u8`): its windows' frame colour.
    pub label: u8,
    /// The largest window it may show.
    pub max_width: u16,
    /// The largest window it may show.
    pub max_height: u16,
}

/// The link to this qube's netvm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uplink {
    /// Name of the channel to the netvm.
    pub channel: String<NAME_MAX>,
    /// This qube's address when its netvm is a router (a firewall); `None` when the netvm is
    /// a bridge to the card (sys-net), where the address comes from DHCP.
    pub address: Option<Ipv4>,
    /// Prefix length of the client network (routing is by the gateway either way).
    pub prefix_len: u8,
    /// Default gateway (the router's address) when `address` is set.
    pub gateway: Ipv4,
    /// DNS servers to use (the router's virtual DNS addresses).
    pub dns: Vec<Ipv4, 2>,
}

/// A client of this qube.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downstream {
    /// The client qube's name.
    pub qube: String<NAME_MAX>,
    /// Name of the channel to it.
    pub channel: String<NAME_MAX>,
    /// Its address (set when this qube is a router).
    pub address: Option<Ipv4>,
    /// Its firewall rules, in order; first match wins; the last one matches everything. An
    /// empty list accepts everything (Qubes' default).
    pub rules: Vec<Rule, MAX_RULES>,
}

/// What a routing qube presents to its clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    /// The gateway address clients send to (Qubes: the netvm's own 10.137.0.x address).
    pub gateway: Ipv4,
    /// The virtual DNS addresses (Qubes: 10.139.1.1 and 10.139.1.2).
    pub virtual_dns: Vec<Ipv4, 2>,
    /// Resolver to forward DNS to instead of the one sys-net learned by DHCP (address, port).
    pub upstream_dns: Option<(Ipv4, u16)>,
}

/// Why a blob could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The bytes are not a postcard `QubeConfig`.
    Malformed,
    /// Written for another layout version.
    Version(u16),
    /// Trailing bytes after the blob.
    TrailingBytes,
    /// The admin qube's part names a qube, tag or name that does not exist.
    Admin(bulkhead_policy::TableError),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Malformed => write!(f, "configuration blob is not valid postcard"),
            ConfigError::Version(v) => write!(
                f,
                "configuration blob version {v}, this qube reads version {CONFIG_VERSION}"
            ),
            ConfigError::TrailingBytes => write!(f, "configuration blob has trailing bytes"),
            ConfigError::Admin(e) => write!(f, "configuration blob: {e}"),
        }
    }
}

impl QubeConfig {
    /// An empty configuration (no network).
    pub const fn empty() -> QubeConfig {
        QubeConfig {
            version: CONFIG_VERSION,
            uplink: None,
            downstream: Vec::new(),
            router: None,
            gui: None,
            gui_channel: None,
            qrexec: None,
            admin: None,
            storage: None,
            block_channel: None,
        }
    }

    /// Decodes a blob, checking the version first and the admin qube's part, if any, after.
    pub fn decode(bytes: &[u8]) -> Result<QubeConfig, ConfigError> {
        let (version, _) =
            postcard::take_from_bytes::<u16>(bytes).map_err(|_| ConfigError::Malformed)?;
        if version != CONFIG_VERSION {
            return Err(ConfigError::Version(version));
        }
        let (c, rest) =
            postcard::take_from_bytes::<QubeConfig>(bytes).map_err(|_| ConfigError::Malformed)?;
        if !rest.is_empty() {
            return Err(ConfigError::TrailingBytes);
        }
        if let Some(admin) = &c.admin {
            admin.check()?;
        }
        Ok(c)
    }

    /// Encodes into a new vector.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        postcard::to_allocvec(self).expect("encoding into a Vec cannot fail")
    }
}

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(test)]
mod tests;
