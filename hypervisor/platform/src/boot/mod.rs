//! Booting an unmodified Linux bzImage through the 64-bit boot protocol (the kernel's
//! `Documentation/arch/x86/boot.rst`): validating the image's setup header, planning where
//! the kernel, the zero page, the command line and the initrd go in the qube's memory,
//! writing the zero page (`struct boot_params`) and describing the CPU state at the 64-bit
//! entry. Nothing here touches memory other than the byte slices it is given.
//!
//! The image is untrusted input: every header field is checked and all arithmetic is
//! checked, so a malformed image gives a [`LinuxError`], never a panic.
//!
//! Guest-physical layout (fixed low addresses, see [`LinuxLayout`] and `docs/appvm.md`):
//!
//! | range | use |
//! |---|---|
//! | `0x1000..0x2000` | GDT (null, null, `__BOOT_CS` 0x10, `__BOOT_DS` 0x18) |
//! | `0x2000..0x7000` | identity page tables: PML4, PDPT, up to 3 PDs of 2 MiB pages |
//! | `0x7000..0x8000` | zero page (`boot_params`) |
//! | `0x8000..0x10000` | kernel command line |
//! | `0xe0000..0x100000` | ACPI tables (reserved in the e820 map) |
//! | `pref_address..+init_size` | the protected-mode kernel (or the first aligned address ≥ 1 MiB) |
//! | top of memory (below `initrd_addr_max`) | the initrd |

use bulkhead_abi::wire::{u16_at, u32_at, u64_at};
use bulkhead_hvcore::paging::{Perm, Tables, X86Format};
use bulkhead_hvcore::{LARGE_PAGE_SIZE, PAGE_SIZE, align_up};

/// Lowest boot protocol accepted: 2.12 introduced `xloadflags` and with it the 64-bit entry.
pub const MIN_PROTOCOL: u16 = 0x020c;
/// Protocol that added `acpi_rsdp_addr` to the zero page.
pub const RSDP_PROTOCOL: u16 = 0x020e;
/// The 64-bit entry point, from the start of the loaded protected-mode kernel.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// `xloadflags`: the kernel has the 64-bit entry at +0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags`: the kernel, boot_params, command line and initrd may live above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// `loadflags`: the protected-mode kernel is loaded at 0x100000 or above.
pub const LOADED_HIGH: u8 = 1 << 0;
/// `type_of_loader` for a loader without an assigned id.
pub const LOADER_UNDEFINED: u8 = 0xff;

/// GDT address.
pub const GDT_ADDR: u64 = 0x1000;
/// First page of the identity page tables (the PML4; CR3).
pub const PAGE_TABLES_ADDR: u64 = 0x2000;
/// Pages reserved for the identity page tables: PML4, PDPT and one PD per GiB.
pub const PAGE_TABLE_PAGES: u64 = 5;
/// Zero page (`struct boot_params`) address.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Command line address.
pub const CMDLINE_ADDR: u64 = 0x8000;
/// Bytes reserved for the command line, its terminating NUL included.
pub const CMDLINE_MAX: u64 = 0x8000;
/// End of the RAM below 1 MiB given to the kernel (it needs some for its real-mode
/// trampoline); `[LOW_RAM_END, 1 MiB)` is left out of the RAM map.
pub const LOW_RAM_END: u64 = 0x9f000;
/// ACPI tables: where Linux also scans for the RSDP.
pub const ACPI_ADDR: u64 = 0xe0000;
/// Bytes reserved for the ACPI tables.
pub const ACPI_LEN: u64 = 0x20000;
/// Start of high memory: the kernel and initrd go at or above.
pub const HIGH_MEM: u64 = 0x10_0000;
/// Most guest memory: what the 3 page directories map, and below the 32-bit device hole
/// (IOAPIC at 0xfec00000, LAPIC at 0xfee00000).
pub const MAX_GUEST_MEM: u64 = (PAGE_TABLE_PAGES - 2) << 30;
/// Most e820 entries the zero page holds.
pub const E820_MAX: usize = 128;

