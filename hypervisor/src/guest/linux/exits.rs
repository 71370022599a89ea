//! Every exit a Linux qube can cause. Ports, MMIO, MSRs and CPUID are answered by the guest
//! platform; what a real machine would refuse gets the architectural exception (#GP for an
//! MSR it lacks, #UD for virtualisation instructions); what only a broken guest does (a
//! triple fault, string I/O, an undecodable MMIO instruction, an entry the CPU refuses, a
//! write to the peer's pool of a bulk area) stops that qube alone.

use super::LinuxCpu;
use super::board::{Board, Devices};
use crate::arch::x86::cpu;
use crate::exits::{Fault, Outcome, Stop};
use crate::hvlog;
use crate::memory::guest::MemView;
use crate::virt::{AnyVcpu, Event, Exit};
use bulkhead_platform::msr::{self, EmulatedMsr, MsrPolicy};
use bulkhead_platform::pci::PciEffect;
use bulkhead_platform::pm::{Pm, PmEffect};
use bulkhead_platform::rtc::Rtc;
use bulkhead_platform::uart::COM1_BASE;

/// #UD.
const UD: u8 = 6;
/// #GP.
const GP: u8 = 13;
/// The local APIC's base as IA32_APIC_BASE reports it: enabled (bit 11); vCPU 0 adds the
/// bootstrap-processor bit (8).
const APIC_BASE_MSR: u64 = bulkhead_platform::lapic::LAPIC_BASE | 1 << 11;
/// CR0.PG.
const CR0_PG: u64 = 1 << 31;
/// IA32_APIC_BASE's bootstrap-processor bit.
const APIC_BSP: u64 = 1 << 8;

