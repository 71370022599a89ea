//! What a decoded instruction writes to memory or to its register.

use super::{Access, Extend, Gpr, MmioInstruction, RegOperand, StoreSource};

/// The mask of the low `size` bytes.
pub(super) fn mask(size: u8) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
fn sign_extend(v: u64, size: u8) -> u64 {
    match size {
        1 => v as u8 as i8 as i64 as u64,
        2 => v as u16 as i16 as i64 as u64,
        4 => v as u32 as i32 as i64 as u64,
        _ => v,
    }
}

impl MmioInstruction {
    /// The value a store writes (masked to `size`), reading registers through `gpr`.
    /// `None` for loads.
    pub fn store_value(&self, gpr: impl Fn(Gpr) -> u64) -> Option<u64> {
        let Access::Store { src } = self.access else {
            return None;
        };
        let v = match src {
            StoreSource::Reg(RegOperand::Full(r)) => gpr(r),
            StoreSource::Reg(RegOperand::HighByte(r)) => gpr(r) >> 8,
            StoreSource::Imm(v) => v,
        };
        Some(v & mask(self.size))
    }

    /// For a load: the register that changes and its new value, given the registers' old
    /// values through `old` and the `loaded` bytes (`size` bytes, zero-extended; higher bits
    /// are ignored). `None` for stores.
    ///
    /// As on hardware, a 32-bit destination zero-extends into bits 32..64, 8- and 16-bit
    /// destinations keep the register's other bits, and AH..BH replace bits 8..16.
    pub fn load_result(&self, old: impl Fn(Gpr) -> u64, loaded: u64) -> Option<(Gpr, u64)> {
        let Access::Load { dst, extend } = self.access else {
            return None;
        };
        let loaded = loaded & mask(self.size);
        let (value, dst_size) = match extend {
            Extend::None => (loaded, self.size),
            Extend::Zero { dst_size } => (loaded, dst_size),
            Extend::Sign { dst_size } => (sign_extend(loaded, self.size), dst_size),
        };
        Some(match dst {
            RegOperand::HighByte(r) => (r, (old(r) & !0xFF00) | ((value & 0xFF) << 8)),
            RegOperand::Full(r) => {
                let new = match dst_size {
                    1 | 2 => {
                        let m = mask(dst_size);
                        (old(r) & !m) | (value & m)
                    }
                    4 => value & 0xFFFF_FFFF,
                    _ => value,
                };
                (r, new)
            }
        })
    }
}
