//! What can go wrong on a channel, and whom it blames.

use core::fmt;

/// An error from an [`Endpoint`](crate::Endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The region is not a channel: misaligned, of a size no channel has, or its header is
    /// not exactly the one the hypervisor writes for that size.
    BadHeader,
    /// The message needs `len` bytes but at most `max` fit (a slot's payload when sending, the
    /// caller's buffer when receiving; nothing was sent or received).
    TooLarge {
        /// Bytes the message needs.
        len: usize,
        /// Bytes that fit.
        max: usize,
    },
    /// The message could not be encoded (its `Serialize` implementation failed).
    Encode,
    /// The peer broke the protocol; the channel is unusable from now on.
    Broken(Breach),
    /// The header is a channel of another layout version (a peer or a hypervisor built
    /// against another version of the ABI): nothing is read from it.
    Version {
        /// The version the header names.
        found: u32,
        /// The version this end speaks.
        expected: u32,
    },
    /// The peer holds so much of our bulk pool (buffers it has not returned) that the buffer
    /// does not fit now.
    BulkExhausted {
        /// Pages of our pool the peer holds.
        lent_pages: usize,
        /// Pages in our pool.
        pool_pages: usize,
        /// Buffers the peer holds.
        loans: usize,
    },
    /// [`crate::Bulk::write_lent`] was given a descriptor that is not one of our buffers on
    /// loan now (our own mistake, not the peer's).
    NotLent,
    /// The hypervisor reset the channel (the peer restarted): everything in flight is gone.
    /// Reopen the endpoint ([`crate::Endpoint::reopen`]) and start the conversation again.
    Reset,
}

/// What the peer did wrong: the blame when a channel breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breach {
    /// An index the peer writes moved outside the range the protocol allows.
    IndexOutOfRange {
        /// Which index.
        index: PeerIndex,
        /// What it held.
        value: u32,
        /// The lowest allowed value (free-running, wrapping).
        low: u32,
        /// The highest allowed value (free-running, wrapping).
        high: u32,
    },
    /// A slot's sequence word is neither the one of the message we expect next, nor the lap
    /// before's, nor 0.
    SequenceOutOfRange {
        /// The free-running index we read next.
        index: u32,
        /// The word the slot held.
        value: u32,
        /// The word that would have meant a message.
        expected: u32,
    },
    /// A slot's length exceeds the payload size.
    LengthOutOfRange {
        /// The length the slot claimed.
        len: u32,
        /// The largest payload.
        max: u32,
    },
    /// A bulk descriptor names bytes outside the lender's pool (or not at a page start).
    BulkOutOfRange {
        /// The offset it named.
        offset: u32,
        /// The length it named.
        len: u32,
        /// Bytes in the pool.
        pool: u32,
    },
    /// A lent bulk buffer did not match its checksum when copied: the lender changed it after
    /// lending it.
    BulkChanged {
        /// Its offset in the lender's pool.
        offset: u32,
        /// Its length.
        len: u32,
    },
    /// The peer returned a bulk buffer we had not lent it (or returned one twice).
    BulkNotLent {
        /// The offset it named.
        offset: u32,
        /// The length it named.
        len: u32,
    },
    /// A message did not decode as the type expected (or left bytes over).
    Decode,
}

/// An index in shared memory that the peer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerIndex {
    /// Its consumer index on the ring we send on (must stay between where it last was and
    /// our producer index).
    Consumer,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::BadHeader => {
                f.write_str("the region is not a channel (alignment, size or header)")
            }
            ChannelError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes, at most {max} fit")
            }
            ChannelError::Encode => f.write_str("the message could not be encoded"),
            ChannelError::Broken(b) => write!(f, "channel broken by the peer: {b}"),
            ChannelError::Version { found, expected } => write!(
                f,
                "the channel has layout version {found}, this end speaks version {expected}"
            ),
            ChannelError::NotLent => {
                write!(f, "the buffer written to is not one of ours on loan")
            }
            ChannelError::BulkExhausted {
                lent_pages,
                pool_pages,
                loans,
            } => write!(
                f,
                "the peer holds {lent_pages} of the {pool_pages} pages of our bulk pool \
                 ({loans} buffers not returned)"
            ),
            ChannelError::Reset => f.write_str("the channel was reset (the peer restarted)"),
        }
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::IndexOutOfRange {
                index,
                value,
                low,
                high,
            } => {
                let PeerIndex::Consumer = index;
                write!(f, "consumer index {value} outside {low}..={high}")
            }
            Breach::SequenceOutOfRange {
                index,
                value,
                expected,
            } => write!(
                f,
                "slot sequence word {value} at index {index}: not {expected} (a message), \
                 the lap before's or 0"
            ),
            Breach::LengthOutOfRange { len, max } => {
                write!(f, "slot length {len} above the payload size {max}")
            }
            Breach::BulkOutOfRange { offset, len, pool } => write!(
                f,
                "bulk buffer of {len} bytes at {offset:#x} is not at a page inside the \
                 {pool}-byte pool"
            ),
            Breach::BulkChanged { offset, len } => write!(
                f,
                "bulk buffer of {len} bytes at {offset:#x} changed after it was lent"
            ),
            Breach::BulkNotLent { offset, len } => write!(
                f,
                "returned bulk buffer of {len} bytes at {offset:#x} was not lent"
            ),
            Breach::Decode => f.write_str("a message did not decode"),
        }
    }
}

impl core::error::Error for ChannelError {}
impl core::error::Error for Breach {}