/// `__BOOT_CS`.
pub const BOOT_CS: u16 = 0x10;
/// `__BOOT_DS`.
pub const BOOT_DS: u16 = 0x18;
/// The GDT: null, null, flat 64-bit code (execute/read) at 0x10, flat data (read/write) at 0x18.
pub const GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

// Zero page offsets.
const ZP_ACPI_RSDP: usize = 0x070;
const ZP_EXT_RAMDISK_IMAGE: usize = 0x0c0;
const ZP_EXT_RAMDISK_SIZE: usize = 0x0c4;
const ZP_EXT_CMD_LINE_PTR: usize = 0x0c8;
const ZP_E820_ENTRIES: usize = 0x1e8;
const ZP_E820_TABLE: usize = 0x2d0;
const E820_ENTRY_LEN: usize = 20;

// Setup header offsets (in the image and in the zero page alike).
const HDR_START: usize = 0x1f1;
const SETUP_SECTS: usize = 0x1f1;
const SYSSIZE: usize = 0x1f4;
const BOOT_FLAG: usize = 0x1fe;
const HDR_LEN_BYTE: usize = 0x201;
const HEADER: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22c;
const KERNEL_ALIGNMENT: usize = 0x230;
const RELOCATABLE: usize = 0x234;
const XLOADFLAGS: usize = 0x236;
const CMDLINE_SIZE: usize = 0x238;
const PREF_ADDRESS: usize = 0x258;
const INIT_SIZE: usize = 0x260;
/// The setup header must reach at least to the end of `init_size` (protocol 2.10+).
const MIN_HDR_END: usize = INIT_SIZE + 4;

/// Why a bzImage cannot be booted, or a layout cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxError {
    /// Shorter than its setup header.
    TooShort,
    /// No `0xAA55` boot flag at 0x1fe.
    NoBootFlag,
    /// No `HdrS` magic at 0x202.
    NoMagic,
    /// Boot protocol older than 2.12 (the version found).
    OldProtocol(u16),
    /// `xloadflags` lacks `XLF_KERNEL_64`: no 64-bit entry.
    No64BitEntry,
    /// The header-length byte at 0x201 puts the header's end before `init_size` or past the
    /// setup sectors.
    BadHeaderLength,
    /// The setup sectors or the protected-mode kernel are not inside the file.
    KernelOutsideFile,
    /// `syssize` is zero or larger than the protected-mode kernel in the file.
    BadSyssize,
    /// `init_size` is smaller than the protected-mode kernel or too large.
    BadInitSize,
    /// `kernel_alignment` is not a power of two between 4 KiB and 1 GiB.
    BadAlignment,
    /// Guest memory size not page-aligned, too small, or above [`MAX_GUEST_MEM`].
    BadMemorySize,
    /// The kernel's `init_size` does not fit in guest memory at an address it accepts.
    KernelDoesNotFit,
    /// The initrd does not fit between the kernel and `min(memory, initrd_addr_max)`.
    InitrdDoesNotFit,
    /// The command line is longer than the kernel's `cmdline_size` or than [`CMDLINE_MAX`].
    CmdlineTooLong,
    /// More e820 entries than [`E820_MAX`].
    TooManyE820,
    /// An RSDP address was given but the kernel's protocol predates `acpi_rsdp_addr` (2.14).
    RsdpUnsupported,
    /// An address above 4 GiB for a kernel without `XLF_CAN_BE_LOADED_ABOVE_4G`.
    AboveFourGiB,
    /// The page-table arena is too small or misplaced.
    PageTables,
}

