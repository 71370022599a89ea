extern crate std;

use super::*;
use crate::elf::tests::tiny_elf;
use bulkhead_abi::channel::{BULK_WINDOW_BASE, MAX_BULK_SIZE};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::vec::Vec;

const MIB: u64 = 1 << 20;

/// A unikernel shaped like the real ones: `text` bytes of code at the image base, then a
/// page-aligned data segment of 4 bytes followed by `bss` bytes of zeroes. Also returns
/// where the image ends.
fn unikernel(text: usize, bss: u64) -> (Vec<u8>, u64) {
    let base = layout::IMAGE_BASE;
    let code: Vec<u8> = (0..text).map(|i| i as u8 | 1).collect();
    let data_at = align_up(base + text as u64, PAGE_SIZE).unwrap();
    let elf = tiny_elf(
        base,
        &[
            (base, &code, text as u64, 5),
            (data_at, b"data", 4 + bss, 6),
        ],
    );
    (elf, data_at + 4 + bss)
}

fn window(i: usize) -> u64 {
    WINDOW_BASE + i as u64 * WINDOW_STRIDE
}

fn inside(r: &Range, memory: u64) -> bool {
    r.start.checked_add(r.len).is_some_and(|e| e <= memory)
}

fn good_channel(len: u64) -> bool {
    len > 0 && len.is_multiple_of(PAGE_SIZE) && len <= WINDOW_STRIDE
}

/// Whether every bulk area of `bulk` names one of `channels` channels, once, with a valid
/// size and side.
fn good_bulk(bulk: &[BulkArea], channels: usize) -> bool {
    bulk.iter().enumerate().all(|(i, b)| {
        b.local < channels.min(MAX_CHANNELS_PER_QUBE)
            && b.size != 0
            && bulk_size_valid(b.size)
            && b.side <= 1
            && bulk[..i].iter().all(|o| o.local != b.local)
    })
}

fn in_windows(p: &(u64, u64)) -> bool {
    range(p).overlaps(&WINDOWS) || range(p).overlaps(&crate::bulk::WINDOWS)
}

fn good_piece(&(start, len): &(u64, u64)) -> bool {
    len > 0
        && start.is_multiple_of(PAGE_SIZE)
        && len.is_multiple_of(PAGE_SIZE)
        && start.checked_add(len).is_some_and(|e| e <= 1 << 47)
}

fn range(&(start, len): &(u64, u64)) -> Range {
    Range { start, len }
}

/// The pieces as device pieces: every other page-aligned start a framebuffer, so both
/// memory types go through every test.
fn devices(pieces: &[(u64, u64)]) -> Vec<DevicePiece> {
    let piece = |&(start, len): &(u64, u64)| DevicePiece {
        start,
        len,
        write_combining: (start >> 12) & 1 == 1,
    };
    pieces.iter().map(piece).collect()
}

