//! Host tests of the NBD side: header parsing, splitting, and the whole translation against
//! a volume in memory that also checks every request it gets is one the storage qube would
//! accept (`block::check`).

use super::nbd::{self, Command, Request};
use super::serve::{self, End, Geometry, Stats, Volume, split};
use bulkhead_abi::block::{self, BlockOp, VolumeGeometry};
use std::io::{self, Cursor, Read, Write};

const SECTORS: u64 = 2048; // 1 MiB
const CHUNK: u32 = 16;

/// A volume in memory, judging each request as the storage qube does.
struct Memory {
    disk: Vec<u8>,
    calls: Vec<BlockOp>,
    fail_at: Option<u64>,
}

impl Memory {
    fn new() -> Memory {
        Memory {
            disk: (0..SECTORS as usize * 512)
                .map(|i| (i / 512) as u8)
                .collect(),
            calls: Vec::new(),
            fail_at: None,
        }
    }

    fn judge(&mut self, op: BlockOp) -> Result<std::ops::Range<usize>, u32> {
        self.calls.push(op);
        let v = VolumeGeometry {
            sectors: SECTORS,
            read_only: false,
            max_sectors_per_request: CHUNK,
        };
        let c = block::check(&op, &v, CHUNK * 512).unwrap_or_else(|e| panic!("{op:?}: {e:?}"));
        if let Some(bad) = self.fail_at
            && c.sectors.contains(&bad)
        {
            return Err(nbd::EIO);
        }
        Ok(c.sectors.start as usize * 512..c.sectors.end as usize * 512)
    }
}

impl Volume for Memory {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), u32> {
        let count = (buf.len() / 512) as u32;
        let r = self.judge(BlockOp::Read {
            sector,
            count,
            pool_offset: 0,
        })?;
        buf.copy_from_slice(&self.disk[r]);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), u32> {
        let count = (data.len() / 512) as u32;
        let r = self.judge(BlockOp::Write {
            sector,
            count,
            pool_offset: 0,
        })?;
        self.disk[r].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), u32> {
        self.judge(BlockOp::Flush).map(|_| ())
    }

    fn discard(&mut self, sector: u64, count: u32) -> Result<(), u32> {
        self.judge(BlockOp::Discard { sector, count }).map(|_| ())
    }
}

/// The kernel's side of the socket: what it sent, what it got back.
struct Duplex {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn geometry() -> Geometry {
    Geometry {
        sectors: SECTORS,
        read_only: false,
        chunk_sectors: CHUNK,
    }
}

fn run(input: Vec<u8>, volume: &mut Memory, g: &Geometry) -> (io::Result<End>, Vec<u8>, Stats) {
    let mut d = Duplex {
        input: Cursor::new(input),
        output: Vec::new(),
    };
    let mut stats = Stats::default();
    let end = serve::serve(&mut d, volume, g, &mut stats);
    (end, d.output, stats)
}

/// Takes one reply off `out`: (error, handle).
fn reply(out: &mut &[u8]) -> (u32, u64) {
    let (h, rest) = out.split_at(nbd::REPLY_LEN);
    assert_eq!(h[..4], nbd::REPLY_MAGIC.to_be_bytes());
    *out = rest;
    (
        u32::from_be_bytes(h[4..8].try_into().unwrap()),
        u64::from_be_bytes(h[8..16].try_into().unwrap()),
    )
}

#[test]
fn headers_parse_and_round_trip() {
    let h = nbd::encode(
        nbd::CMD_WRITE,
        nbd::CMD_FLAG_FUA,
        0xdead_beef_0102_0304,
        4096,
        8192,
    );
    let r = Request::parse(&h).unwrap();
    assert_eq!(
        r,
        Request {
            command: Command::Write,
            flags: nbd::CMD_FLAG_FUA,
            handle: 0xdead_beef_0102_0304,
            from: 4096,
            len: 8192
        }
    );
    assert_eq!(r.payload(), 8192);
    assert_eq!(r.range(SECTORS, 512), Ok((8, 16)));
    let read = Request::parse(&nbd::encode(nbd::CMD_READ, 0, 1, 0, 512)).unwrap();
    assert_eq!((read.command, read.payload()), (Command::Read, 0));
    assert_eq!(
        Request::parse(&nbd::encode(9, 0, 1, 0, 0)).unwrap().command,
        Command::Other(9)
    );
    let mut bad = h;
    bad[0] ^= 1;
    assert!(Request::parse(&bad).is_err());
    assert_eq!(nbd::reply(5, 7)[4..8], 5u32.to_be_bytes());
}

#[test]
fn ranges_refuse_what_is_outside_or_unaligned() {
    let req = |from: u64, len: u32| Request {
        command: Command::Read,
        flags: 0,
        handle: 0,
        from,
        len,
    };
    assert_eq!(req(0, 512 * 2048).range(SECTORS, 512), Ok((0, 2048)));
    assert_eq!(req(512 * 2047, 512).range(SECTORS, 512), Ok((2047, 1)));
    for (from, len) in [
        (0, 0),
        (1, 512),
        (0, 513),
        (512 * 2048, 512),
        (512 * 2047, 1024),
        (u64::MAX - 511, 512),
        (u64::MAX / 512 * 512, u32::MAX / 512 * 512),
    ] {
        assert_eq!(
            req(from, len).range(SECTORS, 512),
            Err(nbd::EINVAL),
            "{from} {len}"
        );
    }
}

#[test]
fn split_covers_the_range_in_pieces_of_at_most_max() {
    assert_eq!(split(10, 0, 4).count(), 0);
    assert_eq!(
        split(10, 9, 4).collect::<Vec<_>>(),
        [(10, 4), (14, 4), (18, 1)]
    );
    assert_eq!(split(0, 3, 0).collect::<Vec<_>>(), [(0, 1), (1, 1), (2, 1)]);
    assert_eq!(
        split(u64::MAX - 1, 2, 8).collect::<Vec<_>>(),
        [(u64::MAX - 1, 2)]
    );
    let g = Geometry::new(
        &VolumeGeometry {
            sectors: 1,
            read_only: false,
            max_sectors_per_request: 256,
        },
        64 * 1024,
    )
    .unwrap();
    assert_eq!(g.chunk_sectors, 128, "no more than the pool holds");
    let none = VolumeGeometry {
        sectors: 1,
        read_only: false,
        max_sectors_per_request: 0,
    };
    assert_eq!(Geometry::new(&none, 4096), None);
}

proptest::proptest! {
    #[test]
    fn split_is_exact(first in 0u64..1 << 40, count in 0u64..100_000, max in 1u32..1000) {
        let mut next = first;
        for (s, n) in split(first, count, max) {
            proptest::prop_assert_eq!(s, next);
            proptest::prop_assert!(n >= 1 && n <= max);
            next += u64::from(n);
        }
        proptest::prop_assert_eq!(next, first + count);
    }

    #[test]
    fn any_bytes_end_the_service_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let mut m = Memory::new();
        let _ = run(bytes, &mut m, &geometry());
    }
}

