//! Linux qubes: an unmodified kernel booted with the 64-bit boot protocol (`load`) on the
//! guest platform of `bulkhead_platform` (its devices, boot structures and ACPI tables are
//! pure and host-tested; this module, the platform's only privileged part, feeds the devices
//! the guest's exits and injects the interrupts they raise).
//!
//! - `load`: kernel, initramfs, command line, boot structures and ACPI tables into the
//!   qube's zeroed memory.
//! - `exits`: every exit a Linux guest can cause, handled or contained to that qube.
//! - `mmio`: the emulated MMIO pages (local APIC, I/O APIC): fetching and decoding the
//!   instruction through the guest's own page tables.
//! - `irq`: interrupt lines and injection.

mod exits;
mod irq;
mod load;
mod mmio;

use super::{Guest, LoadError, Machine};
use crate::exits::Outcome;
use crate::virt::Exit;
use bulkhead_abi::guest_pci::InfoCap;
use bulkhead_platform::ioapic::IoApic;
use bulkhead_platform::lapic::LocalApic;
use bulkhead_platform::pci::{ChannelDevice, PciBus};
use bulkhead_platform::pm::Pm;
use bulkhead_platform::rtc::Rtc;
use bulkhead_platform::uart::Uart;

/// The bundle entries a Linux qube boots from.
#[derive(Clone, Copy, Debug)]
pub struct LinuxImage {
    /// The kernel (a bzImage).
    pub kernel: &'static [u8],
    /// The initramfs.
    pub initrd: &'static [u8],
    /// The kernel command line from the system description (the hypervisor appends
    /// `tsc_early_khz=`).
    pub cmdline: &'static [u8],
}

/// Port I/O exits of a Linux qube by the device they reach.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortStats {
    /// UART transmit register writes (one per console byte).
    pub uart_tx: u64,
    /// The UART's other registers (status polls, interrupt identification, setup).
    pub uart_other: u64,
    /// PCI configuration (0xcf8-0xcff).
    pub pci_config: u64,
    /// Channel devices' doorbell and event registers.
    pub channel: u64,
    /// The CMOS real-time clock (0x70-0x71).
    pub rtc: u64,
    /// ACPI power management.
    pub pm: u64,
    /// The PIT and port 0x61 (absent; read as 0).
    pub pit: u64,
    /// Ports no device claims (including the 0x80 delay port).
    pub unclaimed: u64,
}

/// Exits of a Linux qube by kind, since its start (for the ready report and docs/bench.md).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitStats {
    /// Port I/O.
    pub io: u64,
    /// Port I/O by device.
    pub ports: PortStats,
    /// Emulated MMIO (APICs) and unclaimed addresses.
    pub mmio: u64,
    /// RDMSR/WRMSR.
    pub msr: u64,
    /// CPUID.
    pub cpuid: u64,
    /// HLT.
    pub hlt: u64,
    /// Interrupts injected.
    pub injected: u64,
}

/// The virtual machine around a Linux qube's vCPU.
pub struct Linux {
    /// What it boots.
    pub image: LinuxImage,
    lapic: LocalApic,
    ioapic: IoApic,
    uart: Uart,
    pci: PciBus,
    pm: Pm,
    rtc: Rtc,
    /// The guest's PAT (the power-on value until it writes one).
    pat: u64,
    /// Exits by kind since the last start.
    pub stats: ExitStats,
    /// Guest time of the last start (TSC), for the ready report.
    pub started_tsc: u64,
    /// The vCPU's exit count at the last start.
    pub exits_at_start: u64,
    /// Unclaimed ports and addresses logged so far (the log stops after a few).
    unclaimed_logged: u32,
    /// Bytes the UART transmitted, for the qube's console line.
    tx: bulkhead_hvcore::collections::BoundedDeque<u8, 8>,
}

/// The console line with which the agent says the AppVM is ready (`linux-appvm/agent`).
pub const READY_LINE: &[u8] = b"agent: ready";

/// Power-on PAT.
const PAT_POWER_ON: u64 = 0x0007_0406_0007_0406;
/// Unclaimed accesses logged per start.
const MAX_UNCLAIMED_LINES: u32 = 8;

