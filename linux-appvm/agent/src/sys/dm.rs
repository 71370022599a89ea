//! The device mapper's ioctls on `/dev/mapper/control` (`linux/dm-ioctl.h`, interface version
//! 4), which the standard library does not wrap: the agent puts a dm-verity device over the
//! template's root volume with them (`crate::blockdev::verity`).
//!
//! Every command takes one buffer: a `struct dm_ioctl` header, then the command's data from
//! `data_start` on; `data_size` is the length of the whole buffer. The kernel copies
//! `data_size` bytes in, writes its answer over the header and copies at most `data_size`
//! bytes back. Building the buffer ([`encode`]) and reading the answer ([`Reply::decode`])
//! are pure and host-tested; only [`ioctl`] is `unsafe` inside, and it refuses a buffer
//! whose `data_size` is not its length.
//!
//! ```text
//! struct dm_ioctl (312 bytes, native byte order)
//!   0    version[3]    u32 x 3   in: the interface we speak (4.0.0), out: the kernel's
//!   12   data_size     u32       the whole buffer, header included
//!   16   data_start    u32       where the data starts (8-aligned: 312)
//!   20   target_count  u32
//!   24   open_count    i32       out
//!   28   flags         u32       DM_READONLY_FLAG, DM_SUSPEND_FLAG, ...
//!   32   event_nr      u32
//!   36   padding       u32
//!   40   dev           u64       out: the device (huge_encode_dev); in: 0 when named
//!   48   name[128]     NUL-terminated
//!   176  uuid[129]     empty here
//!   305  data[7]       padding up to 312
//! each target (DM_TABLE_LOAD), from data_start on:
//! struct dm_target_spec (40 bytes)
//!   0    sector_start  u64
//!   8    length        u64       sectors
//!   16   status        i32       0 (out only)
//!   20   next          u32       bytes from this spec to the next one; 0 for the last
//!   24   target_type[16]         NUL-terminated
//!   40   params        NUL-terminated, then zeros up to a multiple of 8
//! ```

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `sizeof(struct dm_ioctl)`.
pub const HEADER_LEN: usize = 312;
/// `sizeof(struct dm_target_spec)`.
pub const SPEC_LEN: usize = 40;
/// `DM_NAME_LEN`: a name and its NUL.
pub const NAME_LEN: usize = 128;
/// `DM_MAX_TYPE_NAME`: a target type and its NUL.
pub const TYPE_LEN: usize = 16;
/// The interface version we speak: the kernel takes any 4.x with x at most its own.
pub const VERSION: [u32; 3] = [4, 0, 0];
/// `DM_READONLY_FLAG`: on DM_TABLE_LOAD, the table opens its devices for reading only (the
/// `verity` target refuses any other table).
pub const READONLY_FLAG: u32 = 1 << 0;
/// `DM_SUSPEND_FLAG`: on DM_DEV_SUSPEND, suspend; without it, resume.
pub const SUSPEND_FLAG: u32 = 1 << 1;

// Field offsets in `struct dm_ioctl`.
const VERSION_AT: usize = 0;
const DATA_SIZE_AT: usize = 12;
const DATA_START_AT: usize = 16;
const TARGET_COUNT_AT: usize = 20;
const FLAGS_AT: usize = 28;
const DEV_AT: usize = 40;
const NAME_AT: usize = 48;
// Field offsets in `struct dm_target_spec`.
const SPEC_START_AT: usize = 0;
const SPEC_LENGTH_AT: usize = 8;
const SPEC_NEXT_AT: usize = 20;
const SPEC_TYPE_AT: usize = 24;

/// The commands used here (`enum { DM_VERSION_CMD = 0, ... }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `DM_DEV_CREATE`: a new device, suspended, without a table.
    DevCreate = 3,
    /// `DM_DEV_REMOVE`: the device and its tables go.
    DevRemove = 4,
    /// `DM_DEV_SUSPEND`: suspend, or (without [`SUSPEND_FLAG`]) make the loaded table live
    /// and resume.
    DevSuspend = 6,
    /// `DM_TABLE_LOAD`: load the targets into the inactive slot.
    TableLoad = 9,
}

