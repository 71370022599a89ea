//! The x86-64 instructions Linux uses to touch MMIO registers, decoded from their bytes.
//!
//! A nested-paging fault on an emulated MMIO page (the local APIC at 0xfee00000, the I/O
//! APIC at 0xfec00000) tells the hypervisor the guest-physical address but not what the
//! instruction wanted to do with it. The hypervisor fetches up to [`MAX_INSTRUCTION_LEN`]
//! bytes at the guest's RIP and asks [`decode`] for the access width, the direction, the
//! register or immediate involved and the instruction length (to advance RIP).
//!
//! Only the forms `readb/w/l/q`, `writeb/w/l/q` and the APIC accessors compile to are
//! accepted, in 64-bit mode:
//!
//! | bytes | instruction |
//! |---|---|
//! | `88 /r`, `89 /r` | `mov r/m, r` (store a register) |
//! | `8A /r`, `8B /r` | `mov r, r/m` (load) |
//! | `C6 /0 ib`, `C7 /0 iw/id` | `mov r/m, imm` (with REX.W, imm32 is sign-extended to 64) |
//! | `0F B6`, `0F B7` | `movzx r, r/m8`, `movzx r, r/m16` |
//! | `0F BE`, `0F BF` | `movsx r, r/m8`, `movsx r, r/m16` |
//!
//! Prefixes: `66` (16-bit operand), `67` (32-bit address: it changes neither the length of
//! the ModRM encoding nor the access, since the address comes from the exit), the segment
//! overrides `26 2E 36 3E 64 65` (ignored: the exit already gives the final address) and a
//! REX prefix `40`–`4F`. As on hardware, a REX prefix followed by another prefix is ignored.
//! `F0` (LOCK), `F2` and `F3` are refused. ModRM, SIB and displacement bytes are decoded only
//! for their length; a register operand (mod = 3) is refused as it is no memory access.

#[cfg(test)]
mod tests;
mod values;

use core::fmt;

/// The longest x86 instruction: decoding never reads beyond this many bytes.
pub const MAX_INSTRUCTION_LEN: usize = 15;

/// A general-purpose register in x86 encoding order: 0 rax, 1 rcx, 2 rdx, 3 rbx, 4 rsp,
/// 5 rbp, 6 rsi, 7 rdi, 8..15 r8..r15.
pub type Gpr = u8;

/// What an MMIO instruction does with the memory operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The instruction reads `size` bytes into a register.
    Load {
        /// The destination register.
        dst: RegOperand,
        /// How the loaded bytes widen into the destination (`movzx`/`movsx`).
        extend: Extend,
    },
    /// The instruction writes `size` bytes.
    Store {
        /// Where the written value comes from.
        src: StoreSource,
    },
}

/// The register side of an MMIO instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegOperand {
    /// The low bytes of a general-purpose register: `size` bytes for a plain `mov`, the
    /// destination width (`dst_size`) for `movzx`/`movsx`.
    Full(Gpr),
    /// AH, CH, DH or BH: bits 8..16 of rax, rcx, rdx or rbx (the `Gpr` is 0..=3). Only
    /// encodable in byte instructions without a REX prefix.
    HighByte(Gpr),
}

/// How a loaded value widens into its destination register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extend {
    /// A plain `mov`: the destination is as wide as the access.
    None,
    /// `movzx`: zero-extended to `dst_size` bytes (2, 4 or 8).
    Zero {
        /// The destination width in bytes.
        dst_size: u8,
    },
    /// `movsx`: sign-extended to `dst_size` bytes (2, 4 or 8).
    Sign {
        /// The destination width in bytes.
        dst_size: u8,
    },
}

/// Where a store's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreSource {
    /// A register (its low `size` bytes, or AH..BH).
    Reg(RegOperand),
    /// An immediate, already sign-extended and masked to the access `size`.
    Imm(u64),
}

/// A decoded MMIO instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioInstruction {
    /// The length of the whole instruction, prefixes included: add it to RIP.
    pub len: u8,
    /// The width of the memory access in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// The direction and the register or immediate involved.
    pub access: Access,
}

/// Why bytes were not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes ended in the middle of the instruction.
    Truncated,
    /// The instruction would be longer than [`MAX_INSTRUCTION_LEN`] bytes (too many
    /// prefixes): the processor raises #GP for it.
    TooLong,
    /// A prefix that an MMIO access must not carry (`F0` LOCK, `F2`, `F3`).
    Prefix(u8),
    /// An opcode outside the supported MOV forms. Two-byte opcodes read `0x0Fxx`; for
    /// `C6`/`C7` with a ModRM reg field other than 0 it is the one-byte opcode.
    Unsupported {
        /// The opcode.
        opcode: u16,
    },
    /// The ModRM byte names a register (mod = 3), not memory: this cannot be the
    /// instruction that touched MMIO.
    RegisterOperand,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("instruction bytes end too early"),
            DecodeError::TooLong => f.write_str("instruction longer than 15 bytes"),
            DecodeError::Prefix(p) => write!(f, "prefix {p:#04x} refused on MMIO"),
            DecodeError::Unsupported { opcode } => {
                write!(f, "opcode {opcode:#x} is not an MMIO move")
            }
            DecodeError::RegisterOperand => f.write_str("ModRM names a register, not memory"),
        }
    }
}