/// Everything an accepted plan promises, for the inputs it was made from.
fn check(
    p: &UnikernelPlan,
    config_len: u64,
    channels: &[u64],
    bulk: &[BulkArea],
    pieces: &[(u64, u64)],
) -> Result<(), TestCaseError> {
    let m = p.memory;
    let regions = [
        ("boot info", p.boot_info),
        ("gdt", p.gdt),
        ("page tables", p.page_tables),
        ("image", p.image),
        ("config", p.config),
        ("heap", p.heap),
        ("stack", p.stack),
    ];
    for (i, (name, r)) in regions.iter().enumerate() {
        prop_assert!(inside(r, m), "{name} {r:?} outside memory {m:#x}");
        prop_assert!(r.len > 0 || *name == "config", "{name} empty");
        for (other, o) in &regions[i + 1..] {
            prop_assert!(!r.overlaps(o), "{name} {r:?} overlaps {other} {o:?}");
        }
    }
    prop_assert!(p.boot_info.len >= size_of::<BootInfo>() as u64);
    prop_assert!(p.gdt.len >= GDT.len() as u64 * 8);
    // The layout: config page-aligned after the image, heap page-aligned after the config
    // up to the guard page below the stack, the stack the top 256 KiB.
    prop_assert_eq!(p.config.start, align_up(p.image.end(), PAGE_SIZE).unwrap());
    prop_assert_eq!(p.config.len, config_len);
    prop_assert_eq!(p.heap.start, align_up(p.config.end(), PAGE_SIZE).unwrap());
    prop_assert_eq!(p.heap.end(), p.stack.start - PAGE_SIZE);
    prop_assert_eq!((p.stack.len, p.stack.end()), (layout::STACK_SIZE, m));
    for s in p.elf.segments() {
        prop_assert!(s.gpa >= p.image.start && s.gpa + s.mem_len <= p.image.end());
    }
    prop_assert_eq!(p.windows.len(), channels.len());
    for (i, (w, len)) in p.windows.iter().zip(channels).enumerate() {
        prop_assert_eq!(
            *w,
            Range {
                start: window(i),
                len: *len
            }
        );
        prop_assert_eq!(w.start, WINDOW_BASE + i as u64 * WINDOW_STRIDE);
    }
    prop_assert_eq!(&p.pieces[..], &devices(pieces)[..]);
    prop_assert!(p.bulk.iter().eq(bulk.iter()));
    let maps: Vec<(Range, Perm)> = p.mappings().collect();
    prop_assert_eq!(
        maps.len(),
        2 + channels.len() + 2 * bulk.len() + pieces.len()
    );
    // All memory but the guard page below the stack.
    let guard = p.stack.start - PAGE_SIZE;
    prop_assert_eq!(
        maps[0],
        (
            Range {
                start: 0,
                len: guard
            },
            Perm::RWX
        )
    );
    prop_assert_eq!(
        maps[1],
        (
            Range {
                start: p.stack.start,
                len: m - p.stack.start
            },
            Perm::RWX
        )
    );
    // Each bulk area: its own pool read/write, the peer's read-only, at its bulk window.
    for (k, b) in bulk.iter().enumerate() {
        let at = 2 + channels.len() + 2 * k;
        let half = b.size / 2;
        let (first, second) = (maps[at], maps[at + 1]);
        prop_assert_eq!(
            first.0,
            Range {
                start: bulk_window(b.local),
                len: half
            }
        );
        prop_assert_eq!(
            second.0,
            Range {
                start: bulk_window(b.local) + half,
                len: half
            }
        );
        prop_assert_eq!((first.1.write, second.1.write), (b.side == 0, b.side == 1));
        prop_assert!(!first.1.exec && !second.1.exec);
    }
    // Each device piece: at its own address, uncached, or write-combining for a framebuffer.
    let device_maps = &maps[2 + channels.len() + 2 * bulk.len()..];
    for (got, want) in device_maps.iter().zip(devices(pieces)) {
        let perm = if want.write_combining {
            Perm::FRAMEBUFFER
        } else {
            Perm::MMIO
        };
        prop_assert_eq!(*got, (want.range(), perm));
    }
    for (i, (r, perm)) in maps.iter().enumerate() {
        prop_assert!(r.len > 0 && r.start.is_multiple_of(PAGE_SIZE));
        prop_assert!(r.len.is_multiple_of(PAGE_SIZE) && r.end() <= 1 << 47);
        prop_assert!(i < 2 || !perm.exec);
        for (o, _) in &maps[i + 1..] {
            prop_assert!(!r.overlaps(o), "mapping {r:?} overlaps {o:?}");
        }
    }
    let e = p.entry;
    prop_assert!(
        p.elf
            .segments()
            .iter()
            .any(|s| s.exec && s.gpa <= e.rip && e.rip < s.gpa + s.mem_len)
    );
    prop_assert_eq!(
        (e.rsp, e.rdi, e.cr3),
        (m, p.boot_info.start, p.page_tables.start)
    );
    prop_assert_eq!((e.gdt_base, e.gdt_limit), (p.gdt.start, 23));
    // The tables build in their arena, take the pages the plan counted, and map each range
    // to itself.
    let mut arena = std::vec![0xa5u8; p.page_tables.len as usize];
    let t = page_tables(&mut arena, p).map_err(|e| TestCaseError::fail(std::format!("{e:?}")))?;
    prop_assert_eq!(t.pages_used() as u64, p.page_table_pages);
    prop_assert_eq!(t.root(), e.cr3);
    for (r, _) in &maps {
        prop_assert_eq!(t.translate(r.start), Some(r.start));
        prop_assert_eq!(t.translate(r.end() - 1), Some(r.end() - 1));
    }
    // The guard page is not mapped: a stack overflow faults.
    prop_assert_eq!(t.translate(guard), None);
    prop_assert_eq!(t.translate(guard + PAGE_SIZE - 1), None);
    let mut info = BootInfo::new();
    p.describe(&mut info);
    prop_assert_eq!((info.mem_size, info.stack_top), (m, m));
    prop_assert_eq!(
        (info.image_start, info.image_end),
        (p.image.start, p.image.end())
    );
    prop_assert_eq!(
        (info.heap_start, info.heap_end),
        (p.heap.start, p.stack.start - PAGE_SIZE)
    );
    let config = if config_len > 0 {
        (p.config.start, config_len)
    } else {
        (0, 0)
    };
    prop_assert_eq!((info.config_gpa, info.config_len), config);
    prop_assert_eq!(info.channel_count as usize, channels.len());
    for (i, c) in info.channels[..channels.len()].iter().enumerate() {
        prop_assert_eq!((c.gpa, c.size), (window(i), channels[i]));
        let area = bulk.iter().find(|b| b.local == i);
        prop_assert_eq!(c.bulk(), area.map(|b| (bulk_window(i), b.size)));
    }
    Ok(())
}

