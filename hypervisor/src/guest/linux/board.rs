//! What the vCPUs of one Linux qube share: its devices (I/O APIC, UART, PCI with the channel
//! devices, power management, RTC) and console line behind one lock, and per vCPU a
//! [`VcpuLink`] through which the others reach it: interrupts requested at its local APIC
//! (IPIs, I/O APIC messages), INIT and STARTUP, the address it answers to, the CPU to kick.
//!
//! Each vCPU keeps its local APIC to itself (it is touched on every exit and entry); another
//! vCPU never writes it, but posts vectors to the owner's link and kicks the owner's CPU,
//! which moves them into the APIC before its next entry. The primary vCPU (0) owns the
//! qube's life: a secondary that stops the qube (a triple fault, ACPI power-off) leaves the
//! reason here and the primary carries it out; every start and stop of the qube parks every
//! secondary (back at power-on, out of the guest) until the guest starts it again with INIT
//! and STARTUP.

use crate::exits::Stop;
use crate::sync::Locked;
use bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE;
use bulkhead_abi::manifest::MAX_VCPUS;
use bulkhead_hvcore::ap_gate::ApGate;
use bulkhead_hvcore::collections::{ArrayVec, BoundedString};
use bulkhead_hvcore::console::LineBuffer;
use bulkhead_hvcore::wake::Mailbox;
use bulkhead_platform::ioapic::IoApic;
use bulkhead_platform::lapic::{ApicAddress, IpiDest, LocalApic};
use bulkhead_platform::pci::PciBus;
use bulkhead_platform::pm::Pm;
use bulkhead_platform::rtc::Rtc;
use bulkhead_platform::uart::Uart;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Most vCPUs a Linux qube has.
pub const VCPUS: usize = MAX_VCPUS as usize;

/// Unclaimed accesses logged per start.
const MAX_UNCLAIMED_LINES: u32 = 8;

/// The devices every vCPU of the qube reaches, and its console line.
pub struct Devices {
    /// The I/O APIC.
    pub ioapic: IoApic,
    /// COM1.
    pub uart: Uart,
    /// The PCI bus with the channel devices.
    pub pci: PciBus,
    /// ACPI power management.
    pub pm: Pm,
    /// The CMOS clock.
    pub rtc: Rtc,
    /// The console line being written.
    console: LineBuffer,
    /// Unclaimed ports and addresses logged so far.
    unclaimed_logged: u32,
}

impl Devices {
    /// Every device at power-on, no channel device plugged in.
    pub fn new() -> Devices {
        Devices {
            ioapic: IoApic::new(0),
            uart: Uart::new(),
            pci: PciBus::new(),
            pm: Pm::new(),
            rtc: Rtc::new(),
            console: LineBuffer::new(),
            unclaimed_logged: 0,
        }
    }

    /// Whether another unclaimed access may still be logged (counts it).
    pub fn may_log_unclaimed(&mut self) -> bool {
        self.unclaimed_logged += 1;
        self.unclaimed_logged <= MAX_UNCLAIMED_LINES
    }
}

/// How the others reach one vCPU.
pub struct VcpuLink {
    /// Vectors requested at its local APIC by others, 64 per mailbox.
    irr: [Mailbox; 4],
    /// Of those, the level-triggered ones (I/O APIC lines; cleared for edges).
    level: [AtomicU64; 4],
    /// Its APIC address ([`ApicAddress`] packed: id, LDR, DFR), republished by its owner.
    address: AtomicU64,
    /// Its start-up state and whether it is in the guest (a secondary's).
    pub gate: ApGate,
    /// The physical CPU it runs on.
    cpu: AtomicUsize,
    /// Since its start: VM exits, IPIs it sent, interrupts injected (a secondary's, for
    /// the primary's report when the qube stops).
    counts: [AtomicU64; 3],
}

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "only the array initialiser"
)]
const LINK: VcpuLink = VcpuLink {
    irr: [
        Mailbox::new(),
        Mailbox::new(),
        Mailbox::new(),
        Mailbox::new(),
    ],
    level: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
    address: AtomicU64::new(0),
    gate: ApGate::new(),
    cpu: AtomicUsize::new(0),
    counts: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
};

fn pack(a: ApicAddress) -> u64 {
    u64::from(a.id) | u64::from(a.ldr >> 24) << 8 | u64::from(a.dfr >> 28) << 16
}

fn unpack(v: u64) -> ApicAddress {
    ApicAddress {
        id: v as u8,
        ldr: u32::from((v >> 8) as u8) << 24,
        dfr: (((v >> 16) & 0xF) as u32) << 28 | 0x0FFF_FFFF,
    }
}

impl VcpuLink {
    /// Requests `vector` at this vCPU's local APIC (the caller kicks its CPU).
    fn post(&self, vector: u8, level: bool) {
        let (word, bit) = (usize::from(vector >> 6), 1u64 << (vector & 63));
        if level {
            self.level[word].fetch_or(bit, Ordering::Relaxed);
        } else {
            self.level[word].fetch_and(!bit, Ordering::Relaxed);
        }
        self.irr[word].post(bit);
    }

