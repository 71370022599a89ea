//! What an exit leads to, whichever guest caused it: the scheduler's next step
//! ([`Outcome`]), and every way a qube can misbehave ([`Fault`]), which stops that qube only
//! and is named in the log line (the blame rule). Each kind of guest (`crate::guest`)
//! decides which exits are faults.

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
    /// An admin hypercall (the caller is the admin qube): the scheduler carries it out on
    /// qube `qube` (a manifest index) and writes the result to the caller's `rax`.
    Admin {
        /// Which one.
        call: bulkhead_abi::hypercall::Hypercall,
        /// The qube it names.
        qube: u64,
    },
}

/// Why a qube stopped.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// It exited with a status.
    Exited(u64),
    /// It broke a rule.
    Fault(Fault),
    /// The admin qube killed it.
    Killed,
}

/// Ways a qube can break the rules, each named in the log line.
#[allow(clippy::enum_variant_names)] // `TripleFault` is the architectural name
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Triple fault.
    TripleFault { rip: u64 },
    /// Access to guest-physical memory it does not own (or, `read_only`, a write to memory it
    /// may only read: the peer's pool of a channel's bulk area).
    ForeignMemory {
        gpa: u64,
        write: bool,
        fetch: bool,
        read_only: bool,
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
                read_only: true,
                rip,
                ..
            } => write!(
                f,
                "write to guest-physical {gpa:#x}, the peer's pool of a channel's bulk area, \
                 which it may only read (rip={rip:#x})"
            ),
            Fault::ForeignMemory {
                gpa,
                write,
                fetch,
                rip,
                ..
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