#[test]
fn plans_a_small_unikernel() {
    let (elf, end) = unikernel(0x3000, 0x2_0000);
    let chans = [0x1_0000, 0x20_0000];
    let pieces = [(0xfebd_0000, 0x1000), (0xfe00_0000, 0x4000)];
    let p = plan(&elf, 8 * MIB, 100, &chans, &[], &devices(&pieces)).unwrap();
    check(&p, 100, &chans, &[], &pieces).unwrap();
    assert_eq!(end, 0x22_3004);
    assert_eq!((p.image.start, p.image.end()), (0x20_0000, 0x22_3004));
    assert_eq!(
        p.config,
        Range {
            start: 0x22_4000,
            len: 100
        }
    );
    assert_eq!((p.heap.start, p.heap.end()), (0x22_5000, 0x7b_f000));
    assert_eq!(
        p.stack,
        Range {
            start: 0x7c_0000,
            len: 0x4_0000
        }
    );
    assert_eq!(p.windows[1].start, 0x40_0020_0000);
    // PML4, the PDPT, a PD for RAM, one for the windows and one for the pieces, a page table
    // for the last 2 MiB of RAM (around the stack's guard page), one for the 64 KiB window
    // and one for each piece's 2 MiB block.
    assert_eq!(p.page_table_pages, 9);
    assert_eq!(
        p.entry,
        EntryState {
            rip: 0x20_0000,
            rsp: 0x80_0000,
            rdi: 0x1000,
            cr3: 0x3000,
            gdt_base: 0x2000,
            gdt_limit: 23,
        }
    );
}

/// The leaf entry mapping `va` in tables written into `mem` with root `cr3`.
fn leaf_entry(mem: &[u8], cr3: u64, va: u64) -> u64 {
    let mut table = cr3;
    for level in (1..=4u32).rev() {
        let at = (table + ((va >> (12 + 9 * (level - 1))) & 511) * 8) as usize;
        let e = u64::from_le_bytes(mem[at..at + 8].try_into().unwrap());
        assert!(e & 1 != 0, "{va:#x} not mapped at level {level}");
        if level == 1 || (level == 2 && e & (1 << 7) != 0) {
            return e;
        }
        table = e & 0x000f_ffff_ffff_f000;
    }
    unreachable!()
}

/// In the qube's own tables, a framebuffer piece is write-combining (PWT alone: PAT entry
/// 1), a register piece uncached (PCD|PWT: entry 3), its memory write-back (neither).
#[test]
fn framebuffer_pieces_are_write_combining_in_the_qubes_tables() {
    let (elf, _) = unikernel(0x1234, 0x5000);
    let fb = DevicePiece {
        start: 0xfd00_0000,
        len: 0x40_0000,
        write_combining: true,
    };
    let pieces = [DevicePiece::registers(0xfebd_0000, 0x1000), fb];
    let p = plan(&elf, 4 * MIB, 0, &[], &[], &pieces).unwrap();
    let mut mem = std::vec![0u8; 4 * MIB as usize];
    let cr3 = write(&mut mem, &p, &elf, &[], &BootInfo::new()).unwrap();
    let pcd_pwt = |va| leaf_entry(&mem, cr3, va) & 0b11 << 3;
    assert_eq!(pcd_pwt(0xfebd_0000), 0b11 << 3);
    for va in [0xfd00_0000, 0xfd20_0000, 0xfd3f_f000] {
        assert_eq!(pcd_pwt(va), 1 << 3, "{va:#x}");
    }
    assert_eq!(pcd_pwt(p.heap.start), 0);
}

