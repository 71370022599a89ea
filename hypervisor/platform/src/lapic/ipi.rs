//! Interprocessor interrupts: the ICR decoded, and which APICs a destination reaches.

/// An interprocessor interrupt, as a write to ICR low sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    /// The vector (ICR bits 0..7); only meaningful for fixed, lowest-priority and startup
    /// (the SIPI's start page) IPIs.
    pub vector: u8,
    /// The delivery mode (ICR bits 8..10, with the level and trigger bits for INIT).
    pub mode: IpiMode,
    /// The destination (shorthand, destination mode and ICR high bits 24..31).
    pub dest: IpiDest,
    /// The APIC id of the sender.
    pub from: u8,
}

/// The delivery mode of an IPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpiMode {
    /// Mode 0: the vector, to every APIC of the destination. The sender has already
    /// requested it on itself if the destination includes it.
    Fixed,
    /// Mode 1: the vector, to one APIC of the destination (the hypervisor picks; the sender
    /// does not request it on itself).
    LowestPriority,
    /// Mode 2: a system management interrupt.
    Smi,
    /// Mode 4: a non-maskable interrupt.
    Nmi,
    /// Mode 5 asserted (level bit 14 set, or trigger bit 15 clear): INIT, reset to
    /// wait-for-SIPI.
    Init,
    /// Mode 5 with level bit 14 clear and trigger bit 15 set: INIT level de-assert (it only
    /// resynchronises arbitration ids on old processors).
    InitDeassert,
    /// Mode 6: start-up IPI; the target starts in real mode at `vector << 12`.
    Startup,
    /// Modes 3 and 7.
    Reserved,
}

/// The destination of an IPI or of an I/O APIC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpiDest {
    /// Shorthand 1: the sender only.
    SelfOnly,
    /// Shorthand 2: every APIC, the sender included.
    AllIncludingSelf,
    /// Shorthand 3: every APIC but the sender.
    AllExcludingSelf,
    /// No shorthand, physical destination mode: the APIC with this id; 0xFF is broadcast.
    Physical(u8),
    /// No shorthand, logical destination mode: the APICs whose logical destination
    /// register matches this (flat or cluster model, as each APIC's DFR says).
    Logical(u8),
}

impl IpiDest {
    /// The destination an ICR names: `low` is ICR low (shorthand bits 18..19, destination
    /// mode bit 11), `high` is ICR high (destination in bits 24..31).
    fn of_icr(low: u32, high: u32) -> IpiDest {
        let dest = (high >> 24) as u8;
        match (low >> 18) & 3 {
            1 => IpiDest::SelfOnly,
            2 => IpiDest::AllIncludingSelf,
            3 => IpiDest::AllExcludingSelf,
            _ if low & (1 << 11) == 0 => IpiDest::Physical(dest),
            _ => IpiDest::Logical(dest),
        }
    }
}

impl IpiMode {
    /// The delivery mode ICR low `low` names.
    fn of_icr(low: u32) -> IpiMode {
        match (low >> 8) & 7 {
            0 => IpiMode::Fixed,
            1 => IpiMode::LowestPriority,
            2 => IpiMode::Smi,
            4 => IpiMode::Nmi,
            5 if low & (1 << 14) == 0 && low & (1 << 15) != 0 => IpiMode::InitDeassert,
            5 => IpiMode::Init,
            6 => IpiMode::Startup,
            _ => IpiMode::Reserved,
        }
    }
}

impl Ipi {
    /// The IPI that writing `low` to ICR low sends, with `high` in ICR high, from the APIC
    /// with id `from`.
    pub(super) fn of_icr(low: u32, high: u32, from: u8) -> Ipi {
        Ipi {
            vector: low as u8,
            mode: IpiMode::of_icr(low),
            dest: IpiDest::of_icr(low, high),
            from,
        }
    }
}

/// What another APIC needs to know of this one to decide whether an IPI or an I/O APIC
/// message reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApicAddress {
    /// The APIC id.
    pub id: u8,
    /// The logical destination register (the logical id in bits 24..31).
    pub ldr: u32,
    /// The destination format register (bits 28..31: 0xF flat model, 0x0 cluster model).
    pub dfr: u32,
}

impl ApicAddress {
    /// Whether an interrupt to `dest`, sent by the APIC with id `from`, reaches this APIC.
    pub fn accepts(&self, dest: IpiDest, from: u8) -> bool {
        match dest {
            IpiDest::SelfOnly => self.id == from,
            IpiDest::AllIncludingSelf => true,
            IpiDest::AllExcludingSelf => self.id != from,
            IpiDest::Physical(d) => d == self.id || d == 0xFF,
            IpiDest::Logical(d) => self.logical_match(d),
        }
    }

    /// Whether logical destination `d` includes this APIC: in the flat model any common bit
    /// of the 8-bit logical id; in the cluster model broadcast (0xFF), or the same cluster
    /// (high nibble) and a common bit of the low nibble.
    fn logical_match(&self, d: u8) -> bool {
        let ldr = (self.ldr >> 24) as u8;
        if self.dfr >> 28 == 0xF {
            d & ldr != 0
        } else {
            d == 0xFF || (d >> 4 == ldr >> 4 && d & ldr & 0xF != 0)
        }
    }
}