impl core::fmt::Display for LinuxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinuxError::TooShort => f.write_str("image shorter than its setup header"),
            LinuxError::NoBootFlag => f.write_str("no 0xAA55 boot flag"),
            LinuxError::NoMagic => f.write_str("no HdrS magic: not a bzImage"),
            LinuxError::OldProtocol(v) => write!(
                f,
                "boot protocol {}.{} is older than 2.12",
                v >> 8,
                v & 0xff
            ),
            LinuxError::No64BitEntry => f.write_str("no 64-bit entry (XLF_KERNEL_64)"),
            LinuxError::BadHeaderLength => f.write_str("setup header length out of range"),
            LinuxError::KernelOutsideFile => f.write_str("kernel lies outside the file"),
            LinuxError::BadSyssize => f.write_str("syssize does not match the file"),
            LinuxError::BadInitSize => f.write_str("init_size out of range"),
            LinuxError::BadAlignment => f.write_str("kernel_alignment out of range"),
            LinuxError::BadMemorySize => f.write_str("guest memory size unusable"),
            LinuxError::KernelDoesNotFit => f.write_str("kernel does not fit in guest memory"),
            LinuxError::InitrdDoesNotFit => f.write_str("initrd does not fit in guest memory"),
            LinuxError::CmdlineTooLong => f.write_str("command line too long"),
            LinuxError::TooManyE820 => f.write_str("more than 128 e820 entries"),
            LinuxError::RsdpUnsupported => f.write_str("kernel cannot take an RSDP address"),
            LinuxError::AboveFourGiB => f.write_str("address above 4 GiB not supported"),
            LinuxError::PageTables => f.write_str("page-table arena unusable"),
        }
    }
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = at.checked_add(v.len()).and_then(|end| b.get_mut(at..end)) {
        d.copy_from_slice(v);
    }
}

/// A validated bzImage: what a loader needs from its setup header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage {
    /// Boot protocol version (`0x020f` is 2.15).
    pub protocol: u16,
    /// Setup sectors (a 0 in the header means 4).
    pub setup_sects: u8,
    /// End of the setup header in the image: `0x202 + image[0x201]`.
    pub header_end: usize,
    /// File offset of the protected-mode kernel: `(setup_sects + 1) * 512`.
    pub kernel_offset: u64,
    /// Bytes of protected-mode kernel in the file (copied to the load address).
    pub kernel_len: u64,
    /// Memory the kernel needs from its load address until it has decompressed itself.
    pub init_size: u64,
    /// Alignment the load address must have (relocatable kernels).
    pub kernel_alignment: u64,
    /// The kernel can be loaded at any `kernel_alignment`-aligned address.
    pub relocatable: bool,
    /// Preferred load address (where the kernel need not relocate itself).
    pub pref_address: u64,
    /// Longest command line, without its terminating NUL.
    pub cmdline_size: u64,
    /// Highest address the initrd's last byte may have.
    pub initrd_addr_max: u64,
    /// `xloadflags`.
    pub xloadflags: u16,
}

impl BzImage {
    /// The protected-mode kernel's bytes in `image` (the file [`parse`] accepted).
    pub fn kernel<'a>(&self, image: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.kernel_offset).ok()?;
        let len = usize::try_from(self.kernel_len).ok()?;
        image.get(start..start.checked_add(len)?)
    }
}

/// Validates a bzImage's setup header for the 64-bit boot protocol.
pub fn parse(image: &[u8]) -> Result<BzImage, LinuxError> {
    let short = LinuxError::TooShort;
    if image.len() < MIN_HDR_END {
        return Err(short);
    }
    if u16_at(image, BOOT_FLAG) != Some(0xaa55) {
        return Err(LinuxError::NoBootFlag);
    }
    if image.get(HEADER..HEADER + 4) != Some(b"HdrS".as_slice()) {
        return Err(LinuxError::NoMagic);
    }
    let protocol = u16_at(image, VERSION).ok_or(short)?;
    if protocol < MIN_PROTOCOL {
        return Err(LinuxError::OldProtocol(protocol));
    }
    let xloadflags = u16_at(image, XLOADFLAGS).ok_or(short)?;
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::No64BitEntry);
    }
    let setup_sects = match *image.get(SETUP_SECTS).ok_or(short)? {
        0 => 4,
        n => n,
    };
    let kernel_offset = (u64::from(setup_sects) + 1) * 512;
    let header_end = HEADER + usize::from(*image.get(HDR_LEN_BYTE).ok_or(short)?);
    if header_end < MIN_HDR_END || header_end as u64 > kernel_offset {
        return Err(LinuxError::BadHeaderLength);
    }
    let file_len = image.len() as u64;
    if kernel_offset >= file_len {
        return Err(LinuxError::KernelOutsideFile);
    }
    let kernel_len = file_len - kernel_offset;
    let syssize = u64::from(u32_at(image, SYSSIZE).ok_or(short)?);
    if syssize == 0 || syssize * 16 > kernel_len {
        return Err(LinuxError::BadSyssize);
    }
    let init_size = u64::from(u32_at(image, INIT_SIZE).ok_or(short)?);
    if init_size < kernel_len {
        return Err(LinuxError::BadInitSize);
    }
    let kernel_alignment = u64::from(u32_at(image, KERNEL_ALIGNMENT).ok_or(short)?);
    if !kernel_alignment.is_power_of_two() || !(PAGE_SIZE..=1 << 30).contains(&kernel_alignment) {
        return Err(LinuxError::BadAlignment);
    }
    Ok(BzImage {
        protocol,
        setup_sects,
        header_end,
        kernel_offset,
        kernel_len,
        init_size,
        kernel_alignment,
        relocatable: *image.get(RELOCATABLE).ok_or(short)? != 0,
        pref_address: u64_at(image, PREF_ADDRESS).ok_or(short)?,
        cmdline_size: u64::from(u32_at(image, CMDLINE_SIZE).ok_or(short)?),
        initrd_addr_max: u64::from(u32_at(image, INITRD_ADDR_MAX).ok_or(short)?),
        xloadflags,
    })
}

