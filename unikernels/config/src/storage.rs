//! Private volumes: what a storage qube serves and to whom, and how a client reaches it.
//!
//! A qube with `storagevm = "..."` and `private_mib = N` in the system description has a
//! private volume of N MiB on the disk of that storage qube, named after the qube in the
//! disk's volume table, and a block channel to the storage qube (`<qube>.blk`). The storage
//! qube's blob lists its clients ([`StorageServer`]); a client's blob names its channel
//! ([`crate::QubeConfig::block_channel`]).

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::NAME_MAX;

/// Most clients one storage qube serves: each needs a channel, and a qube has at most this
/// many (`bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE`).
pub const MAX_STORAGE_CLIENTS: usize = 8;

/// What a storage qube serves, all from the system description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageServer {
    /// The clients, in the system description's order.
    pub clients: Vec<StorageClient, MAX_STORAGE_CLIENTS>,
}

/// One qube with a private volume on this storage qube's disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageClient {
    /// The client qube's name: also its volume's name in the disk's volume table, so the
    /// client reaches its own volume and no other.
    pub qube: String<NAME_MAX>,
    /// Its block channel (`<qube>.blk`).
    pub channel: String<NAME_MAX>,
    /// The size of its private volume in MiB (`private_mib`); the disk's table must say the
    /// same, or the storage qube refuses to serve the volume.
    pub private_mib: u32,
}
