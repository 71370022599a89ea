extern crate std;

use super::*;
use proptest::prelude::*;
use std::vec::Vec;

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn get64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A synthetic bzImage like Debian's 6.1 cloud kernel: protocol 2.15, 64-bit entry,
/// relocatable, 2 MiB alignment, preferred address 16 MiB. `setup_sects` 3 (4 sectors of
/// setup), then `kernel_len` bytes of "kernel".
fn image(kernel_len: usize) -> Vec<u8> {
    let mut b = std::vec![0u8; 4 * 512 + kernel_len];
    b[SETUP_SECTS] = 3;
    put32(&mut b, SYSSIZE, (kernel_len / 16) as u32);
    put16(&mut b, BOOT_FLAG, 0xaa55);
    b[0x200] = 0xeb;
    b[HDR_LEN_BYTE] = 0x6a;
    b[HEADER..HEADER + 4].copy_from_slice(b"HdrS");
    put16(&mut b, VERSION, 0x020f);
    put32(&mut b, INITRD_ADDR_MAX, 0x7fff_ffff);
    put32(&mut b, KERNEL_ALIGNMENT, 0x20_0000);
    b[RELOCATABLE] = 1;
    put16(&mut b, XLOADFLAGS, 0x7f);
    put32(&mut b, CMDLINE_SIZE, 0x7ff);
    b[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
    put32(&mut b, INIT_SIZE, 0x338_0000);
    for (i, x) in b[4 * 512..].iter_mut().enumerate() {
        *x = i as u8;
    }
    b
}

#[test]
fn parses_a_good_image() {
    let img = image(0x1_0000);
    let bz = parse(&img).unwrap();
    assert_eq!(bz.protocol, 0x020f);
    assert_eq!(bz.setup_sects, 3);
    assert_eq!(bz.header_end, 0x26c);
    assert_eq!(bz.kernel_offset, 2048);
    assert_eq!(bz.kernel_len, 0x1_0000);
    assert_eq!(bz.init_size, 0x338_0000);
    assert_eq!(bz.kernel_alignment, 0x20_0000);
    assert!(bz.relocatable);
    assert_eq!(bz.pref_address, 0x100_0000);
    assert_eq!(bz.cmdline_size, 0x7ff);
    assert_eq!(bz.initrd_addr_max, 0x7fff_ffff);
    assert_eq!(bz.xloadflags, 0x7f);
    let k = bz.kernel(&img).unwrap();
    assert_eq!(k.len(), 0x1_0000);
    assert_eq!(&k[..3], &[0, 1, 2]);
}

#[test]
fn setup_sects_zero_means_four() {
    let mut img = image(0x1_0000);
    img[SETUP_SECTS] = 0;
    assert_eq!(
        parse(&img),
        Err(LinuxError::BadSyssize),
        "syssize now exceeds the file"
    );
    put32(&mut img, SYSSIZE, (0x1_0000 - 512) / 16);
    let bz = parse(&img).unwrap();
    assert_eq!(bz.setup_sects, 4);
    assert_eq!(bz.kernel_offset, 5 * 512);
    assert_eq!(bz.kernel_len, 0x1_0000 - 512);
}

#[test]
fn rejects_bad_headers_precisely() {
    let good = image(0x1_0000);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        parse(&b)
    };
    assert_eq!(parse(&good[..0x200]), Err(LinuxError::TooShort));
    assert_eq!(with(&|b| b[BOOT_FLAG] = 0), Err(LinuxError::NoBootFlag));
    assert_eq!(with(&|b| b[HEADER] = b'X'), Err(LinuxError::NoMagic));
    assert_eq!(
        with(&|b| put16(b, VERSION, 0x020b)),
        Err(LinuxError::OldProtocol(0x020b))
    );
    assert_eq!(
        with(&|b| put16(b, XLOADFLAGS, 0x7e)),
        Err(LinuxError::No64BitEntry)
    );
    assert_eq!(
        with(&|b| b[HDR_LEN_BYTE] = 0x10),
        Err(LinuxError::BadHeaderLength)
    );
    // The header may not run past the setup sectors: 1 setup sector ends at 0x400, fine;
    // with the header reaching 0x202 + 0xff = 0x301 it still fits; shrink the file instead.
    assert_eq!(parse(&good[..4 * 512]), Err(LinuxError::KernelOutsideFile));
    assert_eq!(with(&|b| put32(b, SYSSIZE, 0)), Err(LinuxError::BadSyssize));
    assert_eq!(
        with(&|b| put32(b, SYSSIZE, 0x1001)),
        Err(LinuxError::BadSyssize)
    );
    assert_eq!(
        with(&|b| put32(b, INIT_SIZE, 0xffff)),
        Err(LinuxError::BadInitSize)
    );
    assert_eq!(
        with(&|b| put32(b, KERNEL_ALIGNMENT, 0x30_0000)),
        Err(LinuxError::BadAlignment)
    );
    assert_eq!(
        with(&|b| put32(b, KERNEL_ALIGNMENT, 0x800)),
        Err(LinuxError::BadAlignment)
    );
}