#[test]
fn requests_become_block_requests_and_replies() {
    let mut input = Vec::new();
    // A 40-sector write (split 16+16+8) with FUA, read back across it, a flush, a trim.
    let data: Vec<u8> = (0..40 * 512).map(|i| (i % 251) as u8).collect();
    input.extend(nbd::encode(
        nbd::CMD_WRITE,
        nbd::CMD_FLAG_FUA,
        1,
        100 * 512,
        40 * 512,
    ));
    input.extend(&data);
    input.extend(nbd::encode(nbd::CMD_READ, 0, 2, 99 * 512, 42 * 512));
    input.extend(nbd::encode(nbd::CMD_FLUSH, 0, 3, 0, 0));
    input.extend(nbd::encode(nbd::CMD_TRIM, 0, 4, 0, 20 * 512));
    input.extend(nbd::encode(nbd::CMD_DISC, 0, 5, 0, 0));
    // Never read: the service ended at DISC.
    input.extend(nbd::encode(nbd::CMD_FLUSH, 0, 6, 0, 0));
    let mut m = Memory::new();
    let (end, out, stats) = run(input, &mut m, &geometry());
    assert_eq!(end.unwrap(), End::Disconnected);
    let mut out = &out[..];
    assert_eq!(reply(&mut out), (0, 1));
    assert_eq!(reply(&mut out), (0, 2));
    let (got, rest) = out.split_at(42 * 512);
    out = rest;
    assert!(got[..512].iter().all(|&b| b == 99), "sector 99 untouched");
    assert_eq!(&got[512..41 * 512], &data[..]);
    assert!(got[41 * 512..].iter().all(|&b| b == 140));
    assert_eq!(reply(&mut out), (0, 3));
    assert_eq!(reply(&mut out), (0, 4));
    assert!(out.is_empty());
    let w = |sector, count| BlockOp::Write {
        sector,
        count,
        pool_offset: 0,
    };
    assert_eq!(
        &m.calls[..4],
        [w(100, 16), w(116, 16), w(132, 8), BlockOp::Flush]
    );
    assert_eq!(m.calls.len(), 4 + 3 + 1 + 2);
    assert_eq!(
        (
            stats.requests,
            stats.read_bytes,
            stats.written_bytes,
            stats.flushes,
            stats.errors
        ),
        (5, 42 * 512, 40 * 512, 1, 0)
    );
}