impl Linux {
    /// The platform for a qube booting `image`, its devices at power-on (the channel
    /// devices are plugged in at each start).
    pub fn new(image: LinuxImage) -> Linux {
        Linux {
            image,
            // The APIC timer's input clock: 1 GHz nominal; Linux measures it against the TSC.
            lapic: LocalApic::new(0, crate::time::tsc_khz(), 1_000_000),
            ioapic: IoApic::new(0),
            uart: Uart::new(),
            pci: PciBus::new(),
            pm: Pm::new(),
            rtc: Rtc::new(),
            pat: PAT_POWER_ON,
            stats: ExitStats::default(),
            started_tsc: 0,
            exits_at_start: 0,
            unclaimed_logged: 0,
            tx: bulkhead_hvcore::collections::BoundedDeque::new(),
        }
    }

    /// Every device back to its power-on state, with one channel device per channel of
    /// `m` (a start or restart).
    fn reset(&mut self, m: &Machine) {
        *self = Linux {
            exits_at_start: m.vcpu.exit_count(),
            started_tsc: crate::arch::x86::cpu::rdtsc(),
            ..Linux::new(self.image)
        };
        for (local, c) in m.channels.iter().enumerate() {
            let dev = ChannelDevice {
                local: local as u8,
                bar0: crate::channels::Endpoint::window(local),
                region_size: c.host.len(),
                bar4: bulkhead_abi::channel::bulk_window(local),
                info: InfoCap {
                    side: c.side as u8,
                    size: c.host.len() as u32,
                    bulk_size: c.bulk.len() as u32,
                    name: c.name,
                },
            };
            if !self.pci.add_channel(dev) {
                crate::hvlog!("linux: channel {} has no PCI slot", c.name.as_str());
            }
        }
    }

    /// Whether another unclaimed access may still be logged (counts it).
    fn may_log_unclaimed(&mut self) -> bool {
        self.unclaimed_logged += 1;
        self.unclaimed_logged <= MAX_UNCLAIMED_LINES
    }

    /// Moves what the UART transmitted to the qube's console, and notices the agent's ready
    /// line: the qube is then ready, reported with its exits and time since its start.
    fn flush_console(&mut self, m: &mut Machine) {
        let mut ready = false;
        while let Some(b) = self.tx.pop_front() {
            m.console_write(&[b], |line| ready |= line.starts_with(READY_LINE));
        }
        if ready && !m.ready {
            m.set_ready();
            self.report_ready(m);
        }
    }

    /// The ready report: exits by kind and time since the start.
    fn report_ready(&self, m: &Machine) {
        let (name, s) = (m.spec.name.as_str(), self.stats);
        let ticks = crate::arch::x86::cpu::rdtsc().wrapping_sub(self.started_tsc);
        let ms = crate::time::ticks_to_ns(ticks) / 1_000_000;
        crate::hvlog!(
            "qube {name}: agent ready after {} VM exits (I/O {}, MMIO {}, MSR {}, CPUID {}, HLT {}; {} interrupts injected), {ms} ms after its start",
            m.vcpu.exit_count().wrapping_sub(self.exits_at_start),
            s.io,
            s.mmio,
            s.msr,
            s.cpuid,
            s.hlt,
            s.injected
        );
        let p = s.ports;
        crate::hvlog!(
            "qube {name}: port I/O by device: UART transmit {}, UART other {}, PCI config {}, channels {}, RTC {}, PM {}, PIT {}, unclaimed {}",
            p.uart_tx,
            p.uart_other,
            p.pci_config,
            p.channel,
            p.rtc,
            p.pm,
            p.pit,
            p.unclaimed
        );
    }
}

impl Guest for Linux {
    fn check(&self, _m: &Machine) -> Result<(), LoadError> {
        bulkhead_platform::boot::parse(self.image.kernel)
            .map(|_| ())
            .map_err(LoadError::Linux)
    }

    fn load(&mut self, m: &mut Machine, _restarts: u32) -> Result<(), LoadError> {
        let entry = load::load(&mut m.mem, &self.image)?;
        self.reset(m);
        m.vcpu.reset(&crate::virt::Start::linux(&entry));
        Ok(())
    }

    fn handle_exit(&mut self, m: &mut Machine, exit: Exit) -> Outcome {
        exits::handle(self, m, exit)
    }

    fn before_entry(&mut self, m: &mut Machine) {
        self.prepare_entry(m);
    }

    fn wake_deadline(&self) -> Option<u64> {
        self.timer_deadline()
    }

    fn on_stop(&mut self, m: &mut Machine) {
        self.flush_console(m);
    }
}
