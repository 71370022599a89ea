//! Bulkhead's own guests: loaded by the plan of `bulkhead_hvcore::unikernel`, speaking to
//! the hypervisor only through hypercalls (ABI v2). Every other exit but CPUID, HLT and the
//! timer stops the qube (the blame rule).

use super::{Guest, LoadError, Machine};
use crate::exits::{Fault, Outcome, Stop};
use crate::time;
use crate::virt::{EntryState, Exit, RDI, RDX, RSI, Start};
use bulkhead_abi::boot_info::BootInfo;
use bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE;
use bulkhead_abi::hypercall::{self, Hypercall, MAX_CONSOLE_WRITE, WAIT_FOREVER};
use bulkhead_hvcore::collections::ArrayVec;
use bulkhead_hvcore::unikernel::{self, BulkArea, DevicePiece, PlanError, UnikernelPlan};
use bulkhead_platform::cpuid::GuestCpu;

/// A unikernel: its image, configuration blob and hypercall state.
pub struct Unikernel {
    /// Its ELF image.
    pub image: &'static [u8],
    /// Its configuration blob from the bundle (empty if none).
    config: &'static [u8],
    /// `BootInfo::flags` from the backend (hypercall instruction).
    boot_flags: u32,
    /// Blocked in `wait_event`: at its next entry `rax` gets the events.
    in_wait_event: bool,
}

impl Unikernel {
    /// A unikernel booting `image` with `config`; `boot_flags` come from the backend.
    pub fn new(image: &'static [u8], config: &'static [u8], boot_flags: u32) -> Unikernel {
        Unikernel {
            image,
            config,
            boot_flags,
            in_wait_event: false,
        }
    }

    /// Where the image, configuration, channels and device pieces go in its memory
    /// (`bulkhead_hvcore::unikernel`).
    fn plan(&self, m: &Machine) -> Result<UnikernelPlan, LoadError> {
        let too_many = LoadError::Layout(PlanError::TooManyChannels);
        let channels = ArrayVec::<u64, MAX_CHANNELS_PER_QUBE>::try_from_iter(
            m.channels.iter().map(|c| c.host.len()),
        )
        .ok_or(too_many)?;
        let bulk = ArrayVec::<BulkArea, MAX_CHANNELS_PER_QUBE>::try_from_iter(
            m.channels
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.bulk.is_empty())
                .map(|(local, c)| BulkArea {
                    local,
                    size: c.bulk.len(),
                    side: c.side,
                }),
        )
        .ok_or(too_many)?;
        let framebuffer = m.framebuffer.and_then(|f| f.pages()).map(|r| DevicePiece {
            start: r.start,
            len: r.len(),
            write_combining: true,
        });
        let pieces = ArrayVec::<DevicePiece, { unikernel::MAX_PIECES }>::try_from_iter(
            m.devices
                .iter()
                .flat_map(|d| d.pieces.iter().copied())
                .chain(framebuffer),
        )
        .ok_or(LoadError::Layout(PlanError::TooManyPieces))?;
        let config_len = self.config.len() as u64;
        unikernel::plan(
            self.image,
            m.mem.size(),
            config_len,
            &channels,
            &bulk,
            &pieces,
        )
        .map_err(LoadError::Layout)
    }
}

impl Guest for Unikernel {
    fn check(&self, m: &Machine) -> Result<(), LoadError> {
        self.plan(m).map(|_| ())
    }

    fn load(&mut self, m: &mut Machine, restarts: u32) -> Result<(), LoadError> {
        let plan = self.plan(m)?;
        for d in m.devices.iter_mut() {
            d.quiesce();
        }
        let mut info = BootInfo::new();
        plan.describe(&mut info);
        info.qube_id = m.id as u32;
        info.label = m.spec.label as u32;
        info.restart_count = restarts;
        info.flags = self.boot_flags;
        for (c, out) in m.channels.iter().zip(info.channels.iter_mut()) {
            out.id = c.id as u32;
            out.side = c.side;
            out.peer = c.peer as u32;
            out.set_name(&c.name);
        }
        let host_base = m.mem.host().start;
        info.device_count = m.devices.len() as u32;
        for (d, out) in m.devices.iter().zip(info.devices.iter_mut()) {
            *out = d.info(host_base);
        }
        info.io_port_count = m.ports.len() as u32;
        for (r, out) in m.ports.iter().zip(info.io_ports.iter_mut()) {
            *out = *r;
        }
        if let Some(fb) = m.framebuffer {
            info.framebuffer = fb.info();
        }
        info.set_name(&m.spec.name);
        info.set_args(&m.spec.args);
        let (image, config) = (self.image, self.config);
        let cr3 = m
            .mem
            .with_bytes(|mem| unikernel::write(mem, &plan, image, config, &info))
            .map_err(LoadError::Layout)?;
        m.vcpu
            .reset(&Start::unikernel(&EntryState { cr3, ..plan.entry }));
        self.in_wait_event = false;
        Ok(())
    }

