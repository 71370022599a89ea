//! What the boot loader tells the hypervisor: the RAM map, the boot bundle (PVH module or
//! multiboot2 module), the command line, the ACPI RSDP and (multiboot2) the framebuffer the
//! firmware left.
//!
//! The parsers read physical memory through [`PhysRead`], so they run on the host against
//! byte buffers. Every pointer and length in the loader's structures is checked before use;
//! a malformed structure gives a [`BootInfoError`], never a panic.

use crate::memmap::{MemoryMap, Region};

/// PVH `hvm_start_info.magic`.
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// Multiboot2 magic in `eax` at entry.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// Longest command line kept.
pub const CMDLINE_MAX: usize = 256;
/// Largest multiboot2 information structure accepted.
const MB2_MAX_INFO: u32 = 64 * 1024;

/// Read access to physical memory.
pub trait PhysRead {
    /// Fills `buf` from physical address `addr`; false if the range is not readable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;

    /// Reads a little-endian u32.
    fn u32(&self, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b).then(|| u32::from_le_bytes(b))
    }

    /// Reads a little-endian u64.
    fn u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }
}

/// Which protocol started the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// Xen PVH (QEMU `-kernel`).
    Pvh,
    /// Multiboot2 (GRUB).
    Multiboot2,
}

/// The boot environment.
#[derive(Clone, Debug)]
pub struct BootEnv {
    /// Protocol used.
    pub protocol: BootProtocol,
    /// Usable RAM as the firmware reported it.
    pub ram: MemoryMap,
    /// The boot bundle, if a module was given.
    pub bundle: Option<Region>,
    /// Command line bytes (`cmdline_len` valid).
    pub cmdline: [u8; CMDLINE_MAX],
    /// Valid bytes in `cmdline`.
    pub cmdline_len: usize,
    /// Physical address of the ACPI RSDP, if the loader gave it.
    pub rsdp: Option<u64>,
    /// The loader's own structure, to keep out of the frame allocator.
    pub info: Region,
    /// The linear framebuffer the firmware or GRUB set up (multiboot2 tag 8), if usable.
    pub framebuffer: Option<Framebuffer>,
    /// Why a framebuffer tag was ignored, for the boot log.
    pub framebuffer_ignored: Option<&'static str>,
}

/// A linear framebuffer of 32-bit `0x00RRGGBB` pixels, rows `pitch` bytes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framebuffer {
    /// Physical address of the first pixel.
    pub addr: u64,
    /// Bytes from one row to the next.
    pub pitch: u32,
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bits per pixel (always 32).
    pub bpp: u8,
}

impl Framebuffer {
    /// The whole pages it covers: `[addr, addr + pitch * height)` rounded out to pages.
    pub fn pages(&self) -> Option<Region> {
        let len = u64::from(self.pitch) * u64::from(self.height);
        let start = self.addr & !(crate::PAGE_SIZE - 1);
        let end = crate::align_up(self.addr.checked_add(len)?, crate::PAGE_SIZE)?;
        Some(Region { start, end })
    }

    /// What its qube's boot info says about it (`gpa` = the first pixel's physical
    /// address; `size` runs to the end of its last page).
    pub fn info(&self) -> bulkhead_abi::boot_info::FramebufferInfo {
        bulkhead_abi::boot_info::FramebufferInfo {
            gpa: self.addr,
            size: self.pages().map_or(0, |p| p.end - self.addr),
            width: self.width,
            height: self.height,
            pitch: self.pitch,
            bpp: u32::from(self.bpp),
        }
    }

    /// The pages a qube may map, unless they overlap `ram` (the RAM the hypervisor
    /// manages) or one of `reserved` (the hypervisor's image, the qube's own memory and
    /// windows, its devices' BAR pieces); the error says which.
    pub fn mappable(
        &self,
        ram: &MemoryMap,
        reserved: impl IntoIterator<Item = Region>,
    ) -> Result<Region, &'static str> {
        let pages = self.pages().ok_or("its range wraps")?;
        if ram.regions().iter().any(|r| r.overlaps(&pages)) {
            return Err("it overlaps RAM");
        }
        if reserved.into_iter().any(|r| r.overlaps(&pages)) {
            return Err("it overlaps the hypervisor, the qube's memory or a BAR it maps");
        }
        Ok(pages)
    }
}

