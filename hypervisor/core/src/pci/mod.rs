//! PCI configuration space as an assigned device's qube sees it: decoding BARs and
//! capabilities from what the hardware says, and the filter every guest configuration
//! access goes through.
//!
//! The qube owns the device's registers (its memory BARs are mapped into it), but not the
//! parts of configuration space that would let it reach beyond the device:
//! - BARs are emulated: a guest write changes only a shadow, so BAR sizing (write all-ones,
//!   read back the mask) works, and the device never moves over someone else's memory;
//! - I/O decoding stays off (qubes get no I/O ports), and I/O BARs and the expansion ROM
//!   read as absent;
//! - MSI and MSI-X programming is refused: without interrupt remapping, a message address
//!   and data the guest chose would let the device inject any interrupt into the host.
//!
//! Everything else is passed through. Nothing here touches hardware: the hypervisor supplies
//! the hardware value of each register and applies the decision.

use crate::collections::ArrayVec as Vec;

/// Offset of the command register.
pub const COMMAND: u16 = 0x04;
/// Command: memory space decoding.
pub const CMD_MEMORY: u32 = 1 << 1;
/// Command: bus mastering (the device may DMA).
pub const CMD_BUS_MASTER: u32 = 1 << 2;
/// Command bits a guest may change: memory space, bus master, parity and SERR reporting,
/// interrupt disable. I/O space (bit 0) is never set.
const CMD_GUEST_BITS: u32 = CMD_MEMORY | CMD_BUS_MASTER | (1 << 6) | (1 << 8) | (1 << 10);
/// First BAR register.
pub const BAR0: u16 = 0x10;
/// Expansion ROM base (type 0 header).
const ROM: u16 = 0x30;
/// Capability ID of MSI.
const CAP_MSI: u8 = 0x05;
/// Capability ID of MSI-X.
const CAP_MSIX: u8 = 0x11;

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BarKind {
    /// Not implemented, or the upper half of a 64-bit BAR.
    #[default]
    None,
    /// I/O ports (never given to a qube).
    Io,
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory (this register and the next).
    Mem64,
}

/// One BAR as the hardware has it programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Bar {
    /// What it decodes.
    pub kind: BarKind,
    /// Base address.
    pub base: u64,
    /// Size in bytes (a power of two), 0 when absent.
    pub size: u64,
    /// The low flag bits of the register (type, prefetchable).
    pub flags: u32,
}

impl Bar {
    /// A memory BAR marked prefetchable (bit 3): reads have no side effects, so stores to
    /// it may be combined (a framebuffer's).
    pub const fn prefetchable(&self) -> bool {
        matches!(self.kind, BarKind::Mem32 | BarKind::Mem64) && self.flags & 0b1000 != 0
    }
}

/// Base class of a display controller (the class register's top byte).
pub const CLASS_DISPLAY: u32 = 0x03;

/// Decodes the six BARs from their programmed values (`raw`) and the values read back
/// after writing all-ones to each (`sized`).
pub fn decode_bars(raw: [u32; 6], sized: [u32; 6]) -> [Bar; 6] {
    let mut bars = [Bar::default(); 6];
    let mut i = 0;
    while i < 6 {
        let (r, s) = (raw[i], sized[i]);
        if r & 1 == 1 {
            let mask = u64::from(s & !3) | 0xffff_0000;
            let size = (!mask).wrapping_add(1) & 0xffff;
            bars[i] = Bar {
                kind: BarKind::Io,
                base: u64::from(r & !3),
                size: if s & !3 == 0 || !size.is_power_of_two() {
                    0
                } else {
                    size
                },
                flags: r & 3,
            };
            i += 1;
            continue;
        }
        let is64 = (r >> 1) & 3 == 2 && i < 5;
        let (base, mask) = if is64 {
            (
                u64::from(r & !0xf) | u64::from(raw[i + 1]) << 32,
                u64::from(s & !0xf) | u64::from(sized[i + 1]) << 32,
            )
        } else {
            (
                u64::from(r & !0xf),
                u64::from(s & !0xf) | 0xffff_ffff_0000_0000,
            )
        };
        let size = if mask & 0xffff_ffff_ffff_fff0 == 0 || s & !0xf == 0 && !is64 {
            0
        } else {
            (!mask).wrapping_add(1)
        };
        bars[i] = Bar {
            kind: if size == 0 {
                BarKind::None
            } else if is64 {
                BarKind::Mem64
            } else {
                BarKind::Mem32
            },
            base,
            size: if size.is_power_of_two() { size } else { 0 },
            flags: r & 0xf,
        };
        i += if is64 { 2 } else { 1 };
    }
    bars
}

/// Where the interrupt capabilities are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Caps {
    /// Offset of the MSI capability.
    pub msi: Option<u16>,
    /// Offset of the MSI-X capability.
    pub msix: Option<u16>,
}

/// Walks the capability list through `read` (a configuration word at an offset). A list
/// that loops or points into the header ends the walk.
pub fn find_caps(read: impl Fn(u16) -> u32) -> Caps {
    let mut caps = Caps::default();
    if read(COMMAND) & (1 << 20) == 0 {
        return caps;
    }
    let mut at = (read(0x34) & 0xfc) as u16;
    for _ in 0..48 {
        if at < 0x40 {
            break;
        }
        let w = read(at);
        match w as u8 {
            CAP_MSI => caps.msi = Some(at),
            CAP_MSIX => caps.msix = Some(at),
            _ => {}
        }
        at = ((w >> 8) & 0xfc) as u16;
    }
    caps
}

