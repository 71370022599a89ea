//! The MADT ("APIC"): where the local APICs are and which processors the firmware lists.
//!
//! Only what starting the other CPUs needs is kept: the local APIC's address and the usable
//! processors (Processor Local APIC and Processor Local x2APIC entries that are enabled or
//! online capable), in table order. Every entry's length is checked before it is read.

use super::{AcpiError, ReadArray, checked_table};
use crate::bootinfo::PhysRead;
use crate::collections::ArrayVec;

pub use bulkhead_abi::manifest::MAX_CPUS;

/// The table's signature.
const SIGNATURE: [u8; 4] = *b"APIC";
/// Entry types read; the others are skipped after their lengths are checked.
const LOCAL_APIC: u8 = 0;
const LOCAL_APIC_OVERRIDE: u8 = 5;
const LOCAL_X2APIC: u8 = 9;
/// Processor flags: the processor is enabled, or can be brought online.
const ENABLED: u32 = 1 << 0;
const ONLINE_CAPABLE: u32 = 1 << 1;

/// One usable processor of the MADT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuEntry {
    /// Its local APIC ID (an x2APIC ID for an x2APIC entry): where an IPI is sent.
    pub apic_id: u32,
    /// Its ACPI processor UID.
    pub uid: u32,
}

/// What the MADT says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Madt {
    /// Physical address of the local APIC registers: the header's, unless a Local APIC
    /// Address Override entry gives another.
    pub local_apic_addr: u64,
    /// The usable processors (enabled or online capable), in table order, each APIC ID once
    /// (a later entry with an ID already listed is dropped), at most [`MAX_CPUS`].
    pub cpus: ArrayVec<CpuEntry, MAX_CPUS>,
    /// Usable processors that did not fit in `cpus` (not checked for duplicates among
    /// themselves).
    pub skipped: u32,
}

impl Madt {
    /// The APIC IDs of the CPUs as the hypervisor numbers them: CPU 0 is the boot CPU
    /// (`boot_apic_id`, whether the table lists it or not), then the other processors in
    /// table order, at most [`MAX_CPUS`] in all.
    pub fn cpu_order(&self, boot_apic_id: u32) -> ArrayVec<u32, MAX_CPUS> {
        let mut order = ArrayVec::new();
        let _ = order.push(boot_apic_id);
        for c in self.cpus.iter().filter(|c| c.apic_id != boot_apic_id) {
            if order.push(c.apic_id).is_err() {
                break;
            }
        }
        order
    }

    /// The APIC IDs of the processors to start with simultaneous multithreading off: the
    /// first thread of each core, i.e. those whose ID has zero in its `smt_bits` low bits
    /// (CPUID leaf 0xB's SMT shift), as Qubes runs with `smt=off`: two qubes on the two
    /// threads of one core would share its L1 cache and buffers (L1TF, MDS). Returns them
    /// in table order and how many siblings were left out.
    pub fn without_smt_siblings(&self, smt_bits: u32) -> (ArrayVec<u32, MAX_CPUS>, usize) {
        let mask = if smt_bits >= 32 {
            u32::MAX
        } else {
            (1u32 << smt_bits) - 1
        };
        let mut kept = ArrayVec::new();
        let mut left = 0;
        for c in self.cpus.iter() {
            if c.apic_id & mask == 0 {
                let _ = kept.push(c.apic_id);
            } else {
                left += 1;
            }
        }
        (kept, left)
    }

    /// Adds a usable processor, unless its APIC ID is listed already.
    fn add(&mut self, cpu: CpuEntry) {
        if self.cpus.iter().any(|c| c.apic_id == cpu.apic_id) {
            return;
        }
        if self.cpus.push(cpu).is_err() {
            self.skipped = self.skipped.saturating_add(1);
        }
    }
}

/// Parses the MADT at `addr`: its signature, checksum and every entry's length are checked.
/// Processors whose APIC ID is the broadcast ID (0xFF for a local APIC, 0xFFFF_FFFF for an
/// x2APIC) cannot be started and are left out.
pub fn madt(mem: &impl PhysRead, addr: u64) -> Result<Madt, AcpiError> {
    let len = u64::from(checked_table(mem, addr)?);
    let sig = mem
        .read_array::<4>(addr)
        .ok_or(AcpiError::Unreadable(addr))?;
    if sig != SIGNATURE {
        return Err(AcpiError::Signature(sig));
    }
    if len < 44 {
        return Err(AcpiError::Length(SIGNATURE));
    }
    let head = mem.u32(addr + 36).ok_or(AcpiError::Unreadable(addr))?;
    let mut out = Madt {
        local_apic_addr: u64::from(head),
        ..Madt::default()
    };
    let end = addr.checked_add(len).ok_or(AcpiError::Unreadable(addr))?;
    let mut at = addr + 44;
    while at < end {
        let h = mem.read_array::<2>(at).ok_or(AcpiError::Unreadable(at))?;
        let elen = u64::from(h[1]);
        let next = at.checked_add(elen).filter(|n| elen >= 2 && *n <= end);
        let Some(next) = next else {
            return Err(AcpiError::Length(SIGNATURE));
        };
        let need = match h[0] {
            LOCAL_APIC => 8,
            LOCAL_APIC_OVERRIDE => 12,
            LOCAL_X2APIC => 16,
            _ => 0,
        };
        if elen < need {
            return Err(AcpiError::Length(SIGNATURE));
        }
        let mut e = [0u8; 16];
        if need > 0 && !mem.read(at, &mut e[..need as usize]) {
            return Err(AcpiError::Unreadable(at));
        }
        let u32_at = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
        match h[0] {
            LOCAL_APIC if usable(u32_at(4)) && e[3] != 0xff => out.add(CpuEntry {
                apic_id: u32::from(e[3]),
                uid: u32::from(e[2]),
            }),
            LOCAL_APIC_OVERRIDE => {
                out.local_apic_addr = u64::from(u32_at(4)) | u64::from(u32_at(8)) << 32;
            }
            LOCAL_X2APIC if usable(u32_at(8)) && u32_at(4) != u32::MAX => out.add(CpuEntry {
                apic_id: u32_at(4),
                uid: u32_at(12),
            }),
            _ => {}
        }
        at = next;
    }
    Ok(out)
}

/// Whether a processor with these flags can be started.
fn usable(flags: u32) -> bool {
    flags & (ENABLED | ONLINE_CAPABLE) != 0
}
