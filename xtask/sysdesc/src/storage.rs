//! `storagevm = "storage"` and `private_mib = N`: the qube has a private volume of N MiB on
//! the disk of the storage qube named (a unikernel with `image = "storage"`, which owns the
//! disk controller through its `devices`). Each such qube gets an automatic channel
//! **`<qube>.blk`**, purpose `block`, side A the client and side B the storage qube (the
//! block protocol's sides, `bulkhead_abi::block`), with a bulk area of two [`POOL_KIB`] KiB
//! pools for the data. The storage qube's blob lists its clients with their volume sizes;
//! a client's blob names its channel. The volume is named after the qube in the disk's
//! volume table, so a qube reaches its own volume and no other.
//!
//! A unikernel client opens the channel named in its blob; a Linux AppVM gets it as a PCI
//! channel device like its other channels, and `bulkhead.home=<qube>.blk` on its command
//! line (`cmdline`), on which its agent serves the volume to the kernel as `/dev/nbd0` and
//! `/init` mounts it at `/home`. A disposable (of either kind) keeps nothing, so it has none.

use super::channels::{Automatic, Channel, ring_channel_size};
use super::diagnostics::Diagnostics;
use super::linux;
use super::schema::Raw;
use super::service_ref::{Service, ServiceRefs};
use bulkhead_abi::block::BLOCK_SLOT_SIZE;

/// The purpose of block channels.
pub const PURPOSE: &str = "block";
/// What a block channel's name ends with.
pub const SUFFIX: &str = ".blk";
/// Slots per ring of a block channel: requests a client may have queued at once.
pub const SLOTS: u32 = 64;
/// KiB of each pool of a block channel's bulk area: the data of the requests a client has
/// in flight (the storage qube serves at most half of it in one request).
pub const POOL_KIB: u32 = 256;
/// The image a storage qube runs.
pub const STORAGE_IMAGE: &str = "storage";
/// The largest private volume, in MiB (1 TiB).
pub const MAX_PRIVATE_MIB: u32 = 1 << 20;

/// One block channel: a qube reaching one volume on its storage qube's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StorageLink {
    /// The client's and the storage qube's indices.
    pub client: usize,
    pub storage: usize,
    /// The volume the channel reaches.
    pub volume: LinkVolume,
}

/// What a block channel reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum LinkVolume {
    /// The client's private volume, of this many MiB (`<qube>.blk`).
    Private(u32),
    /// The read-only root of the Linux client's template, named (`<qube>.root`).
    TemplateRoot(String),
}

/// The name of `qube`'s block channel (its private volume).
pub fn channel_name(qube: &str) -> String {
    format!("{qube}{SUFFIX}")
}

/// What a root channel's name ends with.
pub const ROOT_SUFFIX: &str = ".root";

/// The name of a Linux qube's root channel (its template's root volume).
pub fn root_channel_name(qube: &str) -> String {
    format!("{qube}{ROOT_SUFFIX}")
}

/// Bytes of a block channel's bulk area: two pools of [`POOL_KIB`] KiB.
pub fn bulk_size() -> u32 {
    2 * POOL_KIB * 1024
}

/// How `storagevm` names its storage qube.
const SERVICE: Service = Service {
    key: "storagevm",
    image: STORAGE_IMAGE,
    role: "storage",
    itself: "cannot keep its own private volume",
    itself_hint: "remove storagevm and private_mib from the storage qube",
    channel: "block",
    suffix: SUFFIX,
    none_hint: Some(" (there is none: add one, with the disk in its devices)"),
};

/// Checks every `storagevm` and `private_mib` and makes the block channels.
pub(super) fn links(
    raw: &Raw,
    text: &str,
    d: &mut Diagnostics,
) -> (Vec<Automatic>, Vec<StorageLink>) {
    let qubes = &raw.qubes.items;
    let refs = ServiceRefs::new(raw, &SERVICE);
    let size = ring_channel_size(BLOCK_SLOT_SIZE, SLOTS);
    let (mut channels, mut out) = (Vec::new(), Vec::new());
    for (i, q) in qubes.iter().enumerate() {
        let Some((storage, span)) = q.text("storagevm") else {
            if !q.absent("private_mib") {
                let hint = "add storagevm = \"storage\" (the storage qube whose disk holds the \
                            volume), or remove private_mib";
                d.push(
                    text,
                    q.span.clone(),
                    q.key("private_mib"),
                    "private_mib without storagevm",
                    hint,
                );
            }
            continue;
        };
        let key = q.key("storagevm");
        let disposable = linux::is_disposable(q);
        if disposable && !q.absent("private_mib") {
            let message = "a disposable keeps nothing: it has no private volume";
            let hint = "remove private_mib from the disposable (it still boots its template's \
                        root from the storage qube)";
            let at = q.number("private_mib").map_or(span, |(_, s)| s);
            d.push(text, Some(at), q.key("private_mib"), message, hint);
            continue;
        }
        let template = linux::is_linux(q).then(|| {
            q.text("template")
                .map_or(linux::TEMPLATES[0], |(t, _)| t)
                .to_string()
        });
        let private_mib = match q.number("private_mib") {
            _ if disposable => None,
            Some((n, _)) if (1..=i128::from(MAX_PRIVATE_MIB)).contains(&n) => Some(n as u32),
            Some((n, nspan)) => {
                let message = format!("a private volume of {n} MiB is not possible");
                let hint = format!("use a whole number of MiB from 1 to {MAX_PRIVATE_MIB}");
                d.push(text, Some(nspan), q.key("private_mib"), message, hint);
                None
            }
            None => {
                if q.absent("private_mib") {
                    let hint = "add private_mib = 16 (the size of the qube's private volume in \
                                MiB; it cannot change once the disk holds it)";
                    d.push(
                        text,
                        q.span.clone(),
                        q.key("private_mib"),
                        "missing private_mib",
                        hint,
                    );
                }
                None
            }
        };
        let Some((j, me)) = refs.resolve(i, storage, &span, &key, text, d) else {
            continue;
        };
        let mut link = |name: String, volume: LinkVolume| {
            channels.push(Automatic {
                channel: Channel {
                    name,
                    a: i,
                    b: j,
                    size,
                    slot_size: BLOCK_SLOT_SIZE,
                    bulk_size: bulk_size(),
                    purpose: PURPOSE.to_string(),
                },
                key: key.clone(),
                span: Some(span.clone()),
            });
            out.push(StorageLink {
                client: i,
                storage: j,
                volume,
            });
        };
        if let Some(private_mib) = private_mib {
            link(channel_name(me), LinkVolume::Private(private_mib));
        }
        // A Linux qube (disposables too) boots its template's root from the same disk, if
        // its own volume could be given (a refused private_mib is reported once, above).
        if let Some(template) = template
            && (disposable || private_mib.is_some())
        {
            link(root_channel_name(me), LinkVolume::TemplateRoot(template));
        }
    }
    (channels, out)
}
