//! Several CPUs. Each qube runs on one CPU for its whole life (placed at boot by
//! `bulkhead_hvcore::sched::place`), in that CPU's run queue ([`RUN_QUEUES`]): its `Qube`,
//! vCPU, memory and devices are touched by that CPU only. What CPUs share is here, all in
//! atomics or behind `Locked`:
//!
//! - per CPU ([`CPUS`]): its local APIC ID, whether it is online, its [`Sleeper`] (it may be
//!   halting) and which qube it is running;
//! - per qube ([`QUBES`]): where it runs, two [`Mailbox`]es other CPUs post to (channel
//!   events; admin start and kill requests), and a status its CPU publishes after every pass
//!   (for the admin qube's `AdminQubeState`, the "all qubes ready" line and DMA fault
//!   reports).
//!
//! A post to a qube on another CPU wakes that CPU with an IPI when it may be halting or is
//! running that very qube (`bulkhead_hvcore::wake` gives the protocol and its model check).

use crate::arch::x86::apic;
use crate::scheduler::{MAX_QUBES, Scheduler};
use crate::sync::Locked;
use bulkhead_abi::boot_info::NAME_MAX;
use bulkhead_hvcore::collections::{ArrayVec, BoundedString};
use bulkhead_hvcore::wake::{Mailbox, Sleeper};

pub mod start;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Most CPUs the hypervisor starts (more are left halted, and said so).
pub const MAX_CPUS: usize = bulkhead_hvcore::acpi::MAX_CPUS;

/// One CPU, as the others see it.
pub struct CpuSlot {
    /// Its local APIC ID.
    pub apic_id: AtomicU32,
    /// It runs its scheduler (or will, once the boot CPU lets it).
    pub online: AtomicBool,
    /// It may be halting.
    pub sleeper: Sleeper,
    /// The qube it runs now: its id + 1, 0 for none.
    pub running: AtomicUsize,
    /// Something was posted to one of its qubes since it last looked (so a pass with no
    /// mail reads this one word, not every qube's mailboxes).
    pub mail: AtomicBool,
}

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "only the array initialisers"
)]
const CPU_SLOT: CpuSlot = CpuSlot {
    apic_id: AtomicU32::new(0),
    online: AtomicBool::new(false),
    sleeper: Sleeper::new(),
    running: AtomicUsize::new(0),
    mail: AtomicBool::new(false),
};

/// Every CPU; slot 0 is the boot CPU.
pub static CPUS: [CpuSlot; MAX_CPUS] = [CPU_SLOT; MAX_CPUS];

/// What every CPU may read of a qube (written once at boot, before the other CPUs start).
pub struct QubeInfo {
    /// Its name.
    pub name: BoundedString<NAME_MAX>,
    /// Whether it starts at boot (counts for "all qubes ready").
    pub at_boot: bool,
    /// The PCI source IDs of its devices, to name it in DMA fault reports.
    pub devices: ArrayVec<u16, { bulkhead_abi::boot_info::MAX_DEVICES_PER_QUBE }>,
}

/// Status bits a qube's CPU publishes.
pub mod status {
    /// Not stopped.
    pub const RUNNING: u64 = 1 << 0;
    /// Said it is ready since its last start.
    pub const READY: u64 = 1 << 1;
    /// Its restart count: bits 16..32.
    pub const RESTARTS_SHIFT: u32 = 16;
}

/// Admin requests posted to a qube's CPU (bits of [`QubeSlot::requests`]); the bits above
/// [`request::BY_SHIFT`] hold the requesting qube's id.
pub mod request {
    /// Start it.
    pub const START: u64 = 1 << 0;
    /// Kill it.
    pub const KILL: u64 = 1 << 1;
    /// Where the requester's id starts.
    pub const BY_SHIFT: u32 = 8;
}

