//! What the hypervisor does with each exit of a qube: hypercalls, CPUID, HLT, and every way
//! a qube can misbehave, which stops that qube only (the blame rule).

use crate::qube::Qube;
use crate::virt::{Exit, Vcpu};
use crate::{hvlog, time};
use bulkhead_abi::hypercall::{self, Hypercall, MAX_CONSOLE_WRITE, WAIT_FOREVER};

/// What the scheduler should do after an exit.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// Keep running this qube (within its slice).
    Continue,
    /// A physical interrupt: check the time slice.
    Preempted,
    /// The qube gave up the CPU.
    Yield,
    /// The qube waits for an event or until the deadline (ns since boot).
    Wait(Option<u64>),
    /// The qube stops.
    Stop(Stop),
    /// Raise event bit `bit` at the qube with manifest index `qube`, then keep running.
    Signal {
        /// The peer.
        qube: usize,
        /// Its local channel index.
        bit: usize,
    },
}

/// Why a qube stopped.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// It exited with a status.
    Exited(u64),
    /// It broke a rule.
    Fault(Fault),
}

/// Ways a qube can break the rules, each named in the log line.
#[allow(clippy::enum_variant_names)] // `TripleFault` is the architectural name
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Triple fault.
    TripleFault { rip: u64 },
    /// Access to guest-physical memory it does not own.
    ForeignMemory {
        gpa: u64,
        write: bool,
        fetch: bool,
        rip: u64,
    },
    /// I/O port access.
    IoPort { port: u16, input: bool, rip: u64 },
    /// MSR access.
    Msr { index: u32, write: bool, rip: u64 },
    /// A forbidden instruction.
    Forbidden { what: &'static str, rip: u64 },
    /// Unknown hypercall number.
    UnknownHypercall { number: u64 },
    /// A hypercall buffer outside its memory.
    BadBuffer {
        call: &'static str,
        gpa: u64,
        len: u64,
    },
    /// A hypercall length over the limit.
    TooLong {
        call: &'static str,
        len: u64,
        max: u64,
    },
    /// A channel index the qube does not have.
    NoSuchChannel {
        call: &'static str,
        index: u64,
        count: usize,
    },
    /// A device index the qube does not have, or a bad configuration offset.
    BadDevice {
        call: &'static str,
        index: u64,
        offset: u64,
    },
    /// The CPU refused its state.
    InvalidState { rip: u64 },
    /// An exit this hypervisor does not know.
    UnknownExit { code: u64, rip: u64 },
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Fault::TripleFault { rip } => write!(f, "triple fault (rip={rip:#x})"),
            Fault::ForeignMemory {
                gpa,
                write,
                fetch,
                rip,
            } => {
                let kind = if fetch {
                    "fetch from"
                } else if write {
                    "write to"
                } else {
                    "read of"
                };
                write!(
                    f,
                    "{kind} guest-physical {gpa:#x}, which it does not own (rip={rip:#x})"
                )
            }
            Fault::IoPort { port, input, rip } => {
                let dir = if input { "in from" } else { "out to" };
                write!(
                    f,
                    "I/O port access ({dir} port {port:#x}) is not allowed (rip={rip:#x})"
                )
            }
            Fault::Msr { index, write, rip } => {
                let op = if write { "wrmsr" } else { "rdmsr" };
                write!(f, "{op} {index:#x} is not allowed (rip={rip:#x})")
            }
            Fault::Forbidden { what, rip } => write!(f, "{what} is not allowed (rip={rip:#x})"),
            Fault::UnknownHypercall { number } => write!(f, "unknown hypercall {number:#x}"),
            Fault::BadBuffer { call, gpa, len } => {
                write!(
                    f,
                    "hypercall {call}: buffer {gpa:#x}+{len:#x} is outside its memory"
                )
            }
            Fault::TooLong { call, len, max } => {
                write!(
                    f,
                    "hypercall {call}: length {len} is over the limit of {max}"
                )
            }
            Fault::NoSuchChannel { call, index, count } => {
                write!(
                    f,
                    "hypercall {call}: channel {index}, but it has {count} channels"
                )
            }
            Fault::BadDevice {
                call,
                index,
                offset,
            } => write!(
                f,
                "hypercall {call}: device {index} offset {offset:#x} (no such device, or not an aligned offset below 4096)"
            ),
            Fault::InvalidState { rip } => write!(f, "the CPU refused its state (rip={rip:#x})"),
            Fault::UnknownExit { code, rip } => {
                write!(f, "unhandled exit {code:#x} (rip={rip:#x})")
            }
        }
    }
}

/// Handles one exit of `q`.
pub fn handle(q: &mut Qube, exit: Exit) -> Outcome {
    if q.linux.is_some() {
        return crate::linux::handle(q, exit);
    }
    let rip = q.vcpu.rip();
    let fault = |f| Outcome::Stop(Stop::Fault(f));
    match exit {
        Exit::Interrupt => Outcome::Preempted,
        Exit::Hypercall => {
            q.vcpu.skip_instruction(&exit);
            hypercall(q)
        }
        Exit::Halt => {
            // HLT with interrupts off and no device: the same as waiting for an event.
            q.vcpu.skip_instruction(&exit);
            Outcome::Wait(None)
        }
        Exit::Cpuid => {
            cpuid(q);
            q.vcpu.skip_instruction(&exit);
            Outcome::Continue
        }
        Exit::Io { port, input, .. } => fault(Fault::IoPort { port, input, rip }),
        Exit::Msr { index, write } => fault(Fault::Msr { index, write, rip }),
        Exit::NestedPageFault { gpa, write, fetch } => fault(Fault::ForeignMemory {
            gpa,
            write,
            fetch,
            rip,
        }),
        Exit::TripleFault => fault(Fault::TripleFault { rip }),
        // Never requested for a unikernel.
        Exit::InterruptWindow => {
            q.vcpu.set_interrupt_window(false);
            Outcome::Continue
        }
        Exit::Wbinvd => fault(Fault::Forbidden {
            what: "WBINVD",
            rip,
        }),
        Exit::Xsetbv => fault(Fault::Forbidden {
            what: "XSETBV",
            rip,
        }),
        Exit::Forbidden(what) => fault(Fault::Forbidden { what, rip }),
        Exit::InvalidState => fault(Fault::InvalidState { rip }),
        Exit::Unknown(code) => fault(Fault::UnknownExit { code, rip }),
    }
}