pub use bulkhead_hvcore::Range;

/// An e820 memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Type: [`E820_RAM`], [`E820_RESERVED`], ...
    pub kind: u32,
}

/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved.
pub const E820_RESERVED: u32 = 2;

/// Where everything goes in the qube's memory, which is RAM from 0 to `mem_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxLayout {
    /// Guest memory size.
    pub mem_size: u64,
    /// The GDT ([`GDT`]).
    pub gdt: Range,
    /// The identity page tables' arena (PML4 first).
    pub page_tables: Range,
    /// The zero page.
    pub zero_page: Range,
    /// The command line buffer: `cmdline_len + 1` bytes (NUL-terminated), page-rounded.
    pub cmdline: Range,
    /// The ACPI tables.
    pub acpi: Range,
    /// The kernel: its load address and `init_size`, page-rounded.
    pub kernel: Range,
    /// The initrd (length 0: none): its address and its exact size.
    pub initrd: Range,
}

impl LinuxLayout {
    /// The 64-bit entry point.
    pub fn entry_point(&self) -> u64 {
        self.kernel.start + ENTRY_64_OFFSET
    }

    /// The e820 map for this layout: RAM below [`LOW_RAM_END`], the ACPI area reserved, RAM
    /// from 1 MiB to the end of memory.
    pub fn e820(&self) -> [E820Entry; 3] {
        [
            E820Entry {
                addr: 0,
                size: LOW_RAM_END,
                kind: E820_RAM,
            },
            E820Entry {
                addr: self.acpi.start,
                size: self.acpi.len,
                kind: E820_RESERVED,
            },
            E820Entry {
                addr: HIGH_MEM,
                size: self.mem_size - HIGH_MEM,
                kind: E820_RAM,
            },
        ]
    }

    /// The CPU state at the 64-bit entry.
    pub fn entry_state(&self) -> EntryState {
        EntryState {
            rip: self.entry_point(),
            rsi: self.zero_page.start,
            cr0: CR0_PE | CR0_ET | CR0_NE | CR0_PG,
            cr3: self.page_tables.start,
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA,
            gdt_base: self.gdt.start,
            gdt_limit: (GDT.len() * 8 - 1) as u16,
            cs: BOOT_CS,
            ds: BOOT_DS,
            rflags: RFLAGS_FIXED,
        }
    }
}