/// The MSI-X table and pending-bit array, as (BAR index, offset, length) each.
pub fn msix_regions(read: impl Fn(u16) -> u32, cap: u16) -> [(usize, u64, u64); 2] {
    let entries = u64::from((read(cap) >> 16) & 0x7ff) + 1;
    let table = read(cap + 4);
    let pba = read(cap + 8);
    [
        ((table & 7) as usize, u64::from(table & !7), entries * 16),
        (
            (pba & 7) as usize,
            u64::from(pba & !7),
            entries.div_ceil(64) * 8,
        ),
    ]
}

/// What to do with a guest's configuration write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Write this value to the hardware.
    Hardware(u32),
    /// Absorbed by emulation (or ignored); nothing reaches the hardware.
    Absorbed,
    /// Refused: the guest is told `Denied`.
    Denied,
}

/// The emulated view of one assigned device's configuration space.
#[derive(Clone, Debug)]
pub struct ConfigView {
    bars: [Bar; 6],
    shadow: [u32; 6],
    caps: Caps,
}

impl ConfigView {
    /// A view over a device with these BARs (as programmed) and capabilities.
    pub fn new(bars: [Bar; 6], caps: Caps) -> ConfigView {
        let mut shadow = [0u32; 6];
        for (i, b) in bars.iter().enumerate() {
            match b.kind {
                BarKind::Mem32 => shadow[i] = b.base as u32,
                BarKind::Mem64 => {
                    shadow[i] = b.base as u32;
                    shadow[i + 1] = (b.base >> 32) as u32;
                }
                BarKind::Io | BarKind::None => {}
            }
        }
        ConfigView { bars, shadow, caps }
    }

    /// The BARs.
    pub fn bars(&self) -> &[Bar; 6] {
        &self.bars
    }

    /// The interrupt capabilities.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Which BAR register `offset` is, and whether it is the upper half of a 64-bit BAR.
    fn bar_at(&self, offset: u16) -> Option<(usize, Option<usize>)> {
        if !(BAR0..BAR0 + 24).contains(&offset) {
            return None;
        }
        let i = usize::from((offset - BAR0) / 4);
        let upper_of = (i > 0 && self.bars[i - 1].kind == BarKind::Mem64).then(|| i - 1);
        Some((i, upper_of))
    }

    /// What the guest reads at `offset` (4-byte aligned) when the hardware holds `hw`.
    pub fn read(&self, offset: u16, hw: u32) -> u32 {
        if let Some((i, upper_of)) = self.bar_at(offset) {
            if let Some(lo) = upper_of {
                let mask = (!(self.bars[lo].size - 1) >> 32) as u32;
                return self.shadow[i] & mask;
            }
            let b = self.bars[i];
            return match b.kind {
                BarKind::Mem32 | BarKind::Mem64 => {
                    (self.shadow[i] & !((b.size - 1) as u32) & !0xf) | b.flags
                }
                BarKind::Io | BarKind::None => 0,
            };
        }
        match offset {
            COMMAND => hw & !1,
            ROM => 0,
            _ => hw,
        }
    }

    /// What becomes of the guest writing `value` at `offset` when the hardware holds `hw`.
    pub fn write(&mut self, offset: u16, value: u32, hw: u32) -> Write {
        if let Some((i, _)) = self.bar_at(offset) {
            self.shadow[i] = value;
            return Write::Absorbed;
        }
        if self.in_msi(offset) {
            return Write::Denied;
        }
        match offset {
            COMMAND => {
                let cmd = (value & CMD_GUEST_BITS) | (hw & 0xffff & !CMD_GUEST_BITS & !1);
                Write::Hardware((value & 0xffff_0000) | cmd)
            }
            ROM | 0x00 | 0x08 | 0x2c | 0x34 => Write::Absorbed,
            _ => Write::Hardware(value),
        }
    }

    fn in_msi(&self, offset: u16) -> bool {
        let within =
            |cap: Option<u16>, len: u16| cap.is_some_and(|c| (c..c + len).contains(&offset));
        within(self.caps.msi, 24) || within(self.caps.msix, 4)
    }
}

/// Splits `[base, base+len)` into page-aligned pieces that avoid every hole (each rounded
/// out to whole 4 KiB pages).
pub fn without_holes(base: u64, len: u64, holes: &[(u64, u64)]) -> Vec<(u64, u64), 8> {
    let mut out: Vec<(u64, u64), 8> = Vec::new();
    let end = base.saturating_add(len);
    let mut at = base;
    let mut sorted = [(0u64, 0u64); 8];
    let mut n = 0;
    let pages = holes
        .iter()
        .filter(|(_, l)| *l > 0)
        .map(|(s, l)| (s & !0xfff, (s.saturating_add(*l) + 0xfff) & !0xfff));
    for (slot, hole) in sorted.iter_mut().zip(pages) {
        *slot = hole;
        n += 1;
    }
    let sorted = &mut sorted[..n];
    sorted.sort_unstable();
    for &mut (hs, he) in sorted {
        if hs > at && at < end {
            let _ = out.push((at, hs.min(end) - at));
        }
        at = at.max(he);
    }
    if at < end {
        let _ = out.push((at, end - at));
    }
    out
}

#[cfg(test)]
mod tests;