impl Command {
    /// `_IOWR(0xfd, cmd, struct dm_ioctl)`: read and write (3 << 30), the size, the type.
    pub const fn request(self) -> u64 {
        (3 << 30) | ((HEADER_LEN as u64) << 16) | (0xfd << 8) | self as u64
    }

    /// Its name in `dm-ioctl.h`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Command::DevCreate => "DM_DEV_CREATE",
            Command::DevRemove => "DM_DEV_REMOVE",
            Command::DevSuspend => "DM_DEV_SUSPEND",
            Command::TableLoad => "DM_TABLE_LOAD",
        }
    }
}

/// One target of a table: `length` sectors from `start`, mapped by the target `kind` with
/// its parameter string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub start: u64,
    pub length: u64,
    pub kind: &'a str,
    pub params: &'a str,
}

/// Why a buffer was not built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The device name is empty, too long, or holds a NUL or a `/`.
    BadName,
    /// A target type is empty, too long or holds a NUL.
    BadType,
    /// Target parameters hold a NUL.
    BadParams,
    /// The buffer would not fit in `data_size` (a u32).
    TooLong,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncodeError::BadName => "bad device name",
            EncodeError::BadType => "bad target type",
            EncodeError::BadParams => "target parameters hold a NUL",
            EncodeError::TooLong => "the table is too long",
        })
    }
}

/// `n` rounded up to a multiple of 8 (the alignment of `struct dm_target_spec`).
pub const fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The buffer of a command on the device `name` with `flags` and `targets` (none for every
/// command but DM_TABLE_LOAD): the header, then each target's spec and parameters.
pub fn encode(name: &str, flags: u32, targets: &[Target]) -> Result<Vec<u8>, EncodeError> {
    if name.is_empty() || name.len() >= NAME_LEN || name.bytes().any(|b| b == 0 || b == b'/') {
        return Err(EncodeError::BadName);
    }
    let data_start = align8(HEADER_LEN);
    let mut sizes = Vec::with_capacity(targets.len());
    for t in targets {
        if t.kind.is_empty() || t.kind.len() >= TYPE_LEN || t.kind.contains('\0') {
            return Err(EncodeError::BadType);
        }
        if t.params.contains('\0') {
            return Err(EncodeError::BadParams);
        }
        // The spec, the parameters and their NUL, zeros up to the next spec.
        sizes.push(align8(SPEC_LEN + t.params.len() + 1));
    }
    let total = data_start + sizes.iter().sum::<usize>();
    let data_size = u32::try_from(total).map_err(|_| EncodeError::TooLong)?;
    let mut buf = vec![0u8; total];
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, VERSION_AT + 4 * i, *v);
    }
    put_u32(&mut buf, DATA_SIZE_AT, data_size);
    put_u32(&mut buf, DATA_START_AT, data_start as u32);
    put_u32(&mut buf, TARGET_COUNT_AT, targets.len() as u32);
    put_u32(&mut buf, FLAGS_AT, flags);
    buf[NAME_AT..NAME_AT + name.len()].copy_from_slice(name.as_bytes());
    let mut at = data_start;
    for (i, (t, &size)) in targets.iter().zip(&sizes).enumerate() {
        let spec = &mut buf[at..at + size];
        spec[SPEC_START_AT..SPEC_START_AT + 8].copy_from_slice(&t.start.to_ne_bytes());
        spec[SPEC_LENGTH_AT..SPEC_LENGTH_AT + 8].copy_from_slice(&t.length.to_ne_bytes());
        let next = if i + 1 < targets.len() {
            size as u32
        } else {
            0
        };
        spec[SPEC_NEXT_AT..SPEC_NEXT_AT + 4].copy_from_slice(&next.to_ne_bytes());
        spec[SPEC_TYPE_AT..SPEC_TYPE_AT + t.kind.len()].copy_from_slice(t.kind.as_bytes());
        spec[SPEC_LEN..SPEC_LEN + t.params.len()].copy_from_slice(t.params.as_bytes());
        at += size;
    }
    Ok(buf)
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_ne_bytes(b)
}

