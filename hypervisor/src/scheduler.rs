//! The run loop of one CPU: picks one of the qubes placed on this CPU (policy in
//! `bulkhead_hvcore::sched`), runs it until its slice ends or it yields, waits or stops,
//! applies restart policies, and idles the CPU with HLT when no qube wants it. Every CPU
//! has one (`crate::smp::RUN_QUEUES`); what crosses CPUs (events and admin requests to a
//! qube placed elsewhere, the published status) goes through `crate::smp`.

use crate::arch::x86::{apic, cpu};
use crate::devices::irq;
use crate::exits::{Outcome, Stop};
use crate::guest::LinuxAp;
use crate::qube::Qube;
use crate::smp::{self, QUBES, request, status};
use crate::sync::Locked;
use crate::{hvlog, time};
use bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE;
use bulkhead_abi::hypercall::{HcError, Hypercall, QubeState};
use bulkhead_abi::manifest::StartPolicy;
use bulkhead_hvcore::collections::{ArrayVec, BoundedVec};
use bulkhead_hvcore::sched::{self, RunState, TIME_SLICE_NS};
use core::sync::atomic::Ordering;

/// Most qubes the hypervisor runs.
pub const MAX_QUBES: usize = bulkhead_abi::manifest::MAX_QUBES;

/// The qubes of one CPU, in manifest order (each in frames of its own, so that the per-CPU
/// run queues, which are statics, stay small and all zero).
pub type Qubes = BoundedVec<&'static mut Qube, MAX_QUBES>;

/// Most secondary vCPUs of Linux qubes one CPU runs.
pub const MAX_APS: usize = 16;

/// The secondary vCPUs of Linux qubes placed on one CPU (their qubes' first vCPUs are in
/// [`Qubes`], maybe on another CPU).
pub type Aps = BoundedVec<&'static mut LinuxAp, MAX_APS>;

/// The channels' pages (started over when an end restarts), shared by every CPU.
static CHANNELS: Locked<Option<crate::channels::Regions>> = Locked::new(None);

/// Hands over the channels' pages.
pub fn set_channels(channels: crate::channels::Regions) {
    let _ = CHANNELS.with(|c| *c = Some(channels));
}

/// Starts over the regions of `q`'s channels (it restarted, stopped for good, or was
/// started again). Waits for another CPU doing the same for its qube.
fn reset_channels(q: &Qube) {
    let done = CHANNELS.with_spin(|regions| {
        if let Some(regions) = regions.as_mut() {
            for c in q.machine.channels.iter() {
                regions.reset(c.id);
            }
        }
    });
    if done.is_none() {
        hvlog!(
            "qube {}: its channels could not be reset (lock held)",
            q.name()
        );
    }
}

/// The qubes placed on one CPU and its scheduler's bookkeeping.
pub struct Scheduler {
    /// This CPU's number (set when it starts running).
    cpu: usize,
    /// The device interrupt slots routed to this CPU (`devices::irq`).
    irq_slots: u64,
    /// The slots no device was given (the boot CPU watches them for strays).
    unrouted_slots: u64,
    qubes: Qubes,
    /// Secondary vCPUs of Linux qubes; in the run states they come after the qubes.
    aps: Aps,
    current: usize,
    /// This CPU's one-shot timer.
    timer: apic::Timer,
    /// Which qube last ran under each TLB tag. Qubes outnumber ASIDs on some CPUs (TCG has
    /// 16), so two qubes may share a tag; the TLB is flushed when the owner changes, so no
    /// qube can use another's cached translations.
    tag_owner: [Option<usize>; TAGS],
    /// The IOMMU, polled for DMA faults on every pass (the boot CPU's scheduler only).
    iommu: Option<&'static mut crate::devices::vtd::Iommu>,
    /// DMA faults logged so far (the log stops after [`MAX_FAULT_LINES`]).
    dma_faults: u64,
    /// Device vectors that fired with no device owning them, so far (boot CPU).
    stray_interrupts: u64,
    /// Each qube's, then each secondary vCPU's run state as the current pass sees it.
    states: [RunState; MAX_QUBES + MAX_APS],
}

