//! Every exit a Linux qube can cause. Ports, MMIO, MSRs and CPUID are answered by the guest
//! platform; what a real machine would refuse gets the architectural exception (#GP for an
//! MSR it lacks, #UD for virtualisation instructions); what only a broken guest does (a
//! triple fault, string I/O, an undecodable MMIO instruction, an entry the CPU refuses, a
//! write to the peer's pool of a bulk area) stops that qube alone.

use super::Linux;
use crate::arch::x86::cpu;
use crate::exits::{Fault, Outcome, Stop};
use crate::guest::Machine;
use crate::hvlog;
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
/// The local APIC's base as IA32_APIC_BASE reports it: enabled, bootstrap processor.
const APIC_BASE_MSR: u64 = bulkhead_platform::lapic::LAPIC_BASE | 1 << 11 | 1 << 8;

/// Handles one exit of the Linux guest `g` running on `m`.
pub fn handle(g: &mut Linux, m: &mut Machine, exit: Exit) -> Outcome {
    let rip = m.vcpu.rip();
    let stop = |f| Outcome::Stop(Stop::Fault(f));
    match exit {
        Exit::Interrupt => Outcome::Preempted,
        Exit::InterruptWindow => {
            m.vcpu.set_interrupt_window(false);
            Outcome::Continue
        }
        Exit::Halt => {
            g.stats.hlt += 1;
            m.vcpu.skip_instruction(&exit);
            if g.lapic.pending().is_some() {
                Outcome::Continue
            } else {
                Outcome::Wait(g.timer_deadline())
            }
        }
        Exit::Cpuid => {
            g.stats.cpuid += 1;
            let guest = bulkhead_platform::cpuid::GuestCpu {
                xcr0_allowed: m.vcpu.xstate().allowed(),
                xcr0: m.vcpu.xstate().xcr0(),
                cr4: m.vcpu.paging().cr4,
                platform: true,
            };
            crate::guest::answer_cpuid(&mut m.vcpu, &guest);
            m.vcpu.skip_instruction(&exit);
            Outcome::Continue
        }
        Exit::Io {
            port,
            input,
            size,
            string,
        } => {
            g.stats.io += 1;
            count_port(g, port, input);
            if string {
                return stop(Fault::Forbidden {
                    what: "string I/O (INS/OUTS)",
                    rip,
                });
            }
            let effect = if input {
                let v = port_read(g, port, size);
                let old = m.vcpu.gpr(0);
                let new = match size {
                    1 => (old & !0xFF) | u64::from(v & 0xFF),
                    2 => (old & !0xFFFF) | u64::from(v & 0xFFFF),
                    _ => u64::from(v),
                };
                m.vcpu.set_gpr(0, new);
                PortEffect::None
            } else {
                port_write(g, port, size, m.vcpu.gpr(0) as u32)
            };
            g.sync_lines();
            m.vcpu.skip_instruction(&exit);
            g.flush_console(m);
            match effect {
                PortEffect::None => Outcome::Continue,
                PortEffect::PowerOff => {
                    hvlog!("qube {} powered off (ACPI S5)", m.spec.name);
                    Outcome::Stop(Stop::Exited(0))
                }
                PortEffect::Doorbell(local) => match m.channels.get(usize::from(local)) {
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
            msr_access(g, m, index, write, &exit)
        }
        // The peer's pool of a bulk area is mapped read-only: writing it is a fault, as for a
        // unikernel (not an MMIO write to ignore).
        Exit::NestedPageFault {
            gpa,
            write: true,
            fetch: false,
        } if crate::channels::in_peer_pool(&m.channels, gpa) => stop(Fault::ForeignMemory {
            gpa,
            write: true,
            fetch: false,
            read_only: true,
            rip,
        }),
        Exit::NestedPageFault { gpa, fetch, .. } => {
            let outcome = super::mmio::access(g, &mut m.vcpu, &mut m.mem, gpa, fetch);
            g.sync_lines();
            outcome
        }
        Exit::Wbinvd => {
            // Caches are coherent for everything a qube can reach; nothing to do.
            m.vcpu.skip_instruction(&exit);
            Outcome::Continue
        }
        Exit::Xsetbv => {
            // XCR0 within what CPUID leaf 0xD offers, at CPL 0; else #GP, as a CPU would.
            let index = m.vcpu.gpr(1) as u32;
            let value = (m.vcpu.gpr(2) << 32) | (m.vcpu.gpr(0) & 0xFFFF_FFFF);
            if m.vcpu.cpl() == 0 && m.vcpu.xstate().set_xcr0(index, value) {
                m.vcpu.skip_instruction(&exit);
            } else {
                m.vcpu.inject(Event::Exception {
                    vector: GP,
                    error: Some(0),
                });
            }
            Outcome::Continue
        }
        Exit::Forbidden(what @ "task switch") => stop(Fault::Forbidden { what, rip }),
        Exit::Hypercall | Exit::Forbidden(_) => {
            // What the guest was told it does not have: as on a CPU without it.
            m.vcpu.inject(Event::Exception {
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
fn count_port(g: &mut Linux, port: u16, input: bool) {
    let claimed_by_pci = g.pci.claims(port);
    let p = &mut g.stats.ports;
    let counter = match port {
        COM1_BASE if !input && !g.uart.divisor_latch() => &mut p.uart_tx,
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

fn port_read(g: &mut Linux, port: u16, size: u8) -> u32 {
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

fn port_write(g: &mut Linux, port: u16, size: u8, value: u32) -> PortEffect {
    match port {
        p if (COM1_BASE..COM1_BASE + 8).contains(&p) => {
            if let Some(b) = g.uart.write((p - COM1_BASE) as u8, value as u8) {
                let _ = g.tx.push_back(b);
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

fn msr_access(g: &mut Linux, m: &mut Machine, index: u32, write: bool, exit: &Exit) -> Outcome {
    let value = (m.vcpu.gpr(2) << 32) | (m.vcpu.gpr(0) & 0xFFFF_FFFF);
    let now = cpu::rdtsc();
    let read: Option<u64> = match msr::policy(index) {
        MsrPolicy::Emulated(e) => match (e, write) {
            (EmulatedMsr::ApicBase, false) => Some(APIC_BASE_MSR),
            (EmulatedMsr::ApicBase, true) => {
                if value != APIC_BASE_MSR {
                    hvlog!(
                        "qube {}: IA32_APIC_BASE write {value:#x} ignored",
                        m.spec.name
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
                    return inject_gp(&mut m.vcpu);
                }
                g.pat = value;
                m.vcpu.set_pat(value);
                None
            }
            (EmulatedMsr::Efer, false) => Some(m.vcpu.paging().efer),
            (EmulatedMsr::Efer, true) => {
                if !msr::efer_write_ok(m.vcpu.paging().efer, value) {
                    return inject_gp(&mut m.vcpu);
                }
                m.vcpu.set_efer(value);
                None
            }
            // Writing the TSC is ignored: it is the host's, shared by every qube.
            (EmulatedMsr::Tsc, true) => None,
        },
        MsrPolicy::Constant(v) => (!write).then_some(v),
        MsrPolicy::PassThrough | MsrPolicy::Fault => return inject_gp(&mut m.vcpu),
    };
    if let Some(v) = read {
        m.vcpu.set_gpr(0, v & 0xFFFF_FFFF);
        m.vcpu.set_gpr(2, v >> 32);
    }
    m.vcpu.skip_instruction(exit);
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