#[test]
fn writes_memory_as_planned() {
    let (elf, _) = unikernel(0x1234, 0x5000);
    let config: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 + 1).collect();
    let p = plan(&elf, 4 * MIB, config.len() as u64, &[0x3000], &[], &[]).unwrap();
    let mut info = BootInfo::new();
    p.describe(&mut info);
    info.set_name("net");
    let mut mem = std::vec![0xeeu8; 4 * MIB as usize];
    let cr3 = write(&mut mem, &p, &elf, &config, &info).unwrap();
    assert_eq!(cr3, 0x3000);
    for s in p.elf.segments() {
        let (gpa, off) = (s.gpa as usize, s.file_offset as usize);
        assert_eq!(
            mem[gpa..gpa + s.file_len as usize],
            elf[off..off + s.file_len as usize]
        );
        assert!(
            mem[gpa + s.file_len as usize..gpa + s.mem_len as usize]
                .iter()
                .all(|b| *b == 0)
        );
    }
    let c = p.config.start as usize;
    assert_eq!(mem[c..c + config.len()], config[..]);
    let bi = info.to_bytes();
    assert_eq!(mem[0x1000..0x1000 + bi.len()], bi[..]);
    assert_eq!(mem[0x2008..0x2010], 0x00AF_9A00_0000_FFFFu64.to_le_bytes());
    assert_eq!(mem[0x2010..0x2018], 0x00CF_9200_0000_FFFFu64.to_le_bytes());
    let heap = p.heap.start as usize..p.heap.end() as usize;
    assert!(mem[heap].iter().all(|b| *b == 0), "memory not zeroed");
    let pml4 = u64::from_le_bytes(mem[0x3000..0x3008].try_into().unwrap());
    assert_eq!(pml4 & !0xfff, 0x4000, "the PDPT follows the PML4");
    // Memory, image and configuration must be the planned ones.
    let mut small = std::vec![0u8; 2 * MIB as usize];
    assert_eq!(
        write(&mut small, &p, &elf, &config, &info),
        Err(PlanError::NotPlanned)
    );
    assert_eq!(
        write(&mut mem, &p, &elf, &config[1..], &info),
        Err(PlanError::NotPlanned)
    );
    assert_eq!(
        write(&mut mem, &p, &elf[..elf.len() - 1], &config, &info),
        Err(PlanError::NotPlanned)
    );
}

#[test]
fn refuses_what_does_not_fit() {
    let (elf, _) = unikernel(0x3000, 0x2_0000);
    let m = 8 * MIB;
    let p = |memory, config, chans: &[u64], pieces: &[(u64, u64)]| {
        plan(&elf, memory, config, chans, &[], &devices(pieces)).map(|_| ())
    };
    for memory in [
        0,
        1,
        layout::IMAGE_BASE + layout::STACK_SIZE,
        m + 1,
        WINDOW_BASE + MIB,
    ] {
        assert_eq!(p(memory, 0, &[], &[]), Err(PlanError::BadMemorySize));
    }
    let (big, _) = unikernel(0x60_0000, 0);
    assert_eq!(
        plan(&big, m, 0, &[], &[], &[]).map(|_| ()),
        Err(PlanError::Elf(ElfError::SegmentOutsideWindow))
    );
    assert_eq!(
        plan(b"MZ", m, 0, &[], &[], &[]).map(|_| ()),
        Err(PlanError::Elf(ElfError::NotElf))
    );
    assert_eq!(p(m, m, &[], &[]), Err(PlanError::ConfigDoesNotFit));
    assert_eq!(p(m, u64::MAX, &[], &[]), Err(PlanError::ConfigDoesNotFit));
    // The config ends exactly at the stack (fits), or a byte before it; a heap needs a page
    // and the guard page another below the stack.
    let free = m - layout::STACK_SIZE - 0x22_4000;
    assert_eq!(p(m, free, &[], &[]), Err(PlanError::NoHeap));
    assert_eq!(p(m, free - PAGE_SIZE, &[], &[]), Err(PlanError::NoHeap));
    assert_eq!(
        p(m, free - 2 * PAGE_SIZE + 1, &[], &[]),
        Err(PlanError::NoHeap)
    );
    assert!(p(m, free - 2 * PAGE_SIZE, &[], &[]).is_ok());
    assert_eq!(p(m, 0, &[0x3000; 9], &[]), Err(PlanError::TooManyChannels));
    for bad in [0, 100, WINDOW_STRIDE + PAGE_SIZE] {
        assert_eq!(
            p(m, 0, &[0x3000, bad], &[]),
            Err(PlanError::BadChannelSize(1))
        );
    }
    let many: Vec<(u64, u64)> = (0..33)
        .map(|i| (0xc000_0000 + i * 0x1000, 0x1000))
        .collect();
    assert_eq!(p(m, 0, &[], &many), Err(PlanError::TooManyPieces));
    for bad in [
        (0xfe00_0800, 0x1000),
        (0xfe00_0000, 0),
        (0xfe00_0000, 0x800),
        (!0xfff, 0x2000),
        ((1 << 47) - 0x1000, 0x2000),
    ] {
        assert_eq!(
            p(m, 0, &[], &[(0xfd00_0000, 0x1000), bad]),
            Err(PlanError::BadPiece(1))
        );
    }
    assert_eq!(
        p(m, 0, &[], &[(0x1000, 0x1000)]),
        Err(PlanError::PieceInRam(0))
    );
    assert_eq!(
        p(m, 0, &[], &[(m - 0x1000, 0x2000)]),
        Err(PlanError::PieceInRam(0))
    );
    assert!(p(m, 0, &[], &[(m, 0x2000)]).is_ok());
    assert_eq!(
        p(m, 0, &[], &[(WINDOW_BASE + 15 * MIB, 0x1000)]),
        Err(PlanError::PieceInWindows(0))
    );
    assert_eq!(
        p(m, 0, &[], &[(WINDOW_BASE - 0x1000, 0x2000)]),
        Err(PlanError::PieceInWindows(0))
    );
    assert_eq!(
        p(
            m,
            0,
            &[],
            &[
                (0xfe00_0000, 0x1000),
                (0xfd00_0000, 0x1000),
                (0xfcff_f000, 0x2000)
            ]
        ),
        Err(PlanError::PiecesOverlap(1, 2))
    );
    assert_eq!(
        p(m, 0, &[], &[(BULK_WINDOW_BASE + 100 * MIB, 0x1000)]),
        Err(PlanError::PieceInWindows(0))
    );
    // Small windows and pieces each in their own GiB need a page table and a directory
    // each: PML4, PDPT, a PD for RAM, one for the windows, 8 window tables, then 2 a piece.
    let scattered: Vec<(u64, u64)> = (0..25).map(|i| ((4 + i) << 30, 0x1000)).collect();
    assert_eq!(
        p(m, 0, &[0x3000; 8], &scattered),
        Err(PlanError::PageTablesFull)
    );
    assert!(p(m, 0, &[0x3000; 8], &scattered[..24]).is_ok());
    // Bulk areas: each names one of the channels once, with a valid size and side.
    let b = |local, size, side| BulkArea { local, size, side };
    let pb = |bulk: &[BulkArea]| plan(&elf, m, 0, &[0x3000; 2], bulk, &[]).map(|_| ());
    assert!(pb(&[b(1, 8192, 1), b(0, MAX_BULK_SIZE, 0)]).is_ok());
    for (bad, at) in [
        (std::vec![b(2, 8192, 0)], 0),
        (std::vec![b(0, 0, 0)], 0),
        (std::vec![b(0, 4096, 0)], 0),
        (std::vec![b(0, MAX_BULK_SIZE + 8192, 0)], 0),
        (std::vec![b(0, 8192, 2)], 0),
        (std::vec![b(0, 8192, 0), b(0, 8192, 1)], 1),
    ] {
        assert_eq!(pb(&bad), Err(PlanError::BadBulk(at)), "{bad:?}");
    }
}