/// Plans the layout of a qube of `mem_size` bytes booting `image` with a command line of
/// `cmdline_len` bytes (without NUL) and an initrd of `initrd_len` bytes (0: none).
///
/// The kernel goes at `pref_address` when that is usable (so it need not relocate itself),
/// otherwise, if relocatable, at the first `kernel_alignment`-aligned address from 1 MiB.
/// The initrd goes as high as memory and `initrd_addr_max` allow, page-aligned.
pub fn plan(
    image: &BzImage,
    mem_size: u64,
    cmdline_len: u64,
    initrd_len: u64,
) -> Result<LinuxLayout, LinuxError> {
    if !mem_size.is_multiple_of(PAGE_SIZE) || mem_size <= HIGH_MEM || mem_size > MAX_GUEST_MEM {
        return Err(LinuxError::BadMemorySize);
    }
    let cmdline_bytes = cmdline_len
        .checked_add(1)
        .ok_or(LinuxError::CmdlineTooLong)?;
    if cmdline_len > image.cmdline_size || cmdline_bytes > CMDLINE_MAX {
        return Err(LinuxError::CmdlineTooLong);
    }
    let kernel_len = align_up(image.init_size, PAGE_SIZE).ok_or(LinuxError::BadInitSize)?;
    let fits = |at: u64| {
        at >= HIGH_MEM
            && at
                .checked_add(kernel_len)
                .is_some_and(|end| end <= mem_size)
    };
    let pref = image.pref_address;
    let kernel_start = if fits(pref)
        && (!image.relocatable || pref.is_multiple_of(image.kernel_alignment))
    {
        pref
    } else if image.relocatable {
        let at = align_up(HIGH_MEM, image.kernel_alignment).ok_or(LinuxError::KernelDoesNotFit)?;
        if !fits(at) {
            return Err(LinuxError::KernelDoesNotFit);
        }
        at
    } else {
        return Err(LinuxError::KernelDoesNotFit);
    };
    let kernel = Range {
        start: kernel_start,
        len: kernel_len,
    };
    let initrd = if initrd_len == 0 {
        Range::default()
    } else {
        let top = mem_size.min(image.initrd_addr_max.saturating_add(1));
        let start = top
            .checked_sub(initrd_len)
            .ok_or(LinuxError::InitrdDoesNotFit)?
            & !(PAGE_SIZE - 1);
        let r = Range {
            start,
            len: initrd_len,
        };
        if start < HIGH_MEM || r.overlaps(&kernel) {
            return Err(LinuxError::InitrdDoesNotFit);
        }
        r
    };
    Ok(LinuxLayout {
        mem_size,
        gdt: Range {
            start: GDT_ADDR,
            len: PAGE_SIZE,
        },
        page_tables: Range {
            start: PAGE_TABLES_ADDR,
            len: PAGE_TABLE_PAGES * PAGE_SIZE,
        },
        zero_page: Range {
            start: ZERO_PAGE_ADDR,
            len: PAGE_SIZE,
        },
        cmdline: Range {
            start: CMDLINE_ADDR,
            len: align_up(cmdline_bytes, PAGE_SIZE).ok_or(LinuxError::CmdlineTooLong)?,
        },
        acpi: Range {
            start: ACPI_ADDR,
            len: ACPI_LEN,
        },
        kernel,
        initrd,
    })
}