/// What the kernel wrote back into the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The kernel's interface version.
    pub version: [u32; 3],
    pub flags: u32,
    /// The device, `huge_encode_dev(major, minor)`.
    pub dev: u64,
}

impl Reply {
    /// The header's fields, if `buf` holds one.
    pub fn decode(buf: &[u8]) -> Option<Reply> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let mut dev = [0u8; 8];
        dev.copy_from_slice(&buf[DEV_AT..DEV_AT + 8]);
        Some(Reply {
            version: [0, 1, 2].map(|i| get_u32(buf, VERSION_AT + 4 * i)),
            flags: get_u32(buf, FLAGS_AT),
            dev: u64::from_ne_bytes(dev),
        })
    }

    /// The device's major number (`huge_decode_dev`: bits 8..20).
    pub fn major(&self) -> u32 {
        ((self.dev >> 8) & 0xfff) as u32
    }

    /// The device's minor number (bits 0..8, then 20..32 as bits 8..20): `/dev/dm-<minor>`.
    pub fn minor(&self) -> u32 {
        ((self.dev & 0xff) | ((self.dev >> 12) & 0xfff00)) as u32
    }
}

/// Runs `command` with the buffer `buf` (from [`encode`]) on the open control device
/// `control`; the kernel's answer is left in `buf` ([`Reply::decode`]).
pub fn ioctl(control: &File, command: Command, buf: &mut [u8]) -> io::Result<()> {
    let invalid = |why| io::Error::new(io::ErrorKind::InvalidInput, why);
    if buf.len() < HEADER_LEN {
        return Err(invalid("a DM buffer shorter than struct dm_ioctl"));
    }
    if get_u32(buf, DATA_SIZE_AT) as usize != buf.len() {
        return Err(invalid("a DM buffer whose data_size is not its length"));
    }
    // SAFETY: (1) the descriptor is open for as long as `control` lives; (2) the kernel
    // reads `data_size` bytes from the pointer (`copy_params`) and writes back at most
    // `data_size` bytes (`ctl_ioctl`: the answer's own data_size is set at most to the one
    // we gave, and `check_version` writes the first 12 bytes); `data_size` was just
    // checked to be `buf.len()` (and at least the header), and `buf` is a live, exclusively
    // borrowed slice of that length for the whole call; (3) the kernel makes its own copy
    // before reading, so the buffer needs no alignment; (4) the result is checked.
    let rc = unsafe {
        libc::ioctl(
            control.as_raw_fd(),
            command.request() as libc::c_ulong,
            buf.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(buf: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap())
    }

    /// The NUL-terminated string at `at`.
    fn str_at(buf: &[u8], at: usize) -> &str {
        let len = buf[at..].iter().position(|&b| b == 0).unwrap();
        std::str::from_utf8(&buf[at..at + len]).unwrap()
    }

    /// `struct dm_ioctl` and `struct dm_target_spec` as `dm-ioctl.h` declares them, for the
    /// compiler to lay out as C does: the offsets above must be its offsets.
    #[repr(C)]
    struct DmIoctl {
        version: [u32; 3],
        data_size: u32,
        data_start: u32,
        target_count: u32,
        open_count: i32,
        flags: u32,
        event_nr: u32,
        padding: u32,
        dev: u64,
        name: [u8; NAME_LEN],
        uuid: [u8; 129],
        data: [u8; 7],
    }

    #[repr(C)]
    struct DmTargetSpec {
        sector_start: u64,
        length: u64,
        status: i32,
        next: u32,
        target_type: [u8; TYPE_LEN],
    }

    #[test]
    fn layout_and_request_numbers_match_linux_dm_ioctl_h() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<DmIoctl>(), HEADER_LEN);
        assert_eq!(offset_of!(DmIoctl, version), VERSION_AT);
        assert_eq!(offset_of!(DmIoctl, data_size), DATA_SIZE_AT);
        assert_eq!(offset_of!(DmIoctl, data_start), DATA_START_AT);
        assert_eq!(offset_of!(DmIoctl, target_count), TARGET_COUNT_AT);
        assert_eq!(offset_of!(DmIoctl, open_count), 24);
        assert_eq!(offset_of!(DmIoctl, flags), FLAGS_AT);
        assert_eq!(offset_of!(DmIoctl, event_nr), 32);
        assert_eq!(offset_of!(DmIoctl, padding), 36);
        assert_eq!(offset_of!(DmIoctl, dev), DEV_AT);
        assert_eq!(offset_of!(DmIoctl, name), NAME_AT);
        assert_eq!(offset_of!(DmIoctl, uuid), 176);
        assert_eq!(offset_of!(DmIoctl, data), 305);
        assert_eq!(size_of::<DmTargetSpec>(), SPEC_LEN);
        assert_eq!(offset_of!(DmTargetSpec, sector_start), SPEC_START_AT);
        assert_eq!(offset_of!(DmTargetSpec, length), SPEC_LENGTH_AT);
        assert_eq!(offset_of!(DmTargetSpec, status), 16);
        assert_eq!(offset_of!(DmTargetSpec, next), SPEC_NEXT_AT);
        assert_eq!(offset_of!(DmTargetSpec, target_type), SPEC_TYPE_AT);
        // _IOWR(0xfd, n, struct dm_ioctl) with sizeof = 312 = 0x138.
        assert_eq!(Command::DevCreate.request(), 0xc138_fd03);
        assert_eq!(Command::DevRemove.request(), 0xc138_fd04);
        assert_eq!(Command::DevSuspend.request(), 0xc138_fd06);
        assert_eq!(Command::TableLoad.request(), 0xc138_fd09);
    }

    #[test]
    fn a_header_without_targets() {
        let buf = encode("root", READONLY_FLAG, &[]).unwrap();
        assert_eq!(buf.len(), HEADER_LEN);
        assert_eq!(get_u32(&buf, 0), 4, "version major");
        assert_eq!((get_u32(&buf, 4), get_u32(&buf, 8)), (0, 0));
        assert_eq!(get_u32(&buf, DATA_SIZE_AT), HEADER_LEN as u32);
        assert_eq!(get_u32(&buf, DATA_START_AT), 312);
        assert_eq!(get_u32(&buf, DATA_START_AT) % 8, 0);
        assert_eq!(get_u32(&buf, TARGET_COUNT_AT), 0);
        assert_eq!(get_u32(&buf, FLAGS_AT), READONLY_FLAG);
        assert_eq!(get_u32(&buf, 32), 0, "event_nr");
        assert_eq!(
            u64_at(&buf, DEV_AT),
            0,
            "dev: the device is named, not numbered"
        );
        assert_eq!(str_at(&buf, NAME_AT), "root");
        assert!(
            buf[NAME_AT + 4..].iter().all(|&b| b == 0),
            "NUL, empty uuid"
        );
    }

    #[test]
    fn targets_follow_the_header_aligned() {
        let params = "1 43:32 43:32 4096 4096 25600 25600 sha256 ab cd";
        let t = Target {
            start: 0,
            length: 204800,
            kind: "verity",
            params,
        };
        let buf = encode("root", READONLY_FLAG, &[t]).unwrap();
        let spec = 312;
        let spec_size = align8(SPEC_LEN + params.len() + 1);
        assert_eq!(buf.len(), spec + spec_size);
        assert_eq!(buf.len() % 8, 0);
        assert_eq!(get_u32(&buf, DATA_SIZE_AT) as usize, buf.len());
        assert_eq!(get_u32(&buf, DATA_START_AT) as usize, spec);
        assert_eq!(get_u32(&buf, TARGET_COUNT_AT), 1);
        assert_eq!(u64_at(&buf, spec), 0, "sector_start");
        assert_eq!(u64_at(&buf, spec + 8), 204800, "length");
        assert_eq!(get_u32(&buf, spec + 16), 0, "status");
        assert_eq!(get_u32(&buf, spec + 20), 0, "next: the last target");
        assert_eq!(str_at(&buf, spec + 24), "verity");
        assert_eq!(buf[spec + 24 + 6..spec + 40], [0u8; 10]);
        assert_eq!(str_at(&buf, spec + 40), params);
        // NUL-terminated, zeros up to the 8-byte boundary.
        assert!(buf[spec + 40 + params.len()..].iter().all(|&b| b == 0));
        assert!(!buf[spec + 40 + params.len()..].is_empty(), "the NUL");
    }

    #[test]
    fn next_points_at_the_following_spec() {
        // Parameter lengths around the alignment: 0, 7 (NUL fills 8), 8 (NUL needs 8 more).
        let targets = [
            Target {
                start: 0,
                length: 8,
                kind: "zero",
                params: "",
            },
            Target {
                start: 8,
                length: 8,
                kind: "error",
                params: "1234567",
            },
            Target {
                start: 16,
                length: 8,
                kind: "linear",
                params: "12345678",
            },
        ];
        let buf = encode("t", 0, &targets).unwrap();
        let mut at = get_u32(&buf, DATA_START_AT) as usize;
        let sizes = [40 + 8, 40 + 8, 40 + 16];
        for (i, t) in targets.iter().enumerate() {
            assert_eq!(at % 8, 0);
            assert_eq!(u64_at(&buf, at), t.start);
            assert_eq!(str_at(&buf, at + 24), t.kind);
            assert_eq!(str_at(&buf, at + 40), t.params);
            let next = get_u32(&buf, at + 20) as usize;
            if i + 1 < targets.len() {
                assert_eq!(next, sizes[i]);
            } else {
                assert_eq!(next, 0);
            }
            at += sizes[i];
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn bad_names_types_and_params_are_refused() {
        fn t<'a>(kind: &'a str, params: &'a str) -> Target<'a> {
            Target {
                start: 0,
                length: 1,
                kind,
                params,
            }
        }
        assert_eq!(encode("", 0, &[]), Err(EncodeError::BadName));
        assert_eq!(encode("a/b", 0, &[]), Err(EncodeError::BadName));
        assert_eq!(encode("a\0b", 0, &[]), Err(EncodeError::BadName));
        assert_eq!(encode(&"n".repeat(128), 0, &[]), Err(EncodeError::BadName));
        assert!(encode(&"n".repeat(127), 0, &[]).is_ok());
        assert_eq!(encode("r", 0, &[t("", "")]), Err(EncodeError::BadType));
        assert_eq!(
            encode("r", 0, &[t(&"v".repeat(16), "")]),
            Err(EncodeError::BadType)
        );
        assert!(encode("r", 0, &[t(&"v".repeat(15), "")]).is_ok());
        assert_eq!(
            encode("r", 0, &[t("verity", "a\0b")]),
            Err(EncodeError::BadParams)
        );
    }

    #[test]
    fn replies_name_the_device() {
        let mut buf = encode("root", READONLY_FLAG, &[]).unwrap();
        // What the kernel writes: its version, flags, huge_encode_dev(254, 0).
        put_u32(&mut buf, 4, 48);
        put_u32(&mut buf, FLAGS_AT, SUSPEND_FLAG);
        buf[DEV_AT..DEV_AT + 8].copy_from_slice(&0xfe00u64.to_ne_bytes());
        let r = Reply::decode(&buf).unwrap();
        assert_eq!(r.version, [4, 48, 0]);
        assert_eq!(r.flags, SUSPEND_FLAG);
        assert_eq!((r.major(), r.minor()), (254, 0));
        // Minors above 255 keep their high bits from bit 20 on: 254:300.
        let dev = (300 & 0xff) | (254 << 8) | ((300 & !0xff) << 12);
        let r = Reply { dev, ..r };
        assert_eq!((r.major(), r.minor()), (254, 300));
        assert_eq!(Reply::decode(&buf[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn ioctl_refuses_a_buffer_that_lies_about_its_size() {
        let f = File::open("/dev/null").unwrap();
        let mut buf = encode("root", 0, &[]).unwrap();
        buf.push(0);
        let e = ioctl(&f, Command::DevCreate, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = ioctl(&f, Command::DevCreate, &mut buf[..100]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // A well-formed buffer reaches the kernel, which /dev/null answers ENOTTY.
        let mut buf = encode("root", 0, &[]).unwrap();
        let e = ioctl(&f, Command::DevCreate, &mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }
}
