//! The NBD transmission phase as the kernel's `nbd` driver speaks it over the socket the
//! agent gave it (`NBD_SET_SOCK`; no handshake: size and flags are set by ioctl). All
//! numbers are big-endian.
//!
//! ```text
//! request (28 bytes), then `len` bytes of data for a WRITE
//!   0   magic   u32   0x25609513
//!   4   type    u32   command in the low 16 bits, command flags (FUA, ...) in the high 16
//!   8   handle  u64   the kernel's cookie, echoed in the reply
//!   16  from    u64   byte offset
//!   24  len     u32   bytes
//! reply (16 bytes), then `len` bytes of data for a successful READ
//!   0   magic   u32   0x67446698
//!   4   error   u32   0 or an errno
//!   8   handle  u64
//! ```
//!
//! [`Request::parse`] takes any 28 bytes: a wrong magic is an error (the stream cannot be
//! followed after it), every other field is kept as sent and judged by [`Request::range`].

/// The request magic.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// The reply magic.
pub const REPLY_MAGIC: u32 = 0x6744_6698;
/// Bytes of a request header.
pub const REQUEST_LEN: usize = 28;
/// Bytes of a reply header.
pub const REPLY_LEN: usize = 16;

/// `NBD_CMD_READ`.
pub const CMD_READ: u16 = 0;
/// `NBD_CMD_WRITE`.
pub const CMD_WRITE: u16 = 1;
/// `NBD_CMD_DISC`: the kernel is done with the device.
pub const CMD_DISC: u16 = 2;
/// `NBD_CMD_FLUSH`.
pub const CMD_FLUSH: u16 = 3;
/// `NBD_CMD_TRIM`.
pub const CMD_TRIM: u16 = 4;
/// `NBD_CMD_FLAG_FUA` (in the high half of `type`): this write must be durable when
/// answered.
pub const CMD_FLAG_FUA: u16 = 1 << 0;

/// `NBD_FLAG_HAS_FLAGS`: the other flags mean something.
pub const FLAG_HAS_FLAGS: u64 = 1 << 0;
/// `NBD_FLAG_READ_ONLY`.
pub const FLAG_READ_ONLY: u64 = 1 << 1;
/// `NBD_FLAG_SEND_FLUSH`: the device has a write cache; the kernel sends FLUSH.
pub const FLAG_SEND_FLUSH: u64 = 1 << 2;
/// `NBD_FLAG_SEND_TRIM`: the kernel may send TRIM.
pub const FLAG_SEND_TRIM: u64 = 1 << 5;

/// errno values the reply carries.
pub const EPERM: u32 = 1;
/// An I/O error.
pub const EIO: u32 = 5;
/// A request that makes no sense (outside the device, unaligned, too long, unknown).
pub const EINVAL: u32 = 22;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disconnect,
    Flush,
    Trim,
    /// A command this server does not know (answered `EINVAL`).
    Other(u16),
}

/// One request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    /// The command flags (high half of `type`).
    pub flags: u16,
    pub handle: u64,
    pub from: u64,
    pub len: u32,
}

/// Why a header cannot be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadMagic(pub u32);

impl Request {
    /// Reads a header. Only the magic can make it fail.
    pub fn parse(b: &[u8; REQUEST_LEN]) -> Result<Request, BadMagic> {
        let u32_at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| (u64::from(u32_at(o)) << 32) | u64::from(u32_at(o + 4));
        let magic = u32_at(0);
        if magic != REQUEST_MAGIC {
            return Err(BadMagic(magic));
        }
        let kind = u32_at(4);
        let command = match (kind & 0xFFFF) as u16 {
            CMD_READ => Command::Read,
            CMD_WRITE => Command::Write,
            CMD_DISC => Command::Disconnect,
            CMD_FLUSH => Command::Flush,
            CMD_TRIM => Command::Trim,
            other => Command::Other(other),
        };
        Ok(Request {
            command,
            flags: (kind >> 16) as u16,
            handle: u64_at(8),
            from: u64_at(16),
            len: u32_at(24),
        })
    }

    /// Bytes of data that follow this header on the socket (a WRITE's `len`).
    pub fn payload(&self) -> u64 {
        match self.command {
            Command::Write => u64::from(self.len),
            _ => 0,
        }
    }

    /// The sectors this request covers on a device of `sectors` sectors of `sector_size`
    /// bytes: `(first, count)`, or `EINVAL` when `from` or `len` is not a multiple of the
    /// sector size, `len` is zero, or the range reaches past the end (no sum overflows).
    pub fn range(&self, sectors: u64, sector_size: u32) -> Result<(u64, u64), u32> {
        let size = u64::from(sector_size);
        let len = u64::from(self.len);
        if size == 0 || len == 0 || !self.from.is_multiple_of(size) || !len.is_multiple_of(size) {
            return Err(EINVAL);
        }
        let (first, count) = (self.from / size, len / size);
        match first.checked_add(count) {
            Some(end) if end <= sectors => Ok((first, count)),
            _ => Err(EINVAL),
        }
    }
}

/// A reply header.
pub fn reply(error: u32, handle: u64) -> [u8; REPLY_LEN] {
    let mut b = [0u8; REPLY_LEN];
    b[..4].copy_from_slice(&REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..].copy_from_slice(&handle.to_be_bytes());
    b
}

/// A request header (for tests and tools: the kernel writes the real ones).
pub fn encode(command: u16, flags: u16, handle: u64, from: u64, len: u32) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&((u32::from(flags) << 16) | u32::from(command)).to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b[16..24].copy_from_slice(&from.to_be_bytes());
    b[24..].copy_from_slice(&len.to_be_bytes());
    b
}