const MEM: u64 = 512 << 20;

#[test]
fn plans_kernel_at_pref_address_and_initrd_high() {
    let bz = parse(&image(0x1_0000)).unwrap();
    let l = plan(&bz, MEM, 100, 0x12_3456).unwrap();
    assert_eq!(l.kernel.start, 0x100_0000);
    assert_eq!(l.kernel.len, 0x338_0000);
    assert_eq!(l.entry_point(), 0x100_0200);
    assert_eq!(l.initrd.len, 0x12_3456);
    assert_eq!(l.initrd.start, (MEM - 0x12_3456) & !0xfff);
    assert!(l.initrd.end() <= MEM);
    assert_eq!(l.zero_page.start, 0x7000);
    assert_eq!(
        l.cmdline,
        Range {
            start: 0x8000,
            len: 0x1000
        }
    );
    assert_eq!(
        l.page_tables,
        Range {
            start: 0x2000,
            len: 0x5000
        }
    );
    assert_eq!(
        l.acpi,
        Range {
            start: 0xe0000,
            len: 0x20000
        }
    );
    assert_eq!(l.initrd.start % PAGE_SIZE, 0);
}

#[test]
fn relocates_when_pref_address_does_not_fit() {
    let mut img = image(0x1_0000);
    img[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
    let bz = parse(&img).unwrap();
    let l = plan(&bz, MEM, 0, 0).unwrap();
    assert_eq!(
        l.kernel.start, 0x20_0000,
        "first 2 MiB-aligned address from 1 MiB"
    );
    assert_eq!(l.initrd.len, 0);
    // Not relocatable: only the preferred address will do.
    img[RELOCATABLE] = 0;
    let bz = parse(&img).unwrap();
    assert_eq!(plan(&bz, MEM, 0, 0), Err(LinuxError::KernelDoesNotFit));
}

#[test]
fn plan_checks_limits() {
    let bz = parse(&image(0x1_0000)).unwrap();
    assert_eq!(plan(&bz, MEM + 1, 0, 0), Err(LinuxError::BadMemorySize));
    assert_eq!(plan(&bz, 0x10_0000, 0, 0), Err(LinuxError::BadMemorySize));
    assert_eq!(
        plan(&bz, MAX_GUEST_MEM + PAGE_SIZE, 0, 0),
        Err(LinuxError::BadMemorySize)
    );
    assert!(plan(&bz, MAX_GUEST_MEM, 0, 0).is_ok());
    assert_eq!(plan(&bz, 32 << 20, 0, 0), Err(LinuxError::KernelDoesNotFit));
    assert_eq!(plan(&bz, MEM, 0x800, 0), Err(LinuxError::CmdlineTooLong));
    assert!(plan(&bz, MEM, 0x7ff, 0).is_ok());
    assert_eq!(plan(&bz, MEM, u64::MAX, 0), Err(LinuxError::CmdlineTooLong));
    // The initrd would reach down into the kernel.
    let room = MEM - (0x100_0000 + 0x338_0000);
    assert!(plan(&bz, MEM, 0, room).is_ok());
    assert_eq!(
        plan(&bz, MEM, 0, room + 1),
        Err(LinuxError::InitrdDoesNotFit)
    );
    assert_eq!(
        plan(&bz, MEM, 0, u64::MAX),
        Err(LinuxError::InitrdDoesNotFit)
    );
}

#[test]
fn initrd_respects_initrd_addr_max() {
    let mut img = image(0x1_0000);
    put32(&mut img, INITRD_ADDR_MAX, 0x0fff_ffff);
    let bz = parse(&img).unwrap();
    let l = plan(&bz, 1 << 30, 0, 0x1000).unwrap();
    assert_eq!(l.initrd.start, 0x1000_0000 - 0x1000);
    assert_eq!(l.initrd.end() - 1, 0x0fff_ffff);
}

#[test]
fn zero_page_has_header_and_loader_fields() {
    let img = image(0x1_0000);
    let bz = parse(&img).unwrap();
    let l = plan(&bz, MEM, 20, 0x5000).unwrap();
    let e820 = l.e820();
    let zp = zero_page(&img, &bz, &l, &e820, Some(0xe0000)).unwrap();
    // The header from 0x1f1 to 0x202 + 0x6a is the image's, but for the loader's fields.
    for at in 0x1f1..0x26c {
        if (TYPE_OF_LOADER..=LOADFLAGS).contains(&at)
            || (RAMDISK_IMAGE..RAMDISK_SIZE + 4).contains(&at)
            || (CMD_LINE_PTR..CMD_LINE_PTR + 4).contains(&at)
        {
            continue;
        }
        assert_eq!(zp[at], img[at], "header byte {at:#x}");
    }
    assert!(
        zp[..0x1f1]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == 0 || (0x70..0x78).contains(&i) || i == 0x1e8)
    );
    assert_eq!(zp[0x26c..0x2d0], [0u8; 0x64]);
    assert_eq!(zp[TYPE_OF_LOADER], 0xff);
    assert_eq!(zp[LOADFLAGS], LOADED_HIGH);
    assert_eq!(get32(&zp, CMD_LINE_PTR), 0x8000);
    assert_eq!(get32(&zp, RAMDISK_IMAGE) as u64, l.initrd.start);
    assert_eq!(get32(&zp, RAMDISK_SIZE), 0x5000);
    assert_eq!(get64(&zp, 0x70), 0xe0000);
    assert_eq!(zp[0x1e8], 3);
    assert_eq!(get64(&zp, 0x2d0), 0);
    assert_eq!(get64(&zp, 0x2d8), LOW_RAM_END);
    assert_eq!(get32(&zp, 0x2e0), E820_RAM);
    assert_eq!(get64(&zp, 0x2e4), 0xe0000);
    assert_eq!(get64(&zp, 0x2ec), 0x20000);
    assert_eq!(get32(&zp, 0x2f4), E820_RESERVED);
    assert_eq!(get64(&zp, 0x2f8), 0x10_0000);
    assert_eq!(get64(&zp, 0x300), MEM - 0x10_0000);
    assert_eq!(get32(&zp, 0x308), E820_RAM);
    assert_eq!(zp[0x30c..], [0u8; 4096 - 0x30c]);
}

