//! Private volumes: what a storage qube serves and to whom, and how a client reaches it.
//!
//! A qube with `storagevm = "..."` and `private_mib = N` in the system description has a
//! private volume of N MiB on the disk of that storage qube, named after the qube in the
//! disk's volume table, and a block channel to the storage qube (`<qube>.blk`). A Linux
//! qube with `storagevm` also reaches its template's read-only root volume over a second
//! channel (`<qube>.root`). The storage qube's blob lists each client channel with its
//! volume ([`StorageServer`]); a unikernel client's blob names its channel
//! ([`crate::QubeConfig::block_channel`]).

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::NAME_MAX;

/// Most client channels one storage qube serves: each is a channel, and a qube has at most this
/// many (`bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE`).
pub const MAX_STORAGE_CLIENTS: usize = 8;

/// What a storage qube serves, all from the system description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageServer {
    /// The client channels, in the system description's order.
    pub clients: Vec<StorageClient, MAX_STORAGE_CLIENTS>,
}

/// One client channel: a qube reaching one volume on this storage qube's disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageClient {
    /// The client qube's name. For a private volume it is also the volume's name in the
    /// disk's volume table, so the client reaches its own volume and no other.
    pub qube: String<NAME_MAX>,
    /// The channel (`<qube>.blk` for the private volume, `<qube>.root` for the template's
    /// root).
    pub channel: String<NAME_MAX>,
    /// Which volume the channel reaches.
    pub volume: ClientVolume,
}

/// The volume behind one client channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientVolume {
    /// The client's own private volume (read-write), of `mib` MiB (`private_mib`); the
    /// disk's table must say the same, or the storage qube refuses to serve it.
    Private {
        /// Its size in MiB.
        mib: u32,
    },
    /// The root file system of the template named (read-only; shared by every qube of the
    /// template). Its integrity is checked by the client (dm-verity, with the root hash
    /// from the manifest), not by the storage qube.
    TemplateRoot {
        /// The template's name: its root volume's name in the disk's volume table.
        template: String<NAME_MAX>,
    },
}