/// One qube, as every CPU sees it.
pub struct QubeSlot {
    /// It exists (placed at boot).
    pub placed: AtomicBool,
    /// The CPU that runs it.
    pub cpu: AtomicUsize,
    /// Channel events from qubes on other CPUs (bit = local channel index).
    pub events: Mailbox,
    /// Admin requests from the admin qube on another CPU ([`request`]).
    pub requests: Mailbox,
    /// [`status`] bits, published by its CPU after every pass.
    pub status: AtomicU64,
    /// When it last started (ns since boot).
    pub started_ns: AtomicU64,
    /// Its VM exits so far.
    pub exits: AtomicU64,
    /// Name, start policy and devices.
    pub info: Locked<Option<QubeInfo>>,
}

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "only the array initialisers"
)]
const QUBE_SLOT: QubeSlot = QubeSlot {
    placed: AtomicBool::new(false),
    cpu: AtomicUsize::new(0),
    events: Mailbox::new(),
    requests: Mailbox::new(),
    status: AtomicU64::new(0),
    started_ns: AtomicU64::new(0),
    exits: AtomicU64::new(0),
    info: Locked::new(None),
};

/// Every qube, by manifest index.
pub static QUBES: [QubeSlot; MAX_QUBES] = [QUBE_SLOT; MAX_QUBES];

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "only the array initialisers"
)]
const RUN_QUEUE: Locked<Scheduler> = Locked::new(Scheduler::new());

/// Each CPU's scheduler with the qubes placed on it. A CPU takes its own with
/// [`Locked::with`] when it starts running qubes and never lets go; the boot CPU fills them
/// all before that.
pub static RUN_QUEUES: [Locked<Scheduler>; MAX_CPUS] = [RUN_QUEUE; MAX_CPUS];

/// Posts `bits` to `mailbox` of qube `qube` (on another CPU) and wakes its CPU if needed.
pub fn post(qube: usize, bits: u64, mailbox: impl Fn(&QubeSlot) -> &Mailbox) {
    let Some(slot) = QUBES.get(qube).filter(|s| s.placed.load(Ordering::Acquire)) else {
        return;
    };
    mailbox(slot).post(bits);
    let cpu = slot.cpu.load(Ordering::Relaxed);
    let Some(c) = CPUS.get(cpu) else { return };
    c.mail.store(true, Ordering::Release);
    if c.sleeper.needs_kick() || c.running.load(Ordering::Relaxed) == qube + 1 {
        apic::send(
            c.apic_id.load(Ordering::Relaxed),
            apic::Ipi::Fixed(apic::WAKE_VECTOR),
        );
    }
}

/// The name of qube `qube` (as written at boot), for log lines on other CPUs.
pub fn name_of(qube: usize) -> BoundedString<NAME_MAX> {
    QUBES
        .get(qube)
        .and_then(|s| s.info.with_spin(|i| i.as_ref().map(|i| i.name)))
        .flatten()
        .unwrap_or_default()
}

/// Set when every at-boot qube was ready once ("all N qubes ready" is logged once).
pub static ALL_READY_REPORTED: AtomicBool = AtomicBool::new(false);
/// Set while "all qubes stopped; idle" stands (logged once until a qube runs again).
pub static ALL_STOPPED_REPORTED: AtomicBool = AtomicBool::new(false);

/// Whether every placed qube is stopped, as published.
pub fn all_stopped() -> bool {
    QUBES
        .iter()
        .filter(|s| s.placed.load(Ordering::Acquire))
        .all(|s| s.status.load(Ordering::Acquire) & status::RUNNING == 0)
}

/// What [`CpuSlot::running`] holds while a CPU runs vCPU `vcpu` of qube `qube` (for vCPU 0,
/// the qube's id + 1, as [`post`] expects).
pub fn running_key(qube: usize, vcpu: usize) -> usize {
    (vcpu << 16) | (qube + 1)
}

/// Wakes CPU `cpu` for something posted to vCPU `vcpu` of qube `qube` outside the qubes'
/// mailboxes (a Linux qube's interrupts between its vCPUs): an IPI when that CPU may be
/// halting, or runs that very vCPU, which the IPI makes exit. A CPU busy with something else
/// sees the post at its next pass (its scheduler looks at the vCPUs' links on every pass),
/// so a guest's IPIs cannot make other qubes exit.
pub fn kick(cpu: usize, qube: usize, vcpu: usize) {
    let Some(c) = CPUS.get(cpu) else { return };
    c.mail.store(true, Ordering::Release);
    if c.sleeper.needs_kick() || c.running.load(Ordering::Relaxed) == running_key(qube, vcpu) {
        apic::send(
            c.apic_id.load(Ordering::Relaxed),
            apic::Ipi::Fixed(apic::WAKE_VECTOR),
        );
    }
}