#[test]
fn zero_page_splits_high_addresses_and_checks_inputs() {
    let img = image(0x1_0000);
    let bz = parse(&img).unwrap();
    let mut l = plan(&bz, MEM, 0, 0).unwrap();
    l.initrd = Range {
        start: 0x1_2345_6000,
        len: 0x1_0000_1000,
    };
    let zp = zero_page(&img, &bz, &l, &[], None).unwrap();
    assert_eq!(get32(&zp, RAMDISK_IMAGE), 0x2345_6000);
    assert_eq!(get32(&zp, ZP_EXT_RAMDISK_IMAGE), 1);
    assert_eq!(get32(&zp, RAMDISK_SIZE), 0x1000);
    assert_eq!(get32(&zp, ZP_EXT_RAMDISK_SIZE), 1);
    assert_eq!(get32(&zp, ZP_EXT_CMD_LINE_PTR), 0);
    assert_eq!(get64(&zp, 0x70), 0, "no RSDP given");
    let many = [E820Entry::default(); E820_MAX + 1];
    assert_eq!(
        zero_page(&img, &bz, &l, &many, None),
        Err(LinuxError::TooManyE820)
    );
    assert!(zero_page(&img, &bz, &l, &many[..E820_MAX], None).is_ok());
    let mut old = img.clone();
    put16(&mut old, VERSION, 0x020d);
    put16(&mut old, XLOADFLAGS, 1);
    let bz_old = parse(&old).unwrap();
    assert_eq!(
        zero_page(&old, &bz_old, &l, &[], Some(0xe0000)),
        Err(LinuxError::RsdpUnsupported)
    );
    assert_eq!(
        zero_page(&old, &bz_old, &l, &[], None),
        Err(LinuxError::AboveFourGiB)
    );
}