/// Reads a multiboot2 framebuffer tag (type 8) at `tag` of `size` bytes: only 32 bits per
/// pixel, direct RGB (type 1) with 8-bit fields at 16 (red), 8 (green) and 0 (blue).
fn read_framebuffer(
    mem: &impl PhysRead,
    tag: u64,
    size: u64,
) -> Result<Result<Framebuffer, &'static str>, BootInfoError> {
    let mut b = [0u8; 38];
    if size < b.len() as u64 {
        // Indexed or EGA text tags are shorter: not a framebuffer we can draw on.
        let mut head = [0u8; 30];
        if size < 30 || !mem.read(tag, &mut head) {
            return Err(BootInfoError::Malformed("framebuffer tag size"));
        }
        return Ok(Err(if head[29] == 2 {
            "VGA text mode, not a linear framebuffer"
        } else {
            "not direct RGB"
        }));
    }
    if !mem.read(tag, &mut b) {
        return Err(BootInfoError::Unreadable("framebuffer tag"));
    }
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut addr = [0u8; 8];
    addr.copy_from_slice(&b[8..16]);
    let fb = Framebuffer {
        addr: u64::from_le_bytes(addr),
        pitch: u32_at(16),
        width: u32_at(20),
        height: u32_at(24),
        bpp: b[28],
    };
    Ok(if b[29] != 1 {
        Err("not direct RGB")
    } else if fb.bpp != 32 {
        Err("not 32 bits per pixel")
    } else if b[32..38] != [16, 8, 8, 8, 0, 8] {
        Err("not 8-bit red, green, blue at bits 16, 8, 0")
    } else if fb.width == 0 || fb.height == 0 || u64::from(fb.pitch) < u64::from(fb.width) * 4 {
        Err("its size or pitch is inconsistent")
    } else if fb.addr == 0 || fb.pages().is_none() {
        Err("its address is invalid")
    } else {
        Ok(fb)
    })
}

impl BootEnv {
    fn new(protocol: BootProtocol, info: Region) -> BootEnv {
        BootEnv {
            protocol,
            ram: MemoryMap::new(),
            bundle: None,
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
            rsdp: None,
            info,
            framebuffer: None,
            framebuffer_ignored: None,
        }
    }

    /// The command line (empty if not UTF-8).
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    fn read_cmdline(&mut self, mem: &impl PhysRead, addr: u64) {
        if addr == 0 {
            return;
        }
        let mut b = [0u8; 1];
        while self.cmdline_len < CMDLINE_MAX
            && mem.read(addr + self.cmdline_len as u64, &mut b)
            && b[0] != 0
        {
            self.cmdline[self.cmdline_len] = b[0];
            self.cmdline_len += 1;
        }
    }
}

