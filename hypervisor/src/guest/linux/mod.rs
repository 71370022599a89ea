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
//! - `irq`: interrupt lines, routing between vCPUs, IPIs and injection.
//! - `board`: what the vCPUs share (devices, console, the links between them).
//! - `ap`: the secondary vCPUs (application processors), started by the guest with INIT
//!   and STARTUP, each scheduled on its own (possibly another physical CPU).

mod ap;
pub mod board;
mod exits;
mod irq;
mod load;
mod mmio;

pub use ap::LinuxAp;
pub use board::Board;

use super::{Guest, LoadError, Machine};
use crate::exits::Outcome;
use crate::virt::Exit;
use bulkhead_abi::guest_pci::InfoCap;
use bulkhead_platform::lapic::LocalApic;
use bulkhead_platform::pci::ChannelDevice;

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
    /// IPIs sent to its other vCPUs.
    pub ipis: u64,
}

/// What one vCPU of a Linux qube has to itself.
pub struct LinuxCpu {
    /// Its index in the qube (its APIC id).
    index: u8,
    lapic: LocalApic,
    /// The guest's PAT (the power-on value until it writes one).
    pat: u64,
    /// Exits by kind since the last start.
    pub stats: ExitStats,
    /// NMI IPIs to it dropped (logged once).
    dropped_nmis: u32,
}

impl LinuxCpu {
    /// vCPU `index` at power-on.
    pub fn new(index: u8) -> LinuxCpu {
        LinuxCpu {
            index,
            // The APIC timer's input clock: 1 GHz nominal; Linux measures it against the TSC.
            lapic: LocalApic::new(index, crate::time::tsc_khz(), 1_000_000),
            pat: PAT_POWER_ON,
            stats: ExitStats::default(),
            dropped_nmis: 0,
        }
    }

    /// Its index in the qube.
    pub fn index(&self) -> usize {
        usize::from(self.index)
    }
}

/// The virtual machine around a Linux qube: its first vCPU (the bootstrap processor; the
/// others are `LinuxAp`s) and the board they share.
pub struct Linux {
    /// What it boots.
    pub image: LinuxImage,
    /// The devices and links of every vCPU.
    board: &'static Board,
    /// vCPU 0.
    cpu: LinuxCpu,
    /// Guest time of the last start (TSC), for the ready report.
    pub started_tsc: u64,
    /// The vCPU's exit count at the last start.
    pub exits_at_start: u64,
}

/// The console line with which the agent says the AppVM is ready (`linux-appvm/agent`).
pub const READY_LINE: &[u8] = b"agent: ready";

/// Power-on PAT.
const PAT_POWER_ON: u64 = 0x0007_0406_0007_0406;

impl Linux {
    /// The platform for a qube booting `image` on `board` (the channel devices are plugged
    /// in at each start).
    pub fn new(image: LinuxImage, board: &'static Board) -> Linux {
        Linux {
            image,
            board,
            cpu: LinuxCpu::new(0),
            started_tsc: 0,
            exits_at_start: 0,
        }
    }

    /// The board its vCPUs share.
    pub fn board(&self) -> &'static Board {
        self.board
    }

    /// Every device back to its power-on state, with one channel device per channel of
    /// `m` (a start or restart), and every secondary vCPU parked.
    fn reset(&mut self, m: &Machine) {
        self.cpu = LinuxCpu::new(0);
        self.exits_at_start = m.vcpu.exit_count();
        self.started_tsc = crate::arch::x86::cpu::rdtsc();
        self.board.links[0].discard_interrupts();
        let plugged = self.board.with_devices(|d| {
            *d = board::Devices::new();
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
                if !d.pci.add_channel(dev) {
                    crate::hvlog!("linux: channel {} has no PCI slot", c.name.as_str());
                }
            }
        });
        if plugged.is_none() {
            crate::hvlog!(
                "qube {}: its devices could not be reset (held)",
                m.spec.name
            );
        }
    }

    /// Notices the agent's ready line (written by any vCPU): the qube is then ready,
    /// reported with its exits and time since its start.
    fn check_ready(&mut self, m: &mut Machine) {
        if self.board.take_ready() && !m.ready {
            m.set_ready();
            self.report_ready(m);
        }
    }

    /// Each vCPU's VM exits, IPIs sent and interrupts injected since the start (a qube with
    /// several, when it stops).
    fn report_vcpus(&self, m: &Machine) {
        let mut line = bulkhead_hvcore::collections::BoundedString::<200>::new();
        let s = self.cpu.stats;
        let first = [
            m.vcpu.exit_count().wrapping_sub(self.exits_at_start),
            s.ipis,
            s.injected,
        ];
        let links = self.board.links.iter().take(usize::from(self.board.vcpus));
        for (k, link) in links.enumerate() {
            let [exits, ipis, injected] = if k == 0 { first } else { link.counts() };
            let _ = core::fmt::write(
                &mut line,
                format_args!(
                    "{}vCPU {k} {exits} exits, {ipis} IPIs sent, {injected} interrupts injected",
                    if k == 0 { "" } else { "; " }
                ),
            );
        }
        crate::hvlog!("qube {}: {}", m.spec.name, line.as_str());
    }

    /// The ready report: exits by kind and time since the start.
    fn report_ready(&self, m: &Machine) {
        let (name, s) = (m.spec.name.as_str(), self.cpu.stats);
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
        // Every secondary out of the guest before its memory is written.
        self.board.park_secondaries();
        let entry = load::load(&mut m.mem, &self.image, self.board.vcpus)?;
        self.reset(m);
        m.vcpu.reset(&crate::virt::Start::linux(&entry));
        Ok(())
    }

    fn handle_exit(&mut self, m: &mut Machine, exit: Exit) -> Outcome {
        let view = m.mem.view();
        let outcome = exits::handle(&mut self.cpu, &mut m.vcpu, self.board, &view, exit);
        self.check_ready(m);
        outcome
    }

    fn before_entry(&mut self, m: &mut Machine) {
        let events = m.events;
        if self.cpu.prepare_entry(&mut m.vcpu, self.board, events) {
            m.events = 0;
        }
    }

    fn wake_deadline(&self) -> Option<u64> {
        self.cpu.timer_deadline()
    }

    fn on_stop(&mut self, m: &mut Machine) {
        self.board.park_secondaries();
        self.board.console_flush();
        if self.board.vcpus > 1 {
            self.report_vcpus(m);
        }
    }
}