/// A byte cursor that never reads past the slice or past [`MAX_INSTRUCTION_LEN`].
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSTRUCTION_LEN {
            return Err(DecodeError::TooLong);
        }
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// Skips `n` bytes (a displacement) that must be present.
    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        for _ in 0..n {
            self.byte()?;
        }
        Ok(())
    }

    /// A little-endian immediate of `n` (1, 2 or 4) bytes.
    fn imm(&mut self, n: usize) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..n {
            v |= u64::from(self.byte()?) << (8 * i);
        }
        Ok(v)
    }
}

/// The REX prefix bits that matter here.
#[derive(Clone, Copy, Default)]
struct Rex {
    present: bool,
    w: bool,
    r: bool,
}

/// Decodes the instruction at the start of `bytes` (up to [`MAX_INSTRUCTION_LEN`] bytes are
/// looked at; more are ignored).
pub fn decode(bytes: &[u8]) -> Result<MmioInstruction, DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    let mut opsize16 = false;
    let mut rex = Rex::default();
    let opcode = loop {
        let b = c.byte()?;
        match b {
            0x66 => opsize16 = true,
            // Address size: the exit gives the address; the ModRM length is unchanged.
            0x67 => {}
            0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 => {}
            0xF0 | 0xF2 | 0xF3 => return Err(DecodeError::Prefix(b)),
            0x40..=0x4F => {
                rex = Rex {
                    present: true,
                    w: b & 8 != 0,
                    r: b & 4 != 0,
                };
                // REX counts only immediately before the opcode.
                continue;
            }
            _ => break b,
        }
        rex = Rex::default();
    };
    let opcode = if opcode == 0x0F {
        0x0F00 | u16::from(c.byte()?)
    } else {
        u16::from(opcode)
    };
    // The operand size of the non-byte forms.
    let wide = if rex.w {
        8
    } else if opsize16 {
        2
    } else {
        4
    };
    let (size, kind) = match opcode {
        0x88 => (1, Kind::StoreReg),
        0x89 => (wide, Kind::StoreReg),
        0x8A => (1, Kind::Load(Extend::None)),
        0x8B => (wide, Kind::Load(Extend::None)),
        0xC6 => (1, Kind::StoreImm),
        0xC7 => (wide, Kind::StoreImm),
        0x0FB6 => (1, Kind::Load(Extend::Zero { dst_size: wide })),
        0x0FB7 => (2, Kind::Load(Extend::Zero { dst_size: wide })),
        0x0FBE => (1, Kind::Load(Extend::Sign { dst_size: wide })),
        0x0FBF => (2, Kind::Load(Extend::Sign { dst_size: wide })),
        _ => return Err(DecodeError::Unsupported { opcode }),
    };

    let modrm = c.byte()?;
    let md = modrm >> 6;
    let reg = ((modrm >> 3) & 7) | if rex.r { 8 } else { 0 };
    let rm = modrm & 7;
    if md == 3 {
        return Err(DecodeError::RegisterOperand);
    }
    if kind == Kind::StoreImm && reg & 7 != 0 {
        return Err(DecodeError::Unsupported { opcode });
    }
    let disp = match md {
        0 if rm == 5 => 4, // RIP-relative
        0 => 0,
        1 => 1,
        _ => 4,
    };
    if rm == 4 {
        let sib = c.byte()?;
        if md == 0 && sib & 7 == 5 {
            c.skip(4)?; // no base, disp32
        }
    }
    c.skip(disp)?;

    // The register operand of a byte-sized register access.
    let reg_operand = |byte_reg: bool| {
        if byte_reg && !rex.present && (4..8).contains(&reg) {
            RegOperand::HighByte(reg - 4)
        } else {
            RegOperand::Full(reg)
        }
    };
    let access = match kind {
        Kind::StoreReg => Access::Store {
            src: StoreSource::Reg(reg_operand(size == 1)),
        },
        Kind::Load(extend) => Access::Load {
            // movzx/movsx write a 16/32/64-bit register: never AH..BH.
            dst: reg_operand(size == 1 && extend == Extend::None),
            extend,
        },
        Kind::StoreImm => {
            let imm = match size {
                1 => c.imm(1)?,
                2 => c.imm(2)?,
                4 => c.imm(4)?,
                _ => c.imm(4)? as u32 as i32 as i64 as u64,
            };
            Access::Store {
                src: StoreSource::Imm(imm),
            }
        }
    };
    Ok(MmioInstruction {
        len: c.pos as u8,
        size,
        access,
    })
}

/// The decoder's classification of the supported opcodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    StoreReg,
    StoreImm,
    Load(Extend),
}