#[test]
fn entry_state_follows_the_64_bit_protocol() {
    let bz = parse(&image(0x1_0000)).unwrap();
    let l = plan(&bz, MEM, 0, 0).unwrap();
    let s = l.entry_state();
    assert_eq!(s.rip, 0x100_0200);
    assert_eq!(s.rsi, ZERO_PAGE_ADDR);
    assert_eq!(s.cs, 0x10);
    assert_eq!(s.ds, 0x18);
    assert_eq!(s.cr3, PAGE_TABLES_ADDR);
    assert_eq!(s.rflags & (1 << 9), 0, "interrupts off");
    assert_eq!(s.cr0, 0x8000_0031);
    assert_eq!(s.cr4, 0x20);
    assert_eq!(s.efer, 0x500);
    assert_eq!((s.gdt_base, s.gdt_limit), (0x1000, 31));
    let g = gdt_bytes();
    let cs = u64::from_le_bytes(g[0x10..0x18].try_into().unwrap());
    let ds = u64::from_le_bytes(g[0x18..0x20].try_into().unwrap());
    // Code: present, DPL 0, code, readable; L = 1, D = 0; limit 4 GiB (G).
    assert_eq!((cs >> 40) & 0xff, 0x9b);
    assert_eq!((cs >> 53) & 1, 1, "L");
    assert_eq!((cs >> 54) & 1, 0, "D");
    assert_eq!((cs >> 55) & 1, 1, "G");
    // Data: present, writable, 32-bit big, flat.
    assert_eq!((ds >> 40) & 0xff, 0x93);
    assert_eq!((ds >> 54) & 3, 3, "D/B and G");
    for d in [cs, ds] {
        assert_eq!(d & 0xffff, 0xffff, "limit low");
        assert_eq!((d >> 48) & 0xf, 0xf, "limit high");
        assert_eq!((d >> 16) & 0xff_ffff, 0, "base low");
        assert_eq!(d >> 56, 0, "base high");
    }
    assert_eq!(g[..16], [0u8; 16]);
}

#[test]
fn page_tables_identity_map_all_memory() {
    let bz = parse(&image(0x1_0000)).unwrap();
    for mem in [MEM, MAX_GUEST_MEM, (64 << 20) + PAGE_SIZE] {
        let l = plan(&bz, mem, 0, 0).unwrap();
        let mut arena = std::vec![0xaau8; l.page_tables.len as usize + 4096];
        let cr3 = build_page_tables(&mut arena, &l).unwrap();
        assert_eq!(cr3, PAGE_TABLES_ADDR);
        assert_eq!(
            arena[l.page_tables.len as usize], 0xaa,
            "stays in its range"
        );
        // Walk the tables by hand: PML4[0] → PDPT → PD → 2 MiB leaves.
        let entry =
            |a: &[u8], table: u64, i: u64| get64(a, (table - PAGE_TABLES_ADDR + i * 8) as usize);
        let arena2 = {
            let mut a = std::vec![0u8; l.page_tables.len as usize];
            build_page_tables(&mut a, &l).unwrap();
            a
        };
        let pml4 = entry(&arena2, cr3, 0);
        assert_eq!(pml4 & 0b111, 0b011, "present, writable, supervisor");
        let pdpt = pml4 & !0xfff;
        let pages = mem.div_ceil(LARGE_PAGE_SIZE);
        for p in 0..pages {
            let pd = entry(&arena2, pdpt, p / 512) & !0xfff;
            let leaf = entry(&arena2, pd, p % 512);
            assert_eq!(leaf, (p * LARGE_PAGE_SIZE) | 0x83, "2 MiB page {p}");
        }
        if pages % 512 != 0 {
            let pd = entry(&arena2, pdpt, pages / 512) & !0xfff;
            assert_eq!(entry(&arena2, pd, pages % 512), 0, "nothing past memory");
        }
    }
    let l = plan(&bz, MEM, 0, 0).unwrap();
    let mut small = std::vec![0u8; 4096];
    assert_eq!(
        build_page_tables(&mut small, &l),
        Err(LinuxError::PageTables)
    );
}