#[test]
fn bad_requests_are_answered_and_the_stream_stays_in_step() {
    let mut input = Vec::new();
    // A write past the end, its data still on the stream; an unaligned read; a read longer
    // than the driver sends; an unknown command; a write of u32::MAX bytes at a bad offset
    // whose data is cut short by the end of the stream.
    input.extend(nbd::encode(nbd::CMD_WRITE, 0, 1, SECTORS * 512, 1024));
    input.extend([0xAAu8; 1024]);
    input.extend(nbd::encode(nbd::CMD_READ, 0, 2, 3, 512));
    input.extend(nbd::encode(nbd::CMD_READ, 0, 3, 0, serve::MAX_READ + 512));
    input.extend(nbd::encode(7, 0, 4, 0, 0));
    input.extend(nbd::encode(nbd::CMD_READ, 0, 5, 0, 512));
    input.extend(nbd::encode(nbd::CMD_WRITE, 0, 6, 1, u32::MAX));
    input.extend([0u8; 100]);
    let mut m = Memory::new();
    let (end, out, stats) = run(input, &mut m, &geometry());
    assert!(end.is_err(), "the stream ended inside a write's data");
    let mut out = &out[..];
    for handle in 1..=4 {
        assert_eq!(reply(&mut out), (nbd::EINVAL, handle));
    }
    assert_eq!(reply(&mut out), (0, 5));
    assert!(out[..512].iter().all(|&b| b == 0));
    assert_eq!(m.calls.len(), 1, "only the good read reached the volume");
    assert_eq!(stats.errors, 4);

    // A read-only volume refuses writes and trims; a failing sector is EIO; a wrong magic
    // ends the service.
    let ro = Geometry {
        read_only: true,
        ..geometry()
    };
    let mut input = Vec::new();
    input.extend(nbd::encode(nbd::CMD_WRITE, 0, 1, 0, 512));
    input.extend([1u8; 512]);
    input.extend(nbd::encode(nbd::CMD_TRIM, 0, 2, 0, 512));
    input.extend(nbd::encode(nbd::CMD_READ, 0, 3, 0, 64 * 512));
    input.extend([0u8; nbd::REQUEST_LEN]);
    let mut m = Memory::new();
    m.fail_at = Some(40);
    let (end, out, _) = run(input, &mut m, &ro);
    assert_eq!(end.unwrap_err().kind(), io::ErrorKind::InvalidData);
    let mut out = &out[..];
    assert_eq!(reply(&mut out), (nbd::EPERM, 1));
    assert_eq!(reply(&mut out), (nbd::EPERM, 2));
    assert_eq!(reply(&mut out), (nbd::EIO, 3));
    assert!(out.is_empty());
}

#[test]
fn home_and_root_have_their_own_devices_and_files() {
    use super::{HOME, ROOT, Role};
    assert_eq!(HOME.device(), super::DEVICE);
    assert_eq!(HOME.device(), "/dev/nbd0");
    assert_eq!(HOME.sysfs(), std::path::Path::new("/sys/block/nbd0"));
    assert_eq!(
        (HOME.ready, HOME.failed, HOME.mounted),
        ("/run/home.ready", "/run/home.failed", "/run/home.mounted")
    );
    assert_eq!(ROOT.device(), "/dev/nbd1");
    assert_eq!(ROOT.sysfs(), std::path::Path::new("/sys/block/nbd1"));
    assert_eq!(
        (ROOT.ready, ROOT.failed, ROOT.mounted),
        ("/run/root.ready", "/run/root.failed", "/run/root.mounted")
    );
    assert_eq!((HOME.label, ROOT.label), ("home", "root"));
    assert_eq!(Role::Home.place(), HOME);
    let v = crate::config::Verity {
        data_blocks: 1,
        hash_start_block: 1,
        root: [0; 32],
        salt: [0; 32],
    };
    assert_eq!(Role::Root(v).place(), ROOT);
}

#[test]
fn the_root_is_read_only_whatever_the_storage_qube_says() {
    use super::{HOME, ROOT, flags, geometry};
    let writable = VolumeGeometry {
        sectors: SECTORS,
        read_only: false,
        max_sectors_per_request: 256,
    };
    let pool = 128 * 1024;
    let home = geometry(&HOME, &writable, pool).unwrap();
    let root = geometry(&ROOT, &writable, pool).unwrap();
    assert!(!home.read_only);
    assert!(root.read_only);
    assert_eq!(root.chunk_sectors, 256);
    // A read-only home stays read-only.
    let ro = VolumeGeometry {
        read_only: true,
        ..writable
    };
    assert!(geometry(&HOME, &ro, pool).unwrap().read_only);
    assert_eq!(geometry(&ROOT, &writable, 100), None);
    // The kernel is told, and the server refuses a write anyway.
    assert_ne!(flags(true) & nbd::FLAG_READ_ONLY, 0);
    assert_eq!(flags(false) & nbd::FLAG_READ_ONLY, 0);
    assert_eq!(
        flags(false),
        nbd::FLAG_HAS_FLAGS | nbd::FLAG_SEND_FLUSH | nbd::FLAG_SEND_TRIM,
        "home's flags as before"
    );
    let mut input = nbd::encode(nbd::CMD_WRITE, 0, 7, 0, 512).to_vec();
    input.extend([1u8; 512]);
    let g = Geometry {
        chunk_sectors: CHUNK,
        ..root
    };
    let mut m = Memory::new();
    let (end, out, stats) = run(input, &mut m, &g);
    assert_eq!(end.unwrap(), End::Closed);
    assert_eq!(reply(&mut &out[..]), (nbd::EPERM, 7));
    assert!(m.calls.is_empty(), "nothing reached the volume");
    assert_eq!(stats.errors, 1);
}