/// Handles one exit of vCPU `g` (its state; `vcpu`, the virtual CPU) of a Linux qube whose
/// vCPUs share `board`; `mem` is the qube's memory.
pub fn handle(
    g: &mut LinuxCpu,
    vcpu: &mut AnyVcpu,
    board: &Board,
    mem: &MemView,
    exit: Exit,
) -> Outcome {
    let rip = vcpu.rip();
    let stop = |f| Outcome::Stop(Stop::Fault(f));
    match exit {
        Exit::Interrupt => Outcome::Preempted,
        Exit::InterruptWindow => {
            vcpu.set_interrupt_window(false);
            Outcome::Continue
        }
        Exit::Halt => {
            g.stats.hlt += 1;
            vcpu.skip_instruction(&exit);
            board.links[g.index()].drain_into(&mut g.lapic);
            if g.lapic.pending().is_some() {
                Outcome::Continue
            } else {
                Outcome::Wait(g.timer_deadline())
            }
        }
        Exit::Cpuid => {
            g.stats.cpuid += 1;
            let guest = bulkhead_platform::cpuid::GuestCpu {
                xcr0_allowed: vcpu.xstate().allowed(),
                xcr0: vcpu.xstate().xcr0(),
                cr4: vcpu.paging().cr4,
                platform: true,
                apic_id: g.index,
            };
            crate::guest::answer_cpuid(vcpu, &guest);
            vcpu.skip_instruction(&exit);
            Outcome::Continue
        }
        Exit::Io {
            port,
            input,
            size,
            string,
        } => {
            if string {
                return stop(Fault::Forbidden {
                    what: "string I/O (INS/OUTS)",
                    rip,
                });
            }
            let value = vcpu.gpr(0);
            let done = board.with_devices(|d| {
                count_port(g, d, port, input);
                let r = if input {
                    Some(port_read(d, port, size))
                } else {
                    None
                };
                let effect = match r {
                    Some(_) => PortEffect::None,
                    None => port_write(board, d, port, size, value as u32),
                };
                g.sync_lines(board, d);
                (r, effect)
            });
            // Another vCPU holds the devices: the instruction runs again.
            let Some((read, effect)) = done else {
                return Outcome::Preempted;
            };
            g.stats.io += 1;
            if let Some(v) = read {
                let new = match size {
                    1 => (value & !0xFF) | u64::from(v & 0xFF),
                    2 => (value & !0xFFFF) | u64::from(v & 0xFFFF),
                    _ => u64::from(v),
                };
                vcpu.set_gpr(0, new);
            }
            vcpu.skip_instruction(&exit);
            match effect {
                PortEffect::None => Outcome::Continue,
                PortEffect::PowerOff => {
                    hvlog!("qube {} powered off (ACPI S5)", board.name);
                    Outcome::Stop(Stop::Exited(0))
                }
                PortEffect::Doorbell(local) => match board.channels.get(usize::from(local)) {
                    Some(c) => Outcome::Signal {
                        qube: c.peer,
                        bit: c.peer_local,
                    },
                    None => Outcome::Continue,
                },
            }
        }
        Exit::Msr { index, write } => {
            g.stats.msr += 1;
            msr_access(g, vcpu, board, index, write, &exit)
        }
        // The peer's pool of a bulk area is mapped read-only: writing it is a fault, as for a
        // unikernel (not an MMIO write to ignore).
        Exit::NestedPageFault {
            gpa,
            write: true,
            fetch: false,
        } if board.in_peer_pool(gpa) => stop(Fault::ForeignMemory {
            gpa,
            write: true,
            fetch: false,
            read_only: true,
            rip,
        }),
        Exit::NestedPageFault { gpa, fetch, .. } => {
            super::mmio::access(g, vcpu, board, mem, gpa, fetch)
        }
        Exit::Wbinvd => {
            // Caches are coherent for everything a qube can reach; nothing to do.
            vcpu.skip_instruction(&exit);
            Outcome::Continue
        }
        Exit::Xsetbv => {
            // XCR0 within what CPUID leaf 0xD offers, at CPL 0; else #GP, as a CPU would.
            let index = vcpu.gpr(1) as u32;
            let value = (vcpu.gpr(2) << 32) | (vcpu.gpr(0) & 0xFFFF_FFFF);
            if vcpu.cpl() == 0 && vcpu.xstate().set_xcr0(index, value) {
                vcpu.skip_instruction(&exit);
            } else {
                vcpu.inject(Event::Exception {
                    vector: GP,
                    error: Some(0),
                });
            }
            Outcome::Continue
        }
        Exit::Forbidden(what @ "task switch") => stop(Fault::Forbidden { what, rip }),
        Exit::Hypercall | Exit::Forbidden(_) => {
            // What the guest was told it does not have: as on a CPU without it.
            vcpu.inject(Event::Exception {
                vector: UD,
                error: None,
            });
            Outcome::Continue
        }
        Exit::TripleFault => stop(Fault::TripleFault { rip }),
        Exit::InvalidState => stop(Fault::InvalidState { rip }),
        Exit::Unknown(code) => stop(Fault::UnknownExit { code, rip }),
    }
}

/// Counts a port access by the device it reaches.
fn count_port(g: &mut LinuxCpu, d: &Devices, port: u16, input: bool) {
    let claimed_by_pci = d.pci.claims(port);
    let p = &mut g.stats.ports;
    let counter = match port {
        COM1_BASE if !input && !d.uart.divisor_latch() => &mut p.uart_tx,
        p2 if (COM1_BASE..COM1_BASE + 8).contains(&p2) => &mut p.uart_other,
        0xCF8..=0xCFF => &mut p.pci_config,
        _ if claimed_by_pci => &mut p.channel,
        p2 if Pm::claims(p2) => &mut p.pm,
        p2 if Rtc::claims(p2) => &mut p.rtc,
        0x40..=0x43 | 0x61 => &mut p.pit,
        _ => &mut p.unclaimed,
    };
    *counter += 1;
}

/// What a port write asks of the hypervisor.
enum PortEffect {
    None,
    PowerOff,
    Doorbell(u8),
}

fn port_read(g: &mut Devices, port: u16, size: u8) -> u32 {
    match port {
        p if (COM1_BASE..COM1_BASE + 8).contains(&p) => {
            u32::from(g.uart.read((p - COM1_BASE) as u8))
        }
        p if Pm::claims(p) => g.pm.read(p, size),
        p if Rtc::claims(p) => u32::from(g.rtc.read(p, crate::time::wall_clock_secs())),
        p if g.pci.claims(p) => g.pci.io_read(p, size),
        // The PIT and port 0x61 (its gate): reading 0 makes Linux's quick PIT calibration
        // give up at once instead of polling an all-ones counter ~100 000 times; the TSC
        // frequency comes from `tsc_early_khz=` and the timer is the local APIC's.
        0x40..=0x43 | 0x61 => 0,
        _ => {
            if port != 0x80 && g.may_log_unclaimed() {
                hvlog!("linux: read of unclaimed port {port:#x} (all-ones)");
            }
            u32::MAX
        }
    }
}

