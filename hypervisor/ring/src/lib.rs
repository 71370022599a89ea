//! Channels between qubes: single-producer single-consumer rings of postcard messages over a
//! shared region, in the layout of [`bulkhead_abi::channel`].
//!
//! A channel is one region mapped into two qubes: a header the hypervisor writes, ring 0
//! (side A sends, side B receives) and ring 1 (the other way). Each [`Endpoint`] keeps its own
//! indices privately and treats everything in the region as written by a hostile peer: every
//! index and length it reads is checked before use, a slot is copied out before it is decoded,
//! and the first breach of the protocol breaks the channel ([`ChannelError::Broken`], with the
//! [`Breach`] that says what the peer did) without ever panicking, reading or writing outside
//! the region, looping or allocating.
//!
//! Every slot carries its own sequence word: the consumer polls the slot it reads next, so a
//! message that fits one cache line crosses in one line transfer. Messages larger than a
//! slot's payload are refused at the sender ([`ChannelError::TooLarge`]); they travel through
//! the channel's bulk area instead, lent by descriptor.
//!
//! Waiting is a handshake with the peer, not a system call: [`Endpoint::prepare_wait`] sets
//! our waiting flag and looks again; [`Endpoint::send`] answers `notify: true` when the peer's
//! flag is set, and the caller (the runtime, with its `notify` hypercall) raises the event.
//! A peer that polls costs nothing.
//!
//! ```
//! use bulkhead_abi::channel::Geometry;
//! use bulkhead_ring::{Endpoint, SharedRegion, Sent, Side};
//!
//! let region = SharedRegion::zeroed(16384);
//! region.init_header(&Geometry::new(16384, 128).unwrap());
//! let mut a = Endpoint::open(region.clone(), Side::A)?;
//! let mut b = Endpoint::open(region, Side::B)?;
//! assert_eq!(a.send(&("ping", 7u32))?, Sent::Queued { notify: false });
//! assert_eq!(b.try_recv::<(String, u32)>()?, Some(("ping".into(), 7)));
//! assert_eq!(b.try_recv::<(String, u32)>()?, None);
//! # Ok::<(), bulkhead_ring::ChannelError>(())
//! ```
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(feature = "std", loom))]
extern crate std;

#[cfg(not(loom))]
mod bulk;
mod endpoint;
mod error;
#[allow(unsafe_code)]
mod shm;
mod sync;

#[cfg(not(loom))]
pub use bulk::{BULK_PAGE, Bulk, BulkRef, MAX_LOANS, checksum};
pub use endpoint::{Endpoint, Sent, Side};
pub use error::{Breach, ChannelError, PeerIndex};
pub use shm::SharedRegion;
