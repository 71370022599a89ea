//! The run loop: picks a qube (policy in `bulkhead_hvcore::sched`), runs it until its slice
//! ends or it yields, waits or stops, applies restart policies, and idles the CPU with HLT
//! when no qube wants it.

use crate::arch::x86::{apic, cpu};
use crate::exits::{Outcome, Stop};
use crate::qube::Qube;
use crate::{hvlog, time};
use bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE;
use bulkhead_abi::hypercall::{HcError, Hypercall, QubeState};
use bulkhead_abi::manifest::StartPolicy;
use bulkhead_hvcore::collections::{ArrayVec, BoundedVec};
use bulkhead_hvcore::sched::{self, RunState, TIME_SLICE_NS};

/// Most qubes the hypervisor runs.
pub const MAX_QUBES: usize = bulkhead_abi::manifest::MAX_QUBES;

/// Every qube, in manifest order.
pub type Qubes = BoundedVec<Qube, MAX_QUBES>;

/// All qubes and the scheduler's bookkeeping.
pub struct Scheduler {
    qubes: Qubes,
    current: usize,
    all_ready_reported: bool,
    /// Which qube last ran under each TLB tag. Qubes outnumber ASIDs on some CPUs (TCG has
    /// 16), so two qubes may share a tag; the TLB is flushed when the owner changes, so no
    /// qube can use another's cached translations.
    tag_owner: [Option<usize>; TAGS],
    /// The IOMMU, polled for DMA faults on every pass.
    iommu: Option<crate::devices::vtd::Iommu>,
    /// DMA faults logged so far (the log stops after [`MAX_FAULT_LINES`]).
    dma_faults: u64,
    /// The channels' pages (started over when an end restarts).
    channels: Option<crate::channels::Regions>,
    /// Each qube's run state as the current pass sees it.
    states: [RunState; MAX_QUBES],
}

/// The shortest time a guest is entered for: enough for the entry itself, so a timer armed
/// for a deadline already past does not fire before the guest runs at all.
const MIN_ENTRY_NS: u64 = 100_000;

/// DMA fault lines logged before they are only counted.
const MAX_FAULT_LINES: u64 = 16;

const TAGS: usize = 64;

impl Scheduler {
    /// No qubes yet.
    pub fn new() -> Scheduler {
        Scheduler {
            qubes: BoundedVec::new(),
            channels: None,
            states: [RunState::Stopped; MAX_QUBES],
            current: 0,
            all_ready_reported: false,
            tag_owner: [None; TAGS],
            iommu: None,
            dma_faults: 0,
        }
    }

    /// Hands over the channels' pages.
    pub fn set_channels(&mut self, channels: crate::channels::Regions) {
        self.channels = Some(channels);
    }

    /// Hands over the IOMMU, whose faults the run loop reports.
    pub fn set_iommu(&mut self, iommu: Option<crate::devices::vtd::Iommu>) {
        self.iommu = iommu;
    }

    /// Logs the DMA faults the IOMMU recorded, naming the device and the qube that owns it.
    fn report_dma_faults(&mut self) {
        let Some(iommu) = &self.iommu else { return };
        let qubes = &self.qubes;
        let count = &mut self.dma_faults;
        iommu.drain_faults(|f| {
            *count += 1;
            if *count > MAX_FAULT_LINES {
                return;
            }
            let owner = qubes.iter().find_map(|q| {
                let mut devices = q.machine.devices.iter();
                let d = devices.find(|d| d.func.source_id() == f.source)?;
                Some((q.name(), d.func))
            });
            let src = f.source;
            let kind = if f.write { "write" } else { "read" };
            match owner {
                Some((qube, d)) => hvlog!(
                    "iommu: blocked DMA {kind} at {:#x} by {d} of qube {qube}: {}",
                    f.address,
                    f.reason_text()
                ),
                None => hvlog!(
                    "iommu: blocked DMA {kind} at {:#x} by {:02x}:{:02x}.{} (no qube): {}",
                    f.address,
                    src >> 8,
                    (src >> 3) & 0x1f,
                    src & 7,
                    f.reason_text()
                ),
            }
            if *count == MAX_FAULT_LINES {
                hvlog!("iommu: further DMA faults are counted, not logged");
            }
        });
    }

    /// Adds a loaded qube; false when the table is full.
    pub fn add(&mut self, q: Qube) -> bool {
        let ok = self.qubes.push(q).is_ok();
        self.current = self.qubes.len().saturating_sub(1); // so the first qube runs first
        ok
    }