    /// Whether vectors wait (a read-modify-write, for the halting CPU's check).
    pub fn has_interrupts(&self) -> bool {
        self.irr.iter().any(Mailbox::has_mail)
    }

    /// Moves the vectors posted to this vCPU into its local APIC.
    pub fn drain_into(&self, lapic: &mut LocalApic) {
        for (word, mailbox) in self.irr.iter().enumerate() {
            let mut bits = mailbox.take();
            if bits == 0 {
                continue;
            }
            let level = self.level[word].load(Ordering::Relaxed);
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                lapic.request((word as u32 * 64 + b) as u8, level & (1 << b) != 0);
            }
        }
    }

    /// Republishes the APIC address of its local APIC (after the owner wrote LDR or DFR).
    pub fn publish_address(&self, lapic: &LocalApic) {
        let packed = pack(lapic.address());
        if self.address.load(Ordering::Relaxed) != packed {
            self.address.store(packed, Ordering::Release);
        }
    }

    /// The physical CPU it runs on.
    pub fn set_cpu(&self, cpu: usize) {
        self.cpu.store(cpu, Ordering::Relaxed);
    }

    /// Publishes its counts since its start: VM exits, IPIs sent, interrupts injected.
    pub fn set_counts(&self, counts: [u64; 3]) {
        for (c, v) in self.counts.iter().zip(counts) {
            c.store(v, Ordering::Relaxed);
        }
    }

    /// Its published counts ([`VcpuLink::set_counts`]).
    pub fn counts(&self) -> [u64; 3] {
        self.counts.each_ref().map(|c| c.load(Ordering::Relaxed))
    }

    /// Drops what was posted to it (it starts afresh).
    pub fn discard_interrupts(&self) {
        for (m, l) in self.irr.iter().zip(self.level.iter()) {
            m.take();
            l.store(0, Ordering::Relaxed);
        }
    }
}

/// What a vCPU needs to know of one of the qube's channels.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChannelEnd {
    /// The qube at the other end.
    pub peer: usize,
    /// The channel's event bit there.
    pub peer_local: usize,
    /// Its bulk area's size (0: none).
    pub bulk_len: u64,
    /// This qube's side (0 = A).
    pub side: u32,
}

/// What the vCPUs of one Linux qube share.
pub struct Board {
    /// The qube's manifest index.
    pub qube: usize,
    /// Its name, for log lines.
    pub name: BoundedString<{ bulkhead_abi::boot_info::NAME_MAX }>,
    /// Its label (console lines).
    pub label: bulkhead_abi::label::Label,
    /// How many vCPUs it has.
    pub vcpus: u8,
    /// Its channels by local index.
    pub channels: ArrayVec<ChannelEnd, MAX_CHANNELS_PER_QUBE>,
    /// The devices and the console line.
    pub devices: Locked<Devices>,
    /// Per vCPU.
    pub links: [VcpuLink; VCPUS],
    /// A stop a secondary asks of the primary.
    stop: Locked<Option<Stop>>,
    /// `stop` holds one.
    stop_pending: AtomicBool,
    /// A vCPU wrote the agent's ready line; the primary reports it.
    ready: AtomicBool,
}

impl Board {
    /// The board of qube `qube` (`spec`, its vCPU count; `channels`, its channel ends),
    /// every device at power-on.
    pub fn new(
        qube: usize,
        spec: &bulkhead_abi::manifest::QubeSpec,
        channels: &crate::channels::Endpoints,
    ) -> Board {
        const { assert!(VCPUS <= 8, "vCPU masks are one byte") };
        let b = Board {
            qube,
            name: spec.name,
            label: spec.label,
            vcpus: spec.vcpus.clamp(1, VCPUS as u8),
            channels: ArrayVec::try_from_iter(channels.iter().map(|c| ChannelEnd {
                peer: c.peer,
                peer_local: c.peer_local,
                bulk_len: c.bulk.len(),
                side: c.side,
            }))
            .unwrap_or_default(),
            devices: Locked::new(Devices::new()),
            links: [LINK; VCPUS],
            stop: Locked::new(None),
            stop_pending: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        };
        for (k, link) in b.links.iter().enumerate() {
            link.publish_address(&LocalApic::new(k as u8, 1, 1));
        }
        b
    }

    /// Runs `f` on the devices, or `None` if another vCPU holds them too long (the caller
    /// then lets the instruction run again later).
    pub fn with_devices<R>(&self, f: impl FnOnce(&mut Devices) -> R) -> Option<R> {
        self.devices.with_spin(f)
    }