fn hypercall(q: &mut Qube) -> Outcome {
    let number = q.vcpu.rax();
    let (a0, a1, a2) = {
        let r = q.vcpu.regs();
        (r.rdi, r.rsi, r.rdx)
    };
    let Some(call) = Hypercall::from_u64(number) else {
        return Outcome::Stop(Stop::Fault(Fault::UnknownHypercall { number }));
    };
    let result = match call {
        Hypercall::AbiVersion => Ok(u64::from(hypercall::ABI_VERSION)),
        Hypercall::ConsoleWrite => match console_write(q, a0, a1) {
            Ok(n) => Ok(n),
            Err(f) => return Outcome::Stop(Stop::Fault(f)),
        },
        Hypercall::Yield => {
            q.vcpu.set_rax(0);
            return Outcome::Yield;
        }
        Hypercall::WaitEvent => {
            if q.events != 0 {
                let ev = core::mem::take(&mut q.events);
                Ok(ev)
            } else {
                // The result (0 = timed out, else the events) is written when it wakes.
                q.vcpu.set_rax(0);
                q.in_wait_event = true;
                let deadline = bulkhead_hvcore::sched::deadline_after(time::now_ns(), a0);
                return Outcome::Wait(if a0 == WAIT_FOREVER { None } else { deadline });
            }
        }
        Hypercall::TimeNs => Ok(time::now_ns()),
        Hypercall::Exit => return Outcome::Stop(Stop::Exited(a0)),
        Hypercall::Notify => {
            let Some(c) = q.channels.get(a0 as usize) else {
                let count = q.channels.len();
                return Outcome::Stop(Stop::Fault(Fault::NoSuchChannel {
                    call: "notify",
                    index: a0,
                    count,
                }));
            };
            q.vcpu.set_rax(0);
            return Outcome::Signal {
                qube: c.peer,
                bit: c.peer_local,
            };
        }
        Hypercall::ExitCount => Ok(q.vcpu.exit_count()),
        Hypercall::PciConfigRead | Hypercall::PciConfigWrite => {
            let write = call == Hypercall::PciConfigWrite;
            let bad = Fault::BadDevice {
                call: call.name(),
                index: a0,
                offset: a1,
            };
            let Some(d) = q.devices.get_mut(a0 as usize) else {
                return Outcome::Stop(Stop::Fault(bad));
            };
            if a1 >= 4096 || a1 % 4 != 0 {
                return Outcome::Stop(Stop::Fault(bad));
            }
            if !write {
                Ok(u64::from(d.config_read(a1 as u16)))
            } else if d.config_write(a1 as u16, a2 as u32) {
                Ok(0)
            } else {
                Err(hypercall::HcError::Denied)
            }
        }
        Hypercall::Ready => {
            if !q.ready {
                q.ready = true;
                hvlog!("qube {} ready", q.name());
            }
            Ok(0)
        }
    };
    q.vcpu.set_rax(hypercall::encode_result(result));
    Outcome::Continue
}

fn console_write(q: &mut Qube, gpa: u64, len: u64) -> Result<u64, Fault> {
    const CALL: &str = "console_write";
    if len > MAX_CONSOLE_WRITE {
        return Err(Fault::TooLong {
            call: CALL,
            len,
            max: MAX_CONSOLE_WRITE,
        });
    }
    let mut buf = [0u8; MAX_CONSOLE_WRITE as usize];
    let buf = &mut buf[..len as usize];
    q.mem.read(gpa, buf).map_err(|_| Fault::BadBuffer {
        call: CALL,
        gpa,
        len,
    })?;
    let (id, name, label) = (q.id, q.spec.name.clone(), q.spec.label);
    q.console.push(buf, |line| {
        crate::console::qube_line(id, &name, label, line)
    });
    Ok(len)
}

/// CPUID as a unikernel sees it: the one policy of `bulkhead_platform::cpuid` (the host's
/// answers through an allowlist, Bulkhead's signature at 0x40000000), with no XSAVE, AVX or
/// PKU (a unikernel's XCR0 and CR4 are fixed) and no platform devices.
fn cpuid(q: &mut Qube) {
    let leaf = q.vcpu.rax() as u32;
    let sub = q.vcpu.regs().rcx as u32;
    let guest = bulkhead_platform::cpuid::GuestCpu::unikernel(q.vcpu.paging().cr4);
    let r = crate::linux::guest_cpuid(leaf, sub, &guest);
    q.vcpu.set_rax(u64::from(r.eax));
    let regs = q.vcpu.regs();
    regs.rbx = u64::from(r.ebx);
    regs.rcx = u64::from(r.ecx);
    regs.rdx = u64::from(r.edx);
}