    /// Runs qubes forever.
    pub fn run(&mut self) -> ! {
        let mut stopped_reported = false;
        loop {
            crate::arch::x86::stack::check();
            let qubes = &self.qubes;
            crate::console::report_drops(|id| qubes.iter().find(|q| q.id() == id).map(Qube::name));
            self.report_dma_faults();
            // The run states, updated in place (a fresh copy every pass showed in the
            // round-trip figures).
            let n = self.qubes.len();
            for (s, q) in self.states.iter_mut().zip(self.qubes.iter()) {
                *s = q.state;
            }
            let (states, qubes) = (&mut self.states[..n], &self.qubes);
            sched::wake(states, time::now_ns(), |i| qubes[i].machine.events != 0);
            let states = &self.states[..n];
            for (q, s) in self.qubes.iter_mut().zip(states.iter()) {
                q.state = *s;
            }
            match sched::pick_next(states, self.current) {
                Some(i) => {
                    stopped_reported = false;
                    self.current = i;
                    self.run_slice(i);
                    self.report_all_ready();
                }
                None if states.iter().all(|s| *s == RunState::Stopped) => {
                    if !stopped_reported {
                        hvlog!("all qubes stopped; idle");
                        stopped_reported = true;
                    }
                    apic::arm_in(crate::console::idle_ns(TIME_SLICE_NS));
                    cpu::wait_for_interrupt();
                }
                // Everyone waits: sleep until the first deadline (at most one slice).
                None => {
                    let now = time::now_ns();
                    let until = sched::next_deadline(states)
                        .map_or(TIME_SLICE_NS, |d| d.saturating_sub(now))
                        .min(TIME_SLICE_NS);
                    apic::arm_in(crate::console::idle_ns(until));
                    cpu::wait_for_interrupt();
                }
            }
        }
    }

    fn run_slice(&mut self, i: usize) {
        let slice_end = time::now_ns().saturating_add(TIME_SLICE_NS);
        let q = &mut self.qubes[i];
        let tag = q.machine.vcpu.tlb_tag() as usize % TAGS;
        if self.tag_owner[tag] != Some(i) {
            q.machine.vcpu.flush_tlb_before_next_run();
            self.tag_owner[tag] = Some(i);
        }
        q.machine.vcpu.set_slice_end(slice_end);
        loop {
            // The slice can end while the hypervisor handles an exit: its timer interrupt
            // then arrives here, not in the guest, so the clock decides, and the timer is
            // armed again before every entry.
            let now = time::now_ns();
            if now >= slice_end {
                return;
            }
            let q = &mut self.qubes[i];
            q.before_entry();
            // The guest's own timer may come first: exit then to deliver it.
            let until = q.wake_deadline().map_or(slice_end, |d| d.min(slice_end));
            // Console output waiting for the UART: exit again when its FIFO has room.
            let until = crate::console::pump_until(now, until);
            // At least MIN_ENTRY_NS: the backend does not enter once the timer has fired (see
            // `SvmVcpu::enter`), so a deadline already past must still let the guest run a
            // little, or it would never run again.
            apic::arm_until(now, until.max(now + MIN_ENTRY_NS));
            let exit = q.machine.vcpu.run();
            match q.handle_exit(exit) {
                Outcome::Continue => {}
                Outcome::Signal { qube, bit } => self.signal(qube, bit),
                // Early (the guest's timer, the console, or the one-shot's rounding): the
                // rest of the slice is still ours.
                Outcome::Preempted => {}
                Outcome::Yield => return,
                Outcome::Wait(deadline) => {
                    self.qubes[i].state = RunState::Waiting { deadline };
                    return;
                }
                Outcome::Stop(stop) => {
                    self.stop(i, stop);
                    return;
                }
                Outcome::Admin { call, qube } => {
                    let result = self.admin(i, call, qube);
                    let vcpu = &mut self.qubes[i].machine.vcpu;
                    vcpu.set_rax(bulkhead_abi::hypercall::encode_result(result));
                }
            }
        }
    }

    /// Stops qube `i` (restarting it if its policy says so) and tells its peers when its
    /// channels were reset.
    fn stop(&mut self, i: usize, stop: Stop) {
        let restarted = stop_qube(&mut self.qubes[i], &mut self.channels, stop);
        let killed = matches!(stop, Stop::Killed);
        if restarted || killed || self.qubes[i].spec().start == StartPolicy::OnRequest {
            self.tell_peers(i);
        }
    }

    /// Raises, at each peer of qube `i`, the event of their shared channel: its channels
    /// were reset (it stopped or started over).
    fn tell_peers(&mut self, i: usize) {
        let peers = ArrayVec::<(usize, usize), MAX_CHANNELS_PER_QUBE>::try_from_iter(
            self.qubes[i]
                .machine
                .channels
                .iter()
                .map(|c| (c.peer, c.peer_local)),
        )
        .unwrap_or_default();
        for &(qube, bit) in peers.iter() {
            self.signal(qube, bit);
        }
    }

