//! Emulated MMIO of a Linux qube: the local APIC page at 0xfee00000 and the I/O APIC page at
//! 0xfec00000 are not mapped, so accesses exit with their guest-physical address. The
//! instruction is read at the guest's RIP through its own page tables, decoded (the MOV
//! forms of `bulkhead_platform::decode`), performed on the device, and skipped.
//! Addresses no device claims read as all-ones and ignore writes, as on a PC bus.

use super::Linux;
use crate::arch::x86::cpu;
use crate::exits::{Fault, Outcome, Stop};
use crate::hvlog;
use crate::memory::guest::GuestMemory;
use crate::virt::AnyVcpu;
use bulkhead_platform::decode::{self, MAX_INSTRUCTION_LEN};
use bulkhead_platform::ioapic::IOAPIC_BASE;
use bulkhead_platform::lapic::{ApicEffect, LAPIC_BASE};
use bulkhead_platform::walk;

const PAGE: u64 = 4096;

/// Handles an access to guest-physical `gpa` outside the qube's memory.
pub fn access(
    g: &mut Linux,
    vcpu: &mut AnyVcpu,
    mem: &mut GuestMemory,
    gpa: u64,
    fetch: bool,
) -> Outcome {
    let rip = vcpu.rip();
    if fetch {
        return stop(Fault::ForeignMemory {
            gpa,
            write: false,
            fetch: true,
            read_only: false,
            rip,
        });
    }
    g.stats.mmio += 1;
    let mut bytes = [0u8; MAX_INSTRUCTION_LEN];
    let Some(n) = fetch_instruction(vcpu, mem, rip, &mut bytes) else {
        return stop(Fault::Forbidden {
            what: "an MMIO access whose instruction cannot be read",
            rip,
        });
    };
    let insn = match decode::decode(&bytes[..n]) {
        Ok(i) => i,
        Err(_) => {
            return stop(Fault::Forbidden {
                what: "an MMIO access by an instruction the platform does not emulate",
                rip,
            });
        }
    };
    let size = u32::from(insn.size);
    if let Some(value) = insn.store_value(|r| vcpu.gpr(r)) {
        write(g, gpa, size, value);
    } else {
        let loaded = read(g, gpa, size);
        if let Some((reg, v)) = insn.load_result(|r| vcpu.gpr(r), loaded) {
            vcpu.set_gpr(reg, v);
        }
    }
    vcpu.set_rip(rip.wrapping_add(u64::from(insn.len)));
    Outcome::Continue
}

fn stop(f: Fault) -> Outcome {
    Outcome::Stop(Stop::Fault(f))
}

/// Reads the instruction at `rip` (up to 15 bytes, across a page boundary if needed).
fn fetch_instruction(
    vcpu: &AnyVcpu,
    mem: &mut GuestMemory,
    rip: u64,
    out: &mut [u8; MAX_INSTRUCTION_LEN],
) -> Option<usize> {
    let p = vcpu.paging();
    let mut got = 0usize;
    while got < out.len() {
        let va = rip.wrapping_add(got as u64);
        let read_u64 = |gpa: u64| {
            let mut b = [0u8; 8];
            mem.read(gpa, &mut b).ok().map(|_| u64::from_le_bytes(b))
        };
        let Ok(pa) = walk::translate(va, p.cr0, p.cr3, p.cr4, p.efer, read_u64) else {
            break;
        };
        let chunk = ((PAGE - (pa % PAGE)) as usize).min(out.len() - got);
        if mem.read(pa, &mut out[got..got + chunk]).is_err() {
            break;
        }
        got += chunk;
    }
    (got > 0).then_some(got)
}

fn read(g: &mut Linux, gpa: u64, size: u32) -> u64 {
    let now = cpu::rdtsc();
    let value = match page_of(gpa) {
        Some(Device::Lapic(off)) => u64::from(g.lapic.read(off, now)),
        Some(Device::Ioapic(off)) => u64::from(g.ioapic.read(off)),
        None => {
            if g.may_log_unclaimed() {
                hvlog!("linux: read of unclaimed address {gpa:#x} (all-ones)");
            }
            u64::MAX
        }
    };
    if size >= 8 {
        value
    } else {
        value & ((1u64 << (size * 8)) - 1)
    }
}

fn write(g: &mut Linux, gpa: u64, _size: u32, value: u64) {
    let now = cpu::rdtsc();
    match page_of(gpa) {
        Some(Device::Lapic(off)) => {
            if let ApicEffect::LevelEoi(vector) = g.lapic.write(off, value as u32, now) {
                let d = g.ioapic.eoi(vector);
                g.deliver(d);
            }
        }
        Some(Device::Ioapic(off)) => {
            let d = g.ioapic.write(off, value as u32);
            g.deliver(d);
        }
        None => {
            if g.may_log_unclaimed() {
                hvlog!("linux: write of {value:#x} to unclaimed address {gpa:#x} (ignored)");
            }
        }
    }
}

enum Device {
    Lapic(u32),
    Ioapic(u32),
}

fn page_of(gpa: u64) -> Option<Device> {
    let off = (gpa % PAGE) as u32;
    match gpa & !(PAGE - 1) {
        LAPIC_BASE => Some(Device::Lapic(off)),
        IOAPIC_BASE => Some(Device::Ioapic(off)),
        _ => None,
    }
}