#[test]
fn maps_bulk_pools_by_side() {
    let (elf, _) = unikernel(0x1000, 0x1000);
    let chans = [0x4000, 0x4000, 0x4000];
    // Side A of a 64 MiB area (2 MiB pages only), side B of a 24 KiB one (a page table).
    let bulk = [
        BulkArea {
            local: 0,
            size: MAX_BULK_SIZE,
            side: 0,
        },
        BulkArea {
            local: 2,
            size: 24 * 1024,
            side: 1,
        },
    ];
    let p = plan(&elf, 8 * MIB, 0, &chans, &bulk, &[]).unwrap();
    check(&p, 0, &chans, &bulk, &[]).unwrap();
    // PML4, PDPT, a PD for RAM, a table for the last 2 MiB of RAM (the stack's guard page),
    // one PD for the windows, 3 window tables, one PD for the bulk windows and one table for
    // the small area.
    assert_eq!(p.page_table_pages, 10);
    let mut info = BootInfo::new();
    p.describe(&mut info);
    assert_eq!(
        info.channels[0].bulk(),
        Some((BULK_WINDOW_BASE, MAX_BULK_SIZE))
    );
    assert_eq!(info.channels[1].bulk(), None);
    assert_eq!(
        info.channels[2].bulk(),
        Some((BULK_WINDOW_BASE + 2 * MAX_BULK_SIZE, 24 * 1024))
    );
    // The guest's own tables: its pool writable, the peer's read-only, neither executable.
    let mut arena = std::vec![0u8; p.page_tables.len as usize];
    page_tables(&mut arena, &p).unwrap();
    let leaf = |va: u64| -> u64 {
        let mut table = p.page_tables.start;
        for level in (1..=4).rev() {
            let index = (va >> (12 + 9 * (level - 1))) & 511;
            let at = (table - p.page_tables.start + index * 8) as usize;
            let e = u64::from_le_bytes(arena[at..at + 8].try_into().unwrap());
            if level == 1 || (level == 2 && e & (1 << 7) != 0) {
                return e;
            }
            table = e & 0x000f_ffff_ffff_f000;
        }
        unreachable!()
    };
    let (w, nx) = (1u64 << 1, 1u64 << 63);
    let own = leaf(BULK_WINDOW_BASE);
    let peer = leaf(BULK_WINDOW_BASE + MAX_BULK_SIZE / 2);
    assert_eq!((own & w, own & nx, own & (1 << 7)), (w, nx, 1 << 7));
    assert_eq!((peer & w, peer & nx), (0, nx));
    let small = BULK_WINDOW_BASE + 2 * MAX_BULK_SIZE;
    let (peer, own) = (leaf(small), leaf(small + 12 * 1024));
    assert_eq!((peer & w, peer & nx, own & w, own & nx), (0, nx, w, nx));
}