/// Why the loader's information was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// Neither PVH nor multiboot2 magic.
    UnknownProtocol,
    /// A structure could not be read at the address it claims.
    Unreadable(&'static str),
    /// A structure is inconsistent.
    Malformed(&'static str),
    /// The loader reported no RAM.
    NoMemory,
}

/// Parses whatever started us: `magic` is `eax` at entry, `info` is `ebx`.
pub fn parse(mem: &impl PhysRead, magic: u32, info: u64) -> Result<BootEnv, BootInfoError> {
    let env = if magic == MULTIBOOT2_MAGIC {
        parse_multiboot2(mem, info)?
    } else if mem.u32(info) == Some(PVH_MAGIC) {
        parse_pvh(mem, info)?
    } else {
        return Err(BootInfoError::UnknownProtocol);
    };
    if env.ram.total() == 0 {
        return Err(BootInfoError::NoMemory);
    }
    Ok(env)
}

fn parse_pvh(mem: &impl PhysRead, info: u64) -> Result<BootEnv, BootInfoError> {
    let rd32 = |off: u64| {
        mem.u32(info + off)
            .ok_or(BootInfoError::Unreadable("hvm_start_info"))
    };
    let rd64 = |off: u64| {
        mem.u64(info + off)
            .ok_or(BootInfoError::Unreadable("hvm_start_info"))
    };
    let version = rd32(4)?;
    let mut env = BootEnv::new(
        BootProtocol::Pvh,
        Region {
            start: info,
            end: info + 56,
        },
    );
    let nr_modules = rd32(12)?;
    let modlist = rd64(16)?;
    env.read_cmdline(mem, rd64(24)?);
    let rsdp = rd64(32)?;
    env.rsdp = (rsdp != 0).then_some(rsdp);
    if nr_modules > 0 {
        let paddr = mem
            .u64(modlist)
            .ok_or(BootInfoError::Unreadable("module list"))?;
        let size = mem
            .u64(modlist + 8)
            .ok_or(BootInfoError::Unreadable("module list"))?;
        env.bundle = Some(Region::from_len(paddr, size).ok_or(BootInfoError::Malformed("module"))?);
    }
    if version < 1 {
        return Err(BootInfoError::Malformed(
            "PVH start info version 0 has no memory map",
        ));
    }
    let map = rd64(40)?;
    let entries = rd32(48)?;
    if entries > 1024 {
        return Err(BootInfoError::Malformed("PVH memory map too long"));
    }
    for i in 0..entries as u64 {
        let e = map + i * 24;
        let (Some(addr), Some(size), Some(kind)) = (mem.u64(e), mem.u64(e + 8), mem.u32(e + 16))
        else {
            return Err(BootInfoError::Unreadable("PVH memory map"));
        };
        add_ram(&mut env.ram, kind, addr, size)?;
    }
    Ok(env)
}

fn add_ram(ram: &mut MemoryMap, kind: u32, addr: u64, size: u64) -> Result<(), BootInfoError> {
    // Type 1 is usable RAM in both the e820 and the multiboot2 convention.
    if kind == 1 {
        let r = Region::from_len(addr, size).ok_or(BootInfoError::Malformed("RAM range wraps"))?;
        if !ram.add(r) {
            return Err(BootInfoError::Malformed("too many RAM ranges"));
        }
    }
    Ok(())
}

fn parse_multiboot2(mem: &impl PhysRead, info: u64) -> Result<BootEnv, BootInfoError> {
    let total = mem
        .u32(info)
        .ok_or(BootInfoError::Unreadable("multiboot2 info"))?;
    if !(16..=MB2_MAX_INFO).contains(&total) {
        return Err(BootInfoError::Malformed("multiboot2 info size"));
    }
    let end = info + total as u64;
    let mut env = BootEnv::new(BootProtocol::Multiboot2, Region { start: info, end });
    let mut tag = info + 8;
    while tag + 8 <= end {
        let kind = mem
            .u32(tag)
            .ok_or(BootInfoError::Unreadable("multiboot2 tag"))?;
        let size = mem
            .u32(tag + 4)
            .ok_or(BootInfoError::Unreadable("multiboot2 tag"))? as u64;
        if size < 8 || tag + size > end {
            return Err(BootInfoError::Malformed("multiboot2 tag size"));
        }
        match kind {
            0 => break,
            1 => env.read_cmdline(mem, tag + 8),
            3 if env.bundle.is_none() => {
                let s = mem
                    .u32(tag + 8)
                    .ok_or(BootInfoError::Unreadable("module tag"))? as u64;
                let e = mem
                    .u32(tag + 12)
                    .ok_or(BootInfoError::Unreadable("module tag"))? as u64;
                if e < s {
                    return Err(BootInfoError::Malformed("module ends before it starts"));
                }
                env.bundle = Some(Region { start: s, end: e });
            }
            6 => {
                let esize =
                    mem.u32(tag + 8)
                        .ok_or(BootInfoError::Unreadable("mmap tag"))? as u64;
                if esize < 24 {
                    return Err(BootInfoError::Malformed("mmap entry size"));
                }
                let mut e = tag + 16;
                while e + esize <= tag + size {
                    let (Some(addr), Some(len), Some(kind)) =
                        (mem.u64(e), mem.u64(e + 8), mem.u32(e + 16))
                    else {
                        return Err(BootInfoError::Unreadable("mmap entry"));
                    };
                    add_ram(&mut env.ram, kind, addr, len)?;
                    e += esize;
                }
            }
            8 => match read_framebuffer(mem, tag, size)? {
                Ok(fb) => env.framebuffer = Some(fb),
                Err(why) => env.framebuffer_ignored = Some(why),
            },
            14 | 15 if env.rsdp.is_none() => env.rsdp = Some(tag + 8),
            _ => {}
        }
        tag += crate::align_up(size, 8).ok_or(BootInfoError::Malformed("tag size"))?;
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::test_memory::{Mem, put};
    use proptest::prelude::*;
    use std::vec::Vec;

    fn pvh_image() -> Mem {
        let mut m = std::vec![0u8; 0x4000];
        put(&mut m, 0x1000, &PVH_MAGIC.to_le_bytes());
        put(&mut m, 0x1004, &1u32.to_le_bytes());
        put(&mut m, 0x100c, &1u32.to_le_bytes()); // one module
        put(&mut m, 0x1010, &0x2000u64.to_le_bytes());
        put(&mut m, 0x1018, &0x2100u64.to_le_bytes()); // cmdline
        put(&mut m, 0x1020, &0xe0000u64.to_le_bytes()); // rsdp
        put(&mut m, 0x1028, &0x3000u64.to_le_bytes()); // memmap
        put(&mut m, 0x1030, &2u32.to_le_bytes());
        put(&mut m, 0x2000, &0x80_0000u64.to_le_bytes());
        put(&mut m, 0x2008, &0x1234u64.to_le_bytes());
        put(&mut m, 0x2100, b"color=off\0");
        put(&mut m, 0x3000, &0u64.to_le_bytes());
        put(&mut m, 0x3008, &0x9f000u64.to_le_bytes());
        put(&mut m, 0x3010, &1u32.to_le_bytes());
        put(&mut m, 0x3018, &0x10_0000u64.to_le_bytes());
        put(&mut m, 0x3020, &0x700_0000u64.to_le_bytes());
        put(&mut m, 0x3028, &1u32.to_le_bytes());
        Mem(m)
    }

    #[test]
    fn parses_pvh() {
        let env = parse(&pvh_image(), 0, 0x1000).unwrap();
        assert_eq!(env.protocol, BootProtocol::Pvh);
        assert_eq!(
            env.bundle,
            Some(Region {
                start: 0x80_0000,
                end: 0x80_1234
            })
        );
        assert_eq!(env.cmdline(), "color=off");
        assert_eq!(env.rsdp, Some(0xe0000));
        assert_eq!(env.ram.total(), 0x9f000 + 0x700_0000);
    }

    #[test]
    fn parses_multiboot2() {
        let mut m = std::vec![0u8; 0x2000];
        let mut t = 0x1008;
        let mut tag = |m: &mut Vec<u8>, kind: u32, body: &[u8]| {
            let size = 8 + body.len() as u32;
            put(m, t, &kind.to_le_bytes());
            put(m, t + 4, &size.to_le_bytes());
            put(m, t + 8, body);
            t += (size as usize).div_ceil(8) * 8;
        };
        tag(&mut m, 1, b"hello\0");
        let mut module = Vec::new();
        module.extend_from_slice(&0x40_0000u32.to_le_bytes());
        module.extend_from_slice(&0x40_8000u32.to_le_bytes());
        module.extend_from_slice(b"bundle\0");
        tag(&mut m, 3, &module);
        let mut mmap = Vec::new();
        mmap.extend_from_slice(&24u32.to_le_bytes());
        mmap.extend_from_slice(&0u32.to_le_bytes());
        for (a, l, k) in [
            (0u64, 0x9fc00u64, 1u32),
            (0x10_0000, 0x3f0_0000, 1),
            (0xfffc_0000, 0x4_0000, 2),
        ] {
            mmap.extend_from_slice(&a.to_le_bytes());
            mmap.extend_from_slice(&l.to_le_bytes());
            mmap.extend_from_slice(&k.to_le_bytes());
            mmap.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(&mut m, 6, &mmap);
        tag(&mut m, 0, &[]);
        let total = (t - 0x1000) as u32;
        put(&mut m, 0x1000, &total.to_le_bytes());
        let env = parse(&Mem(m), MULTIBOOT2_MAGIC, 0x1000).unwrap();
        assert_eq!(env.protocol, BootProtocol::Multiboot2);
        assert_eq!(env.cmdline(), "hello");
        assert_eq!(
            env.bundle,
            Some(Region {
                start: 0x40_0000,
                end: 0x40_8000
            })
        );
        assert_eq!(env.ram.total(), 0x9fc00 + 0x3f0_0000);
    }

    /// A multiboot2 structure at 0x1000 with a RAM map (0..0x9fc00, 1 MiB..64 MiB) and
    /// the given framebuffer tag body.
    fn mb2_with_framebuffer(fb: &[u8]) -> Mem {
        let mut m = std::vec![0u8; 0x2000];
        let mut t = 0x1008;
        let mut tag = |m: &mut Vec<u8>, kind: u32, body: &[u8]| {
            let size = 8 + body.len() as u32;
            put(m, t, &kind.to_le_bytes());
            put(m, t + 4, &size.to_le_bytes());
            put(m, t + 8, body);
            t += (size as usize).div_ceil(8) * 8;
        };
        let mut mmap = Vec::new();
        mmap.extend_from_slice(&24u32.to_le_bytes());
        mmap.extend_from_slice(&0u32.to_le_bytes());
        for (a, l) in [(0u64, 0x9fc00u64), (0x10_0000, 0x3f0_0000)] {
            mmap.extend_from_slice(&a.to_le_bytes());
            mmap.extend_from_slice(&l.to_le_bytes());
            mmap.extend_from_slice(&1u64.to_le_bytes());
        }
        tag(&mut m, 6, &mmap);
        tag(&mut m, 8, fb);
        tag(&mut m, 0, &[]);
        let total = (t - 0x1000) as u32;
        put(&mut m, 0x1000, &total.to_le_bytes());
        Mem(m)
    }

    /// A framebuffer tag body (after type and size).
    fn fb_body(
        addr: u64,
        pitch: u32,
        w: u32,
        h: u32,
        bpp: u8,
        kind: u8,
        fields: [u8; 6],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&addr.to_le_bytes());
        for v in [pitch, w, h] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[bpp, kind, 0, 0]);
        b.extend_from_slice(&fields);
        b
    }

    const RGB: [u8; 6] = [16, 8, 8, 8, 0, 8];

    #[test]
    fn reads_a_framebuffer_tag() {
        let body = fb_body(0xfd00_0000, 4096, 1024, 768, 32, 1, RGB);
        let env = parse(&mb2_with_framebuffer(&body), MULTIBOOT2_MAGIC, 0x1000).unwrap();
        let fb = env.framebuffer.unwrap();
        assert_eq!(
            fb,
            Framebuffer {
                addr: 0xfd00_0000,
                pitch: 4096,
                width: 1024,
                height: 768,
                bpp: 32
            }
        );
        assert_eq!(env.framebuffer_ignored, None);
        assert_eq!(
            fb.pages(),
            Some(Region {
                start: 0xfd00_0000,
                end: 0xfd30_0000
            })
        );
        let info = fb.info();
        assert_eq!((info.gpa, info.size), (0xfd00_0000, 0x30_0000));
        assert_eq!(
            (info.width, info.height, info.pitch, info.bpp),
            (1024, 768, 4096, 32)
        );
        let mapped = fb.mappable(
            &env.ram,
            [Region {
                start: 0,
                end: 0x800_0000,
            }],
        );
        assert_eq!(mapped, Ok(fb.pages().unwrap()));
        // Pitch wider than the row, an unaligned start: whole pages around it.
        let odd = Framebuffer {
            addr: 0xfd00_0800,
            pitch: 5200,
            width: 1280,
            height: 3,
            bpp: 32,
        };
        assert_eq!(
            odd.pages(),
            Some(Region {
                start: 0xfd00_0000,
                end: 0xfd00_5000
            })
        );
    }

    #[test]
    fn refuses_framebuffers_over_ram_or_the_hypervisor() {
        let env = parse(
            &mb2_with_framebuffer(&fb_body(0x20_0000, 4096, 1024, 768, 32, 1, RGB)),
            MULTIBOOT2_MAGIC,
            0x1000,
        )
        .unwrap();
        let fb = env.framebuffer.unwrap();
        assert_eq!(fb.mappable(&env.ram, []), Err("it overlaps RAM"));
        let high = Framebuffer {
            addr: 0x1_0000_0000,
            ..fb
        };
        let image = Region {
            start: 0x1_0010_0000,
            end: 0x1_0020_0000,
        };
        assert!(high.mappable(&env.ram, [image]).is_err());
        let bar = Region::from_len(0x1_0000_0000, 0x1000).unwrap();
        assert!(high.mappable(&env.ram, [bar]).is_err());
        assert!(high.mappable(&env.ram, []).is_ok());
        let wraps = Framebuffer {
            addr: u64::MAX - 0x1000,
            ..fb
        };
        assert_eq!(wraps.pages(), None);
        assert_eq!(wraps.mappable(&env.ram, []), Err("its range wraps"));
    }

    #[test]
    fn ignores_framebuffers_it_cannot_draw_on() {
        let cases: [(Vec<u8>, &str); 7] = [
            (
                fb_body(0xfd00_0000, 3072, 1024, 768, 24, 1, RGB),
                "not 32 bits per pixel",
            ),
            (
                fb_body(0xfd00_0000, 4096, 1024, 768, 32, 0, RGB),
                "not direct RGB",
            ),
            (
                fb_body(0xb8000, 160, 80, 25, 16, 2, RGB)[..22].to_vec(),
                "VGA text mode, not a linear framebuffer",
            ),
            (
                fb_body(0xfd00_0000, 4096, 1024, 768, 32, 1, [0, 8, 8, 8, 16, 8]),
                "not 8-bit red, green, blue at bits 16, 8, 0",
            ),
            (
                fb_body(0xfd00_0000, 4000, 1024, 768, 32, 1, RGB),
                "its size or pitch is inconsistent",
            ),
            (
                fb_body(0xfd00_0000, 4096, 0, 768, 32, 1, RGB),
                "its size or pitch is inconsistent",
            ),
            (
                fb_body(0, 4096, 1024, 768, 32, 1, RGB),
                "its address is invalid",
            ),
        ];
        for (body, why) in cases {
            let env = parse(&mb2_with_framebuffer(&body), MULTIBOOT2_MAGIC, 0x1000).unwrap();
            assert_eq!(env.framebuffer, None, "{why}");
            assert_eq!(env.framebuffer_ignored, Some(why));
            assert_eq!(env.ram.total(), 0x9fc00 + 0x3f0_0000);
        }
        // Shorter than its fixed part: the structure is malformed.
        let short = &fb_body(0xfd00_0000, 4096, 1024, 768, 32, 1, RGB)[..12];
        assert_eq!(
            parse(&mb2_with_framebuffer(short), MULTIBOOT2_MAGIC, 0x1000).unwrap_err(),
            BootInfoError::Malformed("framebuffer tag size")
        );
    }

    #[test]
    fn refuses_unknown_protocol() {
        assert_eq!(
            parse(&pvh_image(), 0, 0x2000).unwrap_err(),
            BootInfoError::UnknownProtocol
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), mb2: bool) {
            let mut m = bytes;
            if m.len() >= 4 && !mb2 { put(&mut m, 0, &PVH_MAGIC.to_le_bytes()); }
            let magic = if mb2 { MULTIBOOT2_MAGIC } else { 0 };
            let _ = parse(&Mem(m), magic, 0);
        }

        #[test]
        fn mutated_framebuffer_tag_never_panics(pos in 0x1000usize..0x1080, val: u8) {
            let mut m = mb2_with_framebuffer(&fb_body(0xfd00_0000, 4096, 1024, 768, 32, 1, RGB));
            m.0[pos] = val;
            if let Some(fb) = parse(&m, MULTIBOOT2_MAGIC, 0x1000).ok().and_then(|e| e.framebuffer) {
                prop_assert!(fb.pages().is_some());
                prop_assert!(u64::from(fb.pitch) >= u64::from(fb.width) * 4);
            }
        }

        #[test]
        fn mutated_pvh_never_panics(pos in 0x1000usize..0x3030, val: u8) {
            let mut m = pvh_image();
            m.0[pos] = val;
            let _ = parse(&m, 0, 0x1000);
        }
    }
}
