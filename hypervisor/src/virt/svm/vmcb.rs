//! The VMCB (AMD APM vol. 2, appendix B): a 4 KiB page, control area at 0, state save area at
//! 0x400. Accessed by offset through typed getters and setters, so no layout struct can
//! drift from the manual. The offset tables list what the backend uses.

/// Control-area offsets.
pub mod ctl {
    pub const INTERCEPT_CR: usize = 0x000;
    pub const INTERCEPT_DR: usize = 0x004;
    pub const INTERCEPT_MISC1: usize = 0x00C;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE: usize = 0x040;
    pub const MSRPM_BASE: usize = 0x048;
    pub const ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05C;
    pub const VINTR: usize = 0x060;
    pub const INTERRUPT_SHADOW: usize = 0x068;
    pub const EXIT_CODE: usize = 0x070;
    pub const EXIT_INFO1: usize = 0x078;
    pub const EXIT_INFO2: usize = 0x080;
    pub const EXIT_INT_INFO: usize = 0x088;
    pub const NP_ENABLE: usize = 0x090;
    pub const EVENT_INJ: usize = 0x0A8;
    pub const N_CR3: usize = 0x0B0;
    pub const CLEAN_BITS: usize = 0x0C0;
    pub const NEXT_RIP: usize = 0x0C8;
}

/// State-save-area offsets.
pub mod save {
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4CB;
    pub const EFER: usize = 0x4D0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5D8;
    pub const RAX: usize = 0x5F8;
    pub const G_PAT: usize = 0x668;
}

/// CR intercept bits (reads 0-15, writes 16-31).
pub mod cr {
    pub const CR4_WRITE: u32 = 1 << 20;
}

/// Exit codes. Those of the instruction and event intercepts are regular: the bit of code
/// `0x60 + n` is bit `n` of the MISC1 intercept word, that of `0x80 + n` bit `n` of MISC2.
pub mod exit {
    pub const CR4_WRITE: u64 = 0x14;
    /// MOV from DR0 .. MOV to DR15 (0x20 + n reads, 0x30 + n writes).
    pub const DR_FIRST: u64 = 0x20;
    pub const DR_LAST: u64 = 0x3F;
    pub const RDPMC: u64 = 0x6F;
    pub const INVLPGA: u64 = 0x7A;
    pub const RDPRU: u64 = 0x8E;
    pub const INTR: u64 = 0x60;
    pub const VINTR: u64 = 0x64;
    pub const WBINVD: u64 = 0x89;
    pub const NMI: u64 = 0x61;
    pub const SMI: u64 = 0x62;
    pub const INIT: u64 = 0x63;
    pub const CPUID: u64 = 0x72;
    pub const INVD: u64 = 0x76;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7B;
    pub const MSR: u64 = 0x7C;
    pub const TASK_SWITCH: u64 = 0x7D;
    pub const SHUTDOWN: u64 = 0x7F;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const ICEBP: u64 = 0x88;
    pub const MONITOR: u64 = 0x8A;
    pub const MWAIT: u64 = 0x8B;
    pub const XSETBV: u64 = 0x8D;
    pub const NPF: u64 = 0x400;
    /// VMEXIT_INVALID (-1), as a 64-bit code ...
    pub const INVALID: u64 = u64::MAX;
    /// ... or as CPUs that write only the low 32 bits leave it.
    pub const INVALID_32: u64 = 0xFFFF_FFFF;
}

/// One VMCB page.
#[repr(C, align(4096))]
pub struct Vmcb([u8; 4096]);

impl Vmcb {
    /// Reads a u64 at `off`.
    pub fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.0[off..off + 8].try_into().unwrap_or([0; 8]))
    }
    /// Writes a u64 at `off`.
    pub fn set_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    /// Writes a u32 at `off`.
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// Writes a byte at `off`.
    pub fn set_u8(&mut self, off: usize, v: u8) {
        self.0[off] = v;
    }
    /// Writes a segment register (selector, packed attributes, limit, base).
    pub fn set_segment(&mut self, off: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
        self.0[off..off + 2].copy_from_slice(&selector.to_le_bytes());
        self.0[off + 2..off + 4].copy_from_slice(&attrib.to_le_bytes());
        self.set_u32(off + 4, limit);
        self.set_u64(off + 8, base);
    }
    /// Zeroes the whole block.
    pub fn clear(&mut self) {
        self.0.fill(0);
    }
}