    /// Carries out an admin hypercall of qube `caller` (the admin qube) on the qube with
    /// manifest index `target`.
    fn admin(&mut self, caller: usize, call: Hypercall, target: u64) -> Result<u64, HcError> {
        let t = self
            .qubes
            .iter()
            .position(|q| q.id() as u64 == target)
            .ok_or(HcError::Invalid)?;
        let now = time::now_ns();
        let q = &self.qubes[t];
        let running = q.state != RunState::Stopped;
        match call {
            Hypercall::AdminQubeState => Ok(QubeState {
                running,
                ready: running && q.machine.ready,
                restarts: q.restarts.min(u32::from(u16::MAX)) as u16,
                uptime_ms: if running {
                    now.saturating_sub(q.started_ns) / 1_000_000
                } else {
                    0
                },
            }
            .to_u64()),
            _ if t == caller => Err(HcError::Invalid),
            Hypercall::AdminStart if running => Err(HcError::Busy),
            Hypercall::AdminStart => {
                if let Some(regions) = self.channels.as_mut() {
                    for c in self.qubes[t].machine.channels.iter() {
                        regions.reset(c.id);
                    }
                }
                let by = self.qubes[caller].spec().name;
                let q = &mut self.qubes[t];
                if let Err(e) = q.load() {
                    hvlog!("qube {} not started by {by}: {e}", q.name());
                    q.state = RunState::Stopped;
                    return Err(HcError::Busy);
                }
                hvlog!("qube {} started by {by}", q.name());
                self.tell_peers(t);
                Ok(0)
            }
            Hypercall::AdminKill if !running => Err(HcError::Busy),
            Hypercall::AdminKill => {
                let by = self.qubes[caller].spec().name;
                hvlog!("qube {}: killed by {by}", self.qubes[t].name());
                self.stop(t, Stop::Killed);
                Ok(0)
            }
            _ => Err(HcError::Invalid),
        }
    }

    /// Raises event `bit` at the qube with manifest index `qube` (if it exists). A waiting
    /// qube becomes runnable on the scheduler's next pass; events accumulate until read.
    fn signal(&mut self, qube: usize, bit: usize) {
        let Some(q) = self.qubes.iter_mut().find(|q| q.id() == qube) else {
            return;
        };
        if q.state == RunState::Stopped && q.spec().start == StartPolicy::OnRequest {
            // A disposable starts from scratch when a qube allowed to (it has a channel to
            // it) asks; its request is already in the channel.
            match q.load() {
                Ok(()) => hvlog!("qube {} started on request", q.name()),
                Err(e) => {
                    hvlog!("qube {} not started on request: {e}", q.name());
                    return;
                }
            }
        }
        q.machine.events |= 1 << (bit % 64);
    }

    fn report_all_ready(&mut self) {
        let at_boot = || {
            self.qubes
                .iter()
                .filter(|q| q.spec().start == StartPolicy::AtBoot)
        };
        if self.all_ready_reported || !at_boot().all(|q| q.machine.ready) {
            return;
        }
        self.all_ready_reported = true;
        let exits: u64 = at_boot().map(|q| q.machine.vcpu.exit_count()).sum();
        let ms = time::now_ns() / 1_000_000;
        hvlog!(
            "all {} qubes ready: {exits} VM exits, {ms} ms since boot",
            at_boot().count()
        );
    }
}

/// Stops a qube, logs why, and restarts it if its policy and restart budget say so.
/// Returns whether it was restarted (its channels were then reset).
fn stop_qube(q: &mut Qube, channels: &mut Option<crate::channels::Regions>, stop: Stop) -> bool {
    let mut reset_channels = |q: &Qube| {
        if let Some(regions) = channels.as_mut() {
            for c in q.machine.channels.iter() {
                regions.reset(c.id);
            }
        }
    };
    q.on_stop();
    let name = q.spec().name;
    crate::console::report_drops_now(q.id(), &name);
    let failed = match stop {
        Stop::Exited(status) => {
            // Signed: a qube's exit(-1) is status -1 (docs/console.md).
            hvlog!("qube {name} exited with status {}", status as i64);
            status != 0
        }
        Stop::Fault(fault) => {
            hvlog!("qube {name} stopped: {fault}");
            true
        }
        Stop::Killed => false,
    };
    q.state = RunState::Stopped;
    for d in q.machine.devices.iter_mut() {
        d.quiesce();
    }
    if q.spec().start == StartPolicy::OnRequest {
        // A disposable leaves nothing behind: its memory is zeroed and read back, and its
        // channels start over (the requester sees the reset).
        let nonzero = q.wipe();
        reset_channels(q);
        hvlog!(
            "qube {name}: memory wiped ({} MiB), read back: {}",
            q.spec().memory_mib,
            if nonzero == 0 { "all zero" } else { "NOT ZERO" }
        );
        if nonzero != 0 {
            hvlog!("qube {name}: {nonzero} bytes still non-zero; it will not start again");
            q.machine.spec.start = StartPolicy::AtBoot;
        }
        return false;
    }
    if matches!(stop, Stop::Killed) {
        // Killed on purpose: not restarted, and its peers see its channels reset.
        reset_channels(q);
        return false;
    }
    if !q.spec().restart.restarts(failed) {
        return false;
    }
    if !sched::may_restart(q.restarts) {
        hvlog!(
            "qube {name} not restarted: it already restarted {} times",
            q.restarts
        );
        return false;
    }
    q.restarts += 1;
    hvlog!(
        "qube {name} restarting (attempt {} of {})",
        q.restarts,
        sched::MAX_RESTARTS
    );
    reset_channels(q);
    if let Err(e) = q.load() {
        hvlog!("qube {name} stopped: restart failed: {e}");
        q.state = RunState::Stopped;
    }
    true
}
