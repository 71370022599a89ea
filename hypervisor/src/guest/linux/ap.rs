//! A secondary vCPU of a Linux qube (an application processor): powered on waiting for
//! INIT, started by the guest's STARTUP IPI in real mode at the vector's page, then run by
//! the scheduler of the physical CPU it was placed on like any qube, but owning nothing of
//! the qube's life: its stops go to the primary vCPU ([`Board::request_stop`]), and every
//! start or stop of the qube parks it again ([`Board::park_secondaries`]).

use super::LinuxCpu;
use super::board::Board;
use crate::exits::Outcome;
use crate::memory::guest::MemView;
use crate::virt::{AnyVcpu, Exit, Start};
use bulkhead_hvcore::ap_gate;
use bulkhead_hvcore::sched::RunState;

/// One secondary vCPU.
pub struct LinuxAp {
    /// Its virtual CPU.
    pub vcpu: AnyVcpu,
    /// Its local APIC, PAT and exit counts.
    cpu: LinuxCpu,
    /// What it shares with the qube's other vCPUs.
    board: &'static Board,
    /// The qube's memory (for MMIO instructions).
    mem: MemView,
    /// The physical CPU it runs on.
    host_cpu: usize,
    /// Started (by STARTUP) and not parked since.
    running: bool,
    /// Its vCPU's exit count at its last start.
    exits_at_start: u64,
    /// Its run state on its CPU: waiting (with no deadline) while parked.
    pub state: RunState,
}

impl LinuxAp {
    /// vCPU `index` of the qube whose vCPUs share `board`, with its own `vcpu` (on the
    /// qube's nested page tables), placed on physical CPU `host_cpu`. Parked.
    pub fn new(
        board: &'static Board,
        index: u8,
        vcpu: AnyVcpu,
        mem: MemView,
        host_cpu: usize,
    ) -> LinuxAp {
        board.links[usize::from(index)].set_cpu(host_cpu);
        LinuxAp {
            vcpu,
            cpu: LinuxCpu::new(index),
            board,
            mem,
            host_cpu,
            running: false,
            exits_at_start: 0,
            state: RunState::Waiting { deadline: None },
        }
    }

    /// The manifest index of its qube.
    pub fn qube(&self) -> usize {
        self.board.qube
    }

    /// Its index in the qube.
    pub fn index(&self) -> usize {
        self.cpu.index()
    }

    /// Whether something must wake it from waiting: a STARTUP while parked; interrupts
    /// from the others, an INIT or a stop of the qube while running.
    pub fn has_wake(&self) -> bool {
        let link = &self.board.links[self.index()];
        let (state, _) = link.gate.state();
        if self.running {
            state != ap_gate::RUNNING || link.has_interrupts()
        } else {
            state == ap_gate::SIPI
        }
    }

    /// Before each entry: starts it at a STARTUP, parks it after an INIT or a stop of the
    /// qube, and prepares the entry. False: it is parked and must not enter (it then waits
    /// for the next STARTUP).
    pub fn before_entry(&mut self) -> bool {
        let k = self.index();
        let link = &self.board.links[k];
        if let Some(vector) = link.gate.take_startup() {
            link.discard_interrupts();
            self.cpu = LinuxCpu::new(k as u8);
            link.publish_address(&self.cpu.lapic);
            self.vcpu.reset(&Start::sipi(vector));
            self.vcpu.flush_tlb_before_next_run();
            self.running = true;
            self.exits_at_start = self.vcpu.exit_count();
            crate::hvlog!(
                "qube {}: vCPU {k} started at SIPI vector {vector:#x} on CPU {}",
                self.board.name,
                self.host_cpu
            );
        }
        if !self.running || !link.gate.enter() {
            self.running = false;
            return false;
        }
        self.cpu.prepare_entry(&mut self.vcpu, self.board, 0);
        true
    }

    /// Runs it once (after [`LinuxAp::before_entry`] said it may enter).
    pub fn run(&mut self) -> Exit {
        let exit = self.vcpu.run();
        self.board.links[self.index()].gate.left();
        exit
    }

    /// Handles one exit. A stop (a fault, a power-off) goes to the primary, which stops
    /// the whole qube; this vCPU waits meanwhile.
    pub fn handle_exit(&mut self, exit: Exit) -> Outcome {
        let outcome =
            super::exits::handle(&mut self.cpu, &mut self.vcpu, self.board, &self.mem, exit);
        let s = &self.cpu.stats;
        let exits = self.vcpu.exit_count() - self.exits_at_start;
        self.board.links[self.index()].set_counts([exits, s.ipis, s.injected]);
        match outcome {
            Outcome::Stop(stop) => {
                let (name, k) = (self.board.name, self.index());
                match stop {
                    crate::exits::Stop::Fault(f) => crate::hvlog!("qube {name}: vCPU {k}: {f}"),
                    crate::exits::Stop::Exited(status) => crate::hvlog!(
                        "qube {name}: vCPU {k} ends the qube (status {})",
                        status as i64
                    ),
                    crate::exits::Stop::Killed => {}
                }
                self.board.request_stop(stop, self.index());
                self.running = false;
                Outcome::Wait(None)
            }
            o => o,
        }
    }

    /// When its own timer wants it to run (ns since boot), if armed and running.
    pub fn wake_deadline(&self) -> Option<u64> {
        if self.running {
            self.cpu.timer_deadline()
        } else {
            None
        }
    }
}