/// The real unikernels, when a build has left them in `target/release` (`cargo xtask
/// build`); the synthetic images above cover the rest.
#[test]
fn plans_the_built_unikernels() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release");
    for name in ["net", "firewall", "usb", "gui", "testing"] {
        let Ok(elf) = std::fs::read(dir.join(name)) else {
            continue;
        };
        let chans = [0x1_0000, 0x4_0000];
        let pieces = [(0xfebd_0000, 0x3000)];
        let p = plan(&elf, 16 * MIB, 3000, &chans, &[], &devices(&pieces)).unwrap();
        check(&p, 3000, &chans, &[], &pieces).unwrap();
        let mut mem = std::vec![0u8; 16 * MIB as usize];
        let config = [7u8; 3000];
        write(&mut mem, &p, &elf, &config, &BootInfo::new()).unwrap();
        for s in p.elf.segments() {
            let (gpa, off) = (s.gpa as usize, s.file_offset as usize);
            let len = s.file_len as usize;
            assert_eq!(mem[gpa..gpa + len], elf[off..off + len], "{name}");
        }
        std::eprintln!("{name}: image {:?}, heap {:?}", p.image, p.heap);
    }
}

fn memory() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16 * MIB,
        (1u64..=4096).prop_map(|mib| mib * MIB),
        (1u64..=1 << 20).prop_map(|pages| pages * PAGE_SIZE),
        (20u64..=30).prop_map(|gib| (gib << 30) - PAGE_SIZE),
        (20u64..=30).prop_map(|gib| gib << 30),
        Just(WINDOW_BASE),
        any::<u64>(),
    ]
}

fn channels() -> impl Strategy<Value = Vec<u64>> {
    let good = (1u64..=512).prop_map(|pages| pages * PAGE_SIZE);
    let any_size = prop_oneof![
        8 => (1u64..=512).prop_map(|pages| pages * PAGE_SIZE),
        1 => Just(0u64),
        1 => any::<u64>(),
    ];
    prop_oneof![
        proptest::collection::vec(good, 0..=MAX_CHANNELS_PER_QUBE),
        proptest::collection::vec(any_size, 0..10),
    ]
}

/// Pieces that are each well-formed outside RAM and the windows (but may overlap, and
/// may need too many page tables), or any pieces at all.
fn pieces() -> impl Strategy<Value = Vec<(u64, u64)>> {
    let start = prop_oneof![
        3 => (0u64..0x4000).prop_map(|k| 0xc000_0000 + k * 0x1_0000),
        1 => (0u64..0x40).prop_map(|k| 0xfe00_0000 + k * 0x1_0000),
        1 => (0x1_0000u64..1 << 35).prop_map(|page| page * PAGE_SIZE),
    ];
    let len = prop_oneof![
        4 => (1u64..=16).prop_map(|pages| pages * PAGE_SIZE),
        1 => Just(LARGE_PAGE_SIZE),
    ];
    prop_oneof![
        proptest::collection::vec((start, len), 0..=MAX_PIECES),
        proptest::collection::vec(piece(), 0..8),
        proptest::collection::vec(piece(), 0..36),
    ]
}

/// Bulk areas: well-formed ones on distinct channels (which may still name a channel that
/// is not there), or anything.
fn bulk() -> impl Strategy<Value = Vec<BulkArea>> {
    let size = prop_oneof![
        4 => (1u64..=MAX_BULK_SIZE / 8192).prop_map(|n| n * 8192),
        2 => (1u64..=32).prop_map(|n| n * 2 * MIB),
        1 => (1u64..=16).prop_map(|n| n * 8192),
        1 => Just(0u64),
        1 => any::<u64>(),
    ];
    let good = proptest::sample::subsequence((0..MAX_CHANNELS_PER_QUBE).collect::<Vec<_>>(), 0..=4)
        .prop_flat_map(move |locals| {
            let n = locals.len();
            (
                Just(locals),
                proptest::collection::vec(size.clone(), n),
                proptest::collection::vec(0u32..2, n),
            )
        })
        .prop_map(|(locals, sizes, sides)| {
            locals
                .into_iter()
                .zip(sizes)
                .zip(sides)
                .map(|((local, size), side)| BulkArea { local, size, side })
                .collect()
        });
    let any_area = (0usize..10, any::<u64>(), 0u32..3).prop_map(|(local, size, side)| BulkArea {
        local,
        size,
        side,
    });
    prop_oneof![
        4 => good,
        1 => proptest::collection::vec(any_area, 0..4),
    ]
}