/// Writes the zero page (`struct boot_params`) for `image` (the file [`parse`] accepted as
/// `bz`) booted with `layout`: the image's setup header copied in, the loader's fields set,
/// the e820 map and, if given, the RSDP address.
///
/// `loadflags` gets `LOADED_HIGH` only: `CAN_USE_HEAP` and `heap_end_ptr` concern the
/// real-mode setup code, which the 64-bit entry skips, and `KEEP_SEGMENTS` is obsolete (the
/// 64-bit entry gets flat segments from the GDT).
pub fn zero_page(
    image: &[u8],
    bz: &BzImage,
    layout: &LinuxLayout,
    e820: &[E820Entry],
    rsdp: Option<u64>,
) -> Result<[u8; 4096], LinuxError> {
    if e820.len() > E820_MAX {
        return Err(LinuxError::TooManyE820);
    }
    if rsdp.is_some() && bz.protocol < RSDP_PROTOCOL {
        return Err(LinuxError::RsdpUnsupported);
    }
    let high_ok = bz.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0;
    if !high_ok && (layout.cmdline.end() > 1 << 32 || layout.initrd.end() > 1 << 32) {
        return Err(LinuxError::AboveFourGiB);
    }
    let mut zp = [0u8; 4096];
    let header = image
        .get(HDR_START..bz.header_end)
        .ok_or(LinuxError::TooShort)?;
    put(&mut zp, HDR_START, header);
    zp[TYPE_OF_LOADER] = LOADER_UNDEFINED;
    zp[LOADFLAGS] = LOADED_HIGH;
    let (lo, hi) = split(layout.cmdline.start);
    put(&mut zp, CMD_LINE_PTR, &lo.to_le_bytes());
    put(&mut zp, ZP_EXT_CMD_LINE_PTR, &hi.to_le_bytes());
    let (lo, hi) = split(layout.initrd.start);
    put(&mut zp, RAMDISK_IMAGE, &lo.to_le_bytes());
    put(&mut zp, ZP_EXT_RAMDISK_IMAGE, &hi.to_le_bytes());
    let (lo, hi) = split(layout.initrd.len);
    put(&mut zp, RAMDISK_SIZE, &lo.to_le_bytes());
    put(&mut zp, ZP_EXT_RAMDISK_SIZE, &hi.to_le_bytes());
    if let Some(r) = rsdp {
        put(&mut zp, ZP_ACPI_RSDP, &r.to_le_bytes());
    }
    zp[ZP_E820_ENTRIES] = e820.len() as u8;
    for (i, e) in e820.iter().enumerate() {
        let at = ZP_E820_TABLE + i * E820_ENTRY_LEN;
        put(&mut zp, at, &e.addr.to_le_bytes());
        put(&mut zp, at + 8, &e.size.to_le_bytes());
        put(&mut zp, at + 16, &e.kind.to_le_bytes());
    }
    Ok(zp)
}

fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// CR0.PE.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.ET.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NE.
pub const CR0_NE: u64 = 1 << 5;
/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.LME.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS with only the always-one bit: interrupts off.
pub const RFLAGS_FIXED: u64 = 1 << 1;

/// The CPU state the 64-bit boot protocol requires at the kernel's entry, for the
/// hypervisor to load into the qube's VMCB/VMCS: long mode with paging, the identity map
/// from [`build_page_tables`], the [`GDT`] loaded with CS = `__BOOT_CS` and DS = ES = SS =
/// `__BOOT_DS` (flat), interrupts off, RSI = the zero page. RSP is not used before the
/// kernel sets its own stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// Entry point: load address + 0x200.
    pub rip: u64,
    /// The zero page.
    pub rsi: u64,
    /// PE | ET | NE | PG.
    pub cr0: u64,
    /// The PML4 of the identity map.
    pub cr3: u64,
    /// PAE.
    pub cr4: u64,
    /// LME | LMA.
    pub efer: u64,
    /// GDT base.
    pub gdt_base: u64,
    /// GDT limit.
    pub gdt_limit: u16,
    /// Code selector.
    pub cs: u16,
    /// Data selector (DS, ES, SS; FS and GS too).
    pub ds: u16,
    /// RFLAGS: IF clear.
    pub rflags: u64,
}

/// The [`GDT`] as bytes, to write at [`LinuxLayout::gdt`].
pub fn gdt_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, d) in GDT.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&d.to_le_bytes());
    }
    b
}

/// Builds the identity map of all guest memory (2 MiB pages, read/write/execute,
/// supervisor) into `arena`, the bytes of `layout.page_tables`; returns CR3.
pub fn build_page_tables(arena: &mut [u8], layout: &LinuxLayout) -> Result<u64, LinuxError> {
    let len = align_up(layout.mem_size, LARGE_PAGE_SIZE).ok_or(LinuxError::PageTables)?;
    let n = usize::try_from(layout.page_tables.len).map_err(|_| LinuxError::PageTables)?;
    let arena = arena.get_mut(..n).ok_or(LinuxError::PageTables)?;
    let fmt = X86Format {
        user: false,
        nx: false,
    };
    let mut t =
        Tables::new(arena, layout.page_tables.start, fmt).map_err(|_| LinuxError::PageTables)?;
    t.map_range(0, 0, len, Perm::RWX)
        .map_err(|_| LinuxError::PageTables)?;
    Ok(t.root())
}

#[cfg(test)]
mod tests;