/// The shortest time a guest is entered for: enough for the entry itself, so a timer armed
/// for a deadline already past does not fire before the guest runs at all.
const MIN_ENTRY_NS: u64 = 100_000;

/// DMA fault lines logged before they are only counted.
const MAX_FAULT_LINES: u64 = 16;

const TAGS: usize = 64;

impl Scheduler {
    /// No qubes yet.
    pub const fn new() -> Scheduler {
        Scheduler {
            cpu: 0,
            irq_slots: 0,
            unrouted_slots: 0,
            qubes: BoundedVec::new(),
            aps: BoundedVec::new(),
            states: [RunState::Stopped; MAX_QUBES + MAX_APS],
            current: 0,
            timer: apic::Timer::new(),
            tag_owner: [None; TAGS],
            iommu: None,
            dma_faults: 0,
            stray_interrupts: 0,
        }
    }

    /// Hands over the IOMMU, whose faults the run loop reports.
    pub fn set_iommu(&mut self, iommu: Option<&'static mut crate::devices::vtd::Iommu>) {
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
            let what = Blocked(f);
            let elsewhere = || {
                (0..MAX_QUBES).find(|&id| {
                    QUBES[id]
                        .info
                        .with_spin(|i| i.as_ref().is_some_and(|i| i.devices.contains(&src)))
                        .unwrap_or(false)
                })
            };
            match owner {
                None if let Some(id) = elsewhere() => hvlog!(
                    "iommu: blocked {what} by {:02x}:{:02x}.{} of qube {}: {}",
                    src >> 8,
                    (src >> 3) & 0x1f,
                    src & 7,
                    smp::name_of(id).as_str(),
                    f.reason_text()
                ),
                Some((qube, d)) => hvlog!(
                    "iommu: blocked {what} by {d} of qube {qube}: {}",
                    f.reason_text()
                ),
                None => hvlog!(
                    "iommu: blocked {what} by {:02x}:{:02x}.{} (no qube): {}",
                    src >> 8,
                    (src >> 3) & 0x1f,
                    src & 7,
                    f.reason_text()
                ),
            }
            if *count == MAX_FAULT_LINES {
                hvlog!("iommu: further faults are counted, not logged");
            }
        });
    }

    /// Logs device vectors that fired without a device owning them (the first few).
    fn report_stray_interrupts(&mut self) {
        let mut stray = irq::take_fired(self.unrouted_slots);
        while stray != 0 {
            let slot = stray.trailing_zeros();
            stray &= stray - 1;
            self.stray_interrupts += 1;
            if self.stray_interrupts <= MAX_FAULT_LINES {
                hvlog!(
                    "interrupt on vector {:#x}, which no device was given: a message no remapping entry names",
                    u32::from(irq::FIRST_VECTOR) + slot
                );
            }
        }
    }

    /// Adds a loaded qube; false when the table is full.
    pub fn add(&mut self, q: &'static mut Qube) -> bool {
        let ok = self.qubes.push(q).is_ok();
        self.current = self.qubes.len().saturating_sub(1); // so the first qube runs first
        ok
    }

    /// Adds a secondary vCPU of a Linux qube; false when the table is full.
    pub fn add_ap(&mut self, ap: &'static mut LinuxAp) -> bool {
        self.aps.push(ap).is_ok()
    }

    /// Runs this CPU's qubes forever; `cpu` is this CPU's number.
    pub fn run(&mut self, cpu: usize) -> ! {
        self.cpu = cpu;
        // Both fixed from here on: routes are written at boot, before any CPU runs qubes.
        self.irq_slots = irq::slots_of(cpu);
        self.unrouted_slots = !irq::routed();
        loop {
            crate::arch::x86::stack::check(cpu);
            if cpu == 0 {
                crate::console::report_drops();
                self.report_dma_faults();
                self.report_stray_interrupts();
            }
            self.take_mail();
            if self.irq_slots != 0 {
                self.take_device_interrupts();
            }
            // The run states, updated in place (a fresh copy every pass showed in the
            // round-trip figures).
            let nq = self.qubes.len();
            let n = nq + self.aps.len();
            for (s, q) in self.states.iter_mut().zip(self.qubes.iter()) {
                *s = q.state;
            }
            let (states, qubes, aps) = (&mut self.states[..n], &self.qubes, &self.aps);
            let now = time::now_ns();
            if aps.is_empty() {
                // The common case, kept as short as it was before secondary vCPUs.
                sched::wake(states, now, |i| qubes[i].has_wake());
            } else {
                for (s, a) in states[nq..].iter_mut().zip(aps.iter()) {
                    *s = a.state;
                }
                sched::wake(states, now, |i| match i.checked_sub(nq) {
                    None => qubes[i].has_wake(),
                    Some(a) => aps[a].has_wake(),
                });
                for (a, s) in self.aps.iter_mut().zip(self.states[nq..n].iter()) {
                    a.state = *s;
                }
            }
            let states = &self.states[..n];
            for (q, s) in self.qubes.iter_mut().zip(states.iter()) {
                q.state = *s;
            }
            match sched::pick_next(states, self.current) {
                Some(i) => {
                    if smp::ALL_STOPPED_REPORTED.load(Ordering::Relaxed) {
                        smp::ALL_STOPPED_REPORTED.store(false, Ordering::Relaxed);
                    }
                    self.current = i;
                    match i.checked_sub(nq) {
                        None => self.run_slice(i),
                        Some(a) => self.run_ap_slice(a),
                    }
                    self.report_all_ready();
                }
                None => {
                    let until = if states[..nq].iter().all(|s| *s == RunState::Stopped) {
                        if smp::all_stopped()
                            && !smp::ALL_STOPPED_REPORTED.swap(true, Ordering::Relaxed)
                        {
                            hvlog!("all qubes stopped; idle");
                        }
                        TIME_SLICE_NS
                    } else {
                        // Everyone waits: sleep until the first deadline (at most one slice).
                        let now = time::now_ns();
                        sched::next_deadline(states)
                            .map_or(TIME_SLICE_NS, |d| d.saturating_sub(now))
                            .min(TIME_SLICE_NS)
                    };
                    self.idle(crate::console::idle_ns(until));
                }
            }
        }
    }

    /// Halts this CPU for at most `ns`, unless mail arrived for one of its qubes (see
    /// `bulkhead_hvcore::wake`: the flag is raised with interrupts off, the mailboxes read
    /// after it, and `sti; hlt` ends at an IPI sent at any point since).
    fn idle(&mut self, ns: u64) {
        let me = &smp::CPUS[self.cpu];
        cpu::disable_interrupts();
        me.sleeper.going_idle();
        let mail = irq::any_fired(self.irq_slots)
            || self.qubes.iter().any(|q| {
                let slot = &QUBES[q.id()];
                slot.events.has_mail() || slot.requests.has_mail() || q.has_wake()
            })
            || self.aps.iter().any(|a| a.has_wake());
        if !mail {
            self.timer.arm_in(ns);
            cpu::wait_for_interrupt();
        } else {
            cpu::enable_interrupts();
        }
        me.sleeper.awake();
    }

    /// Delivers what other CPUs posted to this CPU's qubes: channel events and admin requests.
    fn take_mail(&mut self) {
        let flag = &smp::CPUS[self.cpu].mail;
        // Cleared before the mailboxes are read: a post after this sets it again.
        if !flag.load(Ordering::Relaxed) || !flag.swap(false, Ordering::AcqRel) {
            return;
        }
        for i in 0..self.qubes.len() {
            let id = self.qubes[i].id();
            let events = QUBES[id].events.take();
            if events != 0 {
                self.deliver(i, events);
            }
            let requests = QUBES[id].requests.take();
            if requests != 0 {
                let _ = self.carry_out(i, requests);
            }
        }
    }

    /// Raises the event bit of every device whose interrupt (routed to this CPU) fired, at
    /// its qube. Returns whether there was any.
    fn take_device_interrupts(&mut self) -> bool {
        let mut fired = irq::take_fired(self.irq_slots);
        let any = fired != 0;
        while fired != 0 {
            let slot = fired.trailing_zeros() as usize;
            fired &= fired - 1;
            let Some(route) = irq::route(slot) else {
                continue;
            };
            let bit = bulkhead_abi::hypercall::device_event_bit(route.device);
            if let Some(q) = self.qubes.iter_mut().find(|q| q.id() == route.qube) {
                q.machine.events |= 1 << bit;
            }
        }
        any
    }

    /// Publishes this CPU's qubes' status for the other CPUs: called where a status changes
    /// (a stop, a start, a qube saying it is ready), not on every pass. Only what changed is
    /// written.
    fn publish(&self) {
        // The exit counts serve only the "all qubes ready" line.
        let exits_wanted = !smp::ALL_READY_REPORTED.load(Ordering::Relaxed);
        for q in self.qubes.iter() {
            let slot = &QUBES[q.id()];
            let mut bits = u64::from(q.restarts.min(0xFFFF)) << status::RESTARTS_SHIFT;
            if q.state != RunState::Stopped {
                bits |= status::RUNNING;
                if q.machine.ready {
                    bits |= status::READY;
                }
            }
            if slot.status.load(Ordering::Relaxed) != bits
                || slot.started_ns.load(Ordering::Relaxed) != q.started_ns
            {
                // The start time first: a reader that sees the new status sees it too.
                slot.started_ns.store(q.started_ns, Ordering::Relaxed);
                slot.status.store(bits, Ordering::Release);
            }
            if exits_wanted {
                slot.exits
                    .store(q.machine.vcpu.exit_count(), Ordering::Relaxed);
            }
        }
    }

    fn run_slice(&mut self, i: usize) {
        // Alone on a CPU (not the boot CPU, which reports DMA faults and console drops
        // between slices), a qube runs with no slice at all: nothing else wants this CPU, and
        // mail for the other (stopped) qubes here wakes the CPU by IPI, as if it were
        // halting. Two qubes polling a channel from two CPUs then exchange messages with no
        // VM exit.
        let alone = self.cpu != 0
            && self.aps.is_empty()
            && (self.qubes.iter().enumerate()).all(|(j, q)| j == i || q.state == RunState::Stopped);
        let sleeper = &smp::CPUS[self.cpu].sleeper;
        if alone {
            sleeper.going_idle();
            if self.others_have_mail(i) {
                sleeper.awake();
                return;
            }
        }
        let slice_end = if alone {
            u64::MAX
        } else {
            time::now_ns().saturating_add(TIME_SLICE_NS)
        };
        let q = &mut self.qubes[i];
        let tag = q.machine.vcpu.tlb_tag() as usize % TAGS;
        if self.tag_owner[tag] != Some(i) {
            q.machine.vcpu.flush_tlb_before_next_run();
            self.tag_owner[tag] = Some(i);
        }
        q.machine.vcpu.set_slice_end(slice_end);
        let id = q.id();
        let running = &smp::CPUS[self.cpu].running;
        running.store(smp::running_key(id, 0), Ordering::Relaxed);
        self.run_until(i, slice_end, alone);
        running.store(0, Ordering::Relaxed);
        if alone {
            smp::CPUS[self.cpu].sleeper.awake();
        }
    }

    /// Whether a qube of this CPU other than `i` waits and has events now.
    fn another_was_woken(&self, i: usize) -> bool {
        (self.qubes.iter().enumerate()).any(|(j, q)| {
            j != i && q.machine.events != 0 && matches!(q.state, RunState::Waiting { .. })
        })
    }

    /// Whether another CPU posted to one of this CPU's qubes other than `i`.
    fn others_have_mail(&self, i: usize) -> bool {
        (self.qubes.iter().enumerate()).any(|(j, q)| {
            let slot = &QUBES[q.id()];
            j != i && (slot.events.has_mail() || slot.requests.has_mail())
        })
    }

    /// Runs qube `i` until `slice_end`, or until it yields, waits or stops; `alone`: with no
    /// slice, until mail arrives for another qube of this CPU.
    fn run_until(&mut self, i: usize, slice_end: u64, alone: bool) {
        let mailbox = &QUBES[self.qubes[i].id()].events;
        let mut first = true;
        loop {
            // The slice can end while the hypervisor handles an exit: its timer interrupt
            // then arrives here, not in the guest, so the clock decides, and the timer is
            // armed again before every entry.
            let now = time::now_ns();
            if now >= slice_end {
                return;
            }
            // Events a qube on another CPU raised since the last entry.
            let events = mailbox.take();
            let q = &mut self.qubes[i];
            q.machine.events |= events;
            // A stop another of its vCPUs asked for: looked for at the start of a slice and
            // after a kick (the other vCPU's CPU raised this CPU's mail flag).
            if q.has_siblings()
                && (first || smp::CPUS[self.cpu].mail.load(Ordering::Relaxed))
                && let Some(stop) = q.take_stop()
            {
                self.stop(i, stop);
                return;
            }
            first = false;
            q.before_entry();
            // The guest's own timer may come first: exit then to deliver it.
            let until = q.wake_deadline().map_or(slice_end, |d| d.min(slice_end));
            // Console output waiting for the UART: exit again when its FIFO has room.
            let until = crate::console::pump_until(now, until);
            // At least MIN_ENTRY_NS: the backend does not enter once the timer has fired (see
            // `SvmVcpu::enter`), so a deadline already past must still let the guest run a
            // little, or it would never run again.
            self.timer.arm_until(now, until.max(now + MIN_ENTRY_NS));
            let was_ready = q.machine.ready;
            let exit = q.machine.vcpu.run();
            let outcome = q.handle_exit(exit);
            if q.machine.ready != was_ready {
                // Published now, not after the slice: a slice may last forever (`alone`).
                self.publish();
            }
            if alone && smp::CPUS[self.cpu].mail.load(Ordering::Acquire) && self.others_have_mail(i)
            {
                return;
            }
            // A device interrupt for a waiting qube of this CPU ends the slice, so the
            // qube runs now rather than after the rest of it.
            if self.irq_slots != 0 && self.take_device_interrupts() && self.another_was_woken(i) {
                return;
            }
            match outcome {
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

    /// Runs secondary vCPU `a` until its slice ends, or until it yields, waits or is
    /// parked (its qube stopped, or the guest sent it INIT).
    fn run_ap_slice(&mut self, a: usize) {
        let slice_end = time::now_ns().saturating_add(TIME_SLICE_NS);
        let key = MAX_QUBES + a;
        let ap = &mut self.aps[a];
        let tag = ap.vcpu.tlb_tag() as usize % TAGS;
        if self.tag_owner[tag] != Some(key) {
            ap.vcpu.flush_tlb_before_next_run();
            self.tag_owner[tag] = Some(key);
        }
        ap.vcpu.set_slice_end(slice_end);
        let running = &smp::CPUS[self.cpu].running;
        running.store(smp::running_key(ap.qube(), ap.index()), Ordering::Relaxed);
        loop {
            let now = time::now_ns();
            if now >= slice_end {
                break;
            }
            let ap = &mut self.aps[a];
            if !ap.before_entry() {
                ap.state = RunState::Waiting { deadline: None };
                break;
            }
            let until = ap.wake_deadline().map_or(slice_end, |d| d.min(slice_end));
            let until = crate::console::pump_until(now, until);
            self.timer.arm_until(now, until.max(now + MIN_ENTRY_NS));
            let exit = ap.run();
            let outcome = ap.handle_exit(exit);
            if self.irq_slots != 0
                && self.take_device_interrupts()
                && self.another_was_woken(usize::MAX)
            {
                break;
            }
            match outcome {
                Outcome::Continue | Outcome::Preempted => {}
                Outcome::Signal { qube, bit } => self.signal(qube, bit),
                Outcome::Yield => break,
                Outcome::Wait(deadline) => {
                    self.aps[a].state = RunState::Waiting { deadline };
                    break;
                }
                // Its stops went to its qube's first vCPU (`LinuxAp::handle_exit`); a Linux
                // guest makes no admin calls.
                Outcome::Stop(_) | Outcome::Admin { .. } => {
                    self.aps[a].state = RunState::Waiting { deadline: None };
                    break;
                }
            }
        }
        running.store(0, Ordering::Relaxed);
    }

    /// Stops qube `i` (restarting it if its policy says so) and tells its peers when its
    /// channels were reset.
    fn stop(&mut self, i: usize, stop: Stop) {
        let restarted = stop_qube(&mut self.qubes[i], stop);
        self.publish();
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

    /// Carries out an admin hypercall of this CPU's qube `caller` (the admin qube) on the qube
    /// with manifest index `target`, here or on its CPU. A start or kill of a qube on another
    /// CPU is posted there and answered at once: its CPU carries it out on its next pass.
    fn admin(&mut self, caller: usize, call: Hypercall, target: u64) -> Result<u64, HcError> {
        let by = self.qubes[caller].id();
        let target = usize::try_from(target)
            .ok()
            .filter(|&t| {
                QUBES
                    .get(t)
                    .is_some_and(|s| s.placed.load(Ordering::Acquire))
            })
            .ok_or(HcError::Invalid)?;
        let local = self.qubes.iter().position(|q| q.id() == target);
        let (running, ready, restarts, started_ns) = match local {
            Some(t) => {
                let q = &self.qubes[t];
                (
                    q.state != RunState::Stopped,
                    q.machine.ready,
                    q.restarts,
                    q.started_ns,
                )
            }
            None => {
                let slot = &QUBES[target];
                let bits = slot.status.load(Ordering::Acquire);
                (
                    bits & status::RUNNING != 0,
                    bits & status::READY != 0,
                    (bits >> status::RESTARTS_SHIFT) as u32 & 0xFFFF,
                    slot.started_ns.load(Ordering::Relaxed),
                )
            }
        };
        let kind = match call {
            Hypercall::AdminQubeState => {
                let uptime_ns = time::now_ns().saturating_sub(started_ns);
                return Ok(QubeState {
                    running,
                    ready: running && ready,
                    restarts: restarts.min(u32::from(u16::MAX)) as u16,
                    uptime_ms: if running { uptime_ns / 1_000_000 } else { 0 },
                }
                .to_u64());
            }
            _ if target == by => return Err(HcError::Invalid),
            Hypercall::AdminStart if running => return Err(HcError::Busy),
            Hypercall::AdminKill if !running => return Err(HcError::Busy),
            Hypercall::AdminStart => request::START,
            Hypercall::AdminKill => request::KILL,
            _ => return Err(HcError::Invalid),
        };
        let req = kind | (by as u64) << request::BY_SHIFT;
        match local {
            Some(t) => self.carry_out(t, req),
            None => {
                smp::post(target, req, |s| &s.requests);
                Ok(0)
            }
        }
    }

    /// Carries out admin request `req` ([`request`]) on this CPU's qube `t`.
    fn carry_out(&mut self, t: usize, req: u64) -> Result<u64, HcError> {
        let by = smp::name_of((req >> request::BY_SHIFT) as usize);
        let running = self.qubes[t].state != RunState::Stopped;
        if req & request::KILL != 0 && running {
            hvlog!("qube {}: killed by {by}", self.qubes[t].name());
            self.stop(t, Stop::Killed);
            return Ok(0);
        }
        if req & request::START == 0 || running {
            return Err(HcError::Busy);
        }
        reset_channels(&self.qubes[t]);
        let q = &mut self.qubes[t];
        let loaded = q.load();
        if loaded.is_err() {
            q.state = RunState::Stopped;
        }
        self.publish();
        let q = &self.qubes[t];
        if let Err(e) = loaded {
            hvlog!("qube {} not started by {by}: {e}", q.name());
            return Err(HcError::Busy);
        }
        hvlog!("qube {} started by {by}", q.name());
        self.tell_peers(t);
        Ok(0)
    }

    /// Raises event `bit` at the qube with manifest index `qube` (if it exists), here or on
    /// its CPU. A waiting qube becomes runnable on its scheduler's next pass; events
    /// accumulate until read.
    fn signal(&mut self, qube: usize, bit: usize) {
        let bits = 1 << (bit % 64);
        let local = self.qubes.iter().position(|q| q.id() == qube);
        match local {
            Some(i) => self.deliver(i, bits),
            None => smp::post(qube, bits, |s| &s.events),
        }
    }

    /// Raises `events` at this CPU's qube `i`, starting it first if it is a disposable that
    /// is stopped.
    fn deliver(&mut self, i: usize, events: u64) {
        let q = &mut self.qubes[i];
        if q.state == RunState::Stopped && q.spec().start == StartPolicy::OnRequest {
            // A disposable starts from scratch when a qube allowed to (it has a channel to
            // it) asks; its request is already in the channel.
            let loaded = q.load();
            match loaded {
                Ok(()) => hvlog!("qube {} started on request", q.name()),
                Err(e) => hvlog!("qube {} not started on request: {e}", q.name()),
            }
            self.publish();
            if loaded.is_err() {
                return;
            }
        }
        self.qubes[i].machine.events |= events;
    }

    /// Logs "all N qubes ready" once, when every at-boot qube on every CPU has said so.
    fn report_all_ready(&self) {
        if smp::ALL_READY_REPORTED.load(Ordering::Relaxed) {
            return;
        }
        let at_boot = || {
            QUBES.iter().filter(|s| {
                s.placed.load(Ordering::Acquire)
                    && s.info.with_spin(|i| i.as_ref().is_some_and(|i| i.at_boot)) == Some(true)
            })
        };
        let ready = |s: &smp::QubeSlot| s.status.load(Ordering::Acquire) & status::READY != 0;
        if !at_boot().all(ready) || smp::ALL_READY_REPORTED.swap(true, Ordering::Relaxed) {
            return;
        }
        let exits: u64 = at_boot().map(|s| s.exits.load(Ordering::Relaxed)).sum();
        let ms = time::now_ns() / 1_000_000;
        hvlog!(
            "all {} qubes ready: {exits} VM exits, {ms} ms since boot",
            at_boot().count()
        );
    }
}

/// Stops a qube, logs why, and restarts it if its policy and restart budget say so.
/// Returns whether it was restarted (its channels were then reset).
fn stop_qube(q: &mut Qube, stop: Stop) -> bool {
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

/// What a recorded IOMMU fault blocked, for its log line: `DMA write at 0x...`, or
/// `interrupt message (entry N)`.
struct Blocked(bulkhead_hvcore::vtd::Fault);

impl core::fmt::Display for Blocked {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let fault = &self.0;
        if fault.is_interrupt() {
            write!(f, "interrupt message (entry {})", fault.interrupt_index())
        } else {
            let kind = if fault.write { "write" } else { "read" };
            write!(f, "DMA {kind} at {:#x}", fault.address)
        }
    }
}