    /// The vCPUs (a bit each) an interrupt to `dest` from APIC `from` reaches.
    pub fn targets(&self, dest: IpiDest, from: u8) -> u8 {
        let mut mask = 0u8;
        for (k, link) in self.links.iter().enumerate().take(usize::from(self.vcpus)) {
            let a = unpack(link.address.load(Ordering::Acquire));
            if a.accepts(dest, from) {
                mask |= 1 << k;
            }
        }
        mask
    }

    /// Wakes vCPU `k`'s CPU for something posted to it by vCPU `me` (not when both run on
    /// the same CPU: its scheduler sees the post before it runs or halts again).
    fn kick(&self, k: usize, me: usize) {
        let cpu = |i: usize| self.links.get(i).map(|l| l.cpu.load(Ordering::Relaxed));
        if let Some(target) = cpu(k).filter(|&c| Some(c) != cpu(me)) {
            crate::smp::kick(target, self.qube, k);
        }
    }

    /// Requests `vector` at vCPU `k` for vCPU `me` (not at `me`: its own APIC takes its
    /// own) and kicks its CPU.
    pub fn post(&self, k: usize, vector: u8, level: bool, me: usize) {
        if let Some(link) = self.links.get(k) {
            link.post(vector, level);
            self.kick(k, me);
        }
    }

    /// INIT at secondary vCPU `k` from vCPU `me`: it leaves the guest and waits for STARTUP.
    pub fn init(&self, k: usize, me: usize) {
        if let Some(link) = self.links.get(k).filter(|_| k != 0) {
            link.gate.init();
            self.kick(k, me);
        }
    }

    /// STARTUP at secondary vCPU `k` with `vector`, from vCPU `me`: honoured only after
    /// INIT.
    pub fn startup(&self, k: usize, vector: u8, me: usize) {
        let Some(link) = self.links.get(k).filter(|_| k != 0) else {
            return;
        };
        if link.gate.startup(vector) {
            self.kick(k, me);
        }
    }

    /// The qube starts or stops (the primary calls this): every secondary is parked, back
    /// at power-on, and out of the guest when this returns (each is kicked, and leaves at
    /// its next exit: it sees itself parked before entering again; the protocol and its
    /// model check are `bulkhead_hvcore::ap_gate`).
    pub fn park_secondaries(&self) {
        let n = usize::from(self.vcpus);
        for (k, link) in self.links.iter().enumerate().take(n).skip(1) {
            link.gate.park();
            link.discard_interrupts();
            self.kick(k, 0);
        }
        for link in self.links.iter().take(n).skip(1) {
            while link.gate.inside() {
                core::hint::spin_loop();
            }
        }
        for (k, link) in self.links.iter().enumerate() {
            link.publish_address(&LocalApic::new(k as u8, 1, 1));
        }
        self.stop_pending.store(false, Ordering::SeqCst);
        let _ = self.stop.with_spin(|s| *s = None);
        self.ready.store(false, Ordering::Relaxed);
    }

    /// Secondary `me` asks the primary to stop the qube (the first reason counts).
    pub fn request_stop(&self, stop: Stop, me: usize) {
        let _ = self.stop.with_spin(|s| {
            if s.is_none() {
                *s = Some(stop);
            }
        });
        self.stop_pending.store(true, Ordering::SeqCst);
        self.kick(0, me);
    }

    /// Whether guest-physical `gpa` lies in the peer's pool of one of the qube's bulk areas
    /// (mapped read-only: a write there is a fault).
    pub fn in_peer_pool(&self, gpa: u64) -> bool {
        self.channels.iter().enumerate().any(|(local, c)| {
            let offset = gpa.wrapping_sub(bulkhead_abi::channel::bulk_window(local));
            bulkhead_hvcore::bulk::in_peer_pool(c.bulk_len, c.side, offset)
        })
    }

    /// Whether a secondary asked for a stop.
    pub fn stop_pending(&self) -> bool {
        self.stop_pending.fetch_or(false, Ordering::SeqCst)
    }

    /// The stop a secondary asked for, taken.
    pub fn take_stop(&self) -> Option<Stop> {
        if !self.stop_pending() {
            return None;
        }
        self.stop.with_spin(|s| s.take()).flatten()
    }

    /// Writes console bytes (from the UART), noticing the agent's ready line.
    pub fn console_write(&self, d: &mut Devices, bytes: &[u8]) {
        let (id, name, label) = (self.qube, self.name.as_str(), self.label);
        let mut ready = false;
        d.console.push(bytes, |line| {
            ready |= line.starts_with(super::READY_LINE);
            crate::console::qube_line(id, name, label, line)
        });
        if ready {
            self.ready.store(true, Ordering::Release);
        }
    }

    /// Writes out the partial console line (the qube stops).
    pub fn console_flush(&self) {
        let (id, name, label) = (self.qube, self.name.as_str(), self.label);
        let _ = self.devices.with_spin(|d| {
            d.console
                .flush(|line| crate::console::qube_line(id, name, label, line))
        });
    }

    /// Whether the ready line was seen since the last look.
    pub fn take_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.ready.swap(false, Ordering::Acquire)
    }
}