fn port_write(board: &Board, g: &mut Devices, port: u16, size: u8, value: u32) -> PortEffect {
    match port {
        p if (COM1_BASE..COM1_BASE + 8).contains(&p) => {
            if let Some(b) = g.uart.write((p - COM1_BASE) as u8, value as u8) {
                board.console_write(g, &[b]);
            }
        }
        p if Pm::claims(p) => {
            if let PmEffect::PowerOff = g.pm.write(p, size, value) {
                return PortEffect::PowerOff;
            }
        }
        p if Rtc::claims(p) => g.rtc.write(p, value as u8),
        p if g.pci.claims(p) => {
            if let PciEffect::Doorbell(local) = g.pci.io_write(p, size, value) {
                return PortEffect::Doorbell(local);
            }
        }
        _ => {
            // Port 0x80 is the classic I/O delay; others are logged a few times.
            if port != 0x80 && g.may_log_unclaimed() {
                hvlog!("linux: write of {value:#x} to unclaimed port {port:#x} (ignored)");
            }
        }
    }
    PortEffect::None
}

fn msr_access(
    g: &mut LinuxCpu,
    vcpu: &mut AnyVcpu,
    board: &Board,
    index: u32,
    write: bool,
    exit: &Exit,
) -> Outcome {
    let value = (vcpu.gpr(2) << 32) | (vcpu.gpr(0) & 0xFFFF_FFFF);
    let now = cpu::rdtsc();
    let apic_base = APIC_BASE_MSR | if g.index == 0 { APIC_BSP } else { 0 };
    let read: Option<u64> = match msr::policy(index) {
        MsrPolicy::Emulated(e) => match (e, write) {
            (EmulatedMsr::ApicBase, false) => Some(apic_base),
            (EmulatedMsr::ApicBase, true) => {
                if value != apic_base {
                    hvlog!(
                        "qube {}: IA32_APIC_BASE write {value:#x} ignored",
                        board.name
                    );
                }
                None
            }
            (EmulatedMsr::Tsc, false) => Some(now),
            (EmulatedMsr::TscDeadline, false) => Some(g.lapic.tsc_deadline()),
            (EmulatedMsr::TscDeadline, true) => {
                g.lapic.set_tsc_deadline(value, now);
                None
            }
            (EmulatedMsr::Pat, false) => Some(g.pat),
            (EmulatedMsr::Pat, true) => {
                if !msr::pat_is_valid(value) {
                    return inject_gp(vcpu);
                }
                g.pat = value;
                vcpu.set_pat(value);
                None
            }
            (EmulatedMsr::Efer, false) => Some(vcpu.paging().efer),
            (EmulatedMsr::Efer, true) => {
                let p = vcpu.paging();
                if !msr::efer_write_ok(p.efer, value, p.cr0 & CR0_PG != 0) {
                    return inject_gp(vcpu);
                }
                vcpu.set_efer(value);
                None
            }
            // Writing the TSC is ignored: it is the host's, shared by every qube.
            (EmulatedMsr::Tsc, true) => None,
        },
        MsrPolicy::Constant(v) => (!write).then_some(v),
        MsrPolicy::PassThrough | MsrPolicy::Fault => return inject_gp(vcpu),
    };
    if let Some(v) = read {
        vcpu.set_gpr(0, v & 0xFFFF_FFFF);
        vcpu.set_gpr(2, v >> 32);
    }
    vcpu.skip_instruction(exit);
    Outcome::Continue
}

/// #GP(0) into the guest for an MSR access a real CPU would refuse; the instruction is not
/// skipped (the guest's exception handler decides).
fn inject_gp(vcpu: &mut AnyVcpu) -> Outcome {
    vcpu.inject(Event::Exception {
        vector: GP,
        error: Some(0),
    });
    Outcome::Continue
}