fn piece() -> impl Strategy<Value = (u64, u64)> {
    let start = prop_oneof![
        12 => (0u64..0x4000).prop_map(|k| 0xc000_0000 + k * 0x1_0000),
        4 => (0u64..0x40).prop_map(|k| 0xfe00_0000 + k * 0x1_0000),
        3 => (0u64..1 << 35).prop_map(|page| page * PAGE_SIZE),
        1 => (0u64..64 * MIB).prop_map(|a| a & !0xfff),
        1 => (0u64..32 * MIB).prop_map(|a| WINDOW_BASE - 8 * MIB + (a & !0xfff)),
        1 => (0u64..1024 * MIB).prop_map(|a| BULK_WINDOW_BASE - 8 * MIB + (a & !0xfff)),
        1 => any::<u64>(),
    ];
    let len = prop_oneof![
        12 => (1u64..=16).prop_map(|pages| pages * PAGE_SIZE),
        2 => Just(LARGE_PAGE_SIZE),
        1 => Just(0u64),
        1 => any::<u64>(),
    ];
    (start, len)
}

/// The 2 MiB blocks the identity map of `[0, memory)` less the guard page below `stack`
/// covers only partly: the guard's, the stack's if it starts mid-block, the last if memory
/// ends mid-block (each counted once).
fn partial_blocks(stack: u64, memory: u64) -> u64 {
    let guard = stack - PAGE_SIZE;
    let mut blocks = std::vec![guard / LARGE_PAGE_SIZE];
    if !stack.is_multiple_of(LARGE_PAGE_SIZE) {
        blocks.push(stack / LARGE_PAGE_SIZE);
    }
    if !memory.is_multiple_of(LARGE_PAGE_SIZE) {
        blocks.push((memory - 1) / LARGE_PAGE_SIZE);
    }
    blocks.sort_unstable();
    blocks.dedup();
    blocks.len() as u64
}