/// The layout's ranges are page-aligned, inside memory, and pairwise disjoint.
fn check_layout(l: &LinuxLayout) {
    let ranges = [
        l.gdt,
        l.page_tables,
        l.zero_page,
        l.cmdline,
        l.acpi,
        l.kernel,
        l.initrd,
    ];
    for (i, a) in ranges.iter().enumerate() {
        assert_eq!(a.start % PAGE_SIZE, 0);
        assert!(a.end() <= l.mem_size);
        for b in &ranges[i + 1..] {
            assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
        }
    }
    assert!(l.kernel.start >= HIGH_MEM);
    assert!(l.page_tables.end() <= l.zero_page.start);
}

/// The Debian cloud kernel xtask downloads for the AppVM template, when it is there.
#[test]
fn parses_the_debian_kernel_if_present() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/bulkhead/appvm/vmlinuz"
    );
    let Ok(img) = std::fs::read(path) else {
        return;
    };
    let bz = parse(&img).unwrap();
    assert!(bz.protocol >= 0x020f);
    assert_ne!(bz.xloadflags & XLF_KERNEL_64, 0);
    assert!(bz.relocatable);
    assert_eq!(bz.kernel_offset + bz.kernel_len, img.len() as u64);
    let l = plan(&bz, 512 << 20, 200, 8 << 20).unwrap();
    check_layout(&l);
    let zp = zero_page(&img, &bz, &l, &l.e820(), Some(ACPI_ADDR)).unwrap();
    assert_eq!(&zp[0x202..0x206], b"HdrS");
}

proptest! {
    #[test]
    fn parse_never_panics_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let _ = parse(&b);
    }

    #[test]
    fn mutated_headers_never_panic_and_stay_consistent(
        edits in proptest::collection::vec((0x1f1usize..0x270, any::<u8>()), 1..12),
        kernel_len in 0usize..0x3000,
        mem_mib in 1u64..3100,
        cmdline_len in 0u64..0x9000,
        initrd_len in prop_oneof![Just(0u64), 0u64..0x4000_0000, Just(u64::MAX)],
    ) {
        let mut img = image(kernel_len);
        for (at, v) in edits {
            img[at] = v;
        }
        if let Ok(bz) = parse(&img) {
            prop_assert!(bz.kernel_offset + bz.kernel_len == img.len() as u64);
            prop_assert!(bz.header_end as u64 <= bz.kernel_offset);
            prop_assert!(bz.init_size >= bz.kernel_len);
            prop_assert!(bz.kernel_alignment.is_power_of_two());
            prop_assert!(bz.kernel(&img).is_some());
            if let Ok(l) = plan(&bz, mem_mib << 20, cmdline_len, initrd_len) {
                check_layout(&l);
                prop_assert!(cmdline_len < l.cmdline.len);
                prop_assert!(l.kernel.len >= bz.init_size);
                prop_assert!(l.kernel.start == bz.pref_address
                    || (bz.relocatable && l.kernel.start % bz.kernel_alignment == 0));
                if initrd_len > 0 {
                    prop_assert!(l.initrd.end() - 1 <= bz.initrd_addr_max);
                }
                let _ = zero_page(&img, &bz, &l, &l.e820(), Some(ACPI_ADDR));
                let mut arena = std::vec![0u8; l.page_tables.len as usize];
                prop_assert!(build_page_tables(&mut arena, &l).is_ok());
            }
        }
    }
}
