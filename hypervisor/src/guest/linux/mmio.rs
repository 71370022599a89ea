//! Emulated MMIO of a Linux qube: the local APIC page at 0xfee00000 and the I/O APIC page at
//! 0xfec00000 are not mapped, so accesses exit with their guest-physical address. The
//! instruction is read at the guest's RIP through its own page tables, decoded (the MOV
//! forms of `bulkhead_platform::decode`), performed on the device, and skipped.
//! Addresses no device claims read as all-ones and ignore writes, as on a PC bus.

use super::LinuxCpu;
use super::board::Board;
use crate::arch::x86::cpu;
use crate::exits::{Fault, Outcome, Stop};
use crate::hvlog;
use crate::memory::guest::MemView;
use crate::virt::AnyVcpu;
use bulkhead_platform::decode::{self, MAX_INSTRUCTION_LEN};
use bulkhead_platform::ioapic::IOAPIC_BASE;
use bulkhead_platform::lapic::{ApicEffect, LAPIC_BASE};
use bulkhead_platform::walk;

const PAGE: u64 = 4096;
/// The local APIC's EOI register.
const EOI: u32 = 0xB0;

/// Handles an access by vCPU `g` to guest-physical `gpa` outside the qube's memory `mem`.
/// When another vCPU holds the I/O APIC, the instruction is left to run again.
pub fn access(
    g: &mut LinuxCpu,
    vcpu: &mut AnyVcpu,
    board: &Board,
    mem: &MemView,
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
        if write(g, board, gpa, value).is_none() {
            return Outcome::Preempted;
        }
    } else {
        let Some(loaded) = read(g, board, gpa, size) else {
            return Outcome::Preempted;
        };
        if let Some((reg, v)) = insn.load_result(|r| vcpu.gpr(r), loaded) {
            vcpu.set_gpr(reg, v);
        }
    }
    g.stats.mmio += 1;
    vcpu.set_rip(rip.wrapping_add(u64::from(insn.len)));
    Outcome::Continue
}

fn stop(f: Fault) -> Outcome {
    Outcome::Stop(Stop::Fault(f))
}

/// Reads the instruction at `rip` (up to 15 bytes, across a page boundary if needed).
fn fetch_instruction(
    vcpu: &AnyVcpu,
    mem: &MemView,
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

/// The register at `gpa`, or `None` when another vCPU holds the devices.
fn read(g: &mut LinuxCpu, board: &Board, gpa: u64, size: u32) -> Option<u64> {
    let now = cpu::rdtsc();
    let value = match page_of(gpa) {
        Some(Device::Lapic(off)) => u64::from(g.lapic.read(off, now)),
        Some(Device::Ioapic(off)) => u64::from(board.with_devices(|d| d.ioapic.read(off))?),
        None => {
            if board.with_devices(|d| d.may_log_unclaimed()) == Some(true) {
                hvlog!("linux: read of unclaimed address {gpa:#x} (all-ones)");
            }
            u64::MAX
        }
    };
    Some(if size >= 8 {
        value
    } else {
        value & ((1u64 << (size * 8)) - 1)
    })
}

/// Writes the register at `gpa`; `None` when another vCPU holds the devices (nothing was
/// written).
fn write(g: &mut LinuxCpu, board: &Board, gpa: u64, value: u64) -> Option<()> {
    let now = cpu::rdtsc();
    match page_of(gpa) {
        // An EOI may end a level-triggered interrupt, which the I/O APIC must hear of: it
        // is written with the devices held, or not at all.
        Some(Device::Lapic(off @ EOI)) => board.with_devices(|d| {
            if let ApicEffect::LevelEoi(vector) = g.lapic.write(off, value as u32, now) {
                let m = d.ioapic.eoi(vector);
                g.deliver(board, m);
            }
        })?,
        Some(Device::Lapic(off)) => match g.lapic.write(off, value as u32, now) {
            ApicEffect::Ipi(ipi) => g.send_ipi(board, ipi),
            ApicEffect::None | ApicEffect::LevelEoi(_) => {}
        },
        Some(Device::Ioapic(off)) => {
            let d = board.with_devices(|d| d.ioapic.write(off, value as u32))?;
            g.deliver(board, d);
        }
        None => {
            if board.with_devices(|d| d.may_log_unclaimed()) == Some(true) {
                hvlog!("linux: write of {value:#x} to unclaimed address {gpa:#x} (ignored)");
            }
        }
    }
    if let Some(Device::Lapic(_)) = page_of(gpa) {
        board.links[g.index()].publish_address(&g.lapic);
    }
    Some(())
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