proptest! {
    /// With no channels or devices, a plan is made exactly when the image, the configuration
    /// and a heap page fit below the stack and the identity map fits its arena, and is
    /// refused with the reason otherwise.
    #[test]
    fn memory_and_config_fit_exactly_when_they_should(
        memory in memory(),
        text in 1usize..0x1_0000,
        bss in prop_oneof![0u64..4 * MIB, any::<u64>().prop_map(|b| b >> 8)],
        config_len in prop_oneof![
            Just(0u64),
            0u64..8 * MIB,
            any::<u64>(),
            // Up to the stack, less a few bytes (stands for `u64::MAX - shortfall`).
            (0u64..3 * PAGE_SIZE).prop_map(|shortfall| u64::MAX - shortfall),
        ],
    ) {
        let (elf, end) = unikernel(text, bss);
        let config_len = match u64::MAX - config_len {
            short if short < 3 * PAGE_SIZE => memory
                .saturating_sub(layout::STACK_SIZE)
                .saturating_sub(align_up(end, PAGE_SIZE).unwrap())
                .saturating_sub(short),
            _ => config_len,
        };
        let got = plan(&elf, memory, config_len, &[], &[], &[]);
        let stack = memory.wrapping_sub(layout::STACK_SIZE);
        let config_end = align_up(end, PAGE_SIZE).and_then(|c| c.checked_add(config_len));
        let expected = if !memory.is_multiple_of(PAGE_SIZE)
            || memory <= layout::IMAGE_BASE + layout::STACK_SIZE
            || memory > WINDOW_BASE
        {
            Err(PlanError::BadMemorySize)
        } else if end > stack {
            Err(PlanError::Elf(ElfError::SegmentOutsideWindow))
        } else if config_end.is_none_or(|e| e > stack) {
            Err(PlanError::ConfigDoesNotFit)
        } else if align_up(config_end.unwrap(), PAGE_SIZE).is_none_or(|h| h >= stack - PAGE_SIZE) {
            Err(PlanError::NoHeap)
        } else if 2 + memory.div_ceil(1 << 30) + partial_blocks(stack, memory) > TABLE_PAGES as u64 {
            // The PML4, the PDPT, a PD per GiB and a page table per 2 MiB block the map covers
            // only partly (around the guard page, and a last partial one).
            Err(PlanError::PageTablesFull)
        } else {
            Ok(())
        };
        prop_assert_eq!(got.map(|_| ()), expected);
        if let Ok(p) = got {
            check(&p, config_len, &[], &[], &[])?;
        }
    }

    /// Channels and device pieces: a plan is refused exactly when one of them is bad (and
    /// the error names it), or when their page tables would not fit the arena; otherwise it
    /// is sound.
    #[test]
    fn channels_and_pieces_are_placed_or_refused_with_the_culprit(
        memory in prop_oneof![(3u64..=64).prop_map(|m| m * MIB), (0x250u64..0x4000).prop_map(|p| p * PAGE_SIZE)],
        config_len in 0u64..0x1_0000,
        channels in channels(),
        bulk in bulk(),
        pieces in pieces(),
    ) {
        let (elf, _) = unikernel(0x2000, 0x1000);
        let ram = Range { start: 0, len: memory };
        let got = plan(&elf, memory, config_len, &channels, &bulk, &devices(&pieces));
        let overlap = |i: usize, j: usize| range(&pieces[i]).overlaps(&range(&pieces[j]));
        let all_good = channels.len() <= MAX_CHANNELS_PER_QUBE
            && channels.iter().all(|c| good_channel(*c))
            && pieces.len() <= MAX_PIECES
            && pieces.iter().all(good_piece)
            && (0..bulk.len()).all(|i| good_bulk(&bulk[..=i], channels.len()))
            && pieces.iter().all(|p| !range(p).overlaps(&ram) && !in_windows(p))
            && (0..pieces.len()).all(|i| (0..i).all(|j| !overlap(i, j)));
        match got {
            Ok(p) => {
                prop_assert!(all_good);
                check(&p, config_len, &channels, &bulk, &pieces)?;
            }
            Err(PlanError::TooManyChannels) => prop_assert!(channels.len() > MAX_CHANNELS_PER_QUBE),
            Err(PlanError::BadChannelSize(i)) => prop_assert!(!good_channel(channels[i])),
            Err(PlanError::BadBulk(i)) => {
                prop_assert!(!good_bulk(&bulk[..=i], channels.len()));
                prop_assert!(i == 0 || good_bulk(&bulk[..i], channels.len()));
            }
            Err(PlanError::TooManyPieces) => prop_assert!(pieces.len() > MAX_PIECES),
            Err(PlanError::BadPiece(i)) => prop_assert!(!good_piece(&pieces[i])),
            Err(PlanError::PieceInRam(i)) => prop_assert!(range(&pieces[i]).overlaps(&ram)),
            Err(PlanError::PieceInWindows(i)) => prop_assert!(in_windows(&pieces[i])),
            Err(PlanError::PiecesOverlap(i, j)) => prop_assert!(i < j && overlap(i, j)),
            Err(PlanError::PageTablesFull) => {
                prop_assert!(all_good);
                // Really too many: the same mappings in a big arena take more pages.
                let mut arena = std::vec![0u8; 256 * PAGE_SIZE as usize];
                let fmt = X86Format { user: false, nx: true };
                let mut t = Tables::new(&mut arena, 0x10_0000, fmt).unwrap();
                let windows = channels.iter().enumerate().map(|(i, len)| (window(i), *len));
                let pools = bulk.iter().flat_map(|b| {
                    crate::bulk::pools(b.size, b.side)
                        .map(|(off, len, _)| (bulk_window(b.local) + off, len))
                });
                let all = core::iter::once((0, memory)).chain(windows).chain(pools);
                for (start, len) in all.chain(pieces.iter().copied()) {
                    t.map_range(start, start, len, Perm::RW).unwrap();
                }
                prop_assert!(t.pages_used() > TABLE_PAGES);
            }
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    /// Mutated images and arbitrary sizes never make the planner or the writer panic, and
    /// whatever is accepted is sound.
    #[test]
    fn hostile_inputs_never_panic(
        edits in proptest::collection::vec((0usize..200, any::<u8>()), 0..4),
        memory in prop_oneof![(3u64..=12).prop_map(|m| m * MIB), memory()],
        config_len in prop_oneof![0u64..0x1_0000, any::<u64>()],
        channels in proptest::collection::vec(any::<u64>(), 0..3),
        bulk in proptest::collection::vec(
            (any::<usize>(), any::<u64>(), any::<u32>())
                .prop_map(|(local, size, side)| BulkArea { local, size, side }),
            0..3,
        ),
        pieces in proptest::collection::vec(any::<(u64, u64)>(), 0..3),
    ) {
        let (mut elf, _) = unikernel(0x100, 0x100);
        let n = elf.len();
        for (at, v) in edits {
            elf[at % n] = v;
        }
        if let Ok(p) = plan(&elf, memory, config_len, &channels, &bulk, &devices(&pieces)) {
            check(&p, config_len, &channels, &bulk, &pieces)?;
            if memory <= 12 * MIB {
                let mut mem = std::vec![0u8; memory as usize];
                let config = std::vec![1u8; config_len as usize];
                prop_assert!(write(&mut mem, &p, &elf, &config, &BootInfo::new()).is_ok());
            }
        }
    }
}