    fn handle_exit(&mut self, m: &mut Machine, exit: Exit) -> Outcome {
        let rip = m.vcpu.rip();
        let fault = |f| Outcome::Stop(Stop::Fault(f));
        match exit {
            Exit::Interrupt => Outcome::Preempted,
            Exit::Hypercall => {
                m.vcpu.skip_instruction(&exit);
                self.hypercall(m)
            }
            Exit::Halt => {
                // HLT with interrupts off and no device: the same as waiting for an event.
                m.vcpu.skip_instruction(&exit);
                Outcome::Wait(None)
            }
            Exit::Cpuid => {
                // No XSAVE, AVX or PKU (its XCR0 and CR4 are fixed) and no platform devices.
                let guest = GuestCpu::unikernel(m.vcpu.paging().cr4);
                super::answer_cpuid(&mut m.vcpu, &guest);
                m.vcpu.skip_instruction(&exit);
                Outcome::Continue
            }
            Exit::Io { port, input, .. } => fault(Fault::IoPort { port, input, rip }),
            Exit::Msr { index, write } => fault(Fault::Msr { index, write, rip }),
            Exit::NestedPageFault { gpa, write, fetch } => fault(Fault::ForeignMemory {
                gpa,
                write,
                fetch,
                read_only: write && !fetch && crate::channels::in_peer_pool(&m.channels, gpa),
                rip,
            }),
            Exit::TripleFault => fault(Fault::TripleFault { rip }),
            // Never requested for a unikernel.
            Exit::InterruptWindow => {
                m.vcpu.set_interrupt_window(false);
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

    /// Woken from `wait_event` (by events or its deadline): the call returns the events,
    /// 0 when the time ran out.
    fn before_entry(&mut self, m: &mut Machine) {
        if self.in_wait_event {
            self.in_wait_event = false;
            let events = core::mem::take(&mut m.events);
            m.vcpu.set_rax(events);
        }
    }

    fn wake_deadline(&self) -> Option<u64> {
        None
    }

    fn on_stop(&mut self, _m: &mut Machine) {}
}

impl Unikernel {
    fn hypercall(&mut self, m: &mut Machine) -> Outcome {
        let number = m.vcpu.rax();
        let (a0, a1, a2) = {
            let r = &m.vcpu.regs().0;
            let arg = |n: u8| r[usize::from(n)];
            (arg(RDI), arg(RSI), arg(RDX))
        };
        let Some(call) = Hypercall::from_u64(number) else {
            return Outcome::Stop(Stop::Fault(Fault::UnknownHypercall { number }));
        };
        let result = match call {
            Hypercall::AbiVersion => Ok(u64::from(hypercall::ABI_VERSION)),
            Hypercall::ConsoleWrite => match console_write(m, a0, a1) {
                Ok(n) => Ok(n),
                Err(f) => return Outcome::Stop(Stop::Fault(f)),
            },
            Hypercall::Yield => {
                m.vcpu.set_rax(0);
                return Outcome::Yield;
            }
            Hypercall::WaitEvent => {
                if m.events != 0 {
                    Ok(core::mem::take(&mut m.events))
                } else {
                    // The result (0 = timed out, else the events) is written when it wakes.
                    m.vcpu.set_rax(0);
                    self.in_wait_event = true;
                    let deadline = bulkhead_hvcore::sched::deadline_after(time::now_ns(), a0);
                    return Outcome::Wait(if a0 == WAIT_FOREVER { None } else { deadline });
                }
            }
            Hypercall::TimeNs => Ok(time::now_ns()),
            Hypercall::Exit => return Outcome::Stop(Stop::Exited(a0)),
            Hypercall::Notify => {
                let Some(c) = m.channels.get(a0 as usize) else {
                    let count = m.channels.len();
                    return Outcome::Stop(Stop::Fault(Fault::NoSuchChannel {
                        call: "notify",
                        index: a0,
                        count,
                    }));
                };
                m.vcpu.set_rax(0);
                return Outcome::Signal {
                    qube: c.peer,
                    bit: c.peer_local,
                };
            }
            Hypercall::ExitCount => Ok(m.vcpu.exit_count()),
            Hypercall::PciConfigRead | Hypercall::PciConfigWrite => {
                let write = call == Hypercall::PciConfigWrite;
                let bad = Fault::BadDevice {
                    call: call.name(),
                    index: a0,
                    offset: a1,
                };
                let Some(d) = m.devices.get_mut(a0 as usize) else {
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
                m.set_ready();
                Ok(0)
            }
            Hypercall::DeviceInterrupts => {
                let Some(d) = m.devices.get_mut(a0 as usize) else {
                    return Outcome::Stop(Stop::Fault(Fault::BadDevice {
                        call: call.name(),
                        index: a0,
                        offset: 0,
                    }));
                };
                match d.enable_interrupts() {
                    true => Ok(u64::from(hypercall::device_event_bit(a0 as usize))),
                    false => Err(hypercall::HcError::Denied),
                }
            }
            Hypercall::AdminQubeState | Hypercall::AdminStart | Hypercall::AdminKill => {
                if !m.spec.admin {
                    Err(hypercall::HcError::Denied)
                } else {
                    return Outcome::Admin { call, qube: a0 };
                }
            }
        };
        m.vcpu.set_rax(hypercall::encode_result(result));
        Outcome::Continue
    }
}

fn console_write(m: &mut Machine, gpa: u64, len: u64) -> Result<u64, Fault> {
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
    m.mem.read(gpa, buf).map_err(|_| Fault::BadBuffer {
        call: CALL,
        gpa,
        len,
    })?;
    m.console_write(buf, |_| {});
    Ok(len)
}
